"""The admin page (/ui) in a real headless Chromium (Playwright driving Debian's
/usr/bin/chromium), over a gateway under uvicorn on 127.0.0.1 with teams on (SQLite in
tmp_path) and a loopback FakeUpstream; calls go through the official openai SDK."""

from __future__ import annotations

import json
import os
import pathlib
import shutil

import httpx
import openai
import pytest

from helpers import run_server
from modelport.client import AsyncClient
from modelport.routing import load_config
from modelport.server import app_from_config, create_app

MASTER = "sk-admin-master-0123456789"
UPSTREAM_KEY = "sk-upstream-secret-456"
PROMPT_PRICE = 0.001
COMPLETION_PRICE = 0.002
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
TIMEOUT_MS = 10_000




def _unavailable(reason: str) -> None:
    """No browser here: a failure in CI (which installs it), a skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"the admin page's browser tests cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed (pip install playwright)")
    if not os.path.exists(CHROMIUM) or not shutil.which(CHROMIUM):
        _unavailable(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    manager = sync_playwright().start()
    try:
        launched = manager.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
    except Exception as exc:
        manager.stop()
        pytest.fail(f"Chromium could not be started: {exc}")
    yield launched
    launched.close()
    manager.stop()


class Page:
    """A browser page that records console errors, CSP violations and script errors."""

    def __init__(self, browser, url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.problems: list = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.problems.append(f"script error: {e}"))
        self.url = url

    def _console(self, message) -> None:
        # Chromium logs every refused request; the wrong-key sign-in is one, on purpose.
        if message.type == "error" and "status of 401" not in message.text:
            self.problems.append(f"console {message.type}: {message.text}")

    def close(self) -> None:
        self.context.close()

    def sign_in(self, key: str) -> None:
        self.page.fill("#master-key", key)
        self.page.click("#login-submit")


def _config(tmp_path: pathlib.Path, upstream, *, teams: bool = True) -> dict:
    general = {"master_key": "os.environ/ADMIN_UI_MASTER", "proxy_batch_write_at": 0.2}
    if teams:
        general["database_url"] = f"sqlite:///{tmp_path / 'teams.db'}"
    return {
        "model_list": [
            {"model_name": "chat-model", "params": {
                "model": "openai/gpt-up", "api_base": upstream.base_url, "api_key": UPSTREAM_KEY, "rpm": 1000,
                "input_cost_per_token": PROMPT_PRICE, "output_cost_per_token": COMPLETION_PRICE}},
            {"model_name": "embedder", "params": {"model": "openai/embed-up", "api_base": upstream.base_url, "tpm": 50000}},
        ],
        "router_settings": {"num_retries": 0},
        "general_settings": general,
    }  # fmt: skip


@pytest.fixture
def gateway(upstream, tmp_path, monkeypatch):
    """A gateway with teams on: a SQLite database in tmp_path, the master key set."""
    monkeypatch.setenv("ADMIN_UI_MASTER", MASTER)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(_config(tmp_path, upstream)))
    server, thread, url = run_server(app_from_config(str(config)))
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def gateway_without_teams(upstream, tmp_path, monkeypatch):
    """A gateway with a master key and no database: teams are off."""
    monkeypatch.setenv("ADMIN_UI_MASTER", MASTER)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    client = AsyncClient.from_config(load_config(_config(tmp_path, upstream, teams=False)))
    server, thread, url = run_server(create_app(client, master_key=MASTER))
    yield url
    server.should_exit = True
    thread.join(10)


def _expected_cost(usage) -> float:
    return usage.prompt_tokens * PROMPT_PRICE + usage.completion_tokens * COMPLETION_PRICE


def _series_color_pixels(page, chart_id: str, rgb: tuple) -> int:
    """Pixels of the chart's canvas close to ``rgb``: the series line was drawn."""
    return page.evaluate(
        """([id, rgb]) => {
            const canvas = document.querySelector('#' + id + ' canvas');
            if (!canvas) return -1;
            const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            let n = 0;
            for (let i = 0; i < data.length; i += 4) {
                if (data[i + 3] > 200 && Math.abs(data[i] - rgb[0]) < 12 && Math.abs(data[i + 1] - rgb[1]) < 12 && Math.abs(data[i + 2] - rgb[2]) < 12) n++;
            }
            return n;
        }""",
        [chart_id, list(rgb)],
    )


