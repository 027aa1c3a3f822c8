"""Gateway for teams: virtual keys, teams, users, budgets and spend, through HTTP on
loopback (the official openai SDK for model calls, httpx for the admin API), on SQLite
and, when MODELPORT_TEST_POSTGRES_URL is set, on PostgreSQL too."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, List, Optional

import httpx
import openai
import pytest

from helpers import run_server
from modelport.client import AsyncClient
from modelport.routing import load_config
from modelport.server import feature_routes, settings_from_config
from modelport.server._app import Gateway
from modelport.server._teams import runtime_of

MASTER = "sk-teams-master-0123456789"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
IN_PRICE, OUT_PRICE = 0.001, 0.002
HI = [{"role": "user", "content": "hi"}]
#: The config loader does not list the teams keys of general_settings yet (it warns "ignored").
pytestmark = pytest.mark.filterwarnings("ignore:.*ignored \\(not implemented by modelport\\):UserWarning")
TABLES = ("modelport_spend_logs", "modelport_keys", "modelport_teams", "modelport_users", "modelport_alembic_version")




def query(url: str, sql: str) -> List[Dict[str, Any]]:
    """Rows of ``sql`` read straight from the database (not through the gateway)."""
    from sqlalchemy import text

    from modelport.teams._db import create_engine

    async def run() -> List[Dict[str, Any]]:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                return [dict(row) for row in (await connection.execute(text(sql))).mappings()]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def drop_tables(url: str) -> None:
    from sqlalchemy import text

    from modelport.teams._db import create_engine

    async def run() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as connection:
                for table in TABLES:
                    await connection.execute(text(f"DROP TABLE IF EXISTS {table} CASCADE"))
        finally:
            await engine.dispose()

    asyncio.run(run())


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path) -> Iterator[str]:
    """A fresh teams database: a SQLite file, or the test PostgreSQL with the tables dropped."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'teams.db'}"
        return
    url = os.environ.get("MODELPORT_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("MODELPORT_TEST_POSTGRES_URL is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    drop_tables(url)
    yield url
    drop_tables(url)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'teams.db'}"


