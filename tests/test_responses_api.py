"""OpenAI's Responses API on the gateway (``/v1/responses``) and in Python (``responses``),
translated onto a chat upstream: pure translation, then the official openai SDK against a
real uvicorn server on 127.0.0.1 in front of a loopback upstream."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Dict, List

import httpx
import openai
import pydantic
import pytest

import modelport
from helpers import run_server
from modelport.errors import InvalidRequestError, NotFoundError, RateLimitError
from modelport.responses_api import (
    Response,
    ResponseStore,
    ResponseStreamTranslator,
    aresponses,
    completion_to_response,
    request_to_chat,
    response_shell,
    responses,
)
from modelport.server import Gateway, app_from_config, feature_routes

# The config loader does not know the response-store keys yet and warns about them.
pytestmark = pytest.mark.filterwarnings("ignore:.*responses_store:UserWarning")

MASTER = "sk-responses-master"
UPSTREAM_KEY = "sk-responses-upstream"
WEATHER_TOOL = {
    "type": "function",
    "name": "weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}




def _config(tmp_path: Any, upstream: Any, general: str = "") -> str:
    path = tmp_path / "responses.yaml"
    path.write_text(f"""
model_list:
  - model_name: chat-model
    params: {{model: openai/gpt-up, api_base: {upstream.base_url}, api_key: {UPSTREAM_KEY}}}
