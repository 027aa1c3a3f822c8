"""The hooks a provider plugin implements (pluggy project ``"modelport"``).

Every hook is pure: it turns values into values and never does I/O or sleeps, so one
implementation serves sync and async callers. The core registers the OpenAI wire
format as the ``trylast`` fallback of every hook, so a plugin implements only what
differs from OpenAI. Hooks receive JSON-shaped dicts (OpenAI's field names) and return
them; the core builds the typed objects at the edge.

Hooks only ever gain parameters; none is renamed or removed.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Union

import pluggy

from ._wire import Call, Endpoint, FollowUp, ProviderInfo, ServerSentEvent, WireRequest, WireResponse
from .errors import ProviderError

PROJECT = "modelport"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(firstresult=True)
def provider_info() -> Optional[ProviderInfo]:
    """Name, aliases, env vars, default base URL, operations and parameters supported."""


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
    call: Call, response: WireResponse
) -> Optional[Union[Dict[str, Any], FollowUp]]:
    """A successful provider response -> the OpenAI-shaped result dict.

    Multi-step operations return ``FollowUp(request, delay)`` instead; the core sends it
    and calls this hook again with the next response.
    """


@hookspec(firstresult=True)
def parse_stream_chunk(call: Call, event: ServerSentEvent) -> Any:
    """One server-sent event -> an OpenAI-shaped chunk dict, ``END_OF_STREAM`` or ``IGNORE_EVENT``.

    Raise a ``ProviderError`` for an error the upstream reports inside the stream.
    """


@hookspec(firstresult=True)
def map_error(call: Call, response: WireResponse) -> Optional[ProviderError]:
    """A non-2xx provider response -> a typed ``ProviderError`` (returned, not raised)."""


__all__ = [
    "PROJECT",
    "hookspec",
    "hookimpl",
    "provider_info",
    "resolve_endpoint",
    "transform_request",
    "transform_response",
    "parse_stream_chunk",
    "map_error",
    "WireRequest",
]