class Running:
    """One gateway (in this process, under uvicorn) over a teams database."""

    def __init__(self, tmp_path: Any, upstream: Any, database_url: Optional[str], general: str = "") -> None:
        self.config_path = tmp_path / "config.yaml"
        database = f", database_url: '{database_url}'" if database_url else ""
        self.config_path.write_text(f"""
model_list:
  - model_name: chat-model
    params: {{model: openai/gpt-up, api_base: {upstream.base_url}, api_key: up-key, input_cost_per_token: {IN_PRICE}, output_cost_per_token: {OUT_PRICE}}}
  - model_name: other-model
    params: {{model: openai/gpt-other, api_base: {upstream.base_url}, api_key: up-key}}
  - model_name: embedder
    params: {{model: openai/embed-up, api_base: {upstream.base_url}, api_key: up-key, input_cost_per_token: {IN_PRICE}}}
router_settings: {{num_retries: 0}}
general_settings: {{master_key: {MASTER}, proxy_batch_write_at: 0.2{database}{general}}}
""")
        config = load_config(str(self.config_path))
        self.gateway = Gateway(AsyncClient.from_config(config), master_key=MASTER, settings=settings_from_config(config.general))
        app = self.gateway.app(feature_routes(self.gateway))
        self.server, self.thread, self.url = run_server(app)
        self.teams = runtime_of(self.gateway)
        assert self.teams is not None and self.teams.enabled
        self.http = httpx.Client(base_url=self.url, timeout=20)

    def close(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(10)

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("headers", ADMIN)
        return self.http.request(method, path, **kwargs)

    def generate(self, **fields: Any) -> Dict[str, Any]:
        reply = self.admin("POST", "/key/generate", json=fields)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def info(self, key: str) -> Dict[str, Any]:
        reply = self.admin("GET", "/key/info", params={"key": key})
        assert reply.status_code == 200, reply.text
        return reply.json()["info"]

    def sdk(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, http_client=self.http)


@pytest.fixture
def start(tmp_path, upstream) -> Iterator[Any]:
    running: List[Running] = []

    def make(database_url: Optional[str], general: str = "") -> Running:
        gateway = Running(tmp_path, upstream, database_url, general)
        running.append(gateway)
        return gateway

    yield make
    for gateway in running:
        gateway.close()


def cost(usage: Any) -> float:
    return usage.prompt_tokens * IN_PRICE + usage.completion_tokens * OUT_PRICE


# -- keys through the admin API -------------------------------------------------------------


def test_generate_info_update_list_delete(start, database_url):
    gw = start(database_url)
    created = gw.generate(models=["chat-model"], max_budget=5, budget_duration="30d", rpm_limit=10, tpm_limit=1000,
                          max_parallel_requests=2, duration="1h", metadata={"owner": "qa"}, key_alias="qa-key", user_id="alice")  # fmt: skip
    key, token = created["key"], created["token"]
    assert key.startswith("sk-") and len(key) >= 3 + 32
    assert token == hashlib.sha256(key.encode()).hexdigest() and created["key_name"] == f"sk-...{key[-4:]}"
    assert created["expires"] is not None and created["budget_reset_at"] is not None

    info = gw.info(key)
    assert key not in json.dumps(info)
    assert {k: info[k] for k in ("token", "key_alias", "user_id", "models", "max_budget", "budget_duration", "rpm_limit", "tpm_limit",
                                 "max_parallel_requests", "metadata", "spend", "blocked")} == {  # fmt: skip
        "token": token, "key_alias": "qa-key", "user_id": "alice", "models": ["chat-model"], "max_budget": 5.0, "budget_duration": "30d",
        "rpm_limit": 10, "tpm_limit": 1000, "max_parallel_requests": 2, "metadata": {"owner": "qa"}, "spend": 0.0, "blocked": False,
    }  # fmt: skip
    assert gw.info(token)["token"] == token  # by its hash too

    updated = gw.admin("POST", "/key/update", json={"key": key, "models": ["chat-model", "embedder"], "max_budget": 7.5, "tags": ["x"]})
    assert updated.status_code == 200 and updated.headers["x-modelport-ignored-params"] == "tags"
    assert updated.json()["models"] == ["chat-model", "embedder"] and gw.info(key)["max_budget"] == 7.5

    other = gw.generate(team_id=None)
    listed = gw.admin("GET", "/key/list").json()
    assert sorted(listed["keys"]) == sorted([token, other["token"]]) and listed["total_count"] == 2
    mine = gw.admin("GET", "/key/list", params={"user_id": "alice", "return_full_object": "true"}).json()
    assert [k["token"] for k in mine["keys"]] == [token] and mine["total_pages"] == 1

    deleted = gw.admin("POST", "/key/delete", json={"keys": [key]})
    assert deleted.status_code == 200 and deleted.json() == {"deleted_keys": [token]}
    assert gw.admin("GET", "/key/info", params={"key": key}).status_code == 404
    assert gw.admin("POST", "/key/delete", json={"keys": [key]}).json()["error"]["code"] == "key_not_found"
    assert gw.admin("GET", "/key/list").json()["keys"] == [other["token"]]


def test_admin_input_errors(start, sqlite_url):
    gw = start(sqlite_url)
    bad = gw.admin("POST", "/key/generate", json={"max_budget": "lots"})
    assert bad.status_code == 400 and bad.json()["error"] == {"message": "'max_budget' must be a number >= 0, got 'lots'",
                                                              "type": "invalid_request_error", "param": "max_budget", "code": "invalid_request"}  # fmt: skip
    assert gw.admin("POST", "/key/generate", json={"budget_duration": "soon"}).json()["error"]["param"] == "budget_duration"
    assert gw.admin("POST", "/key/generate", json={"team_id": "nope"}).json()["error"]["code"] == "team_not_found"
    assert gw.admin("POST", "/key/generate", content=b"{oops", headers={**ADMIN, "content-type": "application/json"}).status_code == 400
    gw.generate(key_alias="same")
    assert gw.admin("POST", "/key/generate", json={"key_alias": "same"}).json()["error"]["code"] == "key_alias_taken"
    assert gw.admin("GET", "/key/info").status_code == 400
    assert gw.admin("GET", "/key/list", params={"size": "0"}).status_code == 400


def test_admin_routes_take_only_the_master_key(start, sqlite_url):
    gw = start(sqlite_url)
    key = gw.generate()["key"]
    for headers in ({}, {"Authorization": f"Bearer {key}"}, {"x-api-key": key}, {"Authorization": "Bearer sk-wrong"}):
        reply = gw.admin("POST", "/key/generate", json={}, headers=headers)
        assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"
        assert gw.admin("GET", "/spend/logs", headers=headers).status_code == 401
    assert gw.admin("GET", "/key/list", headers={"x-api-key": MASTER}).status_code == 200


def test_admin_routes_are_rate_limited_per_address(start, sqlite_url):
    gw = start(sqlite_url)
    with httpx.Client(base_url=gw.url) as client:
        statuses = [client.get("/key/list", headers={"Authorization": "Bearer guess"}).status_code for _ in range(50)]
    assert statuses.count(429) >= 10 and set(statuses) == {401, 429}
    time.sleep(1.05)
    assert gw.admin("GET", "/key/list").status_code == 200


# -- virtual keys on model calls ------------------------------------------------------------


def test_openai_sdk_with_a_virtual_key(start, sqlite_url, upstream):
    gw = start(sqlite_url)
    key = gw.generate(models=["chat-model"])["key"]
    sdk = gw.sdk(key)
    result = sdk.chat.completions.create(model="chat-model", messages=HI)
    assert result.choices[0].message.content == "You said: hi"
    assert upstream.last.headers["authorization"] == "Bearer up-key"
    assert [m.id for m in sdk.models.list()] == ["chat-model"]
    reply = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "chat-model", "messages": HI}, headers={"x-api-key": key})
    assert reply.status_code == 200


