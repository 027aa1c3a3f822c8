"""Shared fixtures: one loopback upstream per session, cleared before each test."""

from __future__ import annotations

import json
import pathlib
from typing import Iterator

import pytest

import modelport
from modelport.testing.upstream import FakeUpstream

# The conformance kit's fixtures, enabled the way a plugin author enables them.
pytest_plugins = ["modelport.testing.plugin"]

DATA = pathlib.Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def _server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def upstream(_server: FakeUpstream) -> FakeUpstream:
    _server.clear()
    return _server


@pytest.fixture
def client() -> Iterator[modelport.Client]:
    with modelport.Client(retry_backoff=0.01, max_retry_delay=0.05, timeout=10) as c:
        yield c


@pytest.fixture
def aclient() -> modelport.AsyncClient:
    return modelport.AsyncClient(retry_backoff=0.01, max_retry_delay=0.05, timeout=10)


@pytest.fixture(scope="session")
def schemas() -> dict:
    return json.loads((DATA / "openai_schemas.json").read_text())


@pytest.fixture(scope="session")
def samples() -> dict:
    data = json.loads((DATA / "provider_samples.json").read_text())
    return {s["name"]: s for s in data["samples"]}


@pytest.fixture
def validate(schemas):
    """validate(obj, "CreateChatCompletionResponse") checks obj against the OpenAI schema."""
    from jsonschema import Draft202012Validator

    def check(obj: dict, root: str) -> None:
        Draft202012Validator({**schemas, "$ref": f"#/$defs/{root}"}).validate(obj)

    return check
