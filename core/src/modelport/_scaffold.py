"""``modelport new-provider``: write a provider plugin distribution that installs and
passes its own tests as soon as it is generated.

    create_provider("acme", wire="sse", directory=".")  # -> ./modelport-acme/

The distribution holds the provider module (importing only ``modelport.provider``),
its ``pyproject.toml`` (entry point, core version range), a loopback fake of the
upstream, the conformance kit plus end-to-end tests through the public API, and a
README. ``wire`` picks the template:

- ``openai``: the upstream speaks OpenAI's API; the module is just ``provider_info``.
- ``sse``: a made-up API with its own JSON shapes and server-sent events
  (``event: token`` / ``event: done``); every decoding hook and its encoder.
- ``ndjson``: the same made-up API streaming newline-delimited JSON, ending with a
  ``{"done": true, ...}`` line that carries the finish reason and the usage.

Templates are inline strings with ``{{key}}`` placeholders (so ``{`` in the generated
code needs no escaping).
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
from typing import Dict, Mapping, Tuple, Union

from .errors import ConfigError, InvalidRequestError

__all__ = ["WIRES", "create_provider", "core_requirement", "render"]

#: The templates ``create_provider`` knows.
WIRES = ("openai", "sse", "ndjson")

_NAME = re.compile(r"[a-z](?:[a-z0-9_-]*[a-z0-9])?\Z")
_NAME_RULE = (
    "lowercase letters, digits, '-' and '_', starting with a letter and ending with a letter or digit"
    " (e.g. acme or acme-cloud)"
)


def core_requirement(version: str) -> str:
    """The requirement on the core for plugins written against core ``version``.

    0.x may break its plugin contract with each minor release (``>=0.2,<0.3``); from
    1.0 on, within a major release (``>=1.4,<2``).
    """
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ConfigError(f"cannot read the modelport version {version!r} (expected MAJOR.MINOR...)")
    major, minor = int(match.group(1)), int(match.group(2))
    upper = f"{major}.{minor + 1}" if major == 0 else str(major + 1)
    return f"modelport>={major}.{minor},<{upper}"


def _check(name: str, wire: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequestError(f"invalid provider name {name!r}: use {_NAME_RULE}", param="name", allowed=_NAME_RULE)
    if wire not in WIRES:
        allowed = ", ".join(WIRES)
        raise InvalidRequestError(f"unknown wire {wire!r}: use one of {allowed}", param="wire", allowed=allowed)


def _values(name: str, wire: str) -> Dict[str, str]:
    from . import __version__

    parts = [part for part in re.split(r"[-_]", name) if part]
    return {
        "name": name,
        "wire": wire,
        "snake": name.replace("-", "_"),
        "module": "modelport_" + name.replace("-", "_"),
        "Class": "".join(part.capitalize() for part in parts),
        "Title": " ".join(part.capitalize() for part in parts),
        "ENV": name.upper().replace("-", "_"),
        "requirement": core_requirement(__version__),
    }


def render(name: str, wire: str = "openai") -> Dict[str, str]:
    """The files of the distribution for ``name`` and ``wire``: relative path -> text."""
    _check(name, wire)
    values = _values(name, wire)
    module, test = _WIRE_FILES[wire]
    templates = {
        "pyproject.toml": _PYPROJECT,
        "README.md": _README_HEAD + _README_WIRE[wire] + _README_TAIL,
        ".gitignore": _GITIGNORE,
        "src/{{module}}/__init__.py": module,
        "src/{{module}}/py.typed": "",
        "tests/conftest.py": _CONFTEST,
        "tests/fake_upstream.py": _FAKE_UPSTREAM[wire],
        "tests/test_{{snake}}.py": test,
    }
    return {_fill(path, values): _fill(text, values) for path, text in templates.items()}


def _fill(text: str, values: Mapping[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def create_provider(name: str, *, wire: str = "openai", directory: Union[str, "os.PathLike[str]"] = ".") -> pathlib.Path:
    """Create ``<directory>/modelport-<name>/``, a complete plugin distribution; its path.

    Raises ``InvalidRequestError`` (``param="name"`` or ``"wire"``) for a name or wire
    that is not allowed, and ``ConfigError`` when the target already exists (nothing is
    overwritten).
    """
    files = render(name, wire)
    parent = pathlib.Path(directory)
    target = parent / f"modelport-{name}"
    if target.exists() or target.is_symlink():
        raise ConfigError(f"{target} already exists; remove it or choose another name or --directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        target.mkdir()
    except FileExistsError:
        raise ConfigError(f"{target} already exists; remove it or choose another name or --directory") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {target}: {exc}") from None
    try:
        for relative, text in files.items():
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # no half-written distribution left behind
        raise
    return target.resolve()


# --- files common to every wire ------------------------------------------------------------

_PYPROJECT = """\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "modelport-{{name}}"
version = "0.1.0"
description = "modelport provider plugin for the {{Title}} API"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["{{requirement}}"]

[project.optional-dependencies]
test = ["pytest", "hypothesis", "jsonschema"]

# modelport finds the provider through this entry point and imports the module on the
# first call naming "{{name}}/<model>". Add one line per alias.
[project.entry-points."modelport.providers"]
"{{name}}" = "{{module}}"

