"""What LiteLLM users rely on, over loopback HTTP: typed context-window and content-policy
errors (and the config fallbacks they trigger), vLLM / DashScope / ModelScope request
translation (tools, file parts, Anthropic-style thinking, images), checked rerank
answers, full-URL api_base values, install hints, and statements of
docs/migrating-from-litellm.md that are behaviour.
"""

from __future__ import annotations

import asyncio
import pathlib

import pytest

import modelport
from modelport import errors
from modelport.routing import load_config
from modelport.testing.upstream import FakeUpstream

USER = [{"role": "user", "content": "hi"}]
DS_KEY = "sk-dashscope-parity-1"
DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs" / "migrating-from-litellm.md"


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    for name in ("HOSTED_VLLM_API_BASE", "HOSTED_VLLM_API_KEY", "DASHSCOPE_REGION", "DASHSCOPE_API_BASE", "MODELSCOPE_API_BASE",
                 "MODELSCOPE_API_KEY", "MODELSCOPE_SDK_TOKEN", "OPENAI_BASE_URL", "OPENAI_API_BASE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DASHSCOPE_API_KEY", DS_KEY)
    monkeypatch.setenv("MODELSCOPE_TOKEN", "ms-parity-token")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-parity")


def ds_base(upstream):
    return upstream.url + "/compatible-mode/v1"