def test_model_restrictions_are_403(start, sqlite_url):
    gw = start(sqlite_url)
    key = gw.generate(models=["chat-model"])["key"]
    with pytest.raises(openai.PermissionDeniedError) as denied:
        gw.sdk(key).chat.completions.create(model="other-model", messages=HI)
    assert denied.value.status_code == 403 and denied.value.body["code"] == "model_not_allowed"
    # a key's models are those its key, team and user lists all allow
    assert gw.admin("POST", "/team/new", json={"team_id": "t1", "models": ["chat-model", "embedder"]}).status_code == 200
    assert gw.admin("POST", "/user/new", json={"user_id": "u1", "models": ["chat-model", "other-model"], "auto_create_key": False}).status_code == 200
    narrow = gw.generate(team_id="t1", user_id="u1")["key"]
    sdk = gw.sdk(narrow)
    assert [m.id for m in sdk.models.list()] == ["chat-model"]
    for model in ("embedder", "other-model"):
        with pytest.raises(openai.PermissionDeniedError):
            sdk.chat.completions.create(model=model, messages=HI)
    assert sdk.chat.completions.create(model="chat-model", messages=HI).choices[0].message.content == "You said: hi"


def test_blocked_expired_and_deleted_keys_are_401(start, sqlite_url):
    gw = start(sqlite_url)
    key = gw.generate()["key"]
    sdk = gw.sdk(key)
    sdk.chat.completions.create(model="chat-model", messages=HI)  # cached now
    assert gw.admin("POST", "/key/block", json={"key": key}).json()["blocked"] is True
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(model="chat-model", messages=HI)
    assert gw.admin("POST", "/key/unblock", json={"key": key}).json()["blocked"] is False
    sdk.chat.completions.create(model="chat-model", messages=HI)

    expired = gw.generate(expires="2001-01-01T00:00:00Z")["key"]
    with pytest.raises(openai.AuthenticationError):
        gw.sdk(expired).chat.completions.create(model="chat-model", messages=HI)
    soon = gw.generate(duration="1s")["key"]
    gw.sdk(soon).chat.completions.create(model="chat-model", messages=HI)
    time.sleep(1.1)
    with pytest.raises(openai.AuthenticationError):  # expiry is checked on every call, cached or not
        gw.sdk(soon).chat.completions.create(model="chat-model", messages=HI)

    assert gw.admin("POST", "/key/delete", json={"keys": [key]}).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(model="chat-model", messages=HI)
    with pytest.raises(openai.AuthenticationError):
        gw.sdk("sk-never-issued-key-000000000000").chat.completions.create(model="chat-model", messages=HI)
    # a team that is blocked blocks its keys
    gw.admin("POST", "/team/new", json={"team_id": "blockme"})
    member = gw.generate(team_id="blockme")["key"]
    gw.sdk(member).chat.completions.create(model="chat-model", messages=HI)
    assert gw.admin("POST", "/team/update", json={"team_id": "blockme", "blocked": True}).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        gw.sdk(member).chat.completions.create(model="chat-model", messages=HI)