def test_admin_page_end_to_end(browser, gateway, tmp_path):
    from playwright.sync_api import expect

    view = Page(browser, gateway)
    page = view.page
    try:
        page.goto(f"{gateway}/ui")
        expect(page.locator("#login")).to_be_visible()
        expect(page.locator("#dashboard")).to_be_hidden()

        # A wrong key: an error, nothing stored, the dashboard stays hidden.
        view.sign_in("sk-not-the-master-key")
        expect(page.locator("#login-error")).to_have_text("Wrong master key.")
        expect(page.locator("#dashboard")).to_be_hidden()
        assert page.evaluate("sessionStorage.getItem('modelport.masterKey')") is None

        # The right key: the dashboard, the key kept in sessionStorage (and across a reload).
        view.sign_in(MASTER)
        expect(page.locator("#dashboard")).to_be_visible()
        expect(page.locator("#login")).to_be_hidden()
        assert page.evaluate("sessionStorage.getItem('modelport.masterKey')") == MASTER
        page.reload()
        expect(page.locator("#dashboard")).to_be_visible()
        expect(page.locator("#keys-panel")).to_be_visible()

        # Create a key in the page: alias, one model, a budget and an rpm limit.
        expect(page.locator("#key-models option")).to_have_count(2)
        page.fill("#key-alias", "team-a")
        page.select_option("#key-models", ["chat-model"])
        page.fill("#key-budget", "5")
        page.fill("#key-rpm", "100")
        page.click("#key-create")
        expect(page.locator("#new-key")).to_be_visible()
        new_key = page.locator("#new-key-value").inner_text().strip()
        assert new_key.startswith("sk-") and len(new_key) > 40
        row = page.locator('#keys tbody tr[data-alias="team-a"]')
        expect(row).to_have_count(1)
        cells = row.locator("td")
        expect(cells.nth(0)).to_have_text("team-a")
        expect(cells.nth(1)).to_have_text(f"sk-...{new_key[-4:]}")
        expect(cells.nth(2)).to_have_text("chat-model")
        expect(cells.nth(4)).to_have_text("5.0000")
        expect(cells.nth(5)).to_have_text("100")
        expect(cells.nth(6)).to_have_text("active")
        page.click("#new-key-dismiss")
        expect(page.locator("#new-key")).to_be_hidden()
        assert new_key not in page.content()  # shown once, then gone from the page

        # A key whose alias is markup: shown as text, never parsed.
        hostile = '<img src=x id="pwned" onerror="window.pwned=1">'
        made = httpx.post(f"{gateway}/key/generate", headers={"Authorization": f"Bearer {MASTER}"}, json={"key_alias": hostile})
        assert made.status_code == 200, made.text

        # Calls with the new keys through the official SDK.
        sdk = openai.OpenAI(base_url=f"{gateway}/v1", api_key=new_key, max_retries=0)
        usages = []
        for n in range(3):
            answer = sdk.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": f"hello number {n} from the admin test"}])
            usages.append(answer.usage)
        expected = sum(_expected_cost(u) for u in usages)
        assert expected > 0
        with pytest.raises(openai.PermissionDeniedError):  # the key may use chat-model only
            sdk.embeddings.create(model="embedder", input="x")
        hostile_sdk = openai.OpenAI(base_url=f"{gateway}/v1", api_key=made.json()["key"], max_retries=0)
        hostile_usage = hostile_sdk.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": "hi"}]).usage

        # The spend panel: the chart's data, its table and its canvas.
        page.click('[data-refresh="spend"]')
        chart = page.locator("#spend-key-chart")
        expect(chart).to_have_attribute("data-drawn", "true")
        page.wait_for_function("JSON.parse(document.querySelector('#spend-key-chart').dataset.chart || '{}').series?.length >= 2")
        data = json.loads(chart.get_attribute("data-chart"))
        assert len(data["days"]) == 30
        series = {s["label"]: s for s in data["series"]}
        assert series["team-a"]["total"] == pytest.approx(expected)
        assert series["team-a"]["spend"][-1] == pytest.approx(expected)  # today is the last day
        assert sum(series["team-a"]["spend"][:-1]) == 0
        assert series[hostile]["total"] == pytest.approx(_expected_cost(hostile_usage))
        assert data["series"][0]["label"] == "team-a"  # the largest first, drawn in the first colour
        key_table = page.locator('#spend-key-table tbody tr[data-label="team-a"] td')
        expect(key_table.nth(1)).to_have_text(f"{expected:.4f}")
        expect(key_table.nth(2)).to_have_text("3")
        expect(key_table.nth(3)).to_have_text(str(sum(u.total_tokens for u in usages)))
        model_data = json.loads(page.locator("#spend-model-chart").get_attribute("data-chart"))
        assert [(s["label"], round(s["total"], 9)) for s in model_data["series"]] == [("chat-model", round(expected + _expected_cost(hostile_usage), 9))]
        expect(page.locator("#spend-total")).to_have_text(f"{expected + _expected_cost(hostile_usage):.4f}")
        assert _series_color_pixels(page, "spend-key-chart", (0x25, 0x63, 0xEB)) > 20
        assert _series_color_pixels(page, "spend-model-chart", (0x25, 0x63, 0xEB)) > 20

        # The keys table shows the spend too.
        page.click('[data-refresh="keys"]')
        expect(page.locator('#keys tbody tr[data-alias="team-a"] td').nth(3)).to_have_text(f"{expected:.4f}")

        # The request log: the calls that ran, newest first, with their tokens.
        page.click('[data-refresh="requests"]')
        expect(page.locator("#requests tbody tr")).to_have_count(4)
        team_rows = page.locator("#requests tbody tr", has=page.locator("td:nth-child(5)", has_text="team-a"))
        expect(team_rows).to_have_count(3)
        assert team_rows.locator("td:nth-child(6)").all_inner_texts() == ["200", "200", "200"]
        totals = team_rows.locator("td:nth-child(10)").all_inner_texts()
        assert totals == [str(u.total_tokens) for u in reversed(usages)]
        assert team_rows.locator("td:nth-child(4)").all_inner_texts() == ["chat-model"] * 3
        assert team_rows.nth(0).locator("td:nth-child(2)").inner_text().startswith("req_")
        latency = float(team_rows.nth(0).locator("td:nth-child(7)").inner_text())
        assert 0 < latency < 10_000

        # Deployments: group, provider, model, the api_base host only, health, limits.
        deployment = page.locator('#deployments tbody tr[data-deployment="chat-model#0"] td')
        expect(deployment.nth(0)).to_have_text("chat-model")
        expect(deployment.nth(1)).to_have_text("openai")
        expect(deployment.nth(2)).to_have_text("gpt-up")
        host = deployment.nth(3).inner_text()
        assert host.startswith("127.0.0.1:") and "/" not in host
        expect(deployment.nth(4)).to_have_text("healthy")
        expect(deployment.nth(5)).to_have_text("1000")
        expect(page.locator('#deployments tbody tr[data-deployment="embedder#1"] td').nth(6)).to_have_text("50000")
        assert UPSTREAM_KEY not in page.content()

        # Markup in an alias is text everywhere it is shown.
        expect(page.locator("#keys tbody tr td", has_text=hostile)).to_have_count(1)
        assert page.locator("#pwned").count() == 0 and page.evaluate("window.pwned") is None

        shot = tmp_path / "admin.png"
        page.screenshot(path=str(shot), full_page=True)
        png = shot.read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000

        # Block, then unblock, then delete the key from the page; the SDK sees each.
        row.locator('[data-action="block"]').click()
        expect(cells.nth(6)).to_have_text("blocked")
        with pytest.raises(openai.AuthenticationError):
            sdk.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": "blocked?"}])
        row.locator('[data-action="unblock"]').click()
        expect(cells.nth(6)).to_have_text("active")
        assert sdk.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": "back"}]).choices[0].message.content
        page.once("dialog", lambda dialog: dialog.accept())
        row.locator('[data-action="delete"]').click()
        expect(row).to_have_count(0)
        with pytest.raises(openai.AuthenticationError):
            sdk.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": "deleted?"}])

        # Signing out forgets the key.
        page.click("#logout")
        expect(page.locator("#login")).to_be_visible()
        assert page.evaluate("sessionStorage.getItem('modelport.masterKey')") is None
        assert view.problems == []
    finally:
        view.close()