def thinking_stream(model="m"):
    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model}
    deltas = [{"role": "assistant", "reasoning_content": "Let me"}, {"reasoning_content": " think."}, {"content": "Four"}]
    events = [{**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({**head, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}})
    return events


# --- 1. ContextWindowExceededError and ContentFilterError -----------------------------------------

OPENAI_CONTEXT = {
    "error": {
        "message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.",
        "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded",
    }
}  # fmt: skip
VLLM_DECODER = {"error": {"message": "The decoder prompt (length 17772) is longer than the maximum model length of 16384.", "type": "BadRequestError", "param": None, "code": 400}}
DS_COMPATIBLE = {
    "error": {"code": "invalid_parameter_error", "param": None, "type": "invalid_request_error",
              "message": "<400> InternalError.Algo.InvalidParameter: Range of input length should be [1, 129024]"},
    "id": "chatcmpl-1", "request_id": "req-ds-1",
}  # fmt: skip
DS_NATIVE = {"code": "InvalidParameter", "message": "Range of input length should be [1, 6000]", "request_id": "req-ds-2"}


def test_openai_context_length_exceeded_is_typed_and_not_retried(upstream):
    upstream.reply(status=400, json=OPENAI_CONTEXT)
    with pytest.raises(errors.ContextWindowExceededError) as info:
        modelport.completion("openai/gpt-4o-mini", USER, api_base=upstream.base_url, num_retries=3)
    error = info.value
    assert isinstance(error, errors.BadRequestError) and error.status == 400 and error.code == "context_length_exceeded"
    assert "maximum context length" in error.message and len(upstream.requests) == 1


def test_max_retries_is_num_retries_and_never_sent(upstream):
    """The OpenAI SDK's (and LiteLLM's) ``max_retries`` sets the retries; it is not a body field."""
    upstream.reply(status=503, json={"error": {"message": "busy"}}, times=5)
    with pytest.raises(errors.ServiceUnavailableError):
        modelport.completion("openai/m", USER, api_base=upstream.base_url, max_retries=1, timeout=5)
    assert len(upstream.requests) == 2 and all("max_retries" not in r.json for r in upstream.requests)
    with pytest.raises(errors.InvalidRequestError, match="disagree") as info:
        modelport.completion("openai/m", USER, api_base=upstream.base_url, max_retries=1, num_retries=3)
    assert info.value.param == "max_retries" and len(upstream.requests) == 2


@pytest.mark.parametrize("code", ["context_length_exceeded", None])
def test_openai_context_length_inside_a_stream(upstream, code):
    upstream.reply(sse=[{"error": {"message": "This model's maximum context length is 8192 tokens.", "type": "invalid_request_error", "code": code}}])
    with pytest.raises(errors.ContextWindowExceededError) as info:
        list(modelport.completion("openai/gpt-4o-mini", USER, api_base=upstream.base_url, stream=True))
    assert info.value.status == 400


@pytest.mark.parametrize("code", ["content_filter", "content_policy_violation"])
def test_openai_content_filter_codes(upstream, code):
    upstream.reply(status=400, json={"error": {"message": "flagged", "type": "invalid_request_error", "code": code}})
    with pytest.raises(modelport.ContentPolicyViolationError) as info:
        modelport.completion("openai/gpt-4o-mini", USER, api_base=upstream.base_url)
    assert isinstance(info.value, errors.ContentFilterError) and info.value.code == code
    upstream.reply(sse=[{"error": {"message": "flagged", "code": code}}])
    with pytest.raises(errors.ContentFilterError):
        list(modelport.completion("openai/gpt-4o-mini", USER, api_base=upstream.base_url, stream=True))


@pytest.mark.parametrize("sample", ["vllm_error_new_format", "vllm_error_old_format"])
def test_vllm_context_length_both_envelopes(upstream, samples, sample):
    payload = samples[sample]["payload"]
    upstream.reply(status=400, json=payload)
    with pytest.raises(errors.ContextWindowExceededError) as info:
        modelport.completion("hosted_vllm/m", USER, api_base=upstream.base_url)
    assert info.value.message == payload.get("error", payload)["message"] and info.value.code == 400
    upstream.reply(sse=[payload])  # the same object inside a stream
    with pytest.raises(errors.ContextWindowExceededError):
        list(modelport.completion("vllm/m", USER, api_base=upstream.base_url, stream=True))
    upstream.reply(status=400, json=VLLM_DECODER)
    with pytest.raises(errors.ContextWindowExceededError, match="maximum model length"):
        modelport.text_completion("hosted_vllm/m", "x", api_base=upstream.base_url)


def test_an_ordinary_400_stays_bad_request(upstream):
    upstream.reply(status=400, json={"error": {"message": "temperature must be at most 2", "type": "BadRequestError", "code": 400}})
    with pytest.raises(errors.BadRequestError) as info:
        modelport.completion("hosted_vllm/m", USER, api_base=upstream.base_url)
    assert type(info.value) is errors.BadRequestError


@pytest.mark.parametrize("payload", [DS_COMPATIBLE, DS_NATIVE], ids=["compatible-mode", "native"])
def test_dashscope_range_of_input_length(upstream, payload):
    upstream.reply(status=400, json=payload)
    with pytest.raises(errors.ContextWindowExceededError, match="Range of input length") as info:
        modelport.completion("dashscope/qwen-plus", USER, api_base=ds_base(upstream))
    assert info.value.request_id == payload["request_id"] and len(upstream.requests) == 1


def test_dashscope_range_of_input_length_inside_a_stream(upstream):
    upstream.reply(sse=['event:error\ndata:{"code":"InvalidParameter","message":"Range of input length should be [1, 983616]","request_id":"r"}\n\n'], done=False)
    with pytest.raises(errors.ContextWindowExceededError):
        list(modelport.completion("dashscope/qwen-plus", USER, api_base=ds_base(upstream), stream=True))


def test_dashscope_content_inspection_is_still_content_filter(upstream):
    upstream.reply(status=400, json={"error": {"code": "data_inspection_failed", "message": "Input data may contain inappropriate content."}})
    with pytest.raises(errors.ContentFilterError):
        modelport.completion("dashscope/qwen-plus", USER, api_base=ds_base(upstream))


@pytest.mark.parametrize(
    "payload",
    [{"error": {"code": "invalid_parameter_error", "message": "Range of input length should be [1, 30720]", "type": "invalid_request_error"}, "request_id": "ms-1"},
     {"errors": {"message": "This model's maximum context length is 32768 tokens. However, you requested 40000 tokens.", "request_id": "ms-2"}}],
    ids=["error", "errors"],
)  # fmt: skip
def test_modelscope_context_length(upstream, payload):
    upstream.reply(status=400, json=payload)
    with pytest.raises(errors.ContextWindowExceededError) as info:
        modelport.completion("modelscope/Qwen/Qwen3-8B", USER, api_base=upstream.base_url)
    assert info.value.request_id in ("ms-1", "ms-2")


@pytest.mark.parametrize(
    "primary,reply,kind",
    [
        ("openai/small", {"status": 400, "json": OPENAI_CONTEXT}, "context_window_fallbacks"),
        ("hosted_vllm/small", {"status": 400, "json": {"object": "error", "message": "This model's maximum context length is 2048 tokens.", "type": "BadRequestError", "code": 400}}, "context_window_fallbacks"),
        ("dashscope/small", {"status": 400, "json": DS_NATIVE}, "context_window_fallbacks"),
        ("openai/small", {"status": 400, "json": {"error": {"message": "flagged", "code": "content_policy_violation"}}}, "content_policy_fallbacks"),
        ("dashscope/small", {"status": 400, "json": {"error": {"code": "data_inspection_failed", "message": "inappropriate"}}}, "content_policy_fallbacks"),
    ],
)  # fmt: skip
def test_config_fallbacks_serve_typed_errors(upstream, primary, reply, kind):
    with FakeUpstream() as spare:
        base = ds_base(upstream) if primary.startswith("dashscope/") else upstream.base_url
        upstream.reply(**reply)
        config = {
            "model_list": [
                {"model_name": "small", "litellm_params": {"model": primary, "api_base": base, "api_key": "k-small"}},
                {"model_name": "big", "litellm_params": {"model": "openai/big", "api_base": spare.base_url, "api_key": "k-big"}},
            ],
            "litellm_settings": {kind: [{"small": ["big"]}], "num_retries": 0},
        }
        with modelport.Client.from_config(config) as client:
            result = client.completion("small", [{"role": "user", "content": "a long prompt"}])
        assert result.choices[0].message.content == "You said: a long prompt"
        assert len(upstream.requests) == 1 and upstream.last.json["model"] == "small"
        assert [r.json["model"] for r in spare.requests] == ["big"]
        assert spare.last.headers["authorization"] == "Bearer k-big"


# --- 2. hosted_vllm: tools and file parts -----------------------------------------------------------


def test_vllm_sends_no_empty_tools_nor_orphan_tool_choice(upstream):
    modelport.completion("hosted_vllm/m", USER, api_base=upstream.base_url, tools=[], tool_choice="auto")
    assert "tools" not in upstream.last.json and "tool_choice" not in upstream.last.json
    modelport.completion("hosted_vllm/m", USER, api_base=upstream.base_url, tools=[])
    assert "tools" not in upstream.last.json


@pytest.mark.parametrize(
    "file,video",
    [
        ({"file_data": "data:video/mp4;base64,AAAA"}, True),
        ({"file_data": "data:video/webm;base64,AAAA", "filename": "a.webm"}, True),
        ({"file_id": "https://x.invalid/clip.MOV?sig=abc"}, True),
        ({"file_id": "https://x.invalid/a.mkv"}, True),
        ({"file_id": "https://x.invalid/a.avi"}, True),
        ({"file_id": "https://x.invalid/a.webm#t=3"}, True),
        ({"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "paper.pdf"}, False),
        ({"file_data": "data:image/png;base64,iVBORw0KGgo=", "filename": "clip.mp4"}, False),  # the media type decides
        ({"file_id": "file-abc123"}, False),
        ({"file_id": "https://x.invalid/report.pdf"}, False),
        ({"file_id": "https://x.invalid/mp4"}, False),
    ],
)  # fmt: skip
def test_vllm_file_parts_become_video_url_only_for_videos(upstream, file, video):
    part = {"type": "file", "file": file}
    content = [{"type": "text", "text": "describe"}, part]
    modelport.completion("hosted_vllm/m", [{"role": "user", "content": content}], api_base=upstream.base_url)
    sent = upstream.last.json["messages"][0]["content"]
    url = file.get("file_data") or file.get("file_id")
    assert sent[1] == ({"type": "video_url", "video_url": {"url": url}} if video else part)
    assert sent[0] == content[0]


# --- 3. rerank answers and DashScope rerank requests ---------------------------------------------------


@pytest.mark.parametrize("answer", [{"id": "r", "model": "m", "usage": {"total_tokens": 1}}, {"id": "r", "results": [{"relevance_score": 0.5, "document": {"text": "a"}}]}, {"results": [{"index": "0", "relevance_score": 0.5}]}])
@pytest.mark.parametrize("provider", ["hosted_vllm", "dashscope"])
def test_malformed_rerank_answers(upstream, provider, answer):
    upstream.reply(json=answer)
    base = ds_base(upstream) if provider == "dashscope" else upstream.base_url
    with pytest.raises(errors.MalformedResponseError, match="results|index"):
        modelport.rerank(f"{provider}/rerank-m", "q", ["a", "b"], api_base=base)


@pytest.mark.parametrize("query,documents,param", [(None, ["a"], "query"), (7, ["a"], "query"), ("", ["a"], "query"), ("q", [], "documents"), ("q", None, "documents")])
def test_dashscope_rerank_is_checked_before_sending(upstream, query, documents, param):
    with pytest.raises(errors.InvalidRequestError) as info:
        modelport.rerank("dashscope/qwen3-rerank", query, documents, api_base=ds_base(upstream))
    assert info.value.param == param and upstream.requests == []
    with pytest.raises(errors.InvalidRequestError):
        asyncio.run(modelport.arerank("dashscope/qwen3-rerank", query, documents, api_base=ds_base(upstream)))
    assert upstream.requests == []


# --- 4. Anthropic-style thinking ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "thinking,expected",
    [({"type": "enabled", "budget_tokens": 500}, {"enable_thinking": True, "thinking_budget": 500}),
     ({"type": "enabled"}, {"enable_thinking": True}),
     ({"type": "disabled"}, {"enable_thinking": False})],
)  # fmt: skip
@pytest.mark.parametrize("provider", ["dashscope/qwen-plus", "modelscope/Qwen/Qwen3-8B"])
def test_thinking_to_enable_thinking_when_streaming(upstream, provider, thinking, expected):
    base = ds_base(upstream) if provider.startswith("dashscope") else upstream.base_url
    list(modelport.completion(provider, USER, api_base=base, stream=True, thinking=thinking))
    sent = upstream.last.json
    assert "thinking" not in sent and {k: sent.get(k) for k in ("enable_thinking", "thinking_budget") if k in sent} == expected


@pytest.mark.parametrize("provider", ["dashscope/qwen3-8b", "modelscope/Qwen/Qwen3-8B"])
@pytest.mark.parametrize(
    "ask",
    [{"thinking": {"type": "enabled", "budget_tokens": 300}}, {"enable_thinking": True}, {"reasoning_effort": "low"}],
    ids=["thinking", "enable_thinking", "reasoning_effort"],
)  # fmt: skip
def test_non_streaming_request_to_think_is_streamed_and_assembled(upstream, provider, ask):
    base = ds_base(upstream) if provider.startswith("dashscope") else upstream.base_url
    upstream.reply(sse=thinking_stream())
    result = modelport.completion(provider, USER, api_base=base, **ask)
    assert isinstance(result, modelport.ChatCompletion) and result.object == "chat.completion"
    message = result.choices[0].message
    assert (message.reasoning_content, message.content, result.usage.total_tokens) == ("Let me think.", "Four", 8)
    sent = upstream.last.json
    assert sent["enable_thinking"] is True and sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert "thinking" not in sent
    if "thinking" in ask:
        assert sent["thinking_budget"] == 300


@pytest.mark.parametrize("provider", ["dashscope/qwen3-8b", "modelscope/Qwen/Qwen3-8B"])
@pytest.mark.parametrize("ask", [{}, {"thinking": {"type": "disabled"}}, {"reasoning_effort": "none"}], ids=["default", "disabled", "none"])
def test_non_streaming_without_thinking_stays_non_streaming(upstream, provider, ask):
    base = ds_base(upstream) if provider.startswith("dashscope") else upstream.base_url
    result = modelport.completion(provider, USER, api_base=base, **ask)
    assert result.choices[0].message.content == "You said: hi"
    sent = upstream.last.json
    assert sent["enable_thinking"] is False and "stream" not in sent


def test_thinking_shape_is_checked_before_sending(upstream):
    for provider, base in (("dashscope/q", ds_base(upstream)), ("modelscope/q", upstream.base_url), ("hosted_vllm/q", upstream.base_url)):
        with pytest.raises(errors.InvalidRequestError) as info:
            modelport.completion(provider, USER, api_base=base, thinking={"type": "sometimes"})
        assert info.value.param == "thinking"
    assert upstream.requests == []


@pytest.mark.parametrize("budget,effort", [(1, "low"), (1024, "low"), (2048, "low"), (2049, "medium"), (8192, "medium"), (8193, "high"), (32000, "high")])
def test_vllm_thinking_budget_to_reasoning_effort(upstream, budget, effort):
    modelport.completion("hosted_vllm/Qwen/Qwen3-8B", USER, api_base=upstream.base_url, thinking={"type": "enabled", "budget_tokens": budget})
    sent = upstream.last.json
    assert sent["reasoning_effort"] == effort and "thinking" not in sent
    assert sent["chat_template_kwargs"] == {"enable_thinking": True}


def test_vllm_thinking_disabled_and_explicit_values_win(upstream):
    modelport.completion("hosted_vllm/m", USER, api_base=upstream.base_url, thinking={"type": "disabled"}, chat_template_kwargs={"custom": 1})
    sent = upstream.last.json
    assert sent["chat_template_kwargs"] == {"custom": 1, "enable_thinking": False} and "reasoning_effort" not in sent
    modelport.completion("hosted_vllm/m", USER, api_base=upstream.base_url, thinking={"type": "enabled", "budget_tokens": 100}, reasoning_effort="high")
    assert upstream.last.json["reasoning_effort"] == "high"
    # vLLM has no non-streaming rule: an explicit request to think is sent as it is
    modelport.completion("hosted_vllm/m", USER, api_base=upstream.base_url, reasoning_effort="medium", chat_template_kwargs={"enable_thinking": True})
    sent = upstream.last.json
    assert sent["chat_template_kwargs"] == {"enable_thinking": True} and "stream" not in sent


# --- 5. api_base given as the operation's full URL ----------------------------------------------------------


def test_vllm_full_url_bases_are_used_as_they_are(upstream):
    v1 = upstream.base_url
    modelport.completion("hosted_vllm/m", USER, api_base=v1 + "/chat/completions")
    modelport.text_completion("hosted_vllm/m", "x", api_base=v1 + "/completions/")
    modelport.embedding("hosted_vllm/m", "x", api_base=v1 + "/embeddings")
    upstream.reply(json={"id": "r", "model": "m", "results": [{"index": 0, "relevance_score": 1.0}]})
    modelport.rerank("hosted_vllm/m", "q", ["d"], api_base=v1 + "/rerank")
    upstream.reply(json={"text": "hello"})
    modelport.transcription("hosted_vllm/whisper", b"RIFF", api_base=v1 + "/audio/transcriptions")
    assert [r.path for r in upstream.requests] == [
        "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/rerank", "/v1/audio/transcriptions",
    ]  # fmt: skip


def test_dashscope_full_url_bases_are_used_as_they_are(upstream):
    root = upstream.url
    modelport.completion("dashscope/qwen-plus", USER, api_base=root + "/compatible-mode/v1/chat/completions")
    modelport.embedding("dashscope/text-embedding-v4", "x", api_base=root + "/compatible-mode/v1/embeddings")
    upstream.reply(json={"id": "r", "model": "m", "results": [{"index": 0, "relevance_score": 1.0}]})
    modelport.rerank("dashscope/qwen3-rerank", "q", ["d"], api_base=root + "/compatible-api/v1/reranks")
    assert [r.path for r in upstream.requests] == ["/compatible-mode/v1/chat/completions", "/compatible-mode/v1/embeddings", "/compatible-api/v1/reranks"]


def test_dashscope_native_full_url_base(upstream):
    submit = "/api/v1/services/aigc/text2image/image-synthesis"
    upstream.reply(path=submit, json={"output": {"task_id": "t-1", "task_status": "PENDING"}, "request_id": "s"})
    upstream.reply(path="/api/v1/tasks/t-1", json={"output": {"task_id": "t-1", "task_status": "SUCCEEDED", "results": [{"url": "https://x.invalid/a.png"}]}, "request_id": "p"})
    result = modelport.image_generation("dashscope/qwen-image", "a fox", api_base=upstream.url + submit, poll_interval=0.01)
    assert [r.path for r in upstream.requests] == [submit, "/api/v1/tasks/t-1"]
    assert result.data[0].url == "https://x.invalid/a.png"


# --- 6. UnknownProviderError names the distribution to install ------------------------------------------------


def test_unknown_provider_names_a_guess_and_the_installed_ones():
    with pytest.raises(errors.UnknownProviderError) as info:
        modelport.completion("no_such_provider/m", USER)
    text = str(info.value)
    assert "pip install modelport-no-such-provider" in text
    assert all(name in text for name in ("openai", "hosted_vllm", "dashscope", "modelscope"))
    assert "hosted_vllm" in info.value.installed


@pytest.mark.parametrize(
    "name,distribution",
    [("openai", "modelport-openai-compat"), ("text-completion-openai", "modelport-openai-compat"), ("hosted_vllm", "modelport-vllm"),
     ("vllm", "modelport-vllm"), ("dashscope", "modelport-dashscope"), ("modelscope", "modelport-modelscope"),
     ("anthropic", "modelport-anthropic"), ("ollama", "modelport-ollama"), ("ollama_chat", "modelport-ollama"),
     ("gemini", "modelport-gemini"), ("azure", "modelport-azure")],
)  # fmt: skip
def test_missing_known_provider_names_its_real_distribution(name, distribution):
    from modelport._registry import Registry

    registry = Registry()  # this process has every plugin: hide the one under test
    registry._entry_points = {k: v for k, v in registry.entry_point_table().items() if k != name}
    with pytest.raises(errors.UnknownProviderError) as info:
        registry.hooks(name)
    assert f"pip install {distribution}`" in str(info.value) and name not in info.value.installed
    assert "dashscope" in info.value.installed or name == "dashscope"


# --- 7. ModelScope images -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,param", [({"response_format": "b64_json"}, "response_format"), ({"n": 2}, "n"), ({"n": 0}, "n")])
def test_modelscope_image_options_it_cannot_honour(upstream, kwargs, param):
    with pytest.raises(errors.InvalidRequestError) as info:
        modelport.image_generation("modelscope/Tongyi-MAI/Z-Image-Turbo", "a fox", api_base=upstream.base_url, **kwargs)
    assert info.value.param == param and param in str(info.value)
    assert upstream.requests == []


def test_modelscope_image_defaults_are_not_sent(upstream):
    upstream.reply(path="/v1/images/generations", json={"task_id": "t1"})
    upstream.reply(path="/v1/tasks/t1", json={"task_status": "SUCCEED", "output_images": ["https://x.invalid/o.png"]})
    result = modelport.image_generation("modelscope/Tongyi-MAI/Z-Image-Turbo", "a fox", api_base=upstream.base_url, n=1, response_format="url", poll_interval=0.01)
    assert upstream.requests[0].json == {"model": "Tongyi-MAI/Z-Image-Turbo", "prompt": "a fox"}
    assert [d.url for d in result.data] == ["https://x.invalid/o.png"]


# --- 8. statements of docs/migrating-from-litellm.md ---------------------------------------------------------------


def test_the_migration_guide_exists_and_names_the_calls():
    text = DOCS.read_text(encoding="utf-8")
    for name in ("modelport.completion", "stream_chunk_builder", "Client.from_config", "ContextWindowExceededError",
                 "context_window_fallbacks", "round-robin", "drop_params", "HOSTED_VLLM_API_BASE", "MODELSCOPE_TOKEN"):  # fmt: skip
        assert name in text, name


def test_guide_response_objects_read_like_litellms(upstream):
    chunks = list(modelport.completion("openai/gpt-4o-mini", USER, base_url=upstream.base_url, stream=True))
    full = modelport.stream_chunk_builder(chunks, messages=USER)
    assert full.to_dict()["choices"] == modelport.stream_to_completion(chunks).to_dict()["choices"]
    response = modelport.completion("openai/gpt-4o-mini", USER, base_url=upstream.base_url)
    assert response["choices"][0]["message"]["content"] == response.choices[0].message.content == "You said: hi"
    assert response.model_dump()["choices"][0]["message"]["role"] == "assistant"


def test_guide_mock_response_and_strict_params(upstream):
    assert modelport.completion("openai/gpt-4o-mini", USER, mock_response="canned").choices[0].message.content == "canned"
    with pytest.raises(errors.InvalidRequestError, match="logit_bias"):
        modelport.completion("dashscope/qwen-plus", USER, api_base=ds_base(upstream), logit_bias={"1": 1})
    modelport.completion("dashscope/qwen-plus", USER, api_base=ds_base(upstream), logit_bias={"1": 1}, drop_params=True)
    assert "logit_bias" not in upstream.last.json


def test_guide_router_defaults_differ_from_litellm():
    config = load_config({"model_list": [{"model_name": "a", "litellm_params": {"model": "openai/a"}}]})
    assert config.routing_strategy == "round-robin" and config.cooldown_time == 60.0 and config.allowed_fails == 0


def test_guide_exception_names():
    assert modelport.ContentPolicyViolationError is modelport.ContentFilterError
    assert issubclass(modelport.ContextWindowExceededError, modelport.BadRequestError)
    assert issubclass(modelport.ContentFilterError, modelport.BadRequestError)
    assert issubclass(modelport.APIConnectionError, modelport.ProviderError)


def test_guide_request_reaches_the_wire_the_same_way_with_async(upstream):
    async def run():
        return await modelport.acompletion("hosted_vllm/m", USER, api_base=upstream.base_url, tools=[], thinking={"type": "disabled"})

    asyncio.run(run())
    sent = upstream.last.json
    assert "tools" not in sent and sent["chat_template_kwargs"] == {"enable_thinking": False}