def test_identity_carries_rate_limits_and_client_options(start, sqlite_url):
    gw = start(sqlite_url)
    seen: List[Any] = []

    class Recorder:
        def record(self, record: Any) -> None:
            seen.append(record)

    gw.gateway.observers.append(Recorder())
    gw.admin("POST", "/team/new", json={"team_id": "t-rl", "rpm_limit": 100, "tpm_limit": 5000})
    gw.admin("POST", "/user/new", json={"user_id": "u-rl", "max_parallel_requests": 3, "auto_create_key": False})
    created = gw.generate(team_id="t-rl", user_id="u-rl", rpm_limit=5, key_alias="limited", metadata={"allow_client_options": True})
    gw.sdk(created["key"]).chat.completions.create(model="chat-model", messages=HI)
    identity = seen[-1].identity
    limits = {limit.scope: (limit.rpm, limit.tpm, limit.max_parallel_requests) for limit in identity.rate_limits}
    assert limits == {f"key:{created['token']}": (5, None, None), "user:u-rl": (None, None, 3), "team:t-rl": (100, 5000, None)}
    assert identity.allow_client_options is True and not identity.is_master
    assert (identity.key_hash, identity.key_alias, identity.team_id, identity.user_id) == (created["token"], "limited", "t-rl", "u-rl")
    plain = gw.generate()["key"]
    gw.sdk(plain).chat.completions.create(model="chat-model", messages=HI)
    assert seen[-1].identity.rate_limits == () and seen[-1].identity.allow_client_options is False and seen[-1].identity.models is None


# -- spend ------------------------------------------------------------------------------------


def test_spend_is_attributed_to_key_user_and_team(start, database_url):
    gw = start(database_url)
    assert gw.admin("POST", "/team/new", json={"team_id": "team-a", "team_alias": "A"}).json()["team_alias"] == "A"
    user = gw.admin("POST", "/user/new", json={"user_id": "user-a", "user_email": "a@example.com"}).json()
    assert user["key"].startswith("sk-") and user["user_id"] == "user-a"
    created = gw.generate(team_id="team-a", user_id="user-a")
    key, token = created["key"], created["token"]
    sdk = gw.sdk(key)

    spent = cost(sdk.chat.completions.create(model="chat-model", messages=HI).usage)
    chunks = list(sdk.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": "a b c"}], stream=True,
                                              stream_options={"include_usage": True}))  # fmt: skip
    assert chunks[-1].usage is not None
    spent += cost(chunks[-1].usage)
    embedded = sdk.embeddings.create(model="embedder", input=["one two"])
    spent += embedded.usage.prompt_tokens * IN_PRICE
    sdk.chat.completions.create(model="other-model", messages=HI)  # no price: logged at 0
    assert spent > 0

    assert gw.info(key)["spend"] == pytest.approx(spent)
    team = gw.admin("GET", "/team/info", params={"team_id": "team-a"}).json()
    assert team["team_info"]["spend"] == pytest.approx(spent) and [k["token"] for k in team["keys"]] == [token]
    user_info = gw.admin("GET", "/user/info", params={"user_id": "user-a"}).json()
    assert user_info["user_info"]["spend"] == pytest.approx(spent) and user_info["teams"] == ["team-a"] and len(user_info["keys"]) == 2

    logs = gw.admin("GET", "/spend/logs", params={"api_key": key}).json()
    assert len(logs) == 4 and {row["api_key"] for row in logs} == {token}
    assert sorted(row["model"] for row in logs) == ["chat-model", "chat-model", "embedder", "other-model"]
    assert sum(row["spend"] for row in logs) == pytest.approx(spent)
    assert all(row["user"] == "user-a" and row["team_id"] == "team-a" and row["status"] == "success" for row in logs)
    streamed = [row for row in logs if row["model"] == "chat-model" and row["completion_tokens"] == chunks[-1].usage.completion_tokens]
    assert streamed and streamed[0]["prompt_tokens"] == chunks[-1].usage.prompt_tokens
    assert gw.admin("GET", "/spend/logs", params={"team_id": "team-a"}).json() == logs
    assert gw.admin("GET", "/spend/logs", params={"user_id": "nobody"}).json() == []
    today = logs[0]["day"]
    days = gw.admin("GET", "/spend/logs", params={"group_by": "day", "start_date": today, "end_date": today, "api_key": token}).json()
    assert len(days) == 1 and days[0]["day"] == today and days[0]["requests"] == 4
    assert days[0]["spend"] == pytest.approx(spent) and days[0]["models"]["other-model"] == 0.0
    assert gw.admin("GET", "/spend/logs", params={"end_date": "2000-01-01"}).json() == []
    assert gw.admin("GET", "/spend/logs", params={"group_by": "week"}).status_code == 400

    # the database holds it too (the writer flushes on its own, without an admin read)
    gw.sdk(key).chat.completions.create(model="chat-model", messages=HI)
    deadline = time.monotonic() + 5
    while query(database_url, "SELECT count(*) AS n FROM modelport_spend_logs")[0]["n"] < 5:
        assert time.monotonic() < deadline, "spend was not written"
        time.sleep(0.05)
    stored = query(database_url, f"SELECT spend FROM modelport_keys WHERE token = '{token}'")[0]["spend"]
    assert stored > spent


