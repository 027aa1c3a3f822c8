"""Test helpers for modelport and for provider-plugin authors.

- ``ProviderConformance``: subclass it, set ``provider = "name"``, and the property
  tests of the conformance kit run against your plugin (enable the fixtures with
  ``pytest_plugins = ["modelport.testing.plugin"]``).
- ``strategies``: Hypothesis strategies for OpenAI-shaped requests, responses, chunk
  streams and errors.
- ``FakeUpstream`` / ``Reply``: a scriptable OpenAI-compatible server on 127.0.0.1.

Nothing here is imported by ``import modelport``; Hypothesis, pytest and jsonschema
are needed only by the kit (``pip install "modelport[testing]"``).
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "ProviderConformance": "conformance",
    "FakeUpstream": "upstream",
    "Reply": "upstream",
    "RecordedRequest": "upstream",
}

__all__ = ["ProviderConformance", "FakeUpstream", "Reply", "RecordedRequest", "strategies"]


def __getattr__(name: str) -> Any:
    import importlib

    if name == "strategies":
        return importlib.import_module(f"{__name__}.strategies")
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
