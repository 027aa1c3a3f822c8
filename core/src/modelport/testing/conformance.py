"""``ProviderConformance``: the property tests every provider plugin must pass.

    # conftest.py
    pytest_plugins = ["modelport.testing.plugin"]

    # test_acme.py
    from modelport.testing import ProviderConformance

    class TestAcme(ProviderConformance):
        provider = "acme"

The provider's ``provider_info().operations`` decide which tests exist: tests for an
operation the provider lacks are removed from the subclass, not skipped.

The properties run through the plugin's own code: OpenAI-shaped values are encoded to
the provider's wire format with its ``encode_response`` / ``encode_stream`` /
``encode_error`` hooks (the OpenAI encoders when it speaks OpenAI), cut at random byte
boundaries, decoded with its ``stream_decoder`` and ``parse_stream_chunk``, and must
come back equal. A provider whose hooks deliberately change payloads declares it by
overriding ``expected_request`` / ``expected_response`` / ``expected_chunk`` (with the
documented mapping, written independently of the plugin's code), and
``accepts_request`` for values it rejects before sending (those must raise
``InvalidRequestError``).
"""

from __future__ import annotations

import copy
import os
from typing import Any, ClassVar, Dict, Iterator, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .. import errors
from .._engine import ChunkParser
from .._registry import registry
from .._streaming import Stream
from ..provider import OPERATIONS, Call, ProviderInfo, Step, WireResponse, openai, stream_to_completion
from ..types import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Completion, EmbeddingResponse
from . import strategies as mst

__all__ = ["ProviderConformance", "EXAMPLES"]

#: Examples per property (``MODELPORT_CONFORMANCE_EXAMPLES`` overrides).
EXAMPLES = int(os.environ.get("MODELPORT_CONFORMANCE_EXAMPLES", "40"))
# Every subclass runs the same inherited @given methods; that is the design, so the
# "differing executors" check (one method, several classes) does not apply.
_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.differing_executors],
)
_OPERATION_TESTS = {
    "chat": (
        "test_chat_request_round_trips_as_types",
        "test_chat_request_survives_transform_request",
        "test_chat_response_survives_transform_response",
        "test_chat_stream_rebuilds_the_response",
        "test_mock_completion_through_the_public_api",
    ),
    "text_completion": ("test_text_completion_response_survives_transform_response",),
    "embedding": ("test_embedding_response_survives_transform_response",),
}
_MODEL = "conformance-model"


class _Handle:
    """A stream's body delivered in the given pieces, as the transport would."""

    def __init__(self, pieces: List[bytes]) -> None:
        self.head = WireResponse(200, {}, b"")
        self._pieces = pieces

    def iter_bytes(self) -> Iterator[bytes]:
        return iter(self._pieces)

    def close(self) -> None:
        return None