router_settings: {{num_retries: 0}}
general_settings: {{master_key: {MASTER}, responses_store_max_entries: 3, responses_store_ttl_minutes: 5{general}}}
""")
    return str(path)


@pytest.fixture
def gateway(upstream, tmp_path):
    server, thread, url = run_server(app_from_config(_config(tmp_path, upstream)))
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def sdk(gateway):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=MASTER, max_retries=0)


def completion(message: Dict[str, Any], finish: str = "stop", usage: Any = None) -> Dict[str, Any]:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-up",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
        "usage": usage or {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }  # fmt: skip


def chunk(delta: Dict[str, Any], finish: Any = None, usage: Any = None) -> Dict[str, Any]:
    out: Dict[str, Any] = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "gpt-up"}
    out["choices"] = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
    if usage:
        out["usage"] = usage
    return out


TOOL_STREAM = [
    chunk({"role": "assistant", "content": "Checking."}),
    chunk({"tool_calls": [{"index": 0, "id": "call_9", "type": "function", "function": {"name": "weather", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    chunk({}, finish="tool_calls"),
    chunk({}, usage={"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}),
]


# --- pure translation ---------------------------------------------------------------------------


def test_a_request_with_every_kind_of_item_becomes_one_chat_body():
    chat, new = request_to_chat({
        "model": "m", "instructions": "Be terse.",
        "input": [
            {"role": "developer", "content": "house rules"},
            {"role": "user", "content": [{"type": "input_text", "text": "what is this?"},
                                         {"type": "input_image", "image_url": "https://img.test/cat.png", "detail": "low"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me look.", "annotations": []}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": '{"city":"Oslo"}'},
            {"type": "function_call", "call_id": "call_2", "name": "weather", "arguments": '{"city":"Rome"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "cold"},
            {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "warm"}]},
        ],
        "tools": [{**WEATHER_TOOL, "strict": True}], "tool_choice": {"type": "function", "name": "weather"},
        "text": {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": True}},
        "max_output_tokens": 50, "reasoning": {"effort": "low", "summary": "auto"}, "temperature": 0.2, "top_p": 0.9,
        "metadata": {"k": "v"}, "store": False, "parallel_tool_calls": False, "user": "u-1", "top_k": 5,
        "include": ["reasoning.encrypted_content"], "truncation": "auto",
    })  # fmt: skip
    assert chat == {
        "model": "m", "temperature": 0.2, "top_p": 0.9, "user": "u-1", "top_k": 5,
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "system", "content": "house rules"},
            {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                         {"type": "image_url", "image_url": {"url": "https://img.test/cat.png", "detail": "low"}}]},
            {"role": "assistant", "content": "Let me look.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}},
                {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "cold"},
            {"role": "tool", "tool_call_id": "call_2", "content": "warm"},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Current weather in a city",
                                                    "parameters": WEATHER_TOOL["parameters"], "strict": True}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "parallel_tool_calls": False,
        "max_tokens": 50,
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True}},
        "reasoning_effort": "low",
    }  # fmt: skip
    assert new[0] == {"role": "system", "content": "house rules"} and len(new) == 5


def test_allowed_tools_narrow_the_tool_list_and_streams_ask_for_usage():
    chat, _ = request_to_chat({
        "model": "m", "input": "hi", "stream": True,
        "tools": [WEATHER_TOOL, {**WEATHER_TOOL, "name": "time"}],
        "tool_choice": {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "time"}]},
        "text": {"format": {"type": "json_object"}},
    })  # fmt: skip
    assert [t["function"]["name"] for t in chat["tools"]] == ["time"] and chat["tool_choice"] == "required"
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}
    assert chat["response_format"] == {"type": "json_object"} and chat["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "body,param",
    [
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]}, "input[0].content[0]"),
        ({"input": "x", "max_output_tokens": "ten"}, "max_output_tokens"),
        ({"input": "x", "background": True}, "background"),
        ({"input": "x", "text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({}, "input"),
    ],
)
def test_requests_the_translation_cannot_serve_name_what_to_fix(body, param):
    with pytest.raises(InvalidRequestError) as info:
        request_to_chat({"model": "m", **body})
    assert info.value.param == param


def test_a_completion_becomes_reasoning_message_and_function_call_items():
    shell = response_shell({"input": "x", "tools": [WEATHER_TOOL], "max_output_tokens": 9}, "resp_1", "alias", 100)
    usage = {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42,
             "prompt_tokens_details": {"cached_tokens": 8}, "completion_tokens_details": {"reasoning_tokens": 5}}  # fmt: skip
    message = {"content": "Let me check.", "reasoning_content": "user wants weather",
               "tool_calls": [{"id": "call_7", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}]}  # fmt: skip
    response = completion_to_response(completion(message, "tool_calls", usage), shell)
    assert [item["type"] for item in response["output"]] == ["reasoning", "message", "function_call"]
    reasoning, text, call = response["output"]
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "user wants weather"}] and reasoning["id"].startswith("rs_")
    assert text["content"] == [{"type": "output_text", "text": "Let me check.", "annotations": [], "logprobs": []}]
    assert (call["call_id"], call["name"], call["arguments"], call["status"]) == ("call_7", "weather", '{"city":"Oslo"}', "completed")
    assert response["usage"] == {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 0},
                                 "output_tokens": 12, "output_tokens_details": {"reasoning_tokens": 5}, "total_tokens": 42}  # fmt: skip
    assert (response["status"], response["model"], response["max_output_tokens"], response["tools"]) == ("completed", "alias", 9, [WEATHER_TOOL])
    cut = completion_to_response(completion({"content": "Once upon"}, "length"), shell)
    assert cut["status"] == "incomplete" and cut["incomplete_details"] == {"reason": "max_output_tokens"}
    assert cut["output"][0]["status"] == "incomplete" and "completed_at" not in cut


def test_the_stream_translator_emits_the_documented_sequence():
    translator = ResponseStreamTranslator(response_shell({"input": "x"}, "resp_s", "alias", 1))
    events = translator.start()
    events += translator.feed(chunk({"role": "assistant", "reasoning_content": "hmm"}))
    for piece in TOOL_STREAM:
        events += translator.feed(piece)
    events += translator.finish()
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added", "response.reasoning_text.delta",
        "response.reasoning_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.done"] == [0, 1, 2]
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["usage"]["total_tokens"] == 29
    assert final["output"][2]["arguments"] == '{"city": "Paris"}' and final["output"][2]["call_id"] == "call_9"
    assert events[0]["response"]["output"] == [] and events[0]["response"]["status"] == "in_progress"


def test_the_store_is_bounded_by_entries_and_time_and_kept_per_owner():
    now = [0.0]
    store = ResponseStore(max_entries=2, ttl_seconds=60, clock=lambda: now[0])
    for n in range(3):
        store.put({"id": f"resp_{n}", "output": []}, [{"role": "user", "content": str(n)}], owner="key:a")
    assert store.get("resp_0", "key:a") is None and len(store) == 2
    assert store.get("resp_2", "key:a").messages == ({"role": "user", "content": "2"},)
    assert store.get("resp_2", "key:b") is None and store.get("resp_2", "key:b", any_owner=True) is not None
    now[0] = 61.0
    assert store.get("resp_2", "key:a") is None and len(store) == 0
    with pytest.raises(InvalidRequestError):
        ResponseStore(max_entries=-1)


# --- through the gateway with the official SDK --------------------------------------------------


def test_create_through_the_sdk(sdk, upstream):
    response = sdk.responses.create(model="chat-model", input="hello", instructions="Be brief.", temperature=0.5, max_output_tokens=64)
    assert response.output_text == "You said: hello" and response.status == "completed"
    assert response.id.startswith("resp_") and response.model == "chat-model" and response.object == "response"
    assert response.output[0].type == "message" and response.output[0].role == "assistant"
    assert response.usage.input_tokens > 0 and response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert upstream.last.json == {"model": "gpt-up", "temperature": 0.5, "max_tokens": 64,
                                  "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]}  # fmt: skip
    assert upstream.last.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    raw = sdk.responses.with_raw_response.create(model="chat-model", input="again")
    assert raw.headers["x-modelport-upstream-model"] == "gpt-up" and raw.headers["x-request-id"].startswith("req_")


def test_tool_calls_round_trip_with_function_call_output(sdk, upstream):
    call = {"id": "call_abc", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}
    upstream.reply(json=completion({"content": None, "tool_calls": [call]}, "tool_calls"))
    first = sdk.responses.create(model="chat-model", input=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER_TOOL], tool_choice="auto")
    assert [item.type for item in first.output] == ["function_call"]
    assert (first.output[0].call_id, first.output[0].name, first.output[0].arguments) == ("call_abc", "weather", '{"city":"Paris"}')
    assert upstream.last.json["tools"][0]["function"]["name"] == "weather" and upstream.last.json["tool_choice"] == "auto"

    replay = [{"role": "user", "content": "Weather in Paris?"}, *first.output,
              {"type": "function_call_output", "call_id": "call_abc", "output": '{"temp": 21}'}]  # fmt: skip
    second = sdk.responses.create(model="chat-model", input=replay, tools=[WEATHER_TOOL])
    expected = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_abc", "content": '{"temp": 21}'},
    ]
    assert upstream.last.json["messages"] == expected and second.output_text == "You said: Weather in Paris?"

    chained = sdk.responses.create(
        model="chat-model", previous_response_id=first.id, tools=[WEATHER_TOOL],
        input=[{"type": "function_call_output", "call_id": "call_abc", "output": '{"temp": 21}'}],
    )  # fmt: skip
    assert upstream.last.json["messages"] == expected and chained.previous_response_id == first.id


class Weather(pydantic.BaseModel):
    city: str
    celsius: int


def test_json_schema_text_format(sdk, upstream):
    upstream.reply(json=completion({"content": '{"city": "Paris", "celsius": 21}'}))
    parsed = sdk.responses.parse(model="chat-model", input="weather?", text_format=Weather)
    assert parsed.output_parsed == Weather(city="Paris", celsius=21)
    sent = upstream.last.json["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Weather" and sent["json_schema"]["strict"] is True
    assert sent["json_schema"]["schema"]["properties"]["celsius"] == {"title": "Celsius", "type": "integer"}

    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}
    upstream.reply(json=completion({"content": '{"ok": true}'}))
    plain = sdk.responses.create(model="chat-model", input="ok?", text={"format": {"type": "json_schema", "name": "flag", "schema": schema}})
    assert json.loads(plain.output_text) == {"ok": True} and plain.text.format.name == "flag"
    assert upstream.last.json["response_format"] == {"type": "json_schema", "json_schema": {"name": "flag", "schema": schema}}


def test_streaming_create(sdk, upstream):
    events = list(sdk.responses.create(model="chat-model", input="one two three", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "You said: one two three" and len(deltas) == 5
    final = events[-1].response
    assert final.output_text == "You said: one two three" and final.usage.total_tokens > 0 and final.model == "chat-model"
    assert upstream.last.json["stream"] is True and upstream.last.json["stream_options"] == {"include_usage": True}


def test_stream_helper_with_tool_calls(sdk, upstream):
    upstream.reply(sse=TOOL_STREAM)
    with sdk.responses.stream(model="chat-model", input="Weather in Paris?", tools=[WEATHER_TOOL]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    argument_deltas = [e for e in events if e.type == "response.function_call_arguments.delta"]
    assert [e.snapshot for e in argument_deltas] == ['{"city": ', '{"city": "Paris"}']
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert done.arguments == '{"city": "Paris"}' and done.output_index == 1
    assert [item.type for item in final.output] == ["message", "function_call"]
    assert final.output_text == "Checking." and final.output[1].call_id == "call_9" and final.usage.input_tokens == 20


def test_previous_response_id_retrieve_and_the_store_bound(sdk, upstream):
    first = sdk.responses.create(model="chat-model", input="hello")
    second = sdk.responses.create(model="chat-model", input="and again", previous_response_id=first.id, instructions="New rules.")
    assert upstream.last.json["messages"] == [
        {"role": "system", "content": "New rules."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "You said: hello"},
        {"role": "user", "content": "and again"},
    ]
    third = sdk.responses.create(model="chat-model", input="three", previous_response_id=second.id)
    assert [m["content"] for m in upstream.last.json["messages"]] == ["hello", "You said: hello", "and again", "You said: and again", "three"]
    assert sdk.responses.retrieve(first.id).output_text == "You said: hello"

    with pytest.raises(openai.NotFoundError) as info:
        sdk.responses.create(model="chat-model", input="x", previous_response_id="resp_nope")
    assert info.value.status_code == 404 and info.value.body["code"] == "previous_response_not_found"
    assert info.value.body["param"] == "previous_response_id"

    unstored = sdk.responses.create(model="chat-model", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(unstored.id)
    sdk.responses.create(model="chat-model", input="four")  # the store holds 3: the first is gone
    assert sdk.responses.retrieve(third.id).id == third.id
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(first.id)


def test_upstream_errors(sdk, upstream):
    upstream.reply(status=429, json={"error": {"message": "slow down", "code": "rate_limit_exceeded"}}, headers={"Retry-After": "3"})
    with pytest.raises(openai.RateLimitError) as info:
        sdk.responses.create(model="chat-model", input="x")
    assert info.value.status_code == 429 and "slow down" in info.value.message
    assert info.value.response.headers["retry-after"] == "3"

    upstream.reply(status=400, json={"error": {"message": "prompt too long", "code": "context_length_exceeded"}})
    with pytest.raises(openai.BadRequestError) as bad:
        list(sdk.responses.create(model="chat-model", input="x", stream=True))
    assert bad.value.body["code"] == "context_length_exceeded"

    upstream.reply(sse=[chunk({"role": "assistant", "content": "Hel"}), {"error": {"message": "model overloaded", "code": 503}}])
    events = list(sdk.responses.create(model="chat-model", input="x", stream=True))
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2].message == "model overloaded" and events[-1].response.status == "failed"
    assert events[-1].response.error.message == "model overloaded"
    assert any(e.type == "response.output_text.delta" and e.delta == "Hel" for e in events)


def test_auth_bad_input_and_ignored_options(gateway, sdk, upstream):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{gateway}/v1", api_key="wrong", max_retries=0).responses.create(model="chat-model", input="x")
    reply = httpx.post(f"{gateway}/responses", json={"model": "chat-model", "input": "via x-api-key", "api_base": "http://127.0.0.1:9/v1"},
                       headers={"x-api-key": MASTER})  # fmt: skip
    assert reply.status_code == 200 and reply.json()["output"][0]["content"][0]["text"] == "You said: via x-api-key"
    assert reply.headers["x-modelport-ignored-params"] == "api_base" and upstream.last.path == "/v1/chat/completions"
    with pytest.raises(openai.BadRequestError) as info:
        sdk.responses.create(model="chat-model", input=[{"type": "web_search_call", "id": "ws_1"}])
    assert info.value.body["param"] == "input[0].type" and "not supported" in info.value.body["message"]
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.responses.create(model="nope", input="x")
    assert missing.value.body["code"] == "model_not_found"
    broken = httpx.post(f"{gateway}/v1/responses", content=b"{oops", headers={"Authorization": f"Bearer {MASTER}"})
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]
    assert httpx.get(f"{gateway}/v1/responses/resp_x").status_code == 401


def test_guards_and_observers_see_responses_calls(upstream, tmp_path):
    records: List[Any] = []

    class Observer:
        def record(self, record: Any) -> None:
            records.append(record)

    class OneCallOnly:
        def __init__(self) -> None:
            self.calls = 0

        async def admit(self, identity: Any, operation: str, model: str, body: Dict[str, Any]) -> Any:
            self.calls += 1
            if self.calls > 1:
                raise RateLimitError("limit reached for this key", status=429, retry_after=7)

            async def release(record: Any) -> None:
                return None

            release.headers = {"x-ratelimit-remaining-requests": "0"}  # type: ignore[attr-defined]
            return release

    client = modelport.AsyncClient.from_config(_config(tmp_path, upstream))
    gateway = Gateway(client, master_key=MASTER)
    gateway.observers.append(Observer())
    gateway.guards.append(OneCallOnly())
    server, thread, url = run_server(gateway.app(feature_routes(gateway)))
    try:
        sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=MASTER, max_retries=0)
        admitted = sdk.responses.with_raw_response.create(model="chat-model", input="counted")
        assert admitted.headers["x-ratelimit-remaining-requests"] == "0"  # a guard's headers reach the client
        with pytest.raises(openai.RateLimitError) as info:
            sdk.responses.create(model="chat-model", input="refused")
        assert info.value.response.headers["retry-after"] == "7"
        assert [(r.operation, r.model, r.status) for r in records] == [("chat", "chat-model", 200), ("chat", "chat-model", 429)]
        assert records[0].usage["total_tokens"] > 0 and len(upstream.requests) == 1  # the refused call never ran
    finally:
        server.should_exit = True
        thread.join(10)


# --- the Python API ---------------------------------------------------------------------------------


def test_python_api_sync(client, upstream):
    store = ResponseStore()
    options = {"api_base": upstream.base_url, "api_key": "sk-py", "response_store": store}
    first = responses(client, "openai/gpt-py", "hello", instructions="Sys.", **options)
    assert isinstance(first, Response) and first.output_text == "You said: hello"
    assert first.model == "openai/gpt-py" and first.usage["total_tokens"] > 0
    assert upstream.last.json["messages"][0] == {"role": "system", "content": "Sys."}
    events = list(responses(client, "openai/gpt-py", "more", previous_response_id=first.id, stream=True, **options))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert events[-1].response.output_text == "You said: more"
    assert [m["content"] for m in upstream.last.json["messages"]] == ["hello", "You said: hello", "more"]
    assert store.get(events[-1].response.id) is not None
    with pytest.raises(NotFoundError):
        responses(client, "openai/gpt-py", "x", previous_response_id="resp_gone", **options)


def test_python_api_async(aclient, upstream):
    async def main() -> Any:
        try:
            upstream.reply(sse=TOOL_STREAM)
            stream = await aresponses(aclient, "openai/gpt-py", "weather?", tools=[WEATHER_TOOL], stream=True,
                                      api_base=upstream.base_url, api_key="k")  # fmt: skip
            events = [event async for event in stream]
            plain = await aresponses(aclient, "openai/gpt-py", "plain", api_base=upstream.base_url, api_key="k")
            return events, plain
        finally:
            await aclient.aclose()

    events, plain = asyncio.run(main())
    final = events[-1].response
    assert [item["type"] for item in final.output] == ["message", "function_call"]
    assert final.output[1]["arguments"] == '{"city": "Paris"}' and plain.output_text == "You said: plain"


def test_the_module_level_function_of_the_python_api(upstream):
    import modelport

    result = modelport.responses("openai/m", "hello there", api_base=upstream.base_url, instructions="be brief")
    assert result.output_text == "You said: hello there"
    assert upstream.last.json["messages"][0] == {"role": "system", "content": "be brief"}
