"""The hooks a provider plugin implements (pluggy project ``"modelport"``), contract v2.

Every hook is pure: it turns values into values and never does I/O, sleeps or reads a
clock, so one implementation serves sync and async callers. The core registers the
OpenAI wire format (``modelport.provider.openai``) as the ``trylast`` fallback of every
hook, so a plugin implements only what differs from OpenAI. Hooks receive JSON-shaped
dicts (OpenAI's field names) and return them; the core builds the typed objects.

Hooks only ever gain parameters; none is renamed or removed. An implementation may
declare any subset of a hook's parameters (pluggy passes only the ones it names).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

import pluggy

from ..errors import ProviderError
from ._types import Call, Endpoint, FollowUp, ProviderInfo, Step, StreamEvent, WireRequest, WireResponse
from .decoders import StreamDecoder

PROJECT = "modelport"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = [
    "PROJECT",
    "hookspec",
    "hookimpl",
    "HOOKS",
    "provider_info",
    "resolve_endpoint",
    "transform_request",
    "transform_response",
    "stream_decoder",
    "parse_stream_chunk",
    "map_error",
    "encode_response",
    "encode_stream",
    "encode_error",
    "cli_commands",
]

#: The per-call hooks, in the order a call meets them.
HOOKS = (
    "resolve_endpoint",
    "transform_request",
    "transform_response",
    "stream_decoder",
    "parse_stream_chunk",
    "map_error",
    "encode_response",
    "encode_stream",
    "encode_error",
)


@hookspec(firstresult=True)
def provider_info() -> Optional[ProviderInfo]:
    """Name, aliases, env vars, default base URL, operations, framing and secrets."""


@hookspec(firstresult=True)
def resolve_endpoint(call: Call) -> Optional[Endpoint]:
    """Base URL, path and headers (auth included) for this call."""


@hookspec(firstresult=True)
def transform_request(call: Call, endpoint: Endpoint) -> Optional[WireRequest]:
    """The OpenAI-shaped ``call.body`` -> the provider's HTTP request.

    Raise ``InvalidRequestError`` for parameters the provider would reject, before sending.
    """


@hookspec(firstresult=True)
def transform_response(
    call: Call, response: WireResponse, step: Step
) -> Optional[Union[Dict[str, Any], FollowUp]]:
    """A successful provider response -> the OpenAI-shaped result dict.

    Multi-step operations return ``FollowUp(request, delay, status, state)`` instead; the
    core sends it and calls this hook again with the next response and
    ``Step(number, elapsed, state)``.
    """


@hookspec(firstresult=True)
def stream_decoder(call: Call, head: WireResponse) -> Optional[StreamDecoder]:
    """A new decoder for this call's streamed body (needed for ``stream_framing="custom"``).

    ``head`` is the stream's response without its body (status, headers: ``date``,
    request ids). The decoder lives exactly as long as its stream, so it is where a
    plugin keeps what a stream's later events depend on (tool-call positions, the
    message id): wrap ``SSEDecoder`` / ``NDJSONDecoder`` and hand ``parse_stream_chunk``
    events of your own ``StreamEvent`` subclass that carry it.
    """


@hookspec(firstresult=True)
def parse_stream_chunk(call: Call, event: StreamEvent) -> Any:
    """One stream event -> a chunk dict, a list of chunk dicts, ``IGNORE_EVENT``,
    ``END_OF_STREAM`` or ``end_of_stream(*chunks)``.

    Raise a ``ProviderError`` for an error the upstream reports inside the stream.
    """


@hookspec(firstresult=True)
def map_error(call: Call, response: WireResponse) -> Optional[ProviderError]:
    """A non-2xx provider response -> a typed ``ProviderError`` (returned, not raised).

    A retry delay the upstream gives in its body goes in the error's ``retry_after``.
    """


@hookspec(firstresult=True)
def encode_response(call: Call, result: Dict[str, Any]) -> Optional[WireResponse]:
    """The inverse of ``transform_response``: the upstream response that means ``result``.

    Used by ``mock_response`` and the conformance kit, so both run the plugin's decoding.
    """


@hookspec(firstresult=True)
def encode_stream(call: Call, chunks: List[Dict[str, Any]]) -> Optional[bytes]:
    """The inverse of the stream path: the streamed body, in the provider's framing, that
    decodes to ``chunks`` (end marker included)."""


@hookspec(firstresult=True)
def encode_error(
    call: Call, status: int, message: str, code: Optional[str]
) -> Optional[WireResponse]:
    """The inverse of ``map_error``: the upstream's error response for ``status``/``message``."""


@hookspec
def cli_commands() -> Optional[Sequence[Any]]:
    """``CliCommand`` / ``CliOptions`` values this plugin adds to the ``modelport`` command."""
