"""The OpenAI wire format registered as the ``trylast`` implementation of every hook."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ..errors import ConfigError, ProviderError
from . import openai
from ._types import Call, Endpoint, Step, StreamEvent, WireRequest, WireResponse
from .decoders import StreamDecoder, decoder_for
from .hookspecs import hookimpl


class OpenAIFallback:
    """What every provider does unless its plugin says otherwise."""

    @hookimpl(trylast=True)
    def resolve_endpoint(self, call: Call) -> Endpoint:
        return openai.resolve_endpoint(call)

    @hookimpl(trylast=True)
    def transform_request(self, call: Call, endpoint: Endpoint) -> WireRequest:
        return openai.build_request(call, endpoint)

    @hookimpl(trylast=True)
    def transform_response(self, call: Call, response: WireResponse, step: Step) -> Dict[str, Any]:
        return openai.parse_response(call, response)

    @hookimpl(trylast=True)
    def stream_decoder(self, call: Call, head: WireResponse) -> StreamDecoder:
        if call.info.stream_framing == "custom":
            raise ConfigError(
                f"provider {call.provider!r} declares stream_framing='custom' but implements no stream_decoder hook"
            )
        return decoder_for(call.info.stream_framing)

    @hookimpl(trylast=True)
    def parse_stream_chunk(self, call: Call, event: StreamEvent) -> Any:
        return openai.parse_chunk(call, event)

    @hookimpl(trylast=True)
    def map_error(self, call: Call, response: WireResponse) -> ProviderError:
        return openai.map_error(call, response)

    @hookimpl(trylast=True)
    def encode_response(self, call: Call, result: Dict[str, Any]) -> WireResponse:
        return openai.encode_response(call, result)

    @hookimpl(trylast=True)
    def encode_stream(self, call: Call, chunks: List[Dict[str, Any]]) -> bytes:
        return openai.encode_stream(call, chunks)

    @hookimpl(trylast=True)
    def encode_error(self, call: Call, status: int, message: str, code: Optional[str]) -> WireResponse:
        return openai.encode_error(call, status, message, code)