class ProviderConformance:
    """Subclass, set ``provider``, and the properties below run against that provider."""

    #: The provider name (or alias) under test.
    provider: ClassVar[str] = ""
    #: Base URL and key put on every generated call (no request is sent).
    api_base: ClassVar[str] = "http://127.0.0.1:1/v1"
    api_key: ClassVar[str] = "sk-conformance"
    #: Provider options (``ProviderInfo.options``) for every generated call.
    call_options: ClassVar[Dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.provider:
            return
        info = registry.hooks(cls.provider).info
        for operation, names in _OPERATION_TESTS.items():
            if operation not in info.operations:
                for name in names:
                    setattr(cls, name, None)  # not applicable: pytest collects nothing

    # -- declared mappings (override where the provider documents one) ------------------

    def expected_request(self, body: Dict[str, Any]) -> Dict[str, Any]:
        """The wire body the provider sends for the OpenAI chat ``body``."""
        return body

    def expected_response(self, body: Dict[str, Any]) -> Dict[str, Any]:
        """The OpenAI result the provider returns for the upstream ``body``."""
        return body

    #: Chat responses the properties generate; a provider whose wire carries one answer
    #: sets ``strategies.chat_responses(max_choices=1)``.
    chat_response_strategy: ClassVar[Any] = mst.chat_responses()

    def accepts_request(self, body: Dict[str, Any]) -> bool:
        """False for requests the provider rejects before sending (documented ranges)."""
        return True

    # -- helpers -----------------------------------------------------------------------

    @property
    def hooks(self) -> Any:
        return registry.hooks(self.provider)

    def call(self, operation: str, body: Dict[str, Any]) -> Call:
        info = self.hooks.info
        return Call(
            operation=operation,
            provider=info.name,
            model=_MODEL,
            body=body,
            info=info,
            stream=bool(body.get("stream")),
            api_key=self.api_key,
            api_base=self.api_base,
            options=dict(self.call_options),
        )

    def supported(self, body: Dict[str, Any], operation: str = "chat") -> Dict[str, Any]:
        """``body`` without the OpenAI parameters the provider's ``params`` leaves out, as
        the client sends it with ``drop_params=True`` (without it, the client refuses them)."""
        params = self.hooks.info.params
        if params is None:
            return body
        known, required = openai.PARAMS.get(operation, frozenset()), openai.REQUIRED_INPUTS.get(operation, ())
        return {k: v for k, v in body.items() if k not in known or k in params or k == "model" or k in required}

    def respond(self, operation: str, result: Dict[str, Any]) -> Any:
        """``result`` encoded by the provider's ``encode_response``, decoded by its ``transform_response``."""
        call = self.call(operation, {"model": _MODEL})
        response = self.hooks.encode_response(call, copy.deepcopy(result))
        return self.hooks.transform_response(call, response, Step())

    def respond_error(self, status: int, message: str, code: str) -> Any:
        """An error encoded by the provider's ``encode_error``, typed by its ``map_error``."""
        call = self.call("chat", {"model": _MODEL})
        return self.hooks.map_error(call, self.hooks.encode_error(call, status, message, code))

    # -- properties --------------------------------------------------------------------

    def test_provider_info(self) -> None:
        info = self.hooks.info
        assert isinstance(info, ProviderInfo)
        assert self.provider in (info.name, *info.aliases)
        assert info.operations and set(info.operations) <= set(OPERATIONS)

    @_settings
    @given(body=mst.chat_requests())
    def test_chat_request_round_trips_as_types(self, body: Dict[str, Any]) -> None:
        body = {"model": _MODEL, **body}
        assert ChatCompletionRequest.from_dict(copy.deepcopy(body)).to_dict() == body

    @_settings
    @given(body=mst.chat_requests())
    def test_chat_request_survives_transform_request(self, body: Dict[str, Any]) -> None:
        body = self.supported({"model": _MODEL, **body})
        call = self.call("chat", copy.deepcopy(body))
        if not self.accepts_request(body):
            with pytest.raises(errors.InvalidRequestError):
                self.hooks.transform_request(call, self.hooks.resolve_endpoint(call))
            return
        request = self.hooks.transform_request(call, self.hooks.resolve_endpoint(call))
        assert request.method == "POST" and request.url.startswith("http")
        assert request.json == self.expected_request(copy.deepcopy(body))

    @_settings
    @given(data=st.data())
    def test_chat_response_survives_transform_response(self, openai_schema_validator: Any, data: Any) -> None:
        body = data.draw(self.chat_response_strategy, label="response")
        self.check_response("chat", body, ChatCompletion, "CreateChatCompletionResponse", openai_schema_validator)

    @_settings
    @given(data=st.data())
    def test_chat_stream_rebuilds_the_response(self, openai_schema_validator: Any, data: Any) -> None:
        response = data.draw(self.chat_response_strategy, label="response")
        chunks = data.draw(mst.chunk_stream(response), label="chunks")
        call = self.call("chat", {"model": _MODEL, "messages": [{"role": "user", "content": "x"}], "stream": True})
        hooks = self.hooks
        raw = hooks.encode_stream(call, copy.deepcopy(chunks))
        pieces = mst.split_bytes(raw, data.draw(st.lists(st.integers(0, len(raw)), max_size=12), label="cuts"))
        head = WireResponse(200, {"content-type": "text/event-stream"}, b"")
        parser = ChunkParser(hooks.stream_decoder(call, head), hooks.parse_stream_chunk, ChatCompletionChunk.from_dict, call)
        typed = list(Stream(_Handle(pieces), parser, call))
        assert [c.to_dict() for c in typed] == [self.expected_chunk(c) for c in chunks]
        for chunk in typed:
            openai_schema_validator(chunk.to_dict(), "CreateChatCompletionStreamResponse")
        rebuilt = stream_to_completion(typed).to_dict()
        assert rebuilt == self.expected_response(copy.deepcopy(response))
        openai_schema_validator(rebuilt, "CreateChatCompletionResponse")

    def expected_chunk(self, chunk: Dict[str, Any]) -> Dict[str, Any]:
        """The OpenAI chunk the provider yields for the upstream ``chunk``."""
        return chunk

    def test_mock_completion_through_the_public_api(self) -> None:
        from .. import Client

        with Client(api_key=self.api_key, api_base=self.api_base) as client:
            options = dict(self.call_options)
            messages = [{"role": "user", "content": "ping"}]
            result = client.completion(f"{self.provider}/{_MODEL}", messages, mock_response="pong", **options)
            assert result.choices[0].message.content == "pong"
            chunks = list(client.completion(f"{self.provider}/{_MODEL}", messages, mock_response="p o n g", stream=True, **options))
            assert stream_to_completion(chunks).choices[0].message.content == "p o n g"

    @_settings
    @given(
        status=st.sampled_from([400, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504]),
        message=st.lists(st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8), min_size=1, max_size=5).map(" ".join),
        code=st.from_regex(r"E[0-9]{3}", fullmatch=True),
    )
    def test_error_bodies_map_to_documented_classes(self, status: int, message: str, code: str) -> None:
        mapped: Any = self.respond_error(status, message, code)
        expected = errors.error_class_for_status(status)
        assert isinstance(mapped, expected), f"{type(mapped).__name__} is not a {expected.__name__}"
        assert mapped.status == status and message in mapped.message
        assert mapped.retryable == (status in (409, 429) or status >= 500)

    def check_response(self, operation: str, body: Dict[str, Any], result_type: Any, schema_root: str, validate: Any) -> None:
        """``body`` through ``transform_response``: unchanged, lossless as types, schema-valid."""
        result = self.respond(operation, body)
        assert result == self.expected_response(copy.deepcopy(body))
        assert result_type.from_dict(copy.deepcopy(result)).to_dict() == result
        validate(result, schema_root)

    @_settings
    @given(body=mst.text_completion_responses)
    def test_text_completion_response_survives_transform_response(self, openai_schema_validator: Any, body: Dict[str, Any]) -> None:
        self.check_response("text_completion", body, Completion, "CreateCompletionResponse", openai_schema_validator)

    @_settings
    @given(body=mst.embedding_responses)
    def test_embedding_response_survives_transform_response(self, openai_schema_validator: Any, body: Dict[str, Any]) -> None:
        self.check_response("embedding", body, EmbeddingResponse, "CreateEmbeddingResponse", openai_schema_validator)
