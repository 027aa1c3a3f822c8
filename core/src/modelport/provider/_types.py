"""The values hooks receive and return: a call, an endpoint, wire requests and responses,
stream events, the steps of a multi-step operation and the stream markers.

Hooks never do I/O; they turn these values into one another and the core sends them.
Everything a hook receives is frozen: a hook that needs to remember something between
the steps of an operation returns it as ``FollowUp.state`` and gets it back in ``Step``.
Secrets travel in headers, ``Call.api_key`` and the names a provider declares in
``ProviderInfo.secret_headers`` / ``secret_fields``; every repr redacts them.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import attrs

__all__ = [
    "OPERATIONS",
    "STREAM_FRAMINGS",
    "ProviderInfo",
    "Call",
    "Endpoint",
    "WireRequest",
    "WireResponse",
    "StreamEvent",
    "ServerSentEvent",
    "Step",
    "FollowUp",
    "EndOfStream",
    "END_OF_STREAM",
    "IGNORE_EVENT",
    "end_of_stream",
    "redact_headers",
    "redact_url",
    "env_value",
    "FileUpload",
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

#: Stream framings the core decodes itself; a provider with another framing implements
#: the ``stream_decoder`` hook.
STREAM_FRAMINGS = ("sse", "ndjson")

#: Header names that always hold credentials.
SECRET_HEADERS = frozenset(
    {"authorization", "api-key", "x-api-key", "proxy-authorization", "x-goog-api-key", "cookie"}
)
REDACTED = "[REDACTED]"

#: A multipart upload: (file name, content, content type).
FileUpload = Tuple[str, bytes, str]


def env_value(names: Iterable[str]) -> Optional[str]:
    """The value of the first environment variable in ``names`` that is set and non-empty."""
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def redact_headers(headers: Mapping[str, str], secret: Iterable[str] = ()) -> Dict[str, str]:
    """A copy of ``headers`` with credentials replaced, for logs, reprs and --dry-run.

    ``secret`` adds header names (any case) beyond the standard credential headers.
    """
    extra = {name.lower() for name in secret}
    out = {}
    for key, value in headers.items():
        lowered = key.lower()
        if lowered in SECRET_HEADERS or lowered in extra:
            scheme = value.split(" ", 1)[0] + " " if lowered == "authorization" and " " in value else ""
            out[key] = f"{scheme}{REDACTED}"
        else:
            out[key] = value
    return out


def redact_url(url: str, secret_params: Iterable[str] = ()) -> str:
    """``url`` without userinfo (``user:pass@``) and with the named query parameters redacted."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        authority = REDACTED + "@" + authority.rsplit("@", 1)[1]
    path, question, query = tail.partition("?")
    names = set(secret_params)
    if question and names:
        parts = []
        for item in query.split("&"):
            key, eq, _ = item.partition("=")
            parts.append(f"{key}={REDACTED}" if eq and key in names else item)
        query = "&".join(parts)
    return f"{scheme}://{authority}{slash}{path}{question}{query}"