def test_master_key_calls_are_logged_without_charging_keys(start, sqlite_url):
    gw = start(sqlite_url)
    gw.sdk(MASTER).chat.completions.create(model="chat-model", messages=HI)
    logs = gw.admin("GET", "/spend/logs", params={"api_key": MASTER}).json()
    assert len(logs) == 1 and logs[0]["api_key"] == hashlib.sha256(MASTER.encode()).hexdigest() and logs[0]["spend"] > 0


# -- budgets ----------------------------------------------------------------------------------


def test_budget_exceeded_has_litellm_error_shape(start, database_url):
    gw = start(database_url)
    key = gw.generate(max_budget=0.001)["key"]
    first = gw.sdk(key).chat.completions.create(model="chat-model", messages=HI)  # spend 0 < budget: admitted
    spent = cost(first.usage)
    reply = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "chat-model", "messages": HI}, headers={"Authorization": f"Bearer {key}"})
    assert reply.status_code == 400
    assert reply.json() == {"error": {"message": f"Budget has been exceeded! Current cost: {round(spent, 10)}, Max budget: 0.001",
                                      "type": "budget_exceeded", "param": None, "code": "400"}}  # fmt: skip
    with pytest.raises(openai.BadRequestError) as refused:
        gw.sdk(key).chat.completions.create(model="chat-model", messages=HI, stream=True)
    assert refused.value.body["type"] == "budget_exceeded"
    assert len(gw.admin("GET", "/spend/logs", params={"api_key": key}).json()) == 1  # refused calls are not charged

    # a team's budget covers all of its keys; raising it lets them call again
    gw.admin("POST", "/team/new", json={"team_id": "small", "max_budget": 0.001})
    member, other = gw.generate(team_id="small")["key"], gw.generate(team_id="small")["key"]
    gw.sdk(member).chat.completions.create(model="chat-model", messages=HI)
    with pytest.raises(openai.BadRequestError) as team_refused:
        gw.sdk(other).chat.completions.create(model="chat-model", messages=HI)
    assert team_refused.value.body["message"].startswith("Budget has been exceeded! Current cost: ")
    gw.admin("POST", "/team/update", json={"team_id": "small", "max_budget": 100})
    gw.sdk(other).chat.completions.create(model="chat-model", messages=HI)


