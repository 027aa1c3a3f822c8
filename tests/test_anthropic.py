"""anthropic: the conformance kit, a loopback fake of the Messages API, the public API and the gateway.

The fake upstream below speaks Anthropic's documented wire format (read 2026-12):
https://docs.anthropic.com/en/api/messages, .../messages-streaming, .../errors. The
expected mappings are written from plugins/anthropic/README.md, not from the plugin's code.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Optional

import openai as openai_sdk
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelport
from helpers import run_server
from modelport import errors
from modelport.provider import IGNORE_EVENT, EndOfStream, WireResponse
from modelport.testing import ProviderConformance
from modelport.testing import strategies as mst
from modelport.testing.conformance import EXAMPLES
from modelport.types import ChatCompletionChunk

KEY = "sk-ant-test-key-0123456789"
MODEL = "claude-sonnet-4-5"
USER = [{"role": "user", "content": "hello"}]
_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.differing_executors],
)


# --- a loopback fake of Anthropic's Messages API ----------------------------------------------


def words(text: str) -> List[str]:
    """``text`` in pieces that keep their trailing spaces (how deltas arrive)."""
    parts = text.split(" ")
    return [p + (" " if i < len(parts) - 1 else "") for i, p in enumerate(parts)] if text else []


def message(content: Any = None, stop: str = "end_turn", usage: Optional[Dict[str, Any]] = None, model: str = MODEL) -> Dict[str, Any]:
    """An Anthropic Message object as the API returns it."""
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content if content is not None else [{"type": "text", "text": "Hi there"}],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 12, "output_tokens": 6, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    }


def stream_events(msg: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The event sequence the Messages API streams for ``msg`` (documented order)."""
    usage = dict(msg["usage"])
    start_usage = {k: v for k, v in usage.items() if k != "output_tokens"}
    events: List[Dict[str, Any]] = [
        {"type": "message_start", "message": {**msg, "content": [], "stop_reason": None, "usage": {**start_usage, "output_tokens": 1}}},
        {"type": "ping"},
    ]
    for index, block in enumerate(msg["content"]):
        kind = block["type"]
        if kind == "text":
            events.append({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})
            events += [{"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": w}} for w in words(block["text"])]
        elif kind == "thinking":
            events.append({"type": "content_block_start", "index": index, "content_block": {"type": "thinking", "thinking": ""}})
            events += [{"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": w}} for w in words(block["thinking"])]
            events.append({"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": block["signature"]}})
        elif kind == "tool_use":
            events.append({"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}})
            raw = json.dumps(block["input"]) if block["input"] else ""
            half = len(raw) // 2
            for piece in ["", raw[:half], raw[half:]] if raw else [""]:
                events.append({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}})
        else:
            events.append({"type": "content_block_start", "index": index, "content_block": block})
        events.append({"type": "content_block_stop", "index": index})
    events.append({"type": "message_delta", "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None}, "usage": {"output_tokens": usage["output_tokens"]}})
    events.append({"type": "message_stop"})
    return events


def error_body(kind: str, text: str) -> Dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": text}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}


class Recorded:
    def __init__(self, method: str, path: str, headers: Dict[str, str], body: Any) -> None:
        self.method, self.path, self.headers, self.json = method, path, headers, body


class Reply:
    """A scripted answer: JSON (``body``), or SSE ``events`` (dicts, or raw text), maybe cut short."""

    def __init__(self, status: int = 200, body: Any = None, events: Optional[List[Any]] = None, headers: Optional[Dict[str, str]] = None) -> None:
        self.status, self.body, self.events, self.headers = status, body, events, headers or {}


class FakeAnthropic:
    """Checks what the real API checks (path, key, version header, max_tokens, roles), records
    every request, answers scripted replies in order, else echoes the last user text."""

    def __init__(self) -> None:
        self.requests: List[Recorded] = []
        self.replies: List[Reply] = []
        self.key = KEY
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                recorded = Recorded("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                fake.requests.append(recorded)
                self.answer(fake.answer(recorded))

            def answer(self, reply: Reply) -> None:
                self.send_response(reply.status)
                self.send_header("request-id", "req_011CSHoEeqs5C35K2UUqR7Fy")
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.events is None:
                    data = json.dumps(reply.body).encode()
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.end_headers()  # HTTP/1.0: the body ends when the connection closes
                for event in reply.events:
                    text = f"event: {event['type']}\ndata: {json.dumps(event)}\n\n" if isinstance(event, dict) else event
                    self.wfile.write(text.encode())
                    self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def reply(self, status: int = 200, body: Any = None, events: Optional[List[Any]] = None, headers: Optional[Dict[str, str]] = None) -> None:
        self.replies.append(Reply(status, body, events, headers))

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    def clear(self) -> None:
        self.requests.clear()
        self.replies.clear()

    def answer(self, request: Recorded) -> Reply:
        if request.path != "/v1/messages":
            return Reply(404, error_body("not_found_error", f"Not found: {request.path}"))
        if "x-api-key" not in request.headers:
            return Reply(401, error_body("authentication_error", "x-api-key header is required"))
        if request.headers["x-api-key"] != self.key:
            return Reply(401, error_body("authentication_error", "invalid x-api-key"))
        if "anthropic-version" not in request.headers:
            return Reply(400, error_body("invalid_request_error", "anthropic-version: header is required"))
        body = request.json
        if not isinstance(body, dict) or "max_tokens" not in body:
            return Reply(400, error_body("invalid_request_error", "max_tokens: Field required"))
        for i, turn in enumerate(body.get("messages") or []):
            if turn.get("role") not in ("user", "assistant"):
                return Reply(400, error_body("invalid_request_error", f"messages.{i}.role: Input should be 'user' or 'assistant'"))
        if self.replies:
            return self.replies.pop(0)
        last = body["messages"][-1]["content"]
        text = last if isinstance(last, str) else " ".join(b.get("text", "") for b in last if b.get("type") == "text")
        answer = message([{"type": "text", "text": f"You said: {text}"}], model=body["model"])
        return Reply(events=stream_events(answer)) if body.get("stream") else Reply(body=answer)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def _fake_server() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic()
    yield server
    server.close()


@pytest.fixture
def fake(_fake_server: FakeAnthropic) -> FakeAnthropic:
    _fake_server.clear()
    return _fake_server


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)


def completion(fake: FakeAnthropic, messages: Any = None, **kwargs: Any) -> Any:
    return modelport.completion(f"anthropic/{MODEL}", messages or USER, api_base=fake.base_url, **kwargs)


def sent_body(**kwargs: Any) -> Dict[str, Any]:
    """The body a call would send (built, not sent)."""
    messages = kwargs.pop("messages", USER)
    body: Dict[str, Any] = modelport.Client().build_request("chat", f"anthropic/{MODEL}", messages=messages, **kwargs).json
    return body


# --- the conformance kit -----------------------------------------------------------------------


def _url_block(url: str, remote_kind: str) -> Dict[str, Any]:
    if url.startswith("data:"):
        media, data = url[5:].split(";base64,", 1)
        return {"type": "document" if media == "application/pdf" else "image", "source": {"type": "base64", "media_type": media, "data": data}}
    return {"type": remote_kind, "source": {"type": "url", "url": url}}


def _anthropic_part(part: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    if part["type"] == "text":
        return {"type": "text", "text": part["text"]} if part["text"] else None
    if part["type"] == "image_url":
        return _url_block(part["image_url"]["url"], "image")
    if "file_id" in part["file"]:
        return {"type": "document", "source": {"type": "file", "file_id": part["file"]["file_id"]}}
    return _url_block(part["file"]["file_data"], "document")


def _unsupported_part(part: Dict[str, Any]) -> bool:
    if part["type"] in ("input_audio", "video_url"):
        return True
    url = (part.get("image_url") or {}).get("url") or (part.get("file") or {}).get("file_data") or ""
    return url.startswith("data:") and not url.startswith(("data:image/", "data:application/pdf"))


def _supported(body: Dict[str, Any]) -> Dict[str, Any]:
    """``body`` without what the README says is rejected (so every example maps)."""
    body = {k: v for k, v in body.items() if k not in ("seed", "presence_penalty", "frequency_penalty", "n")}
    if (body.get("response_format") or {}).get("type") == "json_object":
        del body["response_format"]
    for m in body["messages"]:
        if isinstance(m.get("content"), list):
            m["content"] = [p for p in m["content"] if not _unsupported_part(p)] or "fallback text"
    return body


def _first_choice_only(response: Dict[str, Any]) -> Dict[str, Any]:
    return {**response, "choices": response["choices"][:1]}


def decode_stream(hooks: Any, call: Any, pieces: List[bytes]) -> List[ChatCompletionChunk]:
    """``pieces`` through the provider's decoder and parse_stream_chunk, until the end marker."""
    decoder = hooks.stream_decoder(call, WireResponse(200, {"content-type": "text/event-stream"}, b""))
    events = [event for piece in pieces for event in decoder.feed(piece)] + decoder.flush()
    out: List[Dict[str, Any]] = []
    for event in events:
        item = hooks.parse_stream_chunk(call, event)
        if isinstance(item, EndOfStream):
            out += item.chunks
            return [ChatCompletionChunk.from_dict(c) for c in out]
        if item is not IGNORE_EVENT:
            out += item if isinstance(item, list) else [item]
    raise AssertionError("the stream never reached its end marker")


class TestAnthropic(ProviderConformance):
    provider = "anthropic"

    def accepts_request(self, body: Dict[str, Any]) -> bool:
        # README: n > 1, penalties, seed, json_object, audio/video parts and non-image,
        # non-PDF data are rejected before sending.
        if body.get("n", 1) != 1 or {"seed", "presence_penalty", "frequency_penalty"} & set(body):
            return False
        if (body.get("response_format") or {}).get("type") == "json_object":
            return False
        return not any(
            _unsupported_part(p) for m in body["messages"] if isinstance(m.get("content"), list) for p in m["content"]
        )

    def expected_request(self, body: Dict[str, Any]) -> Dict[str, Any]:
        body = {k: v for k, v in body.items() if v is not None}
        system: List[str] = []
        turns: List[Dict[str, Any]] = []
        for m in body["messages"]:
            role, content = m["role"], m.get("content")
            if role in ("system", "developer"):
                system += [t for t in ([content] if isinstance(content, str) else [p["text"] for p in content]) if t]
                continue
            if role == "tool":
                role, blocks = "user", [{"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": content}]
            elif isinstance(content, list):
                blocks = [b for b in map(_anthropic_part, content) if b]
            else:
                blocks = [{"type": "text", "text": content}] if content else []
            for tc in m.get("tool_calls") or []:
                blocks.append({"type": "tool_use", "id": tc["id"], "name": tc["function"]["name"], "input": json.loads(tc["function"]["arguments"])})
            if not blocks:
                continue
            if turns and turns[-1]["role"] == role:
                turns[-1]["content"] += blocks
            else:
                turns.append({"role": role, "content": blocks})
        out: Dict[str, Any] = {k: v for k, v in body.items() if k.startswith("x_") or k in ("model", "temperature", "top_p")}
        out.update(max_tokens=body.get("max_tokens", 4096), messages=turns)
        if system:
            out["system"] = "\n\n".join(system)
        if "stop" in body:
            out["stop_sequences"] = [body["stop"]] if isinstance(body["stop"], str) else body["stop"]
        if "user" in body:
            out["metadata"] = {"user_id": body["user"]}
        if "tools" in body:
            out["tools"] = [
                {"name": f["name"], "description": f["description"], "input_schema": f["parameters"], **({"strict": f["strict"]} if "strict" in f else {})}
                for f in (t["function"] for t in body["tools"])
            ]
        choice = body.get("tool_choice")
        if choice is not None:
            names = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}
            out["tool_choice"] = names[choice] if isinstance(choice, str) else {"type": "tool", "name": choice["function"]["name"]}
        if (body.get("response_format") or {}).get("type") == "json_schema":
            out["output_config"] = {"format": {"type": "json_schema", "schema": body["response_format"]["json_schema"]["schema"]}}
        if body.get("stream"):
            out["stream"] = True
        return out

    def expected_response(self, body: Dict[str, Any]) -> Dict[str, Any]:
        # README: one message per response; content null when empty; created from the date
        # header (the encoders send none: 0); cache reads also kept as cache_read_input_tokens.
        choice = body["choices"][0]
        original = choice["message"]
        reply: Dict[str, Any] = {"role": "assistant", "content": original["content"] or None, "refusal": None}
        for key in ("reasoning_content", "tool_calls"):
            if key in original:
                reply[key] = original[key]
        usage = dict(body["usage"])
        if "prompt_tokens_details" in usage:
            usage["cache_read_input_tokens"] = usage["prompt_tokens_details"]["cached_tokens"]
        extras = {k: v for k, v in body.items() if k not in ("id", "object", "created", "model", "choices", "usage")}
        return {
            **extras, "id": body["id"], "object": "chat.completion", "created": 0, "model": body["model"], "usage": usage,
            "choices": [{"index": 0, "message": reply, "finish_reason": choice["finish_reason"], "logprobs": None}],
        }  # fmt: skip

    def expected_chunk(self, chunk: Dict[str, Any]) -> Dict[str, Any]:
        # README: created 0; the first chunk says only the role (and carries the message's
        # unknown fields); later tool-call deltas carry no id; choice extras have no place.
        out = {**chunk, "created": 0}
        first = bool(chunk["choices"]) and "role" in chunk["choices"][0]["delta"]
        if not first:
            out.pop("system_fingerprint", None)
        choices = []
        for choice in chunk["choices"]:
            delta = {"role": "assistant"} if first else dict(choice["delta"])
            if "tool_calls" in delta:
                delta["tool_calls"] = [
                    {k: v for k, v in tc.items() if k not in ("id", "type")} if not tc.get("id") else tc for tc in delta["tool_calls"]
                ]
            choices.append({"index": 0, "delta": delta, "logprobs": None, "finish_reason": choice["finish_reason"]})
        out["choices"] = choices
        if "usage" in chunk and "prompt_tokens_details" in chunk["usage"]:
            out["usage"] = {**chunk["usage"], "cache_read_input_tokens": chunk["usage"]["prompt_tokens_details"]["cached_tokens"]}
        return out

    @_settings
    @given(data=st.data())
    def test_chat_stream_rebuilds_the_response(self, openai_schema_validator: Any, data: Any) -> None:
        # Overrides the kit's property: an Anthropic stream holds one message (the kit draws
        # up to two choices), and its chunk stream ends in a usage chunk, which OpenAI sends
        # only with stream_options.include_usage; otherwise the same checks.
        response = data.draw(mst.chat_responses().map(_first_choice_only), label="response")
        chunks = data.draw(mst.chunk_stream(response), label="chunks")
        body = {"model": "conformance-model", "messages": [{"role": "user", "content": "x"}], "stream": True, "stream_options": {"include_usage": True}}
        call = self.call("chat", body)
        raw = self.hooks.encode_stream(call, copy.deepcopy(chunks))
        assert b"event: message_start\n" in raw and raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
        pieces = mst.split_bytes(raw, data.draw(st.lists(st.integers(0, len(raw)), max_size=12), label="cuts"))
        typed = decode_stream(self.hooks, call, pieces)
        assert [c.to_dict() for c in typed] == [self.expected_chunk(c) for c in chunks]
        for chunk in typed:
            openai_schema_validator(chunk.to_dict(), "CreateChatCompletionStreamResponse")
        rebuilt = modelport.stream_to_completion(typed).to_dict()
        assert rebuilt == self.expected_response(copy.deepcopy(response))
        openai_schema_validator(rebuilt, "CreateChatCompletionResponse")

    @settings(max_examples=max(EXAMPLES, 60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=mst.chat_requests().map(_supported))
    def test_supported_requests_map_as_documented(self, body: Dict[str, Any]) -> None:
        # The kit's request property rejects most drawn bodies (seed, penalties, n, audio):
        # this one draws only mappable bodies, so every example checks the mapping.
        body = {"model": "conformance-model", **body}
        assert self.accepts_request(body)
        call = self.call("chat", copy.deepcopy(body))
        request = self.hooks.transform_request(call, self.hooks.resolve_endpoint(call))
        assert request.url == "http://127.0.0.1:1/v1/messages"
        assert request.headers["x-api-key"] == self.api_key and request.headers["anthropic-version"] == "2023-06-01"
        assert request.json == self.expected_request(copy.deepcopy(body))

    def test_error_types_and_statuses_of_the_errors_page(self) -> None:
        call = self.call("chat", {"model": "m"})
        for status, kind in [(400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"), (404, "not_found_error"),
                             (413, "request_too_large"), (429, "rate_limit_error"), (500, "api_error"), (529, "overloaded_error")]:  # fmt: skip
            body = json.loads(self.hooks.encode_error(call, status, "boom", None).content)
            assert body == {"type": "error", "error": {"type": kind, "message": "boom"}}


# --- the public API over loopback HTTP ----------------------------------------------------------


def test_chat_sync_reaches_the_messages_api(fake: FakeAnthropic) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]
    before = int(time.time())
    result = completion(fake, messages, temperature=0.2)
    sent = fake.last
    assert sent.path == "/v1/messages" and sent.method == "POST"
    assert sent.headers["x-api-key"] == KEY and sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers and sent.headers["content-type"].startswith("application/json")
    assert sent.json == {
        "model": MODEL, "system": "Be brief.", "max_tokens": 4096, "temperature": 0.2,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
    }  # fmt: skip
    assert result.to_dict()["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "You said: hello", "refusal": None}, "finish_reason": "stop", "logprobs": None}
    ]
    assert result.id == "msg_01XFDUDYJgAACzvnptvVoYEL" and result.model == MODEL and result.object == "chat.completion"
    assert result.usage.to_dict() == {
        "prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18, "prompt_tokens_details": {"cached_tokens": 0},
        "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
    }  # fmt: skip
    assert before - 2 <= result.created <= time.time() + 2  # from the response's date header


def test_chat_async(fake: FakeAnthropic) -> None:
    result = asyncio.run(modelport.acompletion(f"anthropic/{MODEL}", [{"role": "user", "content": "async hi"}], api_base=fake.base_url, max_tokens=50))
    assert result.choices[0].message.content == "You said: async hi"
    assert fake.last.json["max_tokens"] == 50 and fake.last.headers["x-api-key"] == KEY


THINKING_TOOLS = message(
    [
        {"type": "thinking", "thinking": "Let me think.", "signature": "sig-EqQBCkgIARAB"},
        {"type": "text", "text": "Checking the weather."},
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}},
    ],
    stop="tool_use",
    usage={"input_tokens": 20, "output_tokens": 30, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 7},
)


def test_stream_text_thinking_and_tool_calls(fake: FakeAnthropic) -> None:
    fake.reply(events=stream_events(THINKING_TOOLS))
    chunks = list(completion(fake, stream=True, stream_options={"include_usage": True}))
    assert fake.last.json["stream"] is True and "stream_options" not in fake.last.json
    args = json.dumps({"city": "Paris"})
    signed = {"type": "thinking", "thinking": "Let me think.", "signature": "sig-EqQBCkgIARAB"}
    assert [(c.choices[0].delta.to_dict(), c.choices[0].finish_reason) for c in chunks[:-1]] == [
        ({"role": "assistant"}, None),
        ({"reasoning_content": "Let "}, None), ({"reasoning_content": "me "}, None), ({"reasoning_content": "think."}, None),
        ({"thinking_blocks": [signed]}, None),
        ({"content": "Checking "}, None), ({"content": "the "}, None), ({"content": "weather."}, None),
        ({"tool_calls": [{"index": 0, "id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": args[:len(args) // 2]}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": args[len(args) // 2:]}}]}, None),
        ({"tool_calls": [{"index": 1, "id": "toolu_01B", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}, None),
        ({}, "tool_calls"),
    ]  # fmt: skip
    assert all(c.id == "msg_01XFDUDYJgAACzvnptvVoYEL" and c.model == MODEL and c.created == 0 for c in chunks)
    assert chunks[-1].choices == []
    assert chunks[-1].usage.to_dict() == {
        "prompt_tokens": 32, "completion_tokens": 30, "total_tokens": 62, "prompt_tokens_details": {"cached_tokens": 7},
        "cache_creation_input_tokens": 5, "cache_read_input_tokens": 7,
    }  # fmt: skip
    rebuilt = modelport.stream_to_completion(chunks).to_dict()
    # The same message answered without streaming decodes to the same completion.
    fake.reply(body=THINKING_TOOLS)
    plain = completion(fake).to_dict()
    assert {**plain, "created": 0} == rebuilt
    reply = plain["choices"][0]["message"]
    assert reply["thinking_blocks"] == [signed] and reply["reasoning_content"] == "Let me think."
    assert [c["function"]["arguments"] for c in reply["tool_calls"]] == [args, "{}"]


def test_stream_without_include_usage_ends_at_the_finish_chunk(fake: FakeAnthropic) -> None:
    chunks = list(completion(fake, [{"role": "user", "content": "a b"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "You said: a b"
    assert chunks[-1].choices[0].finish_reason == "stop" and all(c.choices for c in chunks)


def test_stream_async_with_usage(fake: FakeAnthropic) -> None:
    async def run() -> List[Any]:
        stream = await modelport.acompletion(f"anthropic/{MODEL}", USER, api_base=fake.base_url, stream=True, stream_options={"include_usage": True})
        return [chunk async for chunk in stream]

    chunks = asyncio.run(run())
    assert modelport.stream_to_completion(chunks).choices[0].message.content == "You said: hello"
    assert chunks[-1].usage.completion_tokens == 6 and chunks[-1].usage.prompt_tokens == 12


def test_stream_pings_and_unknown_events_are_ignored(fake: FakeAnthropic) -> None:
    events: List[Any] = stream_events(message())
    events.insert(3, ": keep-alive comment\n\n")
    events.insert(4, {"type": "future_event_type", "data": 1})
    fake.reply(events=events)
    chunks = list(completion(fake, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hi there"


def test_error_event_in_stream_raises_typed_after_earlier_chunks(fake: FakeAnthropic) -> None:
    events = stream_events(message())[:5]  # message_start, ping, block start, two deltas
    events.append({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    fake.reply(events=events)
    received = []
    with pytest.raises(errors.ServiceUnavailableError) as info:
        for chunk in completion(fake, stream=True):
            received.append(chunk)
    assert [c.choices[0].delta.get("content") for c in received] == [None, "Hi ", "there"]
    assert info.value.status == 529 and info.value.type == "overloaded_error" and info.value.message == "Overloaded"


def test_stream_cut_before_message_stop_is_interrupted(fake: FakeAnthropic) -> None:
    fake.reply(events=stream_events(message())[:-2])  # no message_delta, no message_stop
    with pytest.raises(errors.StreamInterruptedError):
        list(completion(fake, stream=True))


def test_tools_and_tool_results_over_the_wire(fake: FakeAnthropic) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
            {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "rain"},
    ]  # fmt: skip
    fake.reply(body=message([{"type": "text", "text": "One more."}, {"type": "tool_use", "id": "toolu_3", "name": "get_weather", "input": {"city": "Oslo"}}], stop="tool_use"))
    result = completion(fake, messages, tools=tools, tool_choice="required", parallel_tool_calls=False)
    sent = fake.last.json
    assert sent["tools"] == [{"name": "get_weather", "description": "Weather", "input_schema": tools[0]["function"]["parameters"]}]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "rain"}]},
    ]  # fmt: skip
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "One more."
    assert [c.to_dict() for c in choice.message.tool_calls] == [
        {"id": "toolu_3", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}
    ]


@pytest.mark.parametrize(
    "choice,expected",
    [("auto", {"type": "auto"}), ("none", {"type": "none"}), ("required", {"type": "any"}),
     ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"}), ({"type": "any"}, {"type": "any"})],
)  # fmt: skip
def test_tool_choice_mapping(choice: Any, expected: Dict[str, Any]) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    body = sent_body(tools=tools, tool_choice=choice)
    assert body["tool_choice"] == expected and body["tools"] == [{"name": "f", "input_schema": {"type": "object"}}]


def test_invalid_tool_arguments_name_the_message(fake: FakeAnthropic) -> None:
    messages = [USER[0], {"role": "assistant", "content": None, "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]
    with pytest.raises(errors.InvalidRequestError) as info:
        completion(fake, messages)
    assert info.value.param == "messages[1].tool_calls[0].function.arguments" and "messages[1]" in str(info.value)
    assert fake.requests == []


def test_images_documents_and_cache_control(fake: FakeAnthropic) -> None:
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Long rules.", "cache_control": {"type": "ephemeral"}}]},
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.invalid/cat.png"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0x", "filename": "a.pdf"}},
            {"type": "text", "text": "Describe.", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "Second user turn.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ]  # fmt: skip
    completion(fake, messages)
    sent = fake.last.json
    assert sent["system"] == [
        {"type": "text", "text": "Long rules.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Answer in French."},
    ]
    assert sent["messages"] == [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.invalid/cat.png"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}},
        {"type": "text", "text": "Describe.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Second user turn.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ]}]  # fmt: skip


def test_system_prompts_are_lifted_and_same_role_turns_merged(fake: FakeAnthropic) -> None:
    messages = [
        {"role": "system", "content": "Rule one."},
        {"role": "user", "content": "first"},
        {"role": "developer", "content": [{"type": "text", "text": "Rule two."}, {"type": "text", "text": ""}]},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "third"}]},
        {"role": "assistant", "content": "answer"},
        {"role": "assistant", "content": [{"type": "text", "text": "more"}]},
        {"role": "user", "content": "last"},
    ]
    result = completion(fake, messages)
    sent = fake.last.json
    text = lambda t: {"type": "text", "text": t}  # noqa: E731
    assert sent["system"] == "Rule one.\n\nRule two."
    assert sent["messages"] == [
        {"role": "user", "content": [text("first"), text("second"), text("third")]},
        {"role": "assistant", "content": [text("answer"), text("more")]},
        {"role": "user", "content": [text("last")]},
    ]
    assert result.choices[0].message.content == "You said: last"


def test_thinking_blocks_are_sent_back_first() -> None:
    signed = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    assistant = {"role": "assistant", "content": None, "thinking_blocks": [signed], "reasoning_content": "hmm",
                 "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}]}  # fmt: skip
    body = sent_body(messages=[USER[0], assistant, {"role": "tool", "tool_call_id": "t1", "content": "ok"}])
    assert body["messages"][1] == {"role": "assistant", "content": [signed, {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]}


@pytest.mark.parametrize(
    "params,expected",
    [
        ({"stop": "END"}, {"stop_sequences": ["END"]}),
        ({"stop": ["a", "b"]}, {"stop_sequences": ["a", "b"]}),
        ({"user": "user-42"}, {"metadata": {"user_id": "user-42"}}),
        ({"max_completion_tokens": 77}, {"max_tokens": 77}),
        ({"max_tokens": 10, "max_completion_tokens": 20}, {"max_tokens": 20}),
        ({"top_p": 0.5, "top_k": 40}, {"top_p": 0.5, "top_k": 40, "max_tokens": 4096}),
        ({"reasoning_effort": "low"}, {"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 4096 + 1024}),
        ({"reasoning_effort": "medium"}, {"thinking": {"type": "enabled", "budget_tokens": 4096}, "max_tokens": 8192}),
        ({"reasoning_effort": "high", "max_tokens": 20000}, {"thinking": {"type": "enabled", "budget_tokens": 16384}, "max_tokens": 20000}),
        ({"reasoning_effort": "none"}, {"thinking": {"type": "disabled"}, "max_tokens": 4096}),
        ({"thinking": {"type": "enabled", "budget_tokens": 2000}}, {"thinking": {"type": "enabled", "budget_tokens": 2000}, "max_tokens": 6096}),
        ({"reasoning_effort": "high", "thinking": {"type": "enabled", "budget_tokens": 1500}}, {"thinking": {"type": "enabled", "budget_tokens": 1500}}),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}},
         {"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}),
        ({"response_format": {"type": "text"}, "n": 1}, {"max_tokens": 4096}),
    ],
)  # fmt: skip
def test_parameter_mapping(fake: FakeAnthropic, params: Dict[str, Any], expected: Dict[str, Any]) -> None:
    completion(fake, **params)
    sent = fake.last.json
    assert {k: sent.get(k) for k in expected} == expected
    for name in ("stop", "user", "max_completion_tokens", "reasoning_effort", "response_format", "n"):
        assert name not in sent


@pytest.mark.parametrize(
    "kwargs,param",
    [
        ({"n": 2}, "n"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"reasoning_effort": "max"}, "reasoning_effort"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]}]}, "messages[0].content[0]"),
        ({"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": "https://x.invalid/v.mp4"}}]}]}, "messages[0].content[0]"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:video/mp4;base64,AAAA"}}]}]}, "messages[0].content[0]"),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
    ],
)  # fmt: skip
def test_rejected_before_sending(fake: FakeAnthropic, kwargs: Dict[str, Any], param: str) -> None:
    with pytest.raises(errors.InvalidRequestError) as info:
        completion(fake, kwargs.pop("messages", None), **kwargs)
    assert info.value.param == param
    assert fake.requests == []


@pytest.mark.parametrize(
    "param,value",
    [("logit_bias", {"50256": -100}), ("presence_penalty", 0.5), ("frequency_penalty", 0.5), ("seed", 7), ("logprobs", True)],
)
def test_unsupported_openai_params_raise_or_drop(fake: FakeAnthropic, param: str, value: Any) -> None:
    with pytest.raises(errors.InvalidRequestError, match=param):
        completion(fake, **{param: value})
    assert fake.requests == []
    completion(fake, drop_params=True, **{param: value})
    assert param not in fake.last.json and fake.last.json["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]


@pytest.mark.parametrize(
    "status,kind,text,cls,retryable",
    [
        (400, "invalid_request_error", "messages: roles must alternate", errors.BadRequestError, False),
        (400, "invalid_request_error", "prompt is too long: 212000 tokens > 200000 maximum", errors.ContextWindowExceededError, False),
        (400, "invalid_request_error", "input length and `max_tokens` exceed context limit: 198000 + 8192 > 200000", errors.ContextWindowExceededError, False),
        (401, "authentication_error", "invalid x-api-key", errors.AuthenticationError, False),
        (402, "billing_error", "Your credit balance is too low", errors.QuotaExceededError, False),
        (403, "permission_error", "Your API key does not have permission", errors.PermissionDeniedError, False),
        (404, "not_found_error", "model: claude-x", errors.NotFoundError, False),
        (413, "request_too_large", "Request exceeds the maximum allowed number of bytes", errors.BadRequestError, False),
        (429, "rate_limit_error", "Number of request tokens has exceeded your rate limit", errors.RateLimitError, True),
        (500, "api_error", "Internal server error", errors.InternalServerError, True),
        (529, "overloaded_error", "Overloaded", errors.ServiceUnavailableError, True),
    ],
)  # fmt: skip
def test_errors_map_to_typed_classes(fake: FakeAnthropic, status: int, kind: str, text: str, cls: type, retryable: bool) -> None:
    fake.reply(status, error_body(kind, text))
    with pytest.raises(errors.ProviderError) as info:
        completion(fake, num_retries=0)
    error = info.value
    assert type(error) is cls and error.status == status and error.retryable is retryable
    assert error.message == text and error.type == kind and error.request_id == "req_011CSHoEeqs5C35K2UUqR7Fy"
    assert error.provider == "anthropic" and error.model == MODEL


def test_rate_limit_retry_after_is_honoured(fake: FakeAnthropic, client: modelport.Client) -> None:
    fake.reply(429, error_body("rate_limit_error", "slow down"), headers={"retry-after": "0.3"})
    started = time.monotonic()
    result = client.completion(f"anthropic/{MODEL}", USER, api_base=fake.base_url, num_retries=1)
    assert time.monotonic() - started >= 0.3
    assert result.choices[0].message.content == "You said: hello" and len(fake.requests) == 2


def test_overloaded_is_retried_then_raised(fake: FakeAnthropic, client: modelport.Client) -> None:
    for _ in range(2):
        fake.reply(529, error_body("overloaded_error", "Overloaded"))
    assert client.completion(f"anthropic/{MODEL}", USER, api_base=fake.base_url, num_retries=2).choices[0].message.content
    assert len(fake.requests) == 3
    fake.clear()
    for _ in range(2):
        fake.reply(529, error_body("overloaded_error", "Overloaded"))
    with pytest.raises(errors.ServiceUnavailableError):
        client.completion(f"anthropic/{MODEL}", USER, api_base=fake.base_url, num_retries=1)
    assert len(fake.requests) == 2


def test_base_url_with_or_without_v1_and_from_env(fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> None:
    for base in (fake.base_url, fake.base_url + "/", fake.base_url + "/v1", fake.base_url + "/v1/messages"):
        completion_result = modelport.completion(f"anthropic/{MODEL}", USER, api_base=base)
        assert completion_result.choices[0].message.content == "You said: hello" and fake.last.path == "/v1/messages"
    monkeypatch.setenv("ANTHROPIC_API_BASE", fake.base_url + "/v1")
    modelport.completion(f"anthropic/{MODEL}", USER)
    assert fake.last.path == "/v1/messages" and len(fake.requests) == 5
    assert modelport.Client().build_request("chat", "anthropic/m", messages=USER, api_base="https://gw.invalid/anthropic").url == "https://gw.invalid/anthropic/v1/messages"
    monkeypatch.delenv("ANTHROPIC_API_BASE")
    assert modelport.Client().build_request("chat", "anthropic/m", messages=USER).url == "https://api.anthropic.com/v1/messages"


def test_key_from_argument_wins_and_missing_key_fails_before_sending(fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(errors.AuthenticationError) as info:
        completion(fake, api_key="sk-ant-wrong", num_retries=0)
    assert info.value.message == "invalid x-api-key" and fake.last.headers["x-api-key"] == "sk-ant-wrong"
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    fake.clear()
    with pytest.raises(errors.AuthenticationError, match="ANTHROPIC_API_KEY"):
        completion(fake)
    assert fake.requests == []


def test_key_is_redacted_in_dry_run_and_reprs() -> None:
    client = modelport.Client()
    text = client.describe_request("chat", f"anthropic/{MODEL}", messages=USER)
    assert "x-api-key: [REDACTED]" in text and KEY not in text and "anthropic-version: 2023-06-01" in text
    assert KEY not in repr(client.build_request("chat", f"anthropic/{MODEL}", messages=USER))


def test_embeddings_are_not_offered(fake: FakeAnthropic) -> None:
    with pytest.raises(errors.InvalidRequestError, match="does not support embedding"):
        modelport.embedding(f"anthropic/{MODEL}", "hi", api_base=fake.base_url)
    assert fake.requests == []


def test_providers_lists_anthropic_with_its_operations() -> None:
    listing = {p.name: p for p in modelport.providers()}["anthropic"]
    assert listing.operations == ("chat",) and listing.distribution == "modelport-anthropic" and listing.version == "0.2.0"
    assert listing.info is not None and listing.info.stream_framing == "custom" and "x-api-key" in listing.info.secret_headers


# --- through the gateway, with the official openai SDK -----------------------------------------

MASTER = "sk-gateway-master-anthropic"




def test_gateway_serves_claude_to_the_openai_sdk(fake: FakeAnthropic, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelport.server import app_from_config

    monkeypatch.setenv("GATEWAY_MASTER", MASTER)
    config = tmp_path / "config.yaml"
    config.write_text(f"""
model_list:
  - model_name: claude
    litellm_params: {{model: anthropic/{MODEL}, api_base: {fake.base_url}, api_key: os.environ/ANTHROPIC_API_KEY}}
router_settings: {{num_retries: 0}}
general_settings: {{master_key: os.environ/GATEWAY_MASTER}}
""")
    server, thread, url = run_server(app_from_config(str(config)))
    try:
        sdk = openai_sdk.OpenAI(base_url=f"{url}/v1", api_key=MASTER, max_retries=0)
        result = sdk.chat.completions.create(model="claude", messages=[{"role": "system", "content": "Terse."}, {"role": "user", "content": "hello"}], max_tokens=64)
        assert result.choices[0].message.content == "You said: hello" and result.choices[0].finish_reason == "stop"
        assert result.usage is not None and result.usage.total_tokens == 18
        assert fake.last.json == {"model": MODEL, "system": "Terse.", "max_tokens": 64, "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]}
        assert fake.last.headers["x-api-key"] == KEY
        stream = sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": "a b c"}], stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: a b c"
        assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
        assert fake.last.json["stream"] is True
        fake.reply(529, error_body("overloaded_error", "Overloaded"))
        with pytest.raises(openai_sdk.APIStatusError) as info:
            sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}])
        assert info.value.status_code >= 500
    finally:
        server.should_exit = True
        thread.join(10)
