"""The values hooks receive and return: a call, an endpoint, wire requests and responses.

Hooks never do I/O; they turn these values into one another and the core sends them.
Secrets travel in headers and ``Call.api_key`` and are redacted from every repr.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, FrozenSet, Iterable, Mapping, Optional, Tuple

import attrs

__all__ = [
    "OPERATIONS",
    "ProviderInfo",
    "Call",
    "Endpoint",
    "WireRequest",
    "WireResponse",
    "ServerSentEvent",
    "FollowUp",
    "END_OF_STREAM",
    "IGNORE_EVENT",
    "redact_headers",
    "env_value",
    "stamp_error",
]

#: Operation names a provider can declare in ``ProviderInfo.operations``.
OPERATIONS = (
    "chat",
    "text_completion",
    "embedding",
    "rerank",
    "transcription",
    "image_generation",
)

_SECRET_HEADERS = frozenset(
    {"authorization", "api-key", "x-api-key", "proxy-authorization", "x-goog-api-key", "cookie"}
)


def env_value(names: Any) -> Optional[str]:
    """The value of the first environment variable in ``names`` that is set and non-empty."""
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def redact_headers(headers: Mapping[str, str]) -> Dict[str, str]:
    """A copy of ``headers`` with credentials replaced, for logs, reprs and --dry-run."""
    out = {}
    for key, value in headers.items():
        if key.lower() in _SECRET_HEADERS:
            scheme = value.split(" ", 1)[0] + " " if " " in value else ""
            out[key] = f"{scheme}[REDACTED]"
        else:
            out[key] = value
    return out


def _redacted_secret(value: Optional[str]) -> str:
    return "None" if value is None else "'[REDACTED]'"


def _redacted_headers(headers: Mapping[str, str]) -> str:
    return repr(redact_headers(headers))


def _strings(values: Iterable[str]) -> Tuple[str, ...]:
    return tuple(values)


def _frozen(values: Any) -> FrozenSet[str]:
    return frozenset(values)


def _opt_frozen(values: Any) -> Optional[FrozenSet[str]]:
    return None if values is None else frozenset(values)


@attrs.frozen
class ProviderInfo:
    """What a provider is and supports; ``modelport providers`` and the client read it."""

    name: str
    aliases: Tuple[str, ...] = attrs.field(default=(), converter=_strings)
    #: Default base URL (with ``/v1`` where the API has it).
    api_base: Optional[str] = None
    #: Environment variables read for the base URL and the key, first one set wins.
    api_base_env: Tuple[str, ...] = attrs.field(default=(), converter=_strings)
    api_key_env: Tuple[str, ...] = attrs.field(default=(), converter=_strings)
    operations: FrozenSet[str] = attrs.field(default=frozenset({"chat"}), converter=_frozen)
    #: OpenAI request parameters the provider accepts; ``None`` means all of them.
    params: Optional[FrozenSet[str]] = attrs.field(default=None, converter=_opt_frozen)
    #: Extra keyword arguments that configure the call instead of going into the body.
    options: Tuple[str, ...] = attrs.field(default=(), converter=_strings)
    supports_system_message: bool = True
    description: str = ""


@attrs.define(slots=True)
class Call:
    """One API call as the hooks see it: the OpenAI-shaped body plus how to reach the provider."""

    operation: str
    provider: str
    model: str
    body: Dict[str, Any]
    info: ProviderInfo
    stream: bool = False
    api_key: Optional[str] = attrs.field(default=None, repr=_redacted_secret)
    api_base: Optional[str] = None
    options: Dict[str, Any] = attrs.field(factory=dict)
    extra_headers: Dict[str, str] = attrs.field(factory=dict, repr=_redacted_headers)
    timeout: Optional[float] = None
    #: Binary uploads (transcription): field name -> (filename, bytes, content type).
    files: Dict[str, Tuple[str, bytes, str]] = attrs.field(factory=dict, repr=False)
    #: Scratch space that multi-step operations carry from one step to the next.
    state: Dict[str, Any] = attrs.field(factory=dict)
    #: True when the request is only built to be shown (``--dry-run``), never sent:
    #: checks that need a key or the network may stand down.
    dry_run: bool = False


@attrs.define(slots=True)
class Endpoint:
    """Where a call goes: base URL, the operation's path and the headers (auth included)."""

    base_url: str
    path: str
    headers: Dict[str, str] = attrs.field(factory=dict, repr=_redacted_headers)

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + self.path


@attrs.define(slots=True)
class WireRequest:
    """An HTTP request ready to send; exactly one of json / content / (data, files) is the body."""

    method: str
    url: str
    headers: Dict[str, str] = attrs.field(factory=dict, repr=_redacted_headers)
    json: Any = None
    content: Optional[bytes] = attrs.field(default=None, repr=False)
    data: Optional[Dict[str, Any]] = None
    files: Optional[Dict[str, Tuple[str, bytes, str]]] = attrs.field(default=None, repr=False)


_UNPARSED = object()


@attrs.define(slots=True)
class WireResponse:
    """A complete HTTP response (or a stream's status and headers, with empty content)."""

    status: int
    headers: Dict[str, str]
    content: bytes
    request: Optional[WireRequest] = attrs.field(default=None, repr=False)
    _json: Any = attrs.field(default=_UNPARSED, repr=False, init=False, eq=False)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON (cached); raises ``ValueError`` when it is not JSON."""
        if self._json is _UNPARSED:
            self._json = json.loads(self.content) if self.content else None
        return self._json

    def json_or_none(self) -> Any:
        try:
            return self.json()
        except ValueError:
            return None


class ServerSentEvent:
    """One server-sent event, as framed by the core from the byte stream."""

    __slots__ = ("event", "data", "id", "retry")

    def __init__(self, data: str = "", event: str = "", id: str = "", retry: Optional[int] = None) -> None:
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry

    def __repr__(self) -> str:
        return f"ServerSentEvent(event={self.event!r}, data={self.data[:80]!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ServerSentEvent) and (self.event, self.data, self.id, self.retry) == (
            other.event,
            other.data,
            other.id,
            other.retry,
        )


@attrs.define(slots=True)
class FollowUp:
    """Returned by ``transform_response`` when the operation needs another request.

    The core waits ``delay`` seconds, sends ``request`` and hands its response back to
    ``transform_response``; ``status`` is reported to the caller's progress callback.
    """

    request: WireRequest
    delay: float = 0.0
    status: str = ""


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: ``parse_stream_chunk`` returns this at the stream's end marker (``data: [DONE]``).
END_OF_STREAM: Any = _Marker("END_OF_STREAM")
#: ``parse_stream_chunk`` returns this for events that carry no chunk (keep-alives, pings).
IGNORE_EVENT: Any = _Marker("IGNORE_EVENT")


def stamp_error(error: Any, call: Call) -> Any:
    """Name the call's provider and model on a ``ProviderError`` and scrub the call's key
    from its text: upstreams sometimes echo the key they were sent."""
    if error.provider is None:
        error.provider = call.provider
    if error.model is None:
        error.model = call.model
    key = call.api_key
    if key and len(key) >= 4:
        if key in error.message:
            error.message = error.message.replace(key, "[REDACTED]")
            error.args = (error.message,)
        if error.body and key in error.body:
            error.body = error.body.replace(key, "[REDACTED]")
    return error
