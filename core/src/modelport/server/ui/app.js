/* The modelport gateway's admin page. Every value is inserted with textContent (never
   innerHTML); the master key lives in sessionStorage and goes only to this gateway's JSON
   routes as a Bearer token. */
(function () {
  "use strict";

  var STORE = "modelport.masterKey";
  var BASE = document.body.getAttribute("data-base") || "";
  var TEAMS = document.body.getAttribute("data-teams") === "on";
  var REFRESH_MS = 15000;
  var COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#6b7280"];

  var state = { key: null, models: [], keysPage: 1, keysPages: 1, charts: {}, timer: null, spend: null };

  function $(id) { return document.getElementById(id); }

  function node(tag, text, className) {
    var el = document.createElement(tag);
    if (text !== undefined && text !== null) el.textContent = String(text);
    if (className) el.className = className;
    return el;
  }

  function cell(row, text, className) {
    var td = node("td", text === null || text === undefined || text === "" ? "-" : text, className);
    row.appendChild(td);
    return td;
  }

  function cellWith(row, child, className) {
    var td = node("td", null, className);
    td.appendChild(child);
    row.appendChild(td);
    return td;
  }

  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

  function usd(value) {
    var n = Number(value) || 0;
    return n === 0 ? "0" : n < 0.01 ? n.toFixed(6) : n.toFixed(4);
  }

  function count(value) { return value === null || value === undefined ? "-" : String(value); }

  function showError(name, message) {
    var el = document.querySelector('[data-error="' + name + '"]');
    if (!el) return;
    el.textContent = message || "";
    el.hidden = !message;
  }

  function ApiError(status, message, code) {
    this.status = status;
    this.message = message;
    this.code = code;
  }

  /* One JSON call to the gateway with the master key. */
  function api(path, options) {
    options = options || {};
    var key = options.key || state.key;
    var init = {
      method: options.method || "GET",
      headers: { "Authorization": "Bearer " + key, "Accept": "application/json" },
      cache: "no-store",
      credentials: "omit",
      redirect: "error"
    };
    if (options.body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    return fetch(BASE + path, init).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!response.ok) {
          var error = data && data.error ? data.error : {};
          throw new ApiError(response.status, error.message || ("HTTP " + response.status), error.code);
        }
        return data;
      });
    }, function () {
      throw new ApiError(0, "the gateway cannot be reached", "network");
    });
  }

  /* A call made while signed in: a 401 means the key no longer works. */
  function guarded(name, promise) {
    return promise.then(function (value) {
      showError(name, "");
      return value;
    }, function (error) {
      if (error instanceof ApiError && error.status === 401) {
        signOut("The master key was refused; sign in again.");
      } else {
        showError(name, error && error.message ? error.message : String(error));
      }
      return null;
    });
  }

  // -- signing in ------------------------------------------------------------------------

  function signIn(key, fromStorage) {
    var submit = $("login-submit");
    submit.disabled = true;
    return api("/ui/api/session", { key: key }).then(function (session) {
      state.key = key;
      state.models = session.models || [];
      try { sessionStorage.setItem(STORE, key); } catch (e) { /* private mode: the key lives in memory */ }
      $("master-key").value = "";
      $("login-error").hidden = true;
      $("login").hidden = true;
      $("dashboard").hidden = false;
      $("session").hidden = false;
      fillModels();
      refreshAll();
      if (state.timer === null) state.timer = window.setInterval(autoRefresh, REFRESH_MS);
    }, function (error) {
      var message;
      if (error.status === 401) message = fromStorage ? "Sign in with the master key." : "Wrong master key.";
      else if (error.status === 403) message = error.message;
      else if (error.status === 429) message = "Too many attempts; wait a second and try again.";
      else message = "Cannot sign in: " + error.message;
      signOut(message);
    }).then(function () { submit.disabled = false; });
  }

  function signOut(message) {
    state.key = null;
    try { sessionStorage.removeItem(STORE); } catch (e) { /* nothing stored */ }
    if (state.timer !== null) { window.clearInterval(state.timer); state.timer = null; }
    Object.keys(state.charts).forEach(function (name) { state.charts[name].destroy(); });
    state.charts = {};
    $("dashboard").hidden = true;
    $("session").hidden = true;
    $("login").hidden = false;
    var error = $("login-error");
    error.textContent = message || "";
    error.hidden = !message;
    $("master-key").focus();
  }

  function refreshAll() {
    loadRequests();
    loadDeployments();
    if (TEAMS) { loadKeys(); loadSpend(); }
  }

  function autoRefresh() {
    if (document.hidden || state.key === null) return;
    loadRequests();
    loadDeployments();
  }

  // -- the request log -------------------------------------------------------------------

  function loadRequests() {
    return guarded("requests", api("/ui/api/requests?limit=100")).then(function (result) {
      if (!result) return;
      var body = $("requests").tBodies[0];
      clear(body);
      result.data.forEach(function (entry) {
        var row = document.createElement("tr");
        row.setAttribute("data-request-id", entry.request_id);
        var time = node("time", new Date(entry.time).toLocaleTimeString());
        time.setAttribute("datetime", entry.time);
        cellWith(row, time);
        cell(row, entry.request_id, "mono");
        cell(row, entry.operation + (entry.stream ? " (stream)" : ""));
        cell(row, entry.model);
        cell(row, entry.key, "label");
        cell(row, entry.status, entry.status < 400 ? "ok" : "bad");
        cell(row, entry.latency_ms, "num");
        cell(row, count(entry.prompt_tokens), "num");
        cell(row, count(entry.completion_tokens), "num");
        cell(row, count(entry.total_tokens), "num");
        body.appendChild(row);
      });
      $("requests-note").textContent = result.data.length
        ? "The last " + result.data.length + " calls (this process keeps " + result.size + ")."
        : "No calls yet.";
    });
  }

  // -- deployments -----------------------------------------------------------------------

  function loadDeployments() {
    return guarded("deployments", api("/ui/api/deployments")).then(function (result) {
      if (!result) return;
      var body = $("deployments").tBodies[0];
      clear(body);
      result.data.forEach(function (d) {
        var row = document.createElement("tr");
        row.setAttribute("data-deployment", d.id);
        cell(row, d.model_group);
        cell(row, d.provider);
        cell(row, d.model, "mono");
        cell(row, d.api_base || "default", "mono");
        var health = d.state_error ? "unknown" : d.cooling ? "cooling down" : "healthy";
        cell(row, health, d.state_error ? "warn" : d.cooling ? "bad" : "ok");
        cell(row, count(d.rpm), "num");
        cell(row, count(d.tpm), "num");
        cell(row, count(d.max_parallel_requests), "num");
        cell(row, count(d.in_flight), "num");
        cell(row, count(d.requests_this_minute), "num");
        cell(row, count(d.tokens_this_minute), "num");
        cell(row, count(d.latency_ms), "num");
        body.appendChild(row);
      });
      if (!result.data.length) {
        var empty = document.createElement("tr");
        var td = cell(empty, "No deployments: this gateway has no model list.");
        td.colSpan = 12;
        body.appendChild(empty);
      }
    });
  }

  // -- virtual keys ----------------------------------------------------------------------

  function fillModels() {
    var select = $("key-models");
    if (!select) return;
    clear(select);
    state.models.forEach(function (name) {
      var option = node("option", name);
      option.value = name;
      select.appendChild(option);
    });
  }

  function loadKeys() {
    var path = "/key/list?return_full_object=true&size=50&page=" + encodeURIComponent(state.keysPage);
    return guarded("keys", api(path)).then(function (result) {
      if (!result) return;
      state.keysPages = result.total_pages || 1;
      var body = $("keys").tBodies[0];
      clear(body);
      result.keys.forEach(function (key) { body.appendChild(keyRow(key)); });
      if (!result.keys.length) {
        var empty = document.createElement("tr");
        cell(empty, "No virtual keys yet.").colSpan = 9;
        body.appendChild(empty);
      }
      $("keys-page").textContent = "page " + result.current_page + " of " + state.keysPages + " (" + result.total_count + " keys)";
      $("keys-prev").disabled = state.keysPage <= 1;
      $("keys-next").disabled = state.keysPage >= state.keysPages;
    });
  }

  function keyRow(key) {
    var row = document.createElement("tr");
    row.setAttribute("data-token", key.token);
    row.setAttribute("data-alias", key.key_alias || "");
    cell(row, key.key_alias, "label");
    cell(row, key.key_name, "mono");
    cell(row, key.models && key.models.length ? key.models.join(", ") : "all models");
    cell(row, usd(key.spend), "num");
    cell(row, key.max_budget === null || key.max_budget === undefined ? "-" : usd(key.max_budget), "num");
    cell(row, count(key.rpm_limit), "num");
    var expired = key.expires && new Date(key.expires) < new Date();
    cell(row, key.blocked ? "blocked" : expired ? "expired" : "active", key.blocked || expired ? "bad" : "ok");
    cell(row, key.created_at ? new Date(key.created_at).toLocaleString() : "-");
    var actions = cellWith(row, document.createDocumentFragment(), "actions");
    var toggle = node("button", key.blocked ? "Unblock" : "Block");
    toggle.type = "button";
    toggle.setAttribute("data-action", key.blocked ? "unblock" : "block");
    toggle.addEventListener("click", function () {
      toggle.disabled = true;
      guarded("keys", api(key.blocked ? "/key/unblock" : "/key/block", { method: "POST", body: { key: key.token } })).then(loadKeys);
    });
    var remove = node("button", "Delete", "danger");
    remove.type = "button";
    remove.setAttribute("data-action", "delete");
    remove.addEventListener("click", function () {
      var name = key.key_alias || key.key_name;
      if (!window.confirm("Delete the key " + name + "? Calls with it will be refused.")) return;
      remove.disabled = true;
      guarded("keys", api("/key/delete", { method: "POST", body: { keys: [key.token] } })).then(loadKeys);
    });
    actions.appendChild(toggle);
    actions.appendChild(remove);
    return row;
  }

  function createKey(event) {
    event.preventDefault();
    var body = {};
    var alias = $("key-alias").value.trim();
    if (alias) body.key_alias = alias;
    var models = Array.prototype.filter.call($("key-models").options, function (o) { return o.selected; })
      .map(function (o) { return o.value; });
    if (models.length) body.models = models;
    var budget = $("key-budget").value.trim();
    if (budget !== "") body.max_budget = Number(budget);
    var rpm = $("key-rpm").value.trim();
    if (rpm !== "") body.rpm_limit = parseInt(rpm, 10);
    var button = $("key-create");
    button.disabled = true;
    guarded("keys", api("/key/generate", { method: "POST", body: body })).then(function (result) {
      button.disabled = false;
      if (!result) return;
      $("key-form").reset();
      $("new-key-alias").textContent = result.key_alias || result.key_name || "";
      $("new-key-value").textContent = result.key;
      $("new-key").hidden = false;
      state.keysPage = 1;
      loadKeys();
    });
  }

  function copyNewKey() {
    var value = $("new-key-value");
    var text = value.textContent;
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(function () { $("new-key-copy").textContent = "Copied"; }, function () { selectText(value); });
    } else {
      selectText(value);
    }
  }

  function selectText(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function dismissNewKey() {
    $("new-key-value").textContent = "";
    $("new-key-alias").textContent = "";
    $("new-key-copy").textContent = "Copy";
    $("new-key").hidden = true;
  }

  // -- spend -----------------------------------------------------------------------------

  function loadSpend() {
    var days = $("spend-days").value;
    return guarded("spend", api("/ui/api/spend?days=" + encodeURIComponent(days))).then(function (result) {
      if (!result) return;
      state.spend = result;
      $("spend-total").textContent = usd(result.total);
      drawSpend("key", result.days, result.by_key);
      drawSpend("model", result.days, result.by_model);
    });
  }

  function drawSpend(kind, days, series) {
    var box = $("spend-" + kind + "-chart");
    // What the chart shows, readable without the canvas (and by tests).
    box.setAttribute("data-chart", JSON.stringify({
      days: days,
      series: series.map(function (s) { return { label: s.label, total: s.total, spend: s.spend }; })
    }));
    var table = $("spend-" + kind + "-table").tBodies[0];
    clear(table);
    series.forEach(function (s, i) {
      var row = document.createElement("tr");
      row.setAttribute("data-label", s.label);
      var label = cellWith(row, node("span", "", "swatch swatch-" + (i % COLORS.length)), "label");
      label.appendChild(document.createTextNode(s.label));
      cell(row, usd(s.total), "num");
      cell(row, s.requests, "num");
      cell(row, s.tokens, "num");
      table.appendChild(row);
    });
    if (!series.length) {
      var empty = document.createElement("tr");
      cell(empty, "No spend in this period.").colSpan = 4;
      table.appendChild(empty);
    }
    if (state.charts[kind]) { state.charts[kind].destroy(); delete state.charts[kind]; }
    clear(box);
    if (typeof window.uPlot !== "function") {
      box.appendChild(node("p", "The chart library did not load.", "error"));
      return;
    }
    var xs = days.map(function (day) { return Date.parse(day + "T00:00:00Z") / 1000; });
    var data = [xs].concat(series.map(function (s) { return s.spend; }));
    var options = {
      width: Math.max(280, box.clientWidth || 480),
      height: 220,
      tzDate: function (ts) { return window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
      axes: [{}, { values: function (u, ticks) { return ticks.map(function (t) { return "$" + usd(t); }); }, size: 70 }],
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      series: [{}].concat(series.map(function (s, i) {
        return {
          label: s.label,
          stroke: COLORS[i % COLORS.length],
          width: 2,
          points: { show: true, size: 5 },
          value: function (u, v) { return v === null ? "-" : "$" + usd(v); }
        };
      }))
    };
    state.charts[kind] = new window.uPlot(options, data, box);
    box.setAttribute("data-drawn", "true");
  }

  function redrawCharts() {
    if (!state.spend || state.key === null) return;
    drawSpend("key", state.spend.days, state.spend.by_key);
    drawSpend("model", state.spend.days, state.spend.by_model);
  }

  // -- wiring ----------------------------------------------------------------------------

  function start() {
    $("login-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var key = $("master-key").value.trim();
      if (key) signIn(key, false);
    });
    $("logout").addEventListener("click", function () { signOut(""); });
    $("refresh-all").addEventListener("click", refreshAll);
    var loaders = { requests: loadRequests, deployments: loadDeployments, keys: loadKeys, spend: loadSpend };
    Array.prototype.forEach.call(document.querySelectorAll("[data-refresh]"), function (button) {
      button.addEventListener("click", function () { loaders[button.getAttribute("data-refresh")](); });
    });
    if (TEAMS) {
      $("key-form").addEventListener("submit", createKey);
      $("new-key-copy").addEventListener("click", copyNewKey);
      $("new-key-dismiss").addEventListener("click", dismissNewKey);
      $("keys-prev").addEventListener("click", function () { if (state.keysPage > 1) { state.keysPage -= 1; loadKeys(); } });
      $("keys-next").addEventListener("click", function () { if (state.keysPage < state.keysPages) { state.keysPage += 1; loadKeys(); } });
      $("spend-days").addEventListener("change", loadSpend);
      var resizing = null;
      window.addEventListener("resize", function () {
        window.clearTimeout(resizing);
        resizing = window.setTimeout(redrawCharts, 200);
      });
    }
    var stored = null;
    try { stored = sessionStorage.getItem(STORE); } catch (e) { stored = null; }
    if (stored) signIn(stored, true);
    else $("master-key").focus();
  }

  start();
}());
