"""Typed objects: lossless round-trips, typed access, OpenAI schema validity."""

from __future__ import annotations

import copy

import pytest

import modelport
from modelport.types import (
    NOTSET,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    EmbeddingResponse,
    FilePart,
    ImageURLPart,
    InputAudioPart,
    Message,
    TextPart,
    VideoURLPart,
)

REQUEST = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is in these?"},
                {"type": "image_url", "image_url": {"url": "https://x.invalid/a.png", "detail": "high"}},
                {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                {"type": "video_url", "video_url": {"url": "https://x.invalid/v.mp4"}},
                {"type": "file", "file": {"file_id": "file-1"}},
                {"type": "brand_new_part", "payload": {"x": 1}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": True}}],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "response_format": {"type": "json_object"},
    "stream": True,
    "stream_options": {"include_usage": True},
    "temperature": 0.2,
    "top_k": 20,
    "chat_template_kwargs": {"enable_thinking": False},
}


def test_request_round_trips_with_every_part_kind_and_extras():
    request = ChatCompletionRequest.from_dict(copy.deepcopy(REQUEST))
    assert request.to_dict() == REQUEST
    parts = request.messages[1].content
    assert [type(p) for p in parts[:5]] == [TextPart, ImageURLPart, InputAudioPart, VideoURLPart, FilePart]
    assert parts[1].image_url.detail == "high"
    assert parts[5].type == "brand_new_part" and parts[5].extra == {"payload": {"x": 1}}
    assert request.extra == {"top_k": 20, "chat_template_kwargs": {"enable_thinking": False}}
    assert request.messages[2].tool_calls[0].function.name == "f"


def test_absent_and_null_are_kept_apart():
    assert Message.from_dict({"role": "assistant"}).content is NOTSET
    assert Message.from_dict({"role": "assistant", "content": None}).content is None
    assert Message.from_dict({"role": "assistant"}).to_dict() == {"role": "assistant"}
    assert Message.from_dict({"role": "assistant", "content": None}).to_dict() == {"role": "assistant", "content": None}


def test_provider_samples_round_trip(samples):
    kinds = {
        "CreateChatCompletionStreamResponse": ChatCompletionChunk,
        "CreateChatCompletionResponse": ChatCompletion,
    }
    checked = 0
    for sample in samples.values():
        cls = kinds.get(sample["root"])
        if cls is None:
            continue
        payload = copy.deepcopy(sample["payload"])
        assert cls.from_dict(payload).to_dict() == sample["payload"], sample["name"]
        checked += 1
    assert checked >= 5


def test_vllm_response_extras_are_reachable(samples):
    response = ChatCompletion.from_dict(samples["vllm_nonstream_response_modeldump"]["payload"])
    assert response.choices[0].extra["stop_reason"] is None
    assert response.extra["kv_transfer_params"] is None
    assert response.choices[0].message.get("annotations") is None
    assert response.choices[0].message.tool_calls == []


def test_reasoning_reads_either_field():
    assert Message.from_dict({"role": "assistant", "reasoning_content": "a"}).reasoning == "a"
    assert Message.from_dict({"role": "assistant", "reasoning": "b"}).reasoning == "b"
    assert Message.from_dict({"role": "assistant"}).reasoning is None


def test_constructed_objects_dump_only_what_was_set():
    message = Message(role="user", content=[TextPart(text="hi")])
    assert message.to_dict() == {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    assert message.text == "hi"
    assert "NOTSET" not in repr(message)


def test_from_dict_rejects_non_objects():
    with pytest.raises(TypeError, match="expects a JSON object"):
        ChatCompletion.from_dict(["not", "a", "dict"])


def test_other_types_round_trip():
    completion = {
        "id": "c", "object": "text_completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "text": "hi", "logprobs": None, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }  # fmt: skip
    assert Completion.from_dict(copy.deepcopy(completion)).to_dict() == completion
    embeddings = {
        "object": "list", "model": "e",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}, {"object": "embedding", "index": 1, "embedding": "AAAA"}],
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }  # fmt: skip
    assert EmbeddingResponse.from_dict(copy.deepcopy(embeddings)).to_dict() == embeddings
    usage = {
        "prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 1}, "completion_tokens_details": {"reasoning_tokens": 2, "new": 1},
    }  # fmt: skip
    parsed = modelport.Usage.from_dict(copy.deepcopy(usage))
    assert parsed.completion_tokens_details.reasoning_tokens == 2
    assert parsed.to_dict() == usage


def test_mock_outputs_validate_against_openai_schema(validate):
    response = modelport.completion("openai/m", [{"role": "user", "content": "hi"}], mock_response="hello")
    validate(response.to_dict(), "CreateChatCompletionResponse")
    chunks = list(
        modelport.completion(
            "openai/m", [{"role": "user", "content": "hi"}], mock_response="a b c", stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    for chunk in chunks:
        validate(chunk.to_dict(), "CreateChatCompletionStreamResponse")
    rebuilt = modelport.stream_to_completion(chunks)
    validate(rebuilt.to_dict(), "CreateChatCompletionResponse")
    assert rebuilt.choices[0].message.content == "a b c"
    assert rebuilt.usage.total_tokens == 2
