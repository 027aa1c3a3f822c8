"""hosted_vllm over loopback HTTP, against the shapes vLLM servers send."""

from __future__ import annotations

import asyncio
import base64
import copy

import pytest

import modelport
from modelport import errors

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def _no_vllm_env(monkeypatch):
    monkeypatch.delenv("HOSTED_VLLM_API_BASE", raising=False)
    monkeypatch.delenv("HOSTED_VLLM_API_KEY", raising=False)


def test_needs_a_base_url():
    with pytest.raises(errors.ConfigError, match="HOSTED_VLLM_API_BASE") as info:
        modelport.completion("hosted_vllm/m", USER)
    assert "api_base" in str(info.value)


@pytest.mark.parametrize("suffix", ["/v1", "", "/v1/", "/"])
def test_one_base_serves_every_operation(upstream, suffix):
    base = upstream.url + suffix
    modelport.completion("hosted_vllm/facebook/opt-125m", USER, api_base=base)
    modelport.text_completion("vllm/facebook/opt-125m", "x", api_base=base)
    modelport.embedding("hosted_vllm/bge", "x", api_base=base)
    upstream.reply(json={"id": "r", "model": "bge", "results": [], "usage": {"total_tokens": 1}})
    modelport.rerank("hosted_vllm/bge", "q", ["d"], api_base=base)
    upstream.reply(json={"text": "hello"})
    modelport.transcription("hosted_vllm/whisper", b"RIFF", api_base=base)
    assert [r.path for r in upstream.requests] == [
        "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/rerank", "/v1/audio/transcriptions",
    ]  # fmt: skip
    assert upstream.requests[0].json["model"] == "facebook/opt-125m"


def test_env_base_and_optional_key(upstream, monkeypatch):
    monkeypatch.setenv("HOSTED_VLLM_API_BASE", upstream.base_url)
    modelport.completion("hosted_vllm/m", USER)
    assert "authorization" not in upstream.last.headers
    monkeypatch.setenv("HOSTED_VLLM_API_KEY", "vllm-key-123")
    modelport.completion("hosted_vllm/m", USER)
    assert upstream.last.headers["authorization"] == "Bearer vllm-key-123"


def test_chat_stream_with_usage_sync_and_async(upstream):
    chunks = list(modelport.completion("vllm/m", USER, api_base=upstream.base_url, stream=True, stream_options={"include_usage": True}))
    assert modelport.stream_to_completion(chunks).usage.total_tokens > 0

    async def run():
        stream = await modelport.acompletion("vllm/m", USER, api_base=upstream.base_url, stream=True)
        return modelport.stream_to_completion([c async for c in stream])

    assert asyncio.run(run()).choices[0].message.content == "You said: hi"


def test_extras_and_reasoning_effort_are_top_level(upstream):
    modelport.completion(
        "hosted_vllm/m", USER, api_base=upstream.base_url, reasoning_effort="low", top_k=20, min_p=0.1,
        repetition_penalty=1.1, stop_token_ids=[7], chat_template_kwargs={"enable_thinking": False},
        structured_outputs={"choice": ["a", "b"]},
    )  # fmt: skip
    sent = upstream.last.json
    for key, value in {
        "reasoning_effort": "low", "top_k": 20, "min_p": 0.1, "repetition_penalty": 1.1, "stop_token_ids": [7],
        "chat_template_kwargs": {"enable_thinking": False}, "structured_outputs": {"choice": ["a", "b"]},
    }.items():  # fmt: skip
        assert sent[key] == value


def test_tool_choice_only_with_tools(upstream):
    modelport.completion("hosted_vllm/m", USER, api_base=upstream.base_url, tool_choice="auto")
    assert "tool_choice" not in upstream.last.json
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    modelport.completion("hosted_vllm/m", USER, api_base=upstream.base_url, tool_choice="auto", tools=tools)
    assert upstream.last.json["tool_choice"] == "auto" and upstream.last.json["tools"] == tools