def test_budget_resets_after_its_duration(start, database_url):
    gw = start(database_url)
    key = gw.generate(max_budget=0.001, budget_duration="1s")["key"]
    first_reset = gw.info(key)["budget_reset_at"]
    sdk = gw.sdk(key)
    sdk.chat.completions.create(model="chat-model", messages=HI)
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="chat-model", messages=HI)
    time.sleep(1.1)
    again = sdk.chat.completions.create(model="chat-model", messages=HI)  # the period is over: spend back to 0
    info = gw.info(key)
    assert info["spend"] == pytest.approx(cost(again.usage)) and info["budget_reset_at"] > first_reset
    assert len(gw.admin("GET", "/spend/logs", params={"api_key": key}).json()) == 2


# -- storage ----------------------------------------------------------------------------------


def test_keys_are_never_stored_in_clear(start, database_url):
    gw = start(database_url)
    created = gw.generate(key_alias="secret-holder", metadata={"note": "n"})
    key = created["key"]
    gw.sdk(key).chat.completions.create(model="chat-model", messages=HI)
    gw.admin("GET", "/spend/logs")  # flushes
    for table in TABLES:
        rows = query(database_url, f"SELECT * FROM {table}")
        assert key not in json.dumps(rows, default=str) and key[3:] not in json.dumps(rows, default=str)
    stored = query(database_url, "SELECT token, key_name FROM modelport_keys")
    assert stored == [{"token": hashlib.sha256(key.encode()).hexdigest(), "key_name": f"sk-...{key[-4:]}"}]
    assert query(database_url, "SELECT version_num FROM modelport_alembic_version") == [{"version_num": "0001"}]


def test_database_outage_keeps_serving_and_buffers_spend(start, database_url):
    """The key cache serves keys it has seen while the database fails, and a failed spend
    write keeps its batch for the next one."""
    from sqlalchemy.exc import OperationalError

    gw = start(database_url, ", user_api_key_cache_ttl: 0.2")
    teams = gw.teams
    created = gw.generate()
    key, token = created["key"], created["token"]
    sdk = gw.sdk(key)
    sdk.chat.completions.create(model="chat-model", messages=HI)
    gw.admin("GET", "/spend/logs")

    real_write, real_load = teams.store.write_spend, teams.store.load_access
    failures: List[str] = []

    async def failing_write(*args: Any) -> None:
        failures.append("write")
        raise OperationalError("INSERT", {}, Exception("database is away"))

    async def failing_load(*args: Any) -> None:
        failures.append("load")
        raise OperationalError("SELECT", {}, Exception("database is away"))

    teams.store.write_spend, teams.store.load_access = failing_write, failing_load
    try:
        time.sleep(0.3)  # the cached entry is stale: refreshing it fails, the key is still served
        spent = sum(cost(sdk.chat.completions.create(model="chat-model", messages=HI).usage) for _ in range(3))
        deadline = time.monotonic() + 5
        while failures.count("write") < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "load" in failures and teams.writer.buffered == 3
        with pytest.raises(openai.InternalServerError) as unknown:  # a key never seen cannot be checked: 503
            gw.sdk("sk-not-seen-before-000000000000").chat.completions.create(model="chat-model", messages=HI)
        assert unknown.value.status_code == 503 and unknown.value.body["code"] == "key_store_unavailable"
    finally:
        teams.store.write_spend, teams.store.load_access = real_write, real_load
    deadline = time.monotonic() + 5
    while teams.writer.buffered:
        assert time.monotonic() < deadline, "the buffered spend was not written"
        time.sleep(0.05)
    rows = query(database_url, f"SELECT count(*) AS n, sum(spend) AS s FROM modelport_spend_logs WHERE api_key = '{token}'")[0]
    assert rows["n"] == 4
    assert gw.info(key)["spend"] == pytest.approx(rows["s"]) and rows["s"] > spent