def test_page_without_teams_shows_deployments_and_requests(browser, gateway_without_teams):
    from playwright.sync_api import expect

    url = gateway_without_teams
    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=MASTER, max_retries=0)
    usage = sdk.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": "no teams here"}]).usage
    view = Page(browser, url)
    page = view.page
    try:
        page.goto(f"{url}/ui")
        view.sign_in("wrong")
        expect(page.locator("#login-error")).to_have_text("Wrong master key.")
        view.sign_in(MASTER)
        expect(page.locator("#dashboard")).to_be_visible()
        assert page.locator("#keys-panel").count() == 0 and page.locator("#spend-panel").count() == 0
        expect(page.locator('#deployments tbody tr[data-deployment="chat-model#0"] td').nth(4)).to_have_text("healthy")
        row = page.locator("#requests tbody tr td")
        expect(row.nth(4)).to_have_text("master key")
        expect(row.nth(5)).to_have_text("200")
        expect(row.nth(9)).to_have_text(str(usage.total_tokens))
        assert view.problems == []
    finally:
        view.close()
    spend = httpx.get(f"{url}/ui/api/spend", headers={"Authorization": f"Bearer {MASTER}"})
    assert spend.status_code == 404 and spend.json()["error"]["code"] == "teams_disabled"


def test_static_page_headers_and_api_auth(gateway):
    page = httpx.get(f"{gateway}/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-cache"
    assert MASTER not in page.text and "<script>" not in page.text and " on" + "click=" not in page.text
    assert 'data-teams="on"' in page.text
    scripts = [part.split('"')[1] for part in page.text.split("<script src=")[1:]]
    assert len(scripts) == 2
    for src in scripts:
        asset = httpx.get(f"{gateway}{src}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith("text/javascript")
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        again = httpx.get(f"{gateway}{src}", headers={"if-none-match": asset.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
    stale = httpx.get(f"{gateway}/ui/static/app.js?v=old")
    assert stale.status_code == 200 and stale.headers["cache-control"] == "no-cache"
    missing = httpx.get(f"{gateway}/ui/static/index.html")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_route"

    for path in ("/ui/api/session", "/ui/api/requests", "/ui/api/deployments", "/ui/api/spend"):
        for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
            refused = httpx.get(f"{gateway}{path}", headers=headers)
            assert refused.status_code == 401, path
            assert refused.json()["error"]["code"] == "invalid_api_key"
            assert refused.headers["cache-control"] == "no-store"
    # A virtual key is not the master key.
    key = httpx.post(f"{gateway}/key/generate", headers={"Authorization": f"Bearer {MASTER}"}, json={}).json()["key"]
    assert httpx.get(f"{gateway}/ui/api/session", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    ok = httpx.get(f"{gateway}/ui/api/session", headers={"Authorization": f"Bearer {MASTER}"})
    assert ok.status_code == 200 and ok.json() == {"teams": True, "models": ["chat-model", "embedder"], "request_log_size": 500}
    bad = httpx.get(f"{gateway}/ui/api/requests?limit=0", headers={"Authorization": f"Bearer {MASTER}"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"
    bad = httpx.get(f"{gateway}/ui/api/spend?days=x", headers={"Authorization": f"Bearer {MASTER}"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "days"


def test_open_gateway_serves_no_admin_data(upstream, tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = _config(tmp_path, upstream, teams=False)
    del config["general_settings"]["master_key"]
    server, thread, url = run_server(create_app(AsyncClient.from_config(load_config(config))))
    try:
        assert httpx.get(f"{url}/ui").status_code == 200
        refused = httpx.get(f"{url}/ui/api/deployments")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_disabled"
    finally:
        server.should_exit = True
        thread.join(10)


def test_admin_api_is_rate_limited_per_address(gateway):
    with httpx.Client() as client:
        answers = [client.get(f"{gateway}/ui/api/session", headers={"Authorization": "Bearer sk-guess"}).status_code for _ in range(60)]
    assert 429 in answers and answers[0] == 401
