"""pytest plugin for the conformance kit; enable it with ``pytest_plugins = ["modelport.testing.plugin"]``.

It is never loaded automatically. It provides the fixtures ``ProviderConformance``
needs (``openai_schema_validator``) and ``fake_upstream``, a fresh loopback
OpenAI-compatible server per test.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Callable, Dict, Iterator

import pytest

from .upstream import FakeUpstream


def openai_schemas() -> Dict[str, Any]:
    """The OpenAI JSON Schema bundle shipped with modelport.testing."""
    bundle: Dict[str, Any] = json.loads(resources.files("modelport.testing").joinpath("openai_schemas.json").read_text(encoding="utf-8"))
    return bundle


@pytest.fixture(scope="session")
def openai_schema_validator() -> Callable[[Any, str], None]:
    """``validate(obj, "CreateChatCompletionResponse")``: raises if ``obj`` breaks the OpenAI schema."""
    from jsonschema import Draft202012Validator

    bundle = openai_schemas()
    validators: Dict[str, Any] = {}

    def validate(obj: Any, root: str) -> None:
        if root not in validators:
            validators[root] = Draft202012Validator({**bundle, "$ref": f"#/$defs/{root}"})
        validators[root].validate(obj)

    return validate


@pytest.fixture
def fake_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream
