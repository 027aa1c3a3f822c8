"""Two `modelport serve` processes on one PostgreSQL database and one Redis: a virtual
key's rpm limit and its budget hold across both, as they would behind a load balancer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from typing import Iterator, List

import httpx
import openai
import pytest

from modelport.testing.upstream import FakeUpstream

POSTGRES = os.environ.get("MODELPORT_TEST_POSTGRES_URL")
REDIS = os.environ.get("MODELPORT_TEST_REDIS_URL")
pytestmark = pytest.mark.skipif(
    not (POSTGRES and REDIS),
    reason="needs MODELPORT_TEST_POSTGRES_URL and MODELPORT_TEST_REDIS_URL (real PostgreSQL and Redis; CI sets both)",
)

MASTER = "sk-multi-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
HI = [{"role": "user", "content": "hi"}]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def two_gateways(tmp_path) -> Iterator[List[str]]:
    schema = f"mp_{uuid.uuid4().hex[:8]}"  # a fresh database per run (and a Redis key prefix)
    with FakeUpstream() as upstream:
        config = tmp_path / "shared.yaml"
        config.write_text(f"""
model_list:
  - model_name: chat-model
    params: {{model: openai/up, api_base: {upstream.base_url}, api_key: k, input_cost_per_token: 0.01, output_cost_per_token: 0.01}}
router_settings: {{redis_url: "{REDIS}", redis_key_prefix: "{schema}:"}}
general_settings:
  master_key: {MASTER}
  database_url: "{POSTGRES.rsplit('/', 1)[0]}/{schema}"
  proxy_batch_write_at: 0.2
  user_api_key_cache_ttl: 0.3
""")
        _create_schema(schema)
        processes = []
        bases = []
        try:
            for _ in range(2):
                port = _port()
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "modelport", "serve", "--config", str(config), "--port", str(port), "--log-level", "warning", "--no-access-log"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                ))  # fmt: skip
                bases.append(f"http://127.0.0.1:{port}")
            for base, process in zip(bases, processes):
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                    assert time.monotonic() < deadline, "a gateway did not start"
                    time.sleep(0.2)
            yield bases
        finally:
            for process in processes:
                process.terminate()
                process.wait(20)
            _drop_schema(schema)


def _psql(sql: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(POSTGRES)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run())


def _create_schema(name: str) -> None:
    _psql(f"CREATE DATABASE {name}")


def _drop_schema(name: str) -> None:
    _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_a_keys_rpm_limit_holds_across_two_instances(two_gateways):
    first, second = two_gateways
    created = httpx.post(f"{first}/key/generate", json={"rpm_limit": 3, "key_alias": "shared-rpm"}, headers=ADMIN)
    assert created.status_code == 200, created.text
    key = created.json()["key"]
    statuses = []
    for position in range(5):  # alternate between the two instances
        base = (first, second)[position % 2]
        sdk = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
        try:
            sdk.chat.completions.create(model="chat-model", messages=HI)
            statuses.append(200)
        except openai.RateLimitError as error:
            statuses.append(429)
            assert error.response.headers.get("retry-after")
    assert statuses == [200, 200, 200, 429, 429]


def test_a_keys_budget_holds_across_two_instances(two_gateways):
    first, second = two_gateways
    created = httpx.post(f"{first}/key/generate", json={"max_budget": 0.05, "key_alias": "shared-budget"}, headers=ADMIN)
    key = created.json()["key"]
    spender = openai.OpenAI(base_url=f"{first}/v1", api_key=key, max_retries=0)
    spender.chat.completions.create(model="chat-model", messages=HI)  # about 0.1 at these prices: over budget
    deadline = time.monotonic() + 10
    other = openai.OpenAI(base_url=f"{second}/v1", api_key=key, max_retries=0)
    while True:  # the spend reaches the database within the flush interval, the cache within its TTL
        try:
            other.chat.completions.create(model="chat-model", messages=HI)
        except openai.BadRequestError as error:
            assert error.body["type"] == "budget_exceeded" and "Budget has been exceeded" in error.body["message"]
            break
        assert time.monotonic() < deadline, "the second instance never saw the first one's spend"
        time.sleep(0.3)
    info = httpx.get(f"{second}/key/info", params={"key": key}, headers=ADMIN).json()
    spend = info.get("info", info).get("spend")
    assert spend is not None and spend >= 0.05