def test_video_and_file_parts(upstream):
    content = [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": "https://x.invalid/i.png"}},
        {"type": "video_url", "video_url": {"url": "https://x.invalid/v.mp4"}},
        {"type": "file", "file": {"file_id": "https://x.invalid/f.mp4"}},
        {"type": "file", "file": {"file_data": "data:video/mp4;base64,AAAA"}},
    ]
    modelport.completion("hosted_vllm/m", [{"role": "user", "content": content}], api_base=upstream.base_url)
    assert upstream.last.json["messages"][0]["content"] == content[:3] + [
        {"type": "video_url", "video_url": {"url": "https://x.invalid/f.mp4"}},
        {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}},
    ]


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_in_full_responses(upstream, samples, field):
    payload = copy.deepcopy(samples["vllm_nonstream_response_modeldump"]["payload"])
    message = payload["choices"][0]["message"]
    message.pop("reasoning_content")
    message[field] = "thinking..."
    upstream.reply(json=payload)
    response = modelport.completion("hosted_vllm/Qwen/Qwen3-8B", USER, api_base=upstream.base_url)
    assert response.choices[0].message.reasoning_content == "thinking..."
    assert response.choices[0].message.reasoning == "thinking..."
    assert response.choices[0].extra["stop_reason"] is None and response.extra["kv_transfer_params"] is None


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_in_stream_deltas(upstream, samples, field):
    head = {k: v for k, v in samples["vllm_stream_reasoning_chunk_v0_8"]["payload"].items() if k != "choices"}
    deltas = [{field: "Let"}, {field: " me think"}, {"content": "42"}]
    events = [{**head, "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": None}]} for d in deltas]
    events.append({**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop", "stop_reason": None}]})
    upstream.reply(sse=events)
    chunks = list(modelport.completion("vllm/qwen-14b", USER, api_base=upstream.base_url, stream=True))
    assert chunks[0].choices[0].delta.reasoning == "Let"
    full = modelport.stream_to_completion(chunks)
    assert full.choices[0].message.reasoning_content == "Let me think"
    assert full.choices[0].message.content == "42"
    assert full.choices[0].extra["stop_reason"] is None


def test_sample_stream_chunk_passes_intact(upstream, samples):
    payload = samples["vllm_stream_chunk_v0_5"]["payload"]
    upstream.reply(sse=[payload])
    chunks = list(modelport.completion("vllm/Qwen-v", USER, api_base=upstream.base_url, stream=True))
    assert [c.to_dict() for c in chunks] == [payload]


@pytest.mark.parametrize("sample", ["vllm_error_new_format", "vllm_error_old_format"])
def test_both_error_formats(upstream, samples, sample):
    payload = samples[sample]["payload"]
    upstream.reply(status=400, json=payload)
    with pytest.raises(errors.BadRequestError) as info:
        modelport.completion("hosted_vllm/m", USER, api_base=upstream.base_url)
    inner = payload.get("error", payload)
    assert info.value.message == inner["message"]
    assert info.value.code == 400 and info.value.type == "BadRequestError"


def test_error_inside_a_stream(upstream, samples):
    upstream.reply(sse=[samples["vllm_error_new_format"]["payload"]])
    with pytest.raises(errors.BadRequestError, match="maximum context length"):
        list(modelport.completion("hosted_vllm/m", USER, api_base=upstream.base_url, stream=True))


def test_embeddings_float_and_base64(upstream):
    floats = modelport.embedding("hosted_vllm/bge", ["a", "b"], api_base=upstream.base_url, dimensions=3)
    assert [len(d.embedding) for d in floats.data] == [3, 3]
    encoded = modelport.embedding("hosted_vllm/bge", "a", api_base=upstream.base_url, encoding_format="base64")
    assert len(base64.b64decode(encoded.data[0].embedding)) == 8 * 4
    assert upstream.last.json == {"model": "bge", "input": "a", "encoding_format": "base64"}


def test_rerank_sync_and_async(upstream):
    reply = {
        "id": "rerank-1", "model": "bge-reranker",
        "usage": {"total_tokens": 12},
        "results": [
            {"index": 1, "document": {"text": "b"}, "relevance_score": 0.2},
            {"index": 0, "document": {"text": "a"}, "relevance_score": 0.9},
        ],
    }  # fmt: skip
    upstream.reply(json=reply)
    result = modelport.rerank("hosted_vllm/bge-reranker", "which?", ["a", "b"], top_n=2, api_base=upstream.base_url)
    assert upstream.last.json == {"model": "bge-reranker", "query": "which?", "documents": ["a", "b"], "top_n": 2}
    assert [(r.index, r.document.text, r.relevance_score) for r in result.results] == [(0, "a", 0.9), (1, "b", 0.2)]
    assert result.usage.total_tokens == 12
    upstream.reply(json=reply)
    result = asyncio.run(modelport.arerank("vllm/bge-reranker", "which?", ["a", "b"], api_base=upstream.base_url))
    assert result.results[0].index == 0


@pytest.mark.parametrize(
    "fmt,reply",
    [
        ("json", {"json": {"text": "hello world"}}),
        ("verbose_json", {"json": {"text": "hello world", "language": "en", "duration": 1.5, "segments": [{"id": 0, "text": "hello world"}]}}),
        ("text", {"body": "hello world\n"}),
        ("srt", {"body": "1\n00:00:00,000 --> 00:00:01,500\nhello world\n"}),
        ("vtt", {"body": "WEBVTT\n\n00:00.000 --> 00:01.500\nhello world\n"}),
    ],
)  # fmt: skip
def test_transcription_formats(upstream, tmp_path, fmt, reply):
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF....WAVEfmt ")
    upstream.reply(**reply)
    with open(audio, "rb") as handle:
        result = modelport.transcription(
            "hosted_vllm/whisper", handle, language="en", prompt="names", response_format=fmt, temperature=0.2,
            api_base=upstream.base_url,
        )  # fmt: skip
    sent = upstream.last
    assert sent.form == {"model": "whisper", "language": "en", "prompt": "names", "response_format": fmt, "temperature": "0.2"}
    assert sent.files["file"][:2] == ("a.wav", b"RIFF....WAVEfmt ")
    assert isinstance(result, modelport.Transcription)
    assert "hello world" in result.text
    if fmt == "verbose_json":
        assert result.language == "en" and result.segments[0]["text"] == "hello world"


def test_async_transcription_from_bytes(upstream):
    upstream.reply(json={"text": "async"})
    result = asyncio.run(modelport.atranscription("hosted_vllm/whisper", ("clip.mp3", b"ID3"), api_base=upstream.base_url))
    assert result.text == "async"
    assert upstream.last.files["file"] == ("clip.mp3", b"ID3", "audio/mpeg")


def test_transcription_list_fields_are_repeated(upstream):
    upstream.reply(json={"text": "t", "words": [{"word": "t", "start": 0, "end": 1}]})
    for run in (lambda: modelport.transcription("hosted_vllm/whisper", b"RIFF", api_base=upstream.base_url,
                                                 response_format="verbose_json", timestamp_granularities=["word", "segment"]),
                lambda: asyncio.run(modelport.atranscription("hosted_vllm/whisper", b"RIFF", api_base=upstream.base_url,
                                                             response_format="verbose_json", timestamp_granularities=["word", "segment"]))):  # fmt: skip
        result = run()
        assert upstream.last.form_lists["timestamp_granularities[]"] == ["word", "segment"]
        assert result.words == [{"word": "t", "start": 0, "end": 1}]
        upstream.reply(json={"text": "t", "words": [{"word": "t", "start": 0, "end": 1}]})