[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.package-data]
{{module}} = ["py.typed"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

_GITIGNORE = """\
__pycache__/
*.egg-info/
build/
dist/
.hypothesis/
.mypy_cache/
"""

_CONFTEST = '''\
"""The conformance kit's fixtures (``openai_schema_validator``, ``fake_upstream``)."""

pytest_plugins = ["modelport.testing.plugin"]
'''

_README_HEAD = """\
# modelport-{{name}}

A [modelport](https://pypi.org/project/modelport/) provider plugin for the {{Title}} API:
with it installed, `modelport.completion(model="{{name}}/<model>", messages=[...])` calls
{{Title}}, and `modelport providers` lists it.

Generated by `modelport new-provider {{name}} --wire {{wire}}`.

## Install and test

```sh
pip install -e .[test]
python -m pytest
```

The tests are modelport's conformance kit (property tests run through this plugin's
hooks) and end-to-end calls through `modelport.completion` against a loopback fake of
the upstream in `tests/fake_upstream.py`. `MODELPORT_CONFORMANCE_EXAMPLES=10` makes the
property tests quicker while you iterate.

## Configuration

- key: `{{ENV}}_API_KEY` (or `api_key=...`)
- base URL: `{{ENV}}_API_BASE` (or `api_base=...`); the default in `provider_info` is a
  placeholder, `https://api.{{name}}.example/v1`: put the real one there.

## Where to edit

"""

_README_WIRE = {
    "openai": """\
The upstream speaks OpenAI's API, so `src/{{module}}/__init__.py` only declares the
provider (`provider_info`: name, base URL, environment variables, operations); the core's
OpenAI wire format does the rest. Where the real API differs, implement that hook and
call the `modelport.provider.openai` functions for the part that is the same (the
module's docstring has an example). When a hook changes a payload on purpose, declare
the mapping in the conformance test (`expected_request` / `expected_response` /
`expected_chunk`) in `tests/test_{{snake}}.py`.
""",
    "sse": """\
`src/{{module}}/__init__.py` speaks a made-up API that streams server-sent events
(`event: token` / `event: done`); its docstring shows the payloads. Replace it with the
real API, in this order:

1. the name tables at the top (`REQUEST_NAMES`, `MESSAGE_NAMES`, `USAGE_NAMES`,
   `STOP_REASONS`) and `resolve_endpoint` (path and authentication);
2. `transform_request` (the request body), `transform_response` (the response),
   `parse_stream_chunk` (the events) and `map_error` (the error envelope);
3. the encoders (`encode_response`, `encode_stream`, `encode_error`): they write what
   the decoders read, so `mock_response` and the conformance kit run your decoding.

Then make `tests/fake_upstream.py` answer like the real API (paste responses from its
documentation) and keep `expected_request` in `tests/test_{{snake}}.py` in step with
`transform_request`.
""",
    "ndjson": """\
`src/{{module}}/__init__.py` speaks a made-up API that streams newline-delimited JSON
and ends with a `{"done": true, ...}` line carrying the finish reason and the usage; its
docstring shows the payloads. Replace it with the real API, in this order:

1. the name tables at the top (`OPTION_NAMES`, `MESSAGE_NAMES`, `USAGE_NAMES`,
   `STOP_REASONS`) and `resolve_endpoint` (path and authentication);
2. `transform_request` (the request body), `transform_response` (the response),
   `parse_stream_chunk` (the lines) and `map_error` (the error envelope);
3. the encoders (`encode_response`, `encode_stream`, `encode_error`): they write what
   the decoders read, so `mock_response` and the conformance kit run your decoding.

Then make `tests/fake_upstream.py` answer like the real API (paste responses from its
documentation) and keep `expected_request` in `tests/test_{{snake}}.py` in step with
`transform_request`.
""",
}

_README_TAIL = """
Type-check with `mypy --strict src`. The hooks, what they receive and return, and the
conformance kit are described in modelport's guide to writing provider plugins.
"""


# --- wire: openai ----------------------------------------------------------------------------

_OPENAI_MODULE = '''\
"""modelport provider ``{{name}}``: the {{Title}} API, which speaks OpenAI's wire format.

Only ``provider_info`` is needed: for every other hook the core falls back to OpenAI's
wire format (``modelport.provider.openai``), which builds the request, reads the
response and the stream, and types the errors. Where the real API differs, implement
that hook and call the ``openai`` functions for what stays the same, e.g. a field the
API wants in every request body::

    from modelport.provider import Call, Endpoint, WireRequest, openai

    @hookimpl
    def transform_request(call: Call, endpoint: Endpoint) -> WireRequest:
        return openai.build_request(call, endpoint, {**call.body, "top_k": 20})

and a non-OpenAI error envelope in ``map_error`` (``openai.error_fields`` /
``openai.build_error``). A hook that changes a payload on purpose is declared in the
conformance test (``expected_request`` / ``expected_response``).
"""

from __future__ import annotations

from modelport.provider import ProviderInfo, hookimpl


@hookimpl
def provider_info() -> ProviderInfo:
    return ProviderInfo(
        name="{{name}}",
        # TODO: the API's real base URL (with /v1 where it has one).
        api_base="https://api.{{name}}.example/v1",
        api_base_env=("{{ENV}}_API_BASE",),
        api_key_env=("{{ENV}}_API_KEY",),
        # Add "text_completion", "embedding", ... for what the API also serves.
        operations={"chat"},
        description="the {{Title}} API",
    )
'''

_OPENAI_TEST = '''\
"""The {{name}} provider: modelport's conformance kit, and calls through the public API
against a loopback OpenAI-compatible server (``tests/fake_upstream.py``)."""

from __future__ import annotations

from typing import Iterator

import modelport
import pytest
from fake_upstream import FakeUpstream
from modelport.testing import ProviderConformance

MODEL = "{{name}}/some-model"
MESSAGES = [{"role": "user", "content": "hello there"}]


class Test{{Class}}(ProviderConformance):
    """The kit's property tests, run through this plugin's hooks.

    When a hook changes a payload on purpose, declare the documented mapping here by
    overriding ``expected_request(body)`` / ``expected_response(body)`` / ``expected_chunk(chunk)``.
    """

    provider = "{{name}}"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def test_completion(upstream: FakeUpstream) -> None:
    result = modelport.completion(model=MODEL, messages=MESSAGES, api_base=upstream.base_url, api_key="test-key")
    assert result.choices[0].message.content == "You said: hello there"
    assert result.choices[0].finish_reason == "stop"
    sent = upstream.last
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer test-key"
    assert sent.json["model"] == "some-model"


def test_streamed_completion(upstream: FakeUpstream) -> None:
    stream = modelport.completion(
        model=MODEL, messages=MESSAGES, api_base=upstream.base_url, api_key="test-key",
        stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    rebuilt = modelport.stream_to_completion(chunks)
    assert rebuilt.choices[0].message.content == "You said: hello there"
    assert rebuilt.choices[0].finish_reason == "stop"
    assert rebuilt.usage is not None and rebuilt.usage.completion_tokens > 0


def test_errors_are_typed(upstream: FakeUpstream) -> None:
    upstream.reply(status=429, json={"error": {"message": "slow down", "type": "rate_limit", "code": "rate_limited"}})
    with pytest.raises(modelport.RateLimitError) as caught:
        modelport.completion(model=MODEL, messages=MESSAGES, api_base=upstream.base_url, num_retries=0)
    assert caught.value.status == 429 and "slow down" in caught.value.message
'''

_OPENAI_FAKE = '''\
"""The loopback upstream for the end-to-end tests.

The {{Title}} API speaks OpenAI's wire format, so modelport's own fake serves: a
scriptable OpenAI-compatible server on 127.0.0.1 that echoes by default and answers
with queued replies when told to::

    with FakeUpstream() as upstream:
        upstream.reply(status=503, json={"error": {"message": "busy"}})
        upstream.reply(sse=[{...chunk...}], done=True)
        ...  # then read upstream.requests / upstream.last

Queue the API's own quirks here (its error bodies, extra fields) as the plugin learns them.
"""

from modelport.testing import FakeUpstream, Reply

__all__ = ["FakeUpstream", "Reply"]
'''


# --- shared by the sse and ndjson modules: the made-up API's JSON and its mapping -------------

_MAPPING = '''

# --- the mapping between OpenAI's names (left) and the API's (right): change these first ----

#: Message and stream-delta fields.
MESSAGE_NAMES = {"content": "text", "reasoning_content": "reasoning"}
#: Usage fields. The API reports no total: it is computed when reading.
USAGE_NAMES = {"prompt_tokens": "input_tokens", "completion_tokens": "output_tokens"}
#: ``finish_reason`` values -> the API's ``stop_reason`` values.
STOP_REASONS = {"stop": "end", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "filtered"}

JSON = Dict[str, Any]
RESPONSE = "chat.completion"
CHUNK = "chat.completion.chunk"
_JSON_HEADERS = {"content-type": "application/json"}


def _renamed(fields: Mapping[str, Any], names: Mapping[str, str]) -> JSON:
    """``fields`` with the keys named in ``names`` renamed; every other field kept as it is."""
    return {names.get(key, key): value for key, value in fields.items()}


def _inverse(names: Mapping[str, str]) -> Dict[str, str]:
    return {theirs: ours for ours, theirs in names.items()}


_MESSAGE_FROM_API = _inverse(MESSAGE_NAMES)
_USAGE_FROM_API = _inverse(USAGE_NAMES)
_STOP_FROM_API = _inverse(STOP_REASONS)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --- reading: the API's payloads -> OpenAI's shapes --------------------------------------------


def _from_api(data: JSON, kind: str) -> JSON:
    """A response (``kind`` RESPONSE) or one streamed payload (CHUNK) in OpenAI's shape.

    TODO: this is where the API's response is read; fields it does not name pass through.
    """
    part = "message" if kind == RESPONSE else "delta"
    result = {key: value for key, value in data.items() if key not in ("outputs", "usage")}
    result["object"] = kind
    result["choices"] = [_choice_from_api(output, part) for output in data.get("outputs") or ()]
    if data.get("usage") is not None:
        result["usage"] = _usage_from_api(data["usage"])
    return result


def _choice_from_api(output: JSON, part: str) -> JSON:
    choice = {key: value for key, value in output.items() if key not in (part, "stop_reason")}
    content = _renamed(output.get(part) or {}, _MESSAGE_FROM_API)
    if part == "message":  # OpenAI's messages always carry content and refusal
        content.setdefault("content", None)
        content.setdefault("refusal", None)
    choice[part] = content
    reason = output.get("stop_reason")
    choice["finish_reason"] = None if reason is None else _STOP_FROM_API.get(reason, reason)
    choice.setdefault("logprobs", None)
    return choice


def _usage_from_api(usage: JSON) -> JSON:
    result = _renamed(usage, _USAGE_FROM_API)
    prompt, completion = result.get("prompt_tokens"), result.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int):
        result.setdefault("total_tokens", prompt + completion)
    return result


# --- writing: OpenAI's shapes -> the API's payloads (the inverse, for the encoders) -----------


def _to_api(result: JSON) -> JSON:
    """A response or chunk in OpenAI's shape -> the API's payload (``_from_api`` reads it back)."""
    data = {key: value for key, value in result.items() if key not in ("object", "choices", "usage")}
    if result.get("choices"):
        data["outputs"] = [_choice_to_api(choice) for choice in result["choices"]]
    if result.get("usage") is not None:
        data["usage"] = _usage_to_api(result["usage"])
    return data


def _choice_to_api(choice: JSON) -> JSON:
    part = "message" if "message" in choice else "delta"
    output = {key: value for key, value in choice.items() if key not in (part, "finish_reason")}
    if "logprobs" in output and output["logprobs"] is None:
        del output["logprobs"]
    content = dict(choice.get(part) or {})
    if part == "message" and "refusal" in content and content["refusal"] is None:
        del content["refusal"]
    output[part] = _renamed(content, MESSAGE_NAMES)
    reason = choice.get("finish_reason")
    if reason is not None:
        output["stop_reason"] = STOP_REASONS.get(reason, reason)
    return output


def _usage_to_api(usage: JSON) -> JSON:
    data = _renamed(usage, USAGE_NAMES)
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int) and usage.get("total_tokens") == prompt + completion:
        del data["total_tokens"]
    return data


def _stream_error(call: Call, data: JSON, message: Any, code: Any) -> errors.ProviderError:
    """The typed error for an error the API reports inside a stream (the HTTP status was 200)."""
    raw = data.get("status")
    status = raw if isinstance(raw, int) and 400 <= raw < 600 else 500
    cls = errors.error_class_for_status(status)
    text = message if isinstance(message, str) and message else _dumps(data)
    return cls(text, status=status, provider=call.provider, model=call.model, code=code, body=_dumps(data))


def _payload(call: Call, event: StreamEvent) -> JSON:
    """One event's JSON object; a typed error when it is not one."""
    text = event.data.decode("utf-8", errors="replace") if isinstance(event.data, bytes) else event.data
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise errors.MalformedStreamError(
            f"{call.provider}: stream event is not a JSON object: {text[:200]!r}",
            provider=call.provider,
            model=call.model,
            body=text,
        )
    return data
'''


# --- wire: sse -------------------------------------------------------------------------------

_SSE_MODULE = (
    '''\
"""modelport provider ``{{name}}``: the {{Title}} API, whose wire format is not OpenAI's.

A template: it speaks a made-up API so that every hook has something to do. Change the
places marked TODO to what the real API documents:

- the name tables below and ``resolve_endpoint`` (path, authentication);
- ``transform_request``: the OpenAI-shaped ``call.body`` -> the API's request body;
- ``transform_response``: the API's response -> OpenAI's ``chat.completion``;
- ``parse_stream_chunk``: one server-sent event -> an OpenAI chunk;
- ``map_error``: the API's error envelope -> a typed ``ProviderError``;
- ``encode_response`` / ``encode_stream`` / ``encode_error``: the inverses, so that
  ``mock_response`` and the conformance kit (``tests/``) run this module's decoding.

The made-up API::

    POST {base}/generate   {"model": "m", "messages": [...], "max_new_tokens": 50, "stream": true}

    200 {"id": "gen-1", "model": "m", "created": 1700000000,
         "outputs": [{"index": 0, "message": {"role": "assistant", "text": "Hi!"}, "stop_reason": "end"}],
         "usage": {"input_tokens": 3, "output_tokens": 2}}

    streamed: one ``token`` event per OpenAI chunk, then ``done`` with the usage
        event: token
        data: {"id": "gen-1", "model": "m", "created": 1700000000, "outputs": [{"index": 0, "delta": {"text": "Hi"}}]}

        event: token
        data: {"id": "gen-1", "model": "m", "created": 1700000000, "outputs": [{"index": 0, "delta": {}, "stop_reason": "end"}]}

        event: done
        data: {"id": "gen-1", "model": "m", "created": 1700000000, "usage": {"input_tokens": 3, "output_tokens": 2}}

    errors: 429 {"error_code": "rate_limited", "error_message": "slow down", "retry_in": 2}
        and inside a stream ``event: error`` with the same fields plus "status".

Fields the mapping does not name are carried through unchanged, both ways.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional

from modelport.provider import (
    END_OF_STREAM,
    IGNORE_EVENT,
    Call,
    Endpoint,
    ProviderInfo,
    StreamEvent,
    WireRequest,
    WireResponse,
    end_of_stream,
    errors,
    hookimpl,
    openai,
)

#: OpenAI request parameters the API names differently (the others are sent as they are).
REQUEST_NAMES = {"max_tokens": "max_new_tokens"}
#: OpenAI request parameters the API does not take (it always reports usage when streaming).
NOT_SENT = frozenset({"stream_options"})'''
    + _MAPPING
    + '''

# --- hooks -------------------------------------------------------------------------------------


@hookimpl
def provider_info() -> ProviderInfo:
    return ProviderInfo(
        name="{{name}}",
        # TODO: the API's real base URL.
        api_base="https://api.{{name}}.example/v1",
        api_base_env=("{{ENV}}_API_BASE",),
        api_key_env=("{{ENV}}_API_KEY",),
        operations={"chat"},
        stream_framing="sse",
        description="the {{Title}} API",
    )


@hookimpl
def resolve_endpoint(call: Call) -> Endpoint:
    # Base URL from api_base=, {{ENV}}_API_BASE or the default; the key as a Bearer token.
    # TODO: the API's path, and its auth header if it is not "Authorization: Bearer".
    endpoint = openai.resolve_endpoint(call)
    return Endpoint(base_url=endpoint.base_url, path="/generate", headers=endpoint.headers)


@hookimpl
def transform_request(call: Call, endpoint: Endpoint) -> WireRequest:
    # TODO: where the request body is built from the OpenAI-shaped call.body. Raise
    # errors.InvalidRequestError(..., param=...) for values the API is documented to reject.
    body = {REQUEST_NAMES.get(key, key): value for key, value in call.body.items() if key not in NOT_SENT}
    return openai.build_request(call, endpoint, body)


@hookimpl
def transform_response(call: Call, response: WireResponse) -> JSON:
    # The JSON object (a typed MalformedResponseError if the body is not one), read by _from_api.
    return _from_api(openai.parse_response(call, response), RESPONSE)


@hookimpl
def parse_stream_chunk(call: Call, event: StreamEvent) -> Any:
    # TODO: the API's event names and payloads.
    if event.event == "ping" or not event.data:
        return IGNORE_EVENT
    data = _payload(call, event)
    if event.event == "token":
        return _from_api(data, CHUNK)
    if event.event == "done":  # the end of the stream, with the usage when the API reports it
        return end_of_stream(_from_api(data, CHUNK)) if data.get("usage") is not None else END_OF_STREAM
    if event.event == "error":
        raise _stream_error(call, data, data.get("error_message"), data.get("error_code"))
    return IGNORE_EVENT  # events this module does not know


@hookimpl
def map_error(call: Call, response: WireResponse) -> errors.ProviderError:
    # TODO: the API's error envelope. The class follows the HTTP status
    # (errors.error_class_for_status); pass cls= to openai.build_error to choose another.
    body = response.json_or_none()
    if not isinstance(body, dict) or "error_message" not in body:
        return openai.map_error(call, response)  # not the API's envelope: a proxy's page, ...
    fields = openai.error_fields(response, {"message": body["error_message"], "code": body.get("error_code")})
    retry_in = body.get("retry_in")
    retry_after = float(retry_in) if isinstance(retry_in, (int, float)) else None
    return openai.build_error(call, response, fields=fields, retry_after=retry_after)


# --- encoders: the inverses of the three decoders above -----------------------------------------


@hookimpl
def encode_response(call: Call, result: JSON) -> WireResponse:
    return WireResponse(200, dict(_JSON_HEADERS), _dumps(_to_api(result)).encode("utf-8"))


@hookimpl
def encode_stream(call: Call, chunks: List[JSON]) -> bytes:
    body, trailer = chunks, {}
    if chunks and not chunks[-1].get("choices") and chunks[-1].get("usage") is not None:
        body, trailer = chunks[:-1], _to_api(chunks[-1])  # the usage trailer rides on "done"
    events = [_event("token", _to_api(chunk)) for chunk in body]
    return b"".join(events) + _event("done", trailer)


@hookimpl
def encode_error(call: Call, status: int, message: str, code: Optional[str]) -> WireResponse:
    body = {"error_code": code, "error_message": message}
    return WireResponse(status, dict(_JSON_HEADERS), _dumps(body).encode("utf-8"))


def _event(name: str, data: JSON) -> bytes:
    return f"event: {name}\\ndata: {_dumps(data)}\\n\\n".encode()
'''
)

_SSE_TEST = '''\
"""The {{name}} provider: modelport's conformance kit, and calls through the public API
against a loopback fake of the {{Title}} API (``tests/fake_upstream.py``)."""

from __future__ import annotations

from typing import Any, Dict, Iterator

import modelport
import pytest
from fake_upstream import FakeUpstream
from modelport.testing import ProviderConformance

MODEL = "{{name}}/some-model"
MESSAGES = [{"role": "user", "content": "hello there"}]


class Test{{Class}}(ProviderConformance):
    """The kit's property tests, run through this plugin's hooks and encoders."""

    provider = "{{name}}"

    def expected_request(self, body: Dict[str, Any]) -> Dict[str, Any]:
        # The documented request mapping, written out independently of the module:
        # max_tokens is sent as max_new_tokens; stream_options is not sent.
        body.pop("stream_options", None)
        if "max_tokens" in body:
            body["max_new_tokens"] = body.pop("max_tokens")
        return body


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def test_completion(upstream: FakeUpstream) -> None:
    result = modelport.completion(model=MODEL, messages=MESSAGES, api_base=upstream.base_url, api_key="test-key", max_tokens=50)
    assert result.choices[0].message.content == "You said: hello there"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/generate"
    assert sent["headers"]["authorization"] == "Bearer test-key"
    assert sent["json"]["max_new_tokens"] == 50 and "max_tokens" not in sent["json"]


def test_streamed_completion(upstream: FakeUpstream) -> None:
    stream = modelport.completion(model=MODEL, messages=MESSAGES, api_base=upstream.base_url, api_key="test-key", stream=True)
    chunks = list(stream)
    assert len(chunks) > 3
    rebuilt = modelport.stream_to_completion(chunks)
    assert rebuilt.choices[0].message.content == "You said: hello there"
    assert rebuilt.choices[0].finish_reason == "stop"
    assert rebuilt.usage is not None and rebuilt.usage.completion_tokens == 4
    assert upstream.requests[-1]["json"]["stream"] is True


def test_errors_are_typed(upstream: FakeUpstream) -> None:
    with pytest.raises(modelport.RateLimitError) as caught:
        modelport.completion(model="{{name}}/fail-429", messages=MESSAGES, api_base=upstream.base_url, num_retries=0)
    assert caught.value.status == 429 and "told to fail" in caught.value.message
    assert caught.value.code == "failed" and caught.value.retry_after == 1.5


def test_an_error_inside_the_stream_is_raised_after_the_chunks_before_it(upstream: FakeUpstream) -> None:
    stream = modelport.completion(model="{{name}}/stream-error", messages=MESSAGES, api_base=upstream.base_url, stream=True)
    received = []
    with pytest.raises(modelport.InternalServerError, match="broke the stream"):
        for chunk in stream:
            received.append(chunk)
    assert received
'''

_NDJSON_TEST = '''\
"""The {{name}} provider: modelport's conformance kit, and calls through the public API
against a loopback fake of the {{Title}} API (``tests/fake_upstream.py``)."""

from __future__ import annotations

from typing import Any, Dict, Iterator

import modelport
import pytest
from fake_upstream import FakeUpstream
from modelport.testing import ProviderConformance

MODEL = "{{name}}/some-model"
MESSAGES = [{"role": "user", "content": "hello there"}]


class Test{{Class}}(ProviderConformance):
    """The kit's property tests, run through this plugin's hooks and encoders."""

    provider = "{{name}}"

    def expected_request(self, body: Dict[str, Any]) -> Dict[str, Any]:
        # The documented request mapping, written out independently of the module:
        # sampling parameters go into "options" (max_tokens as num_predict), "stream" is
        # always sent, stream_options is not.
        options = {}
        for name, native in [("temperature", "temperature"), ("top_p", "top_p"), ("seed", "seed"), ("stop", "stop"), ("max_tokens", "num_predict")]:
            if name in body:
                options[native] = body.pop(name)
        if options:
            body["options"] = options
        body.pop("stream_options", None)
        body["stream"] = bool(body.get("stream"))
        return body


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def test_completion(upstream: FakeUpstream) -> None:
    result = modelport.completion(model=MODEL, messages=MESSAGES, api_base=upstream.base_url, api_key="test-key", max_tokens=50, temperature=0.5)
    assert result.choices[0].message.content == "You said: hello there"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/chat"
    assert sent["headers"]["authorization"] == "Bearer test-key"
    assert sent["json"]["options"] == {"num_predict": 50, "temperature": 0.5}
    assert sent["json"]["stream"] is False


def test_streamed_completion(upstream: FakeUpstream) -> None:
    stream = modelport.completion(model=MODEL, messages=MESSAGES, api_base=upstream.base_url, api_key="test-key", stream=True)
    chunks = list(stream)
    assert len(chunks) > 3
    rebuilt = modelport.stream_to_completion(chunks)
    assert rebuilt.choices[0].message.content == "You said: hello there"
    assert rebuilt.choices[0].finish_reason == "stop"  # from the {"done": true} line
    assert rebuilt.usage is not None and rebuilt.usage.completion_tokens == 4
    assert upstream.requests[-1]["json"]["stream"] is True


def test_errors_are_typed(upstream: FakeUpstream) -> None:
    with pytest.raises(modelport.RateLimitError) as caught:
        modelport.completion(model="{{name}}/fail-429", messages=MESSAGES, api_base=upstream.base_url, num_retries=0)
    assert caught.value.status == 429 and "told to fail" in caught.value.message
    assert caught.value.code == "failed" and caught.value.retry_after == 1.5


def test_an_error_inside_the_stream_is_raised_after_the_chunks_before_it(upstream: FakeUpstream) -> None:
    stream = modelport.completion(model="{{name}}/stream-error", messages=MESSAGES, api_base=upstream.base_url, stream=True)
    received = []
    with pytest.raises(modelport.InternalServerError, match="broke the stream"):
        for chunk in stream:
            received.append(chunk)
    assert received
'''


# --- wire: ndjson ----------------------------------------------------------------------------

_NDJSON_MODULE = (
    '''\
"""modelport provider ``{{name}}``: the {{Title}} API, which streams newline-delimited JSON.

A template: it speaks a made-up API so that every hook has something to do. Change the
places marked TODO to what the real API documents:

- the name tables below and ``resolve_endpoint`` (path, authentication);
- ``transform_request``: the OpenAI-shaped ``call.body`` -> the API's request body;
- ``transform_response``: the API's response -> OpenAI's ``chat.completion``;
- ``parse_stream_chunk``: one NDJSON line -> OpenAI chunks (the core splits the lines:
  ``stream_framing="ndjson"``);
- ``map_error``: the API's error envelope -> a typed ``ProviderError``;
- ``encode_response`` / ``encode_stream`` / ``encode_error``: the inverses, so that
  ``mock_response`` and the conformance kit (``tests/``) run this module's decoding.

The made-up API::

    POST {base}/chat   {"model": "m", "messages": [...], "stream": true,
                        "options": {"temperature": 0.2, "num_predict": 50}}

    200 {"id": "gen-1", "model": "m", "created": 1700000000,
         "outputs": [{"index": 0, "message": {"role": "assistant", "text": "Hi!"}, "stop_reason": "end"}],
         "usage": {"input_tokens": 3, "output_tokens": 2}}

    streamed: one line per OpenAI chunk; the last line says "done": true and carries the
    finish reason and the usage
        {"id": "gen-1", "model": "m", "created": 1700000000, "outputs": [{"index": 0, "delta": {"text": "Hi"}}], "done": false}
        {"id": "gen-1", "model": "m", "created": 1700000000, "outputs": [{"index": 0, "delta": {}, "stop_reason": "end"}], "usage": {"input_tokens": 3, "output_tokens": 2}, "done": true}

    errors: 429 {"error": "slow down", "code": "rate_limited", "retry_in": 2}
        and inside a stream a line {"error": "...", "code": "...", "status": 500}.

Fields the mapping does not name are carried through unchanged, both ways.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional

from modelport.provider import (
    Call,
    Endpoint,
    ProviderInfo,
    StreamEvent,
    WireRequest,
    WireResponse,
    end_of_stream,
    errors,
    hookimpl,
    openai,
)

#: OpenAI sampling parameters the API takes inside "options", with its names for them.
OPTION_NAMES = {"temperature": "temperature", "top_p": "top_p", "seed": "seed", "stop": "stop", "max_tokens": "num_predict"}
#: OpenAI request parameters the API does not take (it always reports usage when streaming).
NOT_SENT = frozenset({"stream_options"})'''
    + _MAPPING
    + '''

# --- hooks -------------------------------------------------------------------------------------


@hookimpl
def provider_info() -> ProviderInfo:
    return ProviderInfo(
        name="{{name}}",
        # TODO: the API's real base URL.
        api_base="https://api.{{name}}.example/v1",
        api_base_env=("{{ENV}}_API_BASE",),
        api_key_env=("{{ENV}}_API_KEY",),
        operations={"chat"},
        stream_framing="ndjson",  # the core splits the streamed body into lines
        description="the {{Title}} API",
    )


@hookimpl
def resolve_endpoint(call: Call) -> Endpoint:
    # Base URL from api_base=, {{ENV}}_API_BASE or the default; the key as a Bearer token.
    # TODO: the API's path, and its auth header if it is not "Authorization: Bearer".
    endpoint = openai.resolve_endpoint(call)
    return Endpoint(base_url=endpoint.base_url, path="/chat", headers=endpoint.headers)


@hookimpl
def transform_request(call: Call, endpoint: Endpoint) -> WireRequest:
    # TODO: where the request body is built from the OpenAI-shaped call.body. Raise
    # errors.InvalidRequestError(..., param=...) for values the API is documented to reject.
    body = {key: value for key, value in call.body.items() if key not in OPTION_NAMES and key not in NOT_SENT}
    options = {OPTION_NAMES[key]: value for key, value in call.body.items() if key in OPTION_NAMES}
    if options:
        body["options"] = options
    body["stream"] = call.stream  # the API streams unless told not to
    return openai.build_request(call, endpoint, body)


@hookimpl
def transform_response(call: Call, response: WireResponse) -> JSON:
    # The JSON object (a typed MalformedResponseError if the body is not one), read by _from_api.
    return _from_api(openai.parse_response(call, response), RESPONSE)


@hookimpl
def parse_stream_chunk(call: Call, event: StreamEvent) -> Any:
    # TODO: the API's lines. event.data is one line of the body.
    data = _payload(call, event)
    if "error" in data:
        raise _stream_error(call, data, data["error"], data.get("code"))
    if not data.pop("done", False):
        return _from_api(data, CHUNK)
    # The last line: its output (the finish reason) and the usage are the last chunks.
    head = {key: value for key, value in data.items() if key not in ("outputs", "usage")}
    chunks = []
    if data.get("outputs"):
        chunks.append(_from_api({**head, "outputs": data["outputs"]}, CHUNK))
    if data.get("usage") is not None:
        chunks.append(_from_api({**head, "usage": data["usage"]}, CHUNK))
    return end_of_stream(*chunks)


@hookimpl
def map_error(call: Call, response: WireResponse) -> errors.ProviderError:
    # TODO: the API's error envelope. openai.error_fields reads {"error": "text"} and a
    # top-level "code"; the class follows the HTTP status (pass cls= to choose another).
    fields = openai.error_fields(response)
    body = response.json_or_none()
    retry_in = body.get("retry_in") if isinstance(body, dict) else None
    retry_after = float(retry_in) if isinstance(retry_in, (int, float)) else None
    return openai.build_error(call, response, fields=fields, retry_after=retry_after)


# --- encoders: the inverses of the three decoders above -----------------------------------------


@hookimpl
def encode_response(call: Call, result: JSON) -> WireResponse:
    return WireResponse(200, dict(_JSON_HEADERS), _dumps(_to_api(result)).encode("utf-8"))


@hookimpl
def encode_stream(call: Call, chunks: List[JSON]) -> bytes:
    lines = [_to_api(chunk) for chunk in chunks]
    last: JSON = {}
    if lines and "outputs" not in lines[-1] and "usage" in lines[-1]:
        last = lines.pop()  # the usage trailer
    if lines and "outputs" in lines[-1] and "usage" not in lines[-1] and (not last or _head(lines[-1]) == _head(last)):
        last = {**lines.pop(), **last}  # the chunk before it: the one with the finish reason
    return b"".join(_line({**line, "done": False}) for line in lines) + _line({**last, "done": True})


@hookimpl
def encode_error(call: Call, status: int, message: str, code: Optional[str]) -> WireResponse:
    body = {"error": message, "code": code}
    return WireResponse(status, dict(_JSON_HEADERS), _dumps(body).encode("utf-8"))


def _head(line: JSON) -> JSON:
    return {key: value for key, value in line.items() if key not in ("outputs", "usage")}


def _line(data: JSON) -> bytes:
    return (_dumps(data) + "\\n").encode("utf-8")
'''
)


# --- the loopback fakes of the made-up API (sse, ndjson) --------------------------------------

_FAKE_HEAD = '''\
"""A loopback fake of the {{Title}} API for the end-to-end tests: a threaded http.server
on 127.0.0.1 that answers the way the template's API does (see src/{{module}}/__init__.py).

Change it together with the module: make it send what the real API sends (paste
responses from its documentation), so the tests check the hooks against the real thing.

Models steer it: ``fail-<status>`` answers with that error status, ``stream-error``
breaks a stream with an error after the first words; any other model echoes.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional

CREATED = 1700000000


def reply_text(body: Dict[str, Any]) -> str:
    """The fake's answer: the last user message, quoted."""
    text = ""
    for message in body.get("messages") or []:
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            text = message["content"]
    return f"You said: {text}"


def words(text: str) -> List[str]:
    parts = text.split(" ")
    return [part + (" " if i < len(parts) - 1 else "") for i, part in enumerate(parts)]


def usage(body: Dict[str, Any], text: str) -> Dict[str, int]:
    return {"input_tokens": len(json.dumps(body.get("messages")).split()), "output_tokens": len(text.split())}


def response(model: str, body: Dict[str, Any]) -> Dict[str, Any]:
    """The answer to a request without "stream": true."""
    text = reply_text(body)
    return {
        "id": "gen-fake", "model": model, "created": CREATED,
        "outputs": [{"index": 0, "message": {"role": "assistant", "text": text}, "stop_reason": "end"}],
        "usage": usage(body, text),
    }  # fmt: skip
'''

_FAKE_SSE_PART = '''

# --- the wire: server-sent events ---------------------------------------------------------------

PATH = "/v1/generate"
CONTENT_TYPE = "text/event-stream"


def error_body(message: str, code: str, retry_in: Optional[float] = None) -> Dict[str, Any]:
    body: Dict[str, Any] = {"error_code": code, "error_message": message}
    if retry_in is not None:
        body["retry_in"] = retry_in
    return body


def stream(write: Callable[[bytes], None], model: str, body: Dict[str, Any]) -> None:
    """The answer to a request with "stream": true, written event by event."""
    head = {"id": "gen-fake", "model": model, "created": CREATED}

    def event(name: str, data: Dict[str, Any]) -> None:
        write(f"event: {name}\\ndata: {json.dumps(data)}\\n\\n".encode())

    text = reply_text(body)
    event("token", {**head, "outputs": [{"index": 0, "delta": {"role": "assistant", "text": ""}}]})
    write(b"event: ping\\ndata: {}\\n\\n")  # keep-alives are ignored
    for number, word in enumerate(words(text)):
        if model == "stream-error" and number == 2:
            event("error", {"status": 500, **error_body("the fake broke the stream", "overloaded")})
            return
        event("token", {**head, "outputs": [{"index": 0, "delta": {"text": word}}]})
    event("token", {**head, "outputs": [{"index": 0, "delta": {}, "stop_reason": "end"}]})
    event("done", {**head, "usage": usage(body, text)})
'''

_FAKE_NDJSON_PART = '''

# --- the wire: newline-delimited JSON -----------------------------------------------------------

PATH = "/v1/chat"
CONTENT_TYPE = "application/x-ndjson"


def error_body(message: str, code: str, retry_in: Optional[float] = None) -> Dict[str, Any]:
    body: Dict[str, Any] = {"error": message, "code": code}
    if retry_in is not None:
        body["retry_in"] = retry_in
    return body


def stream(write: Callable[[bytes], None], model: str, body: Dict[str, Any]) -> None:
    """The answer to a request with "stream": true, written line by line."""
    head = {"id": "gen-fake", "model": model, "created": CREATED}

    def line(data: Dict[str, Any]) -> None:
        write(json.dumps(data).encode() + b"\\n")

    text = reply_text(body)
    line({**head, "outputs": [{"index": 0, "delta": {"role": "assistant", "text": ""}}], "done": False})
    for number, word in enumerate(words(text)):
        if model == "stream-error" and number == 2:
            line({"status": 500, **error_body("the fake broke the stream", "overloaded")})
            return
        line({**head, "outputs": [{"index": 0, "delta": {"text": word}}], "done": False})
    last = {"index": 0, "delta": {}, "stop_reason": "end"}
    line({**head, "outputs": [last], "usage": usage(body, text), "done": True})
'''

_FAKE_SERVER = '''

# --- the server -----------------------------------------------------------------------------------


class FakeUpstream:
    """``with FakeUpstream() as upstream:`` ... ``upstream.base_url``, ``upstream.requests``."""

    def __init__(self) -> None:
        #: Every request received: {"path", "headers" (lower-case names), "json"}.
        self.requests: List[Dict[str, Any]] = []
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "the fake is not running"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeUpstream:
        requests = self.requests

        class Handler(_Handler):
            received = requests

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None


class _Handler(BaseHTTPRequestHandler):
    received: List[Dict[str, Any]]

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return None

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.loads(raw) if raw else {}
        headers = {key.lower(): value for key, value in self.headers.items()}
        self.received.append({"path": self.path, "headers": headers, "json": body})
        model = str(body.get("model", ""))
        if self.path != PATH:
            self.send_json(404, error_body(f"no route POST {self.path}", "not_found"))
        elif model.startswith("fail-"):
            self.send_json(int(model[len("fail-") :]), error_body("the fake was told to fail", "failed", retry_in=1.5))
        elif body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.end_headers()  # HTTP/1.0: the body ends when the connection closes
            stream(self.write, model, body)
        else:
            self.send_json(200, response(model, body))

    def send_json(self, status: int, payload: Dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()
'''

_FAKE_SSE = _FAKE_HEAD + _FAKE_SSE_PART + _FAKE_SERVER
_FAKE_NDJSON = _FAKE_HEAD + _FAKE_NDJSON_PART + _FAKE_SERVER

_FAKE_UPSTREAM = {"openai": _OPENAI_FAKE, "sse": _FAKE_SSE, "ndjson": _FAKE_NDJSON}

_WIRE_FILES: Dict[str, Tuple[str, str]] = {
    "openai": (_OPENAI_MODULE, _OPENAI_TEST),
    "sse": (_SSE_MODULE, _SSE_TEST),
    "ndjson": (_NDJSON_MODULE, _NDJSON_TEST),
}