def redact_fields(value: Any, names: FrozenSet[str]) -> Any:
    """A JSON value with every object field named in ``names`` replaced, at any depth."""
    if not names:
        return value
    if isinstance(value, dict):
        return {k: (REDACTED if k in names else redact_fields(v, names)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_fields(v, names) for v in value]
    return value


def _strings(values: Iterable[str]) -> Tuple[str, ...]:
    return (values,) if isinstance(values, str) else tuple(values)


def _frozen(values: Iterable[str]) -> FrozenSet[str]:
    return frozenset(_strings(values))


def _opt_frozen(values: Optional[Iterable[str]]) -> Optional[FrozenSet[str]]:
    return None if values is None else frozenset(_strings(values))


def _check_framing(instance: Any, attribute: Any, value: str) -> None:
    if value not in STREAM_FRAMINGS and value != "custom":
        raise ValueError(
            f"ProviderInfo.stream_framing must be one of {', '.join(STREAM_FRAMINGS)} or 'custom'"
            f" (with a stream_decoder hook), got {value!r}"
        )


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
    #: How the provider frames a streamed body: ``sse``, ``ndjson`` or ``custom``
    #: (the plugin's ``stream_decoder`` hook supplies the decoder).
    stream_framing: str = attrs.field(default="sse", validator=_check_framing)
    #: Header names, and body / query field / provider option names, that carry
    #: credentials: redacted in ``--dry-run``, logs, reprs and error texts
    #: (``Authorization`` & co. always are).
    secret_headers: FrozenSet[str] = attrs.field(default=frozenset(), converter=_frozen)
    secret_fields: FrozenSet[str] = attrs.field(default=frozenset(), converter=_frozen)
    description: str = ""


def _redacted_headers(headers: Mapping[str, str]) -> str:
    return repr(redact_headers(headers))


@attrs.frozen(repr=False)
class Call:
    """One API call as the hooks see it: the OpenAI-shaped body plus how to reach the provider.

    Frozen: hooks read it and build new values; ``body`` is the caller's request and
    must not be changed in place (copy it: ``{**call.body, ...}``).
    """

    operation: str
    provider: str
    model: str
    body: Mapping[str, Any]
    info: ProviderInfo
    stream: bool = False
    api_key: Optional[str] = None
    api_base: Optional[str] = None
    #: Provider options (``ProviderInfo.options``) given to this call.
    options: Mapping[str, Any] = attrs.field(factory=dict)
    extra_headers: Mapping[str, str] = attrs.field(factory=dict)
    #: Binary uploads (transcription): field name -> (file name, bytes, content type).
    files: Mapping[str, FileUpload] = attrs.field(factory=dict)
    #: True when the request is only built to be shown (``--dry-run``), never sent:
    #: checks that need a key may stand down.
    dry_run: bool = False
    #: Query parameters the caller adds to every request of this call (``extra_query``).
    extra_query: Mapping[str, Any] = attrs.field(factory=dict)

    def __repr__(self) -> str:
        secret = self.info.secret_fields
        options = {k: (REDACTED if k in secret else v) for k, v in self.options.items()}
        key = "None" if self.api_key is None else repr(REDACTED)
        return (
            f"Call(operation={self.operation!r}, provider={self.provider!r}, model={self.model!r},"
            f" stream={self.stream!r}, api_key={key}, api_base={redact_url(self.api_base or '')!r},"
            f" options={options!r}, extra_headers={redact_headers(self.extra_headers, self.info.secret_headers)!r})"
        )

    def secrets(self) -> Tuple[str, ...]:
        """The credential values this call carries (scrubbed from error texts)."""
        values = [self.api_key] if self.api_key else []
        values += [str(v) for k, v in self.options.items() if k in self.info.secret_fields and v]
        secret_headers = {name.lower() for name in self.info.secret_headers} | SECRET_HEADERS
        values += [v for k, v in self.extra_headers.items() if k.lower() in secret_headers]
        return tuple(v for v in values if len(v) >= 4)


@attrs.frozen
class Endpoint:
    """Where a call goes: base URL, the operation's path and the headers (auth included)."""

    base_url: str
    path: str
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=_redacted_headers)

    @property
    def url(self) -> str:
        base = self.base_url.rstrip("/")
        # A base that already ends with the operation's path is used as it is.
        return base if self.path and base.endswith(self.path) else base + self.path


@attrs.frozen(repr=False)
class WireRequest:
    """An HTTP request ready to send; exactly one of json / content / (data, files) is the body.

    ``secrets`` names further headers and query parameters to redact in its repr (the
    core fills it from ``ProviderInfo.secret_headers`` / ``secret_fields``).
    """

    method: str
    url: str
    headers: Mapping[str, str] = attrs.field(factory=dict)
    json: Any = None
    content: Optional[bytes] = None
    data: Optional[Mapping[str, Any]] = None
    files: Optional[Mapping[str, FileUpload]] = None
    secrets: FrozenSet[str] = attrs.field(default=frozenset(), eq=False)

    def with_headers(self, extra: Mapping[str, str]) -> "WireRequest":
        """A copy with ``extra`` headers added (they win over the request's own)."""
        if not extra:
            return self
        # The constructor, not attrs.evolve: this runs on every call (middleware adds headers).
        return WireRequest(self.method, self.url, {**self.headers, **extra}, self.json, self.content, self.data, self.files, self.secrets)

    def __repr__(self) -> str:
        url = redact_url(self.url, self.secrets)
        return f"WireRequest(method={self.method!r}, url={url!r}, headers={redact_headers(self.headers, self.secrets)!r})"


_UNPARSED: Any = object()
_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__, untyped