def test_shutdown_flushes_spend(tmp_path, upstream):
    """`modelport serve` with the embedded default database (modelport.db beside the
    config) writes buffered spend when it is stopped with SIGTERM."""
    config = tmp_path / "served.yaml"
    config.write_text(f"""
model_list:
  - model_name: chat-model
    params: {{model: openai/gpt-up, api_base: {upstream.base_url}, api_key: k, input_cost_per_token: {IN_PRICE}, output_cost_per_token: {OUT_PRICE}}}
general_settings: {{master_key: {MASTER}, proxy_batch_write_at: 3600}}
""")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    process = subprocess.Popen([sys.executable, "-m", "modelport", "serve", "--config", str(config), "--port", str(port), "--log-level", "warning"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                created = httpx.post(f"{base}/key/generate", json={"user_id": "served"}, headers=ADMIN)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, process.stderr.read() if process.poll() is not None else ""
                time.sleep(0.1)
        assert created.status_code == 200, created.text
        key = created.json()["key"]
        sdk = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
        spent = sum(cost(sdk.chat.completions.create(model="chat-model", messages=HI).usage) for _ in range(3))
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode in (0, -signal.SIGTERM), stderr.decode()  # uvicorn re-raises the signal after a graceful stop
    assert b"Traceback" not in stderr, stderr.decode()
    database = f"sqlite:///{tmp_path / 'modelport.db'}"
    assert query(database, "SELECT count(*) AS n FROM modelport_spend_logs")[0]["n"] == 3
    stored = query(database, "SELECT spend FROM modelport_keys")[0]["spend"]
    assert stored == pytest.approx(spent)
    assert query(database, "SELECT spend FROM modelport_users WHERE user_id = 'served'")[0]["spend"] == pytest.approx(spent)


def test_teams_stay_off_without_a_master_key(tmp_path, upstream, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = tmp_path / "open.yaml"
    config.write_text(f"model_list:\n  - model_name: m\n    params: {{model: openai/x, api_base: {upstream.base_url}}}\n")
    loaded = load_config(str(config))
    gateway = Gateway(AsyncClient.from_config(loaded))
    routes = feature_routes(gateway)
    assert runtime_of(gateway) is None and not any(getattr(r, "path", "") == "/key/generate" for r in routes)
    assert not (tmp_path / "modelport.db").exists()


# -- the CLI ----------------------------------------------------------------------------------


def test_cli_keys_and_db_upgrade(start, tmp_path, capsys, monkeypatch):
    from modelport.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["db", "current", "--database-url", url]) == 0
    assert "none" in capsys.readouterr().out
    assert main(["db", "upgrade", "--database-url", url]) == 0
    assert "schema at revision 0001" in capsys.readouterr().out

    gw = start(url)  # the gateway and the CLI share the database
    assert main(["keys", "create", "--config", str(gw.config_path), "--alias", "from-cli", "--models", "chat-model",
                 "--max-budget", "2", "--duration", "1d", "--json"]) == 0  # fmt: skip
    created = json.loads(capsys.readouterr().out)
    key = created["key"]
    assert key.startswith("sk-") and created["models"] == ["chat-model"] and created["max_budget"] == 2.0
    assert gw.sdk(key).chat.completions.create(model="chat-model", messages=HI).choices[0].message.content == "You said: hi"

    assert main(["keys", "list", "--database-url", url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [k["key_alias"] for k in listed["keys"]] == ["from-cli"] and key not in json.dumps(listed)
    assert main(["keys", "list", "--database-url", url]) == 0
    assert "from-cli" in capsys.readouterr().out

    assert main(["keys", "info", "--database-url", url, key]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["token"] == created["token"] and info["spend"] >= 0 and key not in json.dumps(info)

    assert main(["keys", "create", "--database-url", url, "--budget-duration", "forever"]) == 2
    assert "budget_duration" in capsys.readouterr().err
    assert main(["keys", "delete", "--database-url", url, key]) == 0
    assert "deleted 1 key" in capsys.readouterr().out
    assert main(["keys", "info", "--database-url", url, key]) == 1
    assert "no such key" in capsys.readouterr().err
    gw.teams.cache.invalidate()  # another process deleted it; the gateway would see it within its cache time
    with pytest.raises(openai.AuthenticationError):
        gw.sdk(key).chat.completions.create(model="chat-model", messages=HI)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["keys", "list"]) == 2
    assert "give --config FILE or --database-url URL" in capsys.readouterr().err
