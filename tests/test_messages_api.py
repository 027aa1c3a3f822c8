"""Anthropic's Messages API on the gateway (``POST /v1/messages``), translated onto a chat
upstream: pure translation, then the official anthropic SDK against a real uvicorn server
on 127.0.0.1 in front of a loopback upstream."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import anthropic
import httpx
import pytest

from helpers import run_server
from modelport.anthropic_messages import MessageStreamTranslator, completion_to_message, error_body, request_to_chat
from modelport.errors import InvalidRequestError
from modelport.server import app_from_config

MASTER = "sk-messages-master"
UPSTREAM_KEY = "sk-messages-upstream"
WEATHER = {
    "name": "weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
USER = [{"role": "user", "content": "hello"}]




@pytest.fixture
def gateway(upstream, tmp_path):
    config = tmp_path / "messages.yaml"
    config.write_text(f"""
model_list:
  - model_name: claude-alias
    params: {{model: openai/gpt-up, api_base: {upstream.base_url}, api_key: {UPSTREAM_KEY}}}
router_settings: {{num_retries: 0}}
general_settings: {{master_key: {MASTER}}}
""")
    server, thread, url = run_server(app_from_config(str(config)))
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def claude(gateway):
    return anthropic.Anthropic(base_url=gateway, api_key=MASTER, max_retries=0)


def completion(message: Dict[str, Any], finish: str = "stop", usage: Any = None, **choice: Any) -> Dict[str, Any]:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-up",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish, **choice}],
        "usage": usage or {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }  # fmt: skip


def chunk(delta: Dict[str, Any], finish: Any = None, usage: Any = None) -> Dict[str, Any]:
    out: Dict[str, Any] = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "gpt-up"}
    out["choices"] = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
    if usage:
        out["usage"] = usage
    return out


TOOL_STREAM = [
    chunk({"role": "assistant", "reasoning_content": "needs a tool"}),
    chunk({"content": "Checking."}),
    chunk({"tool_calls": [{"index": 0, "id": "call_9", "type": "function", "function": {"name": "weather", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    chunk({}, finish="tool_calls"),
    chunk({}, usage={"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29, "prompt_tokens_details": {"cached_tokens": 4}}),
]


# --- pure translation ---------------------------------------------------------------------------


def test_a_request_with_every_block_kind_becomes_one_chat_body():
    chat, dropped = request_to_chat({
        "model": "claude-alias", "max_tokens": 300,
        "system": [{"type": "text", "text": "Be terse."}, {"type": "text", "text": "Use metric.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://img.test/cat.png"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}, "title": "spec.pdf"},
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "look it up", "signature": "sig-1"},
                {"type": "thinking", "thinking": "unsigned, from another model", "signature": ""},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
                {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "cold"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "no data"}], "is_error": True},
                {"type": "text", "text": "And tomorrow?"},
            ]},
        ],
        "tools": [WEATHER], "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "thinking": {"type": "enabled", "budget_tokens": 2048}, "stop_sequences": ["END"], "temperature": 0.3,
        "top_p": 0.9, "top_k": 40, "metadata": {"user_id": "u-1"}, "container": "c-1", "service_tier": "auto",
    })  # fmt: skip
    assert dropped == ["container", "service_tier"]
    assert chat == {
        "model": "claude-alias", "max_tokens": 300, "temperature": 0.3, "top_p": 0.9, "top_k": 40, "stop": ["END"],
        "messages": [
            {"role": "system", "content": "Be terse.\nUse metric."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://img.test/cat.png"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "spec.pdf"}},
            ]},
            {"role": "assistant", "content": "Checking.",
             "tool_calls": [
                 {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}},
                 {"id": "toolu_2", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Rome"}'}}],
             "thinking_blocks": [{"type": "thinking", "thinking": "look it up", "signature": "sig-1"}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "cold"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: no data"},
            {"role": "user", "content": "And tomorrow?"},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": WEATHER["input_schema"],
                                                    "description": "Current weather in a city"}}],
        "tool_choice": "required", "parallel_tool_calls": False,
        "reasoning_effort": "medium", "user": "u-1",
    }  # fmt: skip


@pytest.mark.parametrize(
    "body,param",
    [
        ({"messages": USER}, "max_tokens"),
        ({"max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        ({"max_tokens": 5, "messages": USER, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        ({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "search_result"}]}]}, "messages[0].content[0].type"),
        ({"max_tokens": 5, "messages": USER, "tool_choice": {"type": "sometimes"}, "tools": [WEATHER]}, "tool_choice.type"),
        ({"max_tokens": "5", "messages": USER}, "max_tokens"),
    ],
)
def test_requests_the_translation_cannot_serve_name_what_to_fix(body, param):
    with pytest.raises(InvalidRequestError) as info:
        request_to_chat({"model": "m", **body})
    assert info.value.param == param


def test_a_completion_becomes_thinking_text_and_tool_use_blocks():
    message = {"content": "Checking.", "reasoning_content": "needs a tool",
               "tool_calls": [{"id": "call_7", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}]}  # fmt: skip
    usage = {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42, "prompt_tokens_details": {"cached_tokens": 8}}
    result = completion_to_message(completion(message, "tool_calls", usage), "claude-alias", message_id="msg_1")
    assert result == {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-alias",
        "content": [{"type": "thinking", "thinking": "needs a tool", "signature": ""},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_7", "name": "weather", "input": {"city": "Oslo"}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 22, "output_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 8},
    }  # fmt: skip
    assert completion_to_message(completion({"content": "Once"}, "length"), "m")["stop_reason"] == "max_tokens"
    stopped = completion_to_message(completion({"content": "a"}, "stop", stop_reason="END"), "m", stop_sequences=["END"])
    assert (stopped["stop_reason"], stopped["stop_sequence"]) == ("stop_sequence", "END")
    assert error_body(529, "busy") == {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}


def test_the_stream_translator_emits_anthropics_sequence():
    translator = MessageStreamTranslator("claude-alias", message_id="msg_s")
    events = translator.start()
    for piece in TOOL_STREAM:
        events += translator.feed(piece)
    events += translator.finish()
    shape = [(e["type"], e.get("index"), (e.get("delta") or e.get("content_block") or {}).get("type")) for e in events]
    assert shape == [
        ("message_start", None, None), ("ping", None, None),
        ("content_block_start", 0, "thinking"), ("content_block_delta", 0, "thinking_delta"), ("content_block_stop", 0, None),
        ("content_block_start", 1, "text"), ("content_block_delta", 1, "text_delta"), ("content_block_stop", 1, None),
        ("content_block_start", 2, "tool_use"), ("content_block_delta", 2, "input_json_delta"),
        ("content_block_delta", 2, "input_json_delta"), ("content_block_stop", 2, None),
        ("message_delta", None, None), ("message_stop", None, None),
    ]  # fmt: skip
    assert events[0]["message"]["id"] == "msg_s" and events[0]["message"]["model"] == "claude-alias"
    assert events[8]["content_block"] == {"type": "tool_use", "id": "call_9", "name": "weather", "input": {}}
    assert events[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert events[-2]["usage"] == {"input_tokens": 16, "output_tokens": 9, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 4}


# --- through the gateway with the official anthropic SDK ----------------------------------------


def test_create_through_the_sdk(claude, upstream):
    message = claude.messages.create(model="claude-alias", max_tokens=64, system="Be brief.", messages=USER, extra_body={"temperature": 0.2})
    assert message.content[0].type == "text" and message.content[0].text == "You said: hello"
    assert message.id.startswith("msg_") and message.model == "claude-alias" and message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == 3
    assert upstream.last.json == {"model": "gpt-up", "max_tokens": 64, "temperature": 0.2,
                                  "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]}  # fmt: skip
    assert upstream.last.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    raw = claude.messages.with_raw_response.create(model="claude-alias", max_tokens=8, messages=USER)
    assert raw.headers["x-modelport-upstream-model"] == "gpt-up" and raw.headers["request-id"].startswith("req_")


def test_streaming_through_the_sdk(claude, gateway, upstream):
    with claude.messages.stream(model="claude-alias", max_tokens=64, messages=[{"role": "user", "content": "one two three"}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "You said: one two three" and len(pieces) == 5
    assert final.content[0].text == "You said: one two three" and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 5 and final.usage.input_tokens > 0
    assert upstream.last.json["stream"] is True and upstream.last.json["stream_options"] == {"include_usage": True}

    raw = httpx.post(f"{gateway}/v1/messages", json={"model": "claude-alias", "max_tokens": 9, "messages": USER, "stream": True},
                     headers={"Authorization": f"Bearer {MASTER}", "anthropic-version": "2023-06-01"})  # fmt: skip
    names = [line[len("event: ") :] for line in raw.text.splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert raw.headers["content-type"].startswith("text/event-stream")


def test_tool_use_round_trip(claude, upstream):
    call = {"id": "call_abc", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}
    upstream.reply(json=completion({"content": None, "tool_calls": [call]}, "tool_calls"))
    first = claude.messages.create(model="claude-alias", max_tokens=100, tools=[WEATHER], tool_choice={"type": "auto"},
                                   messages=[{"role": "user", "content": "Weather in Paris?"}])  # fmt: skip
    assert first.stop_reason == "tool_use" and [b.type for b in first.content] == ["tool_use"]
    use = first.content[0]
    assert (use.id, use.name, use.input) == ("call_abc", "weather", {"city": "Paris"})
    assert upstream.last.json["tools"] == [{"type": "function", "function": {"name": "weather", "parameters": WEATHER["input_schema"],
                                                                            "description": "Current weather in a city"}}]  # fmt: skip

    second = claude.messages.create(model="claude-alias", max_tokens=100, tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": '{"temp": 21}'}]},
    ])  # fmt: skip
    assert upstream.last.json["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_abc", "type": "function",
                                                               "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": '{"temp": 21}'},
    ]  # fmt: skip
    assert second.content[0].text == "You said: Weather in Paris?"

    upstream.reply(sse=TOOL_STREAM)
    with claude.messages.stream(model="claude-alias", max_tokens=100, tools=[WEATHER], thinking={"type": "enabled", "budget_tokens": 1024},
                                messages=[{"role": "user", "content": "Weather?"}]) as stream:  # fmt: skip
        events = list(stream)
        final = stream.get_final_message()
    assert upstream.last.json["reasoning_effort"] == "low"
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[0].thinking == "needs a tool" and final.content[2].input == {"city": "Paris"}
    assert final.stop_reason == "tool_use" and final.usage.cache_read_input_tokens == 4 and final.usage.input_tokens == 16
    assert [e.partial_json for e in events if e.type == "input_json"] == ['{"city": ', '"Paris"}']


def test_thinking_and_stop_sequences(claude, upstream):
    upstream.reply(json=completion({"content": "42", "reasoning_content": "6 times 7"}))
    message = claude.messages.create(model="claude-alias", max_tokens=100, messages=USER, thinking={"type": "enabled", "budget_tokens": 20000})
    assert [b.type for b in message.content] == ["thinking", "text"] and message.content[0].thinking == "6 times 7"
    assert upstream.last.json["reasoning_effort"] == "high"
    upstream.reply(json=completion({"content": "a, b, "}, "stop", stop_reason="STOP"))
    stopped = claude.messages.create(model="claude-alias", max_tokens=100, messages=USER, stop_sequences=["STOP"], extra_body={"top_k": 5})
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "STOP")
    assert upstream.last.json["stop"] == ["STOP"] and upstream.last.json["top_k"] == 5
    upstream.reply(json=completion({"content": "Once upon"}, "length"))
    assert claude.messages.create(model="claude-alias", max_tokens=2, messages=USER).stop_reason == "max_tokens"


def test_errors_come_back_in_anthropics_shape(claude, gateway, upstream):
    upstream.reply(status=429, json={"error": {"message": "slow down", "code": "rate_limit_exceeded"}}, headers={"Retry-After": "3"})
    with pytest.raises(anthropic.RateLimitError) as limited:
        claude.messages.create(model="claude-alias", max_tokens=10, messages=USER)
    assert limited.value.status_code == 429 and limited.value.response.headers["retry-after"] == "3"
    assert limited.value.body["type"] == "error" and limited.value.body["error"] == {"type": "rate_limit_error", "message": "slow down"}

    with pytest.raises(anthropic.AuthenticationError) as denied:
        anthropic.Anthropic(base_url=gateway, api_key="wrong", max_retries=0).messages.create(model="claude-alias", max_tokens=10, messages=USER)
    assert denied.value.body["error"]["type"] == "authentication_error"

    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="nope", max_tokens=10, messages=USER)
    assert missing.value.body["error"]["type"] == "not_found_error" and "claude-alias" in missing.value.body["error"]["message"]

    reply = httpx.post(f"{gateway}/v1/messages", json={"model": "claude-alias", "messages": USER}, headers={"x-api-key": MASTER})
    assert reply.status_code == 400
    assert reply.json()["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}

    upstream.reply(status=503, json={"error": {"message": "upstream down at http://10.0.0.7:8000/v1"}})
    with pytest.raises(anthropic.InternalServerError) as down:
        claude.messages.create(model="claude-alias", max_tokens=10, messages=USER)
    assert down.value.body["error"]["type"] == "api_error" and "10.0.0.7" not in json.dumps(down.value.body)

    upstream.reply(sse=[chunk({"role": "assistant", "content": "Hel"}), {"error": {"message": "model overloaded", "code": 503}}])
    seen: List[str] = []
    with pytest.raises(anthropic.APIStatusError) as broken:
        for event in claude.messages.create(model="claude-alias", max_tokens=10, messages=USER, stream=True):
            seen.append(event.type)
    assert seen[:2] == ["message_start", "content_block_start"]
    assert broken.value.body["type"] == "error" and broken.value.body["error"]["message"] == "model overloaded"


def test_signed_thinking_from_an_anthropic_upstream_streams_its_signature():
    translator = MessageStreamTranslator("m")
    events = translator.start()
    events += translator.feed(chunk({"role": "assistant", "reasoning_content": "let me think"}))
    events += translator.feed(chunk({"thinking_blocks": [{"type": "thinking", "thinking": "let me think", "signature": "sig-9"}]}))
    events += translator.feed(chunk({"thinking_blocks": [{"type": "thinking", "thinking": "let me think", "signature": "sig-9"},
                                                         {"type": "redacted_thinking", "data": "opaque"}]}))  # fmt: skip
    events += translator.feed(chunk({"content": "Done."}, finish="stop"))
    events += translator.finish()
    deltas = [(e["index"], e["delta"]) for e in events if e["type"] == "content_block_delta"]
    assert deltas == [(0, {"type": "thinking_delta", "thinking": "let me think"}), (0, {"type": "signature_delta", "signature": "sig-9"}),
                      (2, {"type": "text_delta", "text": "Done."})]  # fmt: skip
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert starts[1] == {"type": "redacted_thinking", "data": "opaque"} and starts[2]["type"] == "text"
    assert events[-2]["delta"]["stop_reason"] == "end_turn" and events[-2]["usage"]["output_tokens"] == 0
