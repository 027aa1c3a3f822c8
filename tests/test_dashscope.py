"""dashscope over loopback HTTP, with the shapes Model Studio's compatible mode sends."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys

import pytest

import modelport
from modelport import errors

USER = [{"role": "user", "content": "hi"}]
KEY = "sk-dashscope-test-42"


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    for name in ("DASHSCOPE_REGION", "DASHSCOPE_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)


@pytest.fixture
def base(upstream):
    return upstream.url + "/compatible-mode/v1"


def url_for(**kwargs):
    return modelport.Client().build_request("chat", "dashscope/qwen-plus", messages=USER, **kwargs).url


def test_regions(monkeypatch):
    assert url_for() == "https://dashscope-intl.aliyuncs.com/compatible-mode/v1/chat/completions"
    assert url_for(region="us") == "https://dashscope-us.aliyuncs.com/compatible-mode/v1/chat/completions"
    assert url_for(region="cn") == "https://dashscope.aliyuncs.com/compatible-mode/v1/chat/completions"
    assert url_for(region="hk") == "https://cn-hongkong.dashscope.aliyuncs.com/compatible-mode/v1/chat/completions"
    monkeypatch.setenv("DASHSCOPE_REGION", "cn")
    assert url_for().startswith("https://dashscope.aliyuncs.com/")
    assert url_for(region="us").startswith("https://dashscope-us.")
    assert url_for(api_base="http://127.0.0.1:1/compatible-mode/v1", region="us") == "http://127.0.0.1:1/compatible-mode/v1/chat/completions"
    with pytest.raises(errors.ConfigError) as info:
        url_for(region="eu")
    assert all(name in str(info.value) for name in ("intl", "us", "cn", "hk"))


def test_region_is_not_sent_in_the_body():
    request = modelport.Client().build_request("chat", "dashscope/qwen-plus", messages=USER, region="us")
    assert "region" not in request.json


def test_cli_dry_run_shows_resolved_url(monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY")
    result = subprocess.run(
        [sys.executable, "-m", "modelport", "chat", "--dry-run", "-m", "dashscope/qwen-plus", "-o", "region=hk", "hi"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("POST https://cn-hongkong.dashscope.aliyuncs.com/compatible-mode/v1/chat/completions")


def test_missing_key_fails_before_sending(upstream, base, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY")
    with pytest.raises(errors.AuthenticationError, match="DASHSCOPE_API_KEY"):
        modelport.completion("dashscope/qwen-plus", USER, api_base=base)
    assert upstream.requests == []


def test_chat_sync_and_async_thinking_off_for_non_streaming(upstream, base):
    result = modelport.completion("dashscope/qwen3-8b", USER, api_base=base)
    assert result.choices[0].message.content == "You said: hi"
    assert upstream.last.json["enable_thinking"] is False
    assert upstream.last.headers["authorization"] == f"Bearer {KEY}"
    assert upstream.last.path == "/compatible-mode/v1/chat/completions"
    asyncio.run(modelport.acompletion("dashscope/qwen3-8b", USER, api_base=base, enable_thinking=True))
    assert upstream.last.json["enable_thinking"] is True


def test_streaming_with_usage_leaves_thinking_alone(upstream, base):
    chunks = list(modelport.completion("dashscope/qwen-plus", USER, api_base=base, stream=True, stream_options={"include_usage": True}))
    assert "enable_thinking" not in upstream.last.json
    assert upstream.last.json["stream_options"] == {"include_usage": True}
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0


@pytest.mark.parametrize(
    "effort,expected",
    [("none", {"enable_thinking": False}), ("minimal", {"enable_thinking": False}),
     ("low", {"enable_thinking": True, "thinking_budget": 1024}), ("high", {"enable_thinking": True, "thinking_budget": 16384})],
)  # fmt: skip
def test_reasoning_effort_maps_to_thinking(effort, expected):
    body = modelport.Client().build_request("chat", "dashscope/qwen-plus", messages=USER, reasoning_effort=effort, stream=True).json
    assert "reasoning_effort" not in body
    assert {k: body[k] for k in expected} == expected


def test_reasoning_effort_keeps_explicit_budget_and_rejects_unknown():
    body = modelport.Client().build_request("chat", "dashscope/q", messages=USER, reasoning_effort="medium", thinking_budget=50).json
    assert body["thinking_budget"] == 50 and body["enable_thinking"] is True
    with pytest.raises(errors.InvalidRequestError, match="reasoning_effort"):
        modelport.Client().build_request("chat", "dashscope/q", messages=USER, reasoning_effort="max")


def test_extras_pass_through(upstream, base):
    extras = {
        "enable_search": True, "search_options": {"forced_search": True}, "top_k": 20, "repetition_penalty": 1.05,
        "vl_high_resolution_images": True, "thinking_budget": 100,
    }  # fmt: skip
    modelport.completion("dashscope/qwen-plus", USER, api_base=base, **extras)
    for key, value in extras.items():
        assert upstream.last.json[key] == value


def test_vision_and_video_parts_reach_the_api_unflattened(upstream, base):
    content = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://x.invalid/cat.jpg", "detail": "high"}},
        {"type": "video_url", "video_url": {"url": "https://x.invalid/clip.mp4"}},
        {"type": "video", "video": ["https://x.invalid/f1.jpg", "https://x.invalid/f2.jpg"]},
        {"type": "text", "text": "what is this?"},
    ]
    modelport.completion("dashscope/qwen-vl-max", [{"role": "user", "content": content}], api_base=base)
    assert upstream.last.json["messages"] == [{"role": "user", "content": content}]


def test_multi_round_tool_calls_are_sent_verbatim(upstream, base):
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "w", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    messages = [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "rain"},
    ]  # fmt: skip
    modelport.completion("dashscope/qwen-plus", messages, tools=tools, tool_choice="auto", parallel_tool_calls=True, api_base=base)
    sent = upstream.last.json
    assert sent["messages"] == messages and sent["tools"] == tools and sent["tool_choice"] == "auto"


def test_streaming_tool_call_deltas_with_empty_ids_merge(upstream, base, samples):
    first = copy.deepcopy(samples["dashscope_stream_toolcall_first_chunk"]["payload"])
    cont = copy.deepcopy(samples["dashscope_stream_toolcall_continuation_chunk"]["payload"])
    tail = copy.deepcopy(cont)
    tail["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] = " \"ls\"}}"
    finish = copy.deepcopy(cont)
    finish["choices"][0]["delta"] = {"content": None}
    finish["choices"][0]["finish_reason"] = "tool_calls"
    upstream.reply(sse=[first, cont, tail, finish])
    chunks = list(modelport.completion("dashscope/qwen-plus-latest", USER, api_base=base, stream=True))
    assert [c.to_dict() for c in chunks[:2]] == [first, cont]
    call = modelport.stream_to_completion(chunks).choices[0].message.tool_calls
    assert len(call) == 1
    assert call[0].id == "call_477c3def1ba54fdcbaad36" and call[0].function.name == "BashCommand"
    assert call[0].function.arguments == "{\"action_json\": {\"command\": \"ls\"}}"


@pytest.mark.parametrize(
    "param,value",
    [
        ("temperature", 2), ("temperature", -0.1), ("temperature", "hot"), ("temperature", True),
        ("top_p", 0), ("top_p", 1.01), ("presence_penalty", 2.5), ("presence_penalty", -3),
        ("n", 0), ("n", 5), ("n", 2.0), ("seed", -1), ("seed", 2**64), ("seed", 1.5),
        ("stop", ["a", 1]), ("stop", [[1, 2], 3]), ("stop", [["a"]]), ("stop", 7), ("stop", {"a": 1}),
    ],
)  # fmt: skip
def test_out_of_range_params_fail_before_sending(upstream, base, param, value):
    with pytest.raises(errors.InvalidRequestError) as info:
        modelport.completion("dashscope/qwen-plus", USER, api_base=base, **{param: value})
    assert info.value.param == param and param in str(info.value) and info.value.allowed
    assert upstream.requests == []


def test_n_must_be_one_with_tools(upstream, base):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with pytest.raises(errors.InvalidRequestError, match="1 when tools"):
        modelport.completion("dashscope/qwen-plus", USER, api_base=base, n=2, tools=tools)
    assert upstream.requests == []


@pytest.mark.parametrize(
    "params",
    [{"temperature": 0}, {"temperature": 1.99}, {"top_p": 1}, {"top_p": 0.01}, {"presence_penalty": -2},
     {"presence_penalty": 2}, {"n": 4}, {"seed": 0}, {"seed": 2**64 - 1}, {"stop": "END"}, {"stop": ["a", "b"]},
     {"stop": [1, 2]}, {"stop": [[1, 2], [3]]}],
)  # fmt: skip
def test_in_range_params_are_sent(upstream, base, params):
    modelport.completion("dashscope/qwen-plus", USER, api_base=base, **params)
    for key, value in params.items():
        assert upstream.last.json[key] == value


def test_unsupported_openai_params_raise_or_drop(upstream, base):
    with pytest.raises(errors.InvalidRequestError, match="logit_bias"):
        modelport.completion("dashscope/qwen-plus", USER, api_base=base, logit_bias={"1": 1})
    modelport.completion("dashscope/qwen-plus", USER, api_base=base, logit_bias={"1": 1}, drop_params=True)
    assert "logit_bias" not in upstream.last.json


def test_error_envelope_is_kept(upstream, base, samples):
    payload = samples["dashscope_error_enable_thinking"]["payload"]
    upstream.reply(status=400, json=payload)
    with pytest.raises(errors.BadRequestError) as info:
        modelport.completion("dashscope/qwen3-8b", USER, api_base=base, enable_thinking=True)
    error = info.value
    assert (error.code, error.type, error.request_id) == ("invalid_parameter_error", "invalid_request_error", payload["request_id"])
    assert error.details["id"] == payload["id"]
    assert "enable_thinking must be set to false" in str(error)
    assert len(upstream.requests) == 1


def test_401_names_the_region(upstream, base):
    upstream.reply(status=401, json={"error": {"code": "invalid_api_key", "message": "Incorrect API key provided.", "type": "invalid_request_error"}})
    with pytest.raises(errors.AuthenticationError) as info:
        modelport.completion("dashscope/qwen-plus", USER, api_base=base)
    assert "bound to a region" in str(info.value) and base in str(info.value)
    assert len(upstream.requests) == 1


def test_401_names_the_chosen_region():
    # A region's real host is not reachable here, so the mapping is checked at the hook.
    from modelport.provider import Call, WireResponse

    hooks = modelport.Client().provider_hooks("dashscope")
    call = Call("chat", "dashscope", "qwen-plus", {}, hooks.info, options={"region": "us"}, api_key=KEY)
    error = hooks.map_error(call, WireResponse(401, {}, b'{"error": {"code": "invalid_api_key", "message": "bad"}}'))
    assert isinstance(error, errors.AuthenticationError) and "used us" in str(error)


@pytest.mark.parametrize("code", ["Throttling", "Throttling.RateQuota", "insufficient_quota"])
def test_throttling_is_retried(upstream, base, code):
    upstream.reply(status=429, json={"error": {"code": code, "message": "Requests throttling triggered.", "type": "throttling"}, "request_id": "r1"}, headers={"Retry-After": "0"})
    result = modelport.completion("dashscope/qwen-plus", USER, api_base=base)
    assert result.choices and len(upstream.requests) == 2


def test_throttling_exhausted_is_rate_limit(upstream, base):
    upstream.reply(status=429, json={"error": {"code": "Throttling", "message": "slow"}}, headers={"Retry-After": "0"}, times=2)
    with pytest.raises(errors.RateLimitError) as info:
        modelport.completion("dashscope/qwen-plus", USER, api_base=base, num_retries=1)
    assert not isinstance(info.value, errors.QuotaExceededError)


def test_arrearage_is_quota_and_not_retried(upstream, base):
    upstream.reply(status=400, json={"error": {"code": "Arrearage", "message": "Access denied, please make sure your account is in good standing.", "type": "Arrearage"}})
    with pytest.raises(errors.QuotaExceededError):
        modelport.completion("dashscope/qwen-plus", USER, api_base=base)
    assert len(upstream.requests) == 1


def test_data_inspection_failed_is_content_filter(upstream, base):
    upstream.reply(status=400, json={"error": {"code": "data_inspection_failed", "message": "Input data may contain inappropriate content.", "type": "data_inspection_failed"}})
    with pytest.raises(errors.ContentFilterError):
        modelport.completion("dashscope/qwen-plus", USER, api_base=base)
    upstream.reply(status=400, json={"code": "DataInspectionFailed", "message": "Output data may contain inappropriate content.", "request_id": "x"})
    with pytest.raises(errors.ContentFilterError):
        modelport.completion("dashscope/qwen-plus", USER, api_base=base)


@pytest.mark.parametrize("status,cls", [(500, errors.InternalServerError), (503, errors.ServiceUnavailableError)])
def test_server_errors_follow_the_core_mapping(upstream, base, status, cls):
    upstream.reply(status=status, json={"error": {"code": "InternalError", "message": "oops"}}, times=3)
    with pytest.raises(cls):
        modelport.completion("dashscope/qwen-plus", USER, api_base=base, num_retries=2, timeout=5)
    assert len(upstream.requests) == 3


def test_embeddings_are_batched_by_ten_and_merged(upstream, base):
    texts = [f"text {i}" for i in range(23)]
    result = modelport.embedding("dashscope/text-embedding-v4", texts, dimensions=4, api_base=base)
    assert [len(r.json["input"]) for r in upstream.requests] == [10, 10, 3]
    assert all(r.json["dimensions"] == 4 and r.path == "/compatible-mode/v1/embeddings" for r in upstream.requests)
    assert [d.index for d in result.data] == list(range(23))
    one_by_one = [modelport.embedding("dashscope/text-embedding-v4", t, dimensions=4, api_base=base).data[0].embedding for t in texts]
    assert [d.embedding for d in result.data] == one_by_one  # merged in input order
    batch_usage = sum(len(t.split()) for t in texts)  # the echo counts words per request
    assert result.usage.total_tokens == batch_usage and result.usage.prompt_tokens == batch_usage


def test_async_embeddings_batched(upstream, base):
    result = asyncio.run(modelport.aembedding("dashscope/text-embedding-v4", [str(i) for i in range(11)], api_base=base))
    assert len(result.data) == 11 and len(upstream.requests) == 2


def test_rerank(upstream, base, samples):
    upstream.reply(json=samples["dashscope_rerank_compatible"]["payload"])
    result = modelport.rerank("dashscope/qwen3-rerank", "what?", ["a", "b"], top_n=1, api_base=base)
    assert upstream.last.path == "/compatible-api/v1/reranks"
    assert upstream.last.json == {"model": "qwen3-rerank", "query": "what?", "documents": ["a", "b"], "top_n": 1}
    assert result.results[0].relevance_score == pytest.approx(0.9334521178273196)
    assert result.to_dict() == samples["dashscope_rerank_compatible"]["payload"]
    rerank_url = modelport.Client().build_request("rerank", "dashscope/qwen3-rerank", query="q", documents=["d"], region="cn").url
    assert rerank_url == "https://dashscope.aliyuncs.com/compatible-api/v1/reranks"