def loads_text(text: str) -> Any:
    """``json.loads`` of a str, minus its two whitespace regexes.

    Runs once per response and once per stream event: the C scanner alone parses a
    well-formed document in about half the time; anything unusual (surrounding
    whitespace, trailing data, bad JSON) goes through ``json.loads`` so errors read
    exactly as usual.
    """
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        return json.loads(text)
    if end != len(text) and text[end:].strip():
        return json.loads(text)
    return value


def loads_body(content: bytes) -> Any:
    """``json.loads`` of a UTF-8 body (other encodings, detected as json.loads does, go to it)."""
    if 0 in content[:4]:
        return json.loads(content)  # UTF-16 / UTF-32: json.loads detects them
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return json.loads(content)
    if text[:1] == "\ufeff":
        return json.loads(content)  # a BOM: json.loads says so
    return loads_text(text)


@attrs.define(slots=True)
class WireResponse:
    """A complete HTTP response (or a stream's status and headers, with empty content).

    Header names are lower-case.
    """

    status: int
    headers: Mapping[str, str]
    content: bytes
    request: Optional[WireRequest] = attrs.field(default=None, repr=False)
    _json: Any = attrs.field(default=_UNPARSED, repr=False, init=False, eq=False)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON (cached); raises ``ValueError`` when it is not JSON."""
        if self._json is _UNPARSED:
            self._json = loads_body(self.content) if self.content else None
        return self._json

    def json_or_none(self) -> Any:
        try:
            return self.json()
        except ValueError:
            return None


class StreamEvent:
    """One event of a streamed body, whatever the framing.

    SSE fills ``data`` (the joined ``data:`` lines), ``event``, ``id`` and ``retry``;
    NDJSON puts one line in ``data``; a plugin's own decoder may put bytes in ``data``.
    """

    __slots__ = ("data", "event", "id", "retry")

    def __init__(self, data: Union[str, bytes] = "", event: str = "", id: str = "", retry: Optional[int] = None) -> None:
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry

    def __repr__(self) -> str:
        return f"StreamEvent(event={self.event!r}, data={self.data[:80]!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StreamEvent) and (self.event, self.data, self.id, self.retry) == (
            other.event,
            other.data,
            other.id,
            other.retry,
        )

    __hash__ = None  # type: ignore[assignment]


#: The v1 name of ``StreamEvent``.
ServerSentEvent = StreamEvent


@attrs.frozen
class Step:
    """Where a multi-step operation stands, passed to ``transform_response``.

    ``number`` counts the responses of this operation so far (1 for the first),
    ``elapsed`` is the seconds since the operation started (the engine's clock, so a
    hook never reads one), ``state`` is what the previous ``FollowUp`` carried (None at
    the first response).
    """

    number: int = 1
    elapsed: float = 0.0
    state: Any = None


@attrs.frozen
class FollowUp:
    """Returned by ``transform_response`` when the operation needs another request.

    The core waits ``delay`` seconds, sends ``request`` and hands its response back to
    ``transform_response`` with ``Step.state == state``; ``status`` is reported to the
    caller's progress callback. Keep ``state`` immutable (a frozen attrs class, a tuple).
    """

    request: WireRequest
    delay: float = 0.0
    status: str = ""
    state: Any = None


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


class EndOfStream:
    """``parse_stream_chunk``'s answer for the stream's last event.

    ``chunks`` are delivered before the stream ends: an upstream whose last line carries
    the finish reason and usage (NDJSON APIs) answers ``end_of_stream(chunk)``.
    """

    __slots__ = ("chunks",)

    def __init__(self, chunks: Sequence[Dict[str, Any]] = ()) -> None:
        self.chunks: Tuple[Dict[str, Any], ...] = tuple(chunks)

    def __repr__(self) -> str:
        return f"end_of_stream({len(self.chunks)} chunk(s))" if self.chunks else "END_OF_STREAM"


#: ``parse_stream_chunk`` returns this at the stream's end marker (``data: [DONE]``).
END_OF_STREAM = EndOfStream()
#: ``parse_stream_chunk`` returns this for events that carry no chunk (keep-alives, pings).
IGNORE_EVENT: Any = _Marker("IGNORE_EVENT")


def end_of_stream(*chunks: Dict[str, Any]) -> EndOfStream:
    """The end of the stream, after ``chunks`` (see ``EndOfStream``)."""
    return EndOfStream(chunks) if chunks else END_OF_STREAM


#: What ``parse_stream_chunk`` may return.
StreamItem = Union[Dict[str, Any], List[Dict[str, Any]], EndOfStream, _Marker]
