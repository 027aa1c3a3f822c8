"""The provider toolkit: everything a provider plugin imports, and nothing else.

    from modelport.provider import ProviderInfo, hookimpl, openai

    @hookimpl
    def provider_info():
        return ProviderInfo(name="acme", api_base="https://api.acme.example/v1", api_key_env="ACME_API_KEY")

A plugin implements only the hooks where its API differs from OpenAI's; for the rest
the core falls back to ``openai`` (OpenAI's wire format as pure functions, which a
plugin may also call and adjust). Streams are decoded by the framing the provider
declares (``sse``, ``ndjson``) or by its own ``stream_decoder``. See docs/plugins.md.

Contract v2: names here are kept; hooks only gain parameters.
"""

from typing import TYPE_CHECKING, Any

from .. import errors
from .._rebuild import stream_to_completion
from ..errors import InvalidRequestError, ProviderError
from . import openai
from ._commands import CliCommand, CliOptions
from ._types import (
    END_OF_STREAM,
    IGNORE_EVENT,
    OPERATIONS,
    STREAM_FRAMINGS,
    Call,
    EndOfStream,
    Endpoint,
    FileUpload,
    FollowUp,
    ProviderInfo,
    ServerSentEvent,
    Step,
    StreamEvent,
    WireRequest,
    WireResponse,
    end_of_stream,
    env_value,
    redact_headers,
    redact_url,
)
from .decoders import NDJSONDecoder, SSEDecoder, StreamDecoder

if TYPE_CHECKING:
    from .hookspecs import hookimpl
else:

    def __getattr__(name: str) -> Any:
        # pluggy is imported when a plugin asks for hookimpl, not by `import modelport`
        # (whose engine uses this package's value types).
        if name == "hookimpl":
            from .hookspecs import hookimpl

            return hookimpl
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "hookimpl",
    "openai",
    "errors",
    "ProviderError",
    "InvalidRequestError",
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
    "StreamDecoder",
    "SSEDecoder",
    "NDJSONDecoder",
    "CliCommand",
    "CliOptions",
    "FileUpload",
    "OPERATIONS",
    "STREAM_FRAMINGS",
    "env_value",
    "redact_headers",
    "redact_url",
    "stream_to_completion",
]

