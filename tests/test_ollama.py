"""The Ollama provider (plugins/ollama) against a loopback server speaking Ollama's native API.

The kit's mappings are the rules of the plugin's README and Ollama's API reference, written
here independently of the plugin's code. The HTTP tests check what reached the fake
(``/api/chat`` and ``/api/embed`` bodies, headers), NDJSON streams cut across network
writes, ``{"error": "..."}`` bodies and lines, the gateway with the official openai SDK,
and the provider listing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Optional, Tuple

import openai
import pytest
from hypothesis import assume

import modelport
from helpers import run_server
from modelport.server import app_from_config
from modelport.testing import ProviderConformance

USER = [{"role": "user", "content": "hello there"}]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
STAMP = "2024-07-22T20:33:28.123648455Z"  # Ollama's created_at: RFC 3339 with nanoseconds
STAMP_UNIX = 1721680408


@pytest.fixture(autouse=True)
def _no_ollama_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_API_BASE", raising=False)
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)


# --- the documented mappings, written from the README (not from the plugin's code) -------------


class _Matches:
    """Equal to any string matching ``pattern`` (the generated ids hash wire bytes)."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.pattern.fullmatch(other) is not None

    def __repr__(self) -> str:
        return f"<matching {self.pattern.pattern}>"


ANY_ID = _Matches(r"chatcmpl-ollama-[0-9a-f]{24}")
_ROLE = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
_SAME_NAME = ("temperature", "top_p", "seed", "frequency_penalty", "presence_penalty")
#: OpenAI fields the plugin maps or consumes; every other field is a top-level Ollama field.
_CONSUMED = {
    "model", "messages", "stream", "stream_options", "temperature", "top_p", "seed", "stop", "max_tokens",
    "max_completion_tokens", "frequency_penalty", "presence_penalty", "response_format", "tools", "tool_choice",
    "reasoning_effort", "n",
}  # fmt: skip


def call_id(index: int, name: str, arguments: str) -> str:
    # Documented: call_<index>_<first 8 hex digits of SHA-256(name + arguments)>.
    return f"call_{index}_{hashlib.sha256((name + arguments).encode()).hexdigest()[:8]}"


def compact(arguments: str) -> str:
    # Documented: Ollama's argument objects come back as compact JSON text.
    return json.dumps(json.loads(arguments), ensure_ascii=False, separators=(",", ":"))


def basic_usage(usage: Dict[str, Any]) -> Dict[str, Any]:
    # Documented: prompt_eval_count / eval_count only; OpenAI's token details are not on the wire.
    prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class TestOllama(ProviderConformance):
    provider = "ollama"
    api_base = "http://127.0.0.1:1"

    def accepts_request(self, body: Dict[str, Any]) -> bool:
        # Documented: one choice (n > 1 refused); no tool_choice beyond auto / none; text and
        # image_url parts only, images as base64 data URLs.
        if body.get("n", 1) != 1 or body.get("tool_choice", "auto") not in ("auto", "none"):
            return False
        for message in body["messages"]:
            content = message.get("content")
            for part in content if isinstance(content, list) else ():
                if part["type"] == "image_url" and ";base64," in part["image_url"]["url"]:
                    continue
                if part["type"] != "text":
                    return False
        return True

    def expected_request(self, body: Dict[str, Any]) -> Dict[str, Any]:
        names: Dict[str, str] = {}
        messages = []
        for message in body["messages"]:
            wire: Dict[str, Any] = {"role": _ROLE[message["role"]]}
            content = message.get("content")
            if isinstance(content, list):
                wire["content"] = "\n".join(part["text"] for part in content if part["type"] == "text")
                images = [part["image_url"]["url"].split(";base64,", 1)[1] for part in content if part["type"] == "image_url"]
                if images:
                    wire["images"] = images
            else:
                wire["content"] = content or ""
            if message.get("tool_calls"):
                wire["tool_calls"] = []
                for tool_call in message["tool_calls"]:
                    names[tool_call["id"]] = tool_call["function"]["name"]
                    arguments = json.loads(tool_call["function"]["arguments"])
                    wire["tool_calls"].append({"function": {"name": tool_call["function"]["name"], "arguments": arguments}})
            if message["role"] == "tool" and message["tool_call_id"] in names:
                wire["tool_name"] = names[message["tool_call_id"]]
            messages.append(wire)
        wire = {"model": body["model"], "messages": messages, "stream": bool(body.get("stream"))}
        options = {name: body[name] for name in _SAME_NAME if name in body}
        if "stop" in body:
            options["stop"] = [body["stop"]] if isinstance(body["stop"], str) else body["stop"]
        if "max_tokens" in body:
            options["num_predict"] = body["max_tokens"]
        if options:
            wire["options"] = options
        if body.get("tools") and body.get("tool_choice") != "none":
            wire["tools"] = body["tools"]
        response_format = body.get("response_format") or {"type": "text"}
        if response_format["type"] == "json_object":
            wire["format"] = "json"
        elif response_format["type"] == "json_schema":
            wire["format"] = response_format["json_schema"]["schema"]
        wire.update({key: value for key, value in body.items() if key not in _CONSUMED})
        return wire

    def expected_response(self, body: Dict[str, Any]) -> Dict[str, Any]:
        if body.get("object") == "list":
            return body  # embeddings: Ollama's wire carries the vectors, the count and extra fields
        # Documented: one choice (a result with several is written as its first, its own extra
        # fields lost); a generated id; tool calls with generated ids and compact JSON
        # arguments; finish_reason tool_calls when there are tool calls; basic usage.
        choice = body["choices"][0]
        message = {key: value for key, value in choice["message"].items() if key != "tool_calls"}
        calls = choice["message"].get("tool_calls")
        if calls:
            message["tool_calls"] = []
            for index, tool_call in enumerate(calls):
                name, arguments = tool_call["function"]["name"], compact(tool_call["function"]["arguments"])
                message["tool_calls"].append({"id": call_id(index, name, arguments), "type": "function", "function": {"name": name, "arguments": arguments}})
        extras = {key: value for key, value in body.items() if key not in ("id", "object", "created", "model", "choices", "usage")}
        return {
            **extras,
            "id": ANY_ID,
            "object": "chat.completion",
            "created": body["created"],
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else choice["finish_reason"], "logprobs": None}],
            "usage": basic_usage(body["usage"]),
        }

    _tools_seen = False

    def expected_chunk(self, chunk: Dict[str, Any]) -> Dict[str, Any]:
        # Documented: each line is one chunk (with the stream's id); the done line gives the
        # finish chunk (tool_calls once the stream carried tool calls) and the usage chunk.
        head = {key: value for key, value in chunk.items() if key not in ("choices", "usage")}
        head["id"] = ANY_ID
        if not chunk["choices"]:
            return {**head, "choices": [], "usage": basic_usage(chunk["usage"])}
        (choice,) = chunk["choices"]
        # Ollama streams one choice and whole tool calls (arguments are objects): a stream of
        # several choices, or of arguments cut across chunks, is beyond its wire.
        assume(choice["index"] == 0)
        delta = dict(choice["delta"])
        if "role" in delta:  # the first chunk of a stream
            self._tools_seen = False
        if delta.get("tool_calls"):
            calls = []
            for tool_call in delta["tool_calls"]:
                function = tool_call["function"]
                assume("name" in function and _is_object(function["arguments"]))
                arguments = compact(function["arguments"])
                calls.append({"index": tool_call["index"], "id": call_id(tool_call["index"], function["name"], arguments), "type": "function", "function": {"name": function["name"], "arguments": arguments}})
            delta["tool_calls"] = calls
            self._tools_seen = True
        finish = choice["finish_reason"]
        if finish is not None:
            finish = "tool_calls" if self._tools_seen else finish
            return {**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}]}
        return {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]}


def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def test_the_kit_covers_chat_and_embeddings_only() -> None:
    assert callable(TestOllama.test_embedding_response_survives_transform_response)
    assert TestOllama.test_text_completion_response_survives_transform_response is None


# --- a loopback server speaking Ollama's native API ------------------------------------------


def _ndjson(lines: List[Dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


class OllamaServer:
    """``POST /api/chat`` and ``/api/embed`` on 127.0.0.1: scripted replies, else echoes.

    Bodies go out with chunked transfer encoding, one network write per piece, so NDJSON
    lines (and UTF-8 sequences) arrive cut across reads. Unknown paths answer Go's plain
    ``404 page not found``; the model ``missing`` answers Ollama's 404 JSON error.
    """

    def __init__(self) -> None:
        self.requests: List[Dict[str, Any]] = []
        self._replies: List[Tuple[int, str, List[bytes]]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="ollama-fake", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def last(self) -> Dict[str, Any]:
        return self.requests[-1]

    def reply(self, status: int = 200, *, json_body: Any = None, lines: Optional[List[Dict[str, Any]]] = None, raw: Optional[bytes] = None, piece: int = 0) -> None:
        """Queue one answer: a JSON body, NDJSON ``lines`` or ``raw`` bytes, cut every ``piece`` bytes."""
        if lines is not None:
            data, kind = _ndjson(lines), "application/x-ndjson"
        elif raw is not None:
            data, kind = raw, "text/plain; charset=utf-8"
        else:
            data, kind = json.dumps(json_body).encode(), "application/json; charset=utf-8"
        pieces = [data[i : i + piece] for i in range(0, len(data), piece)] if piece else [data]
        with self._lock:
            self._replies.append((status, kind, pieces))

    def _default(self, path: str, body: Dict[str, Any]) -> Tuple[int, str, List[bytes]]:
        if path not in ("/api/chat", "/api/embed"):
            return 404, "text/plain", [b"404 page not found"]
        if body.get("model") == "missing":
            message = f'model "{body["model"]}" not found, try pulling it first'
            return 404, "application/json; charset=utf-8", [json.dumps({"error": message}).encode()]
        if path == "/api/embed":
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            vectors = [[float(len(text)), 0.5, -0.25] for text in inputs]
            answer = {"model": body["model"], "embeddings": vectors, "total_duration": 14143917, "load_duration": 1019500, "prompt_eval_count": 8}
            return 200, "application/json; charset=utf-8", [json.dumps(answer).encode()]
        text = "You said: " + body["messages"][-1]["content"]
        head = {"model": body["model"], "created_at": STAMP}
        stats = {"total_duration": 4883583458, "load_duration": 1334875, "prompt_eval_count": 26, "prompt_eval_duration": 342546000, "eval_count": len(text.split()), "eval_duration": 4535599000}
        if body.get("stream") is False:
            answer = {**head, "message": {"role": "assistant", "content": text}, "done": True, "done_reason": "stop", **stats}
            return 200, "application/json; charset=utf-8", [json.dumps(answer).encode()]
        words = text.split(" ")
        lines = [{**head, "message": {"role": "assistant", "content": w + (" " if i < len(words) - 1 else "")}, "done": False} for i, w in enumerate(words)]
        lines.append({**head, "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop", **stats})
        data = _ndjson(lines)
        return 200, "application/x-ndjson", [data[i : i + 7] for i in range(0, len(data), 7)]

    def _next(self, path: str, body: Dict[str, Any]) -> Tuple[int, str, List[bytes]]:
        with self._lock:
            if self._replies:
                return self._replies.pop(0)
        return self._default(path, body)

    def _handler_class(self) -> Any:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw or b"{}")
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.requests.append({"path": self.path, "headers": headers, "json": body})
                status, kind, pieces = server._next(self.path, body)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for piece in pieces:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.flush()
                    threading.Event().wait(0.001)  # not time.sleep: tests patch it
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler

    def __enter__(self) -> "OllamaServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(10)


@pytest.fixture(scope="module")
def _server() -> Iterator[OllamaServer]:
    with OllamaServer() as server:
        yield server


@pytest.fixture
def ollama(_server: OllamaServer) -> OllamaServer:
    _server.requests.clear()
    _server._replies.clear()
    return _server


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> List[float]:
    recorded: List[float] = []
    monkeypatch.setattr(time, "sleep", recorded.append)  # the sync client's retry delay
    return recorded


def _id_of(raw: bytes) -> str:
    # Documented: chatcmpl-ollama- and 24 hex digits of the SHA-256 of the body (first line of a stream).
    return "chatcmpl-ollama-" + hashlib.sha256(raw).hexdigest()[:24]


# --- requests ---------------------------------------------------------------------------------


def test_chat_request_reaches_api_chat_in_ollamas_shape(ollama: OllamaServer) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    messages = [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}}, {"type": "text", "text": "and the weather?"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "sunny"},
    ]
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    modelport.completion(
        "ollama/llama3.2", messages, api_base=ollama.base_url, temperature=0.2, top_p=0.9, seed=7, max_tokens=64,
        stop="\n", frequency_penalty=0.5, presence_penalty=0.25, top_k=20, num_ctx=8192, repeat_penalty=1.1,
        tools=tools, tool_choice="auto", reasoning_effort="low", keep_alive="10m",
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    )  # fmt: skip
    sent = ollama.last
    assert sent["path"] == "/api/chat" and "authorization" not in sent["headers"]
    assert sent["json"] == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "what is this?\nand the weather?", "images": [PNG]},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
        ],
        "stream": False,
        "options": {
            "temperature": 0.2, "top_p": 0.9, "seed": 7, "num_predict": 64, "stop": ["\n"], "frequency_penalty": 0.5,
            "presence_penalty": 0.25, "top_k": 20, "num_ctx": 8192, "repeat_penalty": 1.1,
        },
        "tools": tools,
        "format": schema,
        "think": True,
        "keep_alive": "10m",
    }  # fmt: skip


def test_json_mode_think_and_options_dict(ollama: OllamaServer) -> None:
    modelport.completion(
        "ollama_chat/qwen3", USER, api_base=ollama.base_url, response_format={"type": "json_object"}, think=False,
        options={"num_ctx": 4096, "temperature": 1.0}, temperature=0.1, max_completion_tokens=9, max_tokens=99,
    )  # fmt: skip
    sent = ollama.last["json"]
    assert sent["format"] == "json" and sent["think"] is False  # a native keyword, sent as it is
    assert sent["options"] == {"num_ctx": 4096, "temperature": 0.1, "num_predict": 9}
    modelport.completion("ollama/qwen3", USER, api_base=ollama.base_url, reasoning_effort="none", tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="none")
    sent = ollama.last["json"]
    assert sent["think"] is False and "tools" not in sent and "options" not in sent and "tool_choice" not in sent


def test_base_url_key_and_the_ollama_chat_alias(ollama: OllamaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    modelport.completion("ollama_chat/llama3.2", USER, api_base=ollama.base_url + "/api/", api_key="proxy-key-1")
    assert ollama.last["path"] == "/api/chat" and ollama.last["headers"]["authorization"] == "Bearer proxy-key-1"
    monkeypatch.setenv("OLLAMA_API_BASE", ollama.base_url)
    monkeypatch.setenv("OLLAMA_API_KEY", "cloud-key-2")
    modelport.completion("ollama/llama3.2", USER)
    assert ollama.last["headers"]["authorization"] == "Bearer cloud-key-2"
    monkeypatch.delenv("OLLAMA_API_BASE")
    with modelport.Client() as client:
        request = client.build_request("chat", "ollama/llama3.2", messages=USER)
    assert request.url == "http://localhost:11434/api/chat" and request.json["stream"] is False


@pytest.mark.parametrize(
    ("kwargs", "param", "words"),
    [
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.invalid/cat.png"}}]}]}, "messages[0].content", "base64"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]}]}, "messages[0].content", "input_audio"),
        ({"messages": USER, "n": 2}, "n", "one choice"),
        ({"messages": USER, "tool_choice": "required", "tools": [{"type": "function", "function": {"name": "f"}}]}, "tool_choice", "auto"),
        ({"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]}, "messages[0].tool_calls[0]", "not JSON"),
    ],
)
def test_values_ollama_cannot_take_are_refused_before_sending(ollama: OllamaServer, kwargs: Dict[str, Any], param: str, words: str) -> None:
    messages = kwargs.pop("messages")
    with pytest.raises(modelport.InvalidRequestError, match=words) as caught:
        modelport.completion("ollama/llava", messages, api_base=ollama.base_url, **kwargs)
    assert caught.value.param == param and ollama.requests == []


def test_openai_parameters_ollama_lacks_are_refused_or_dropped(ollama: OllamaServer) -> None:
    with pytest.raises(modelport.InvalidRequestError, match="logprobs"):
        modelport.completion("ollama/m", USER, api_base=ollama.base_url, logprobs=True)
    modelport.completion("ollama/m", USER, api_base=ollama.base_url, logprobs=True, parallel_tool_calls=False, drop_params=True)
    assert set(ollama.last["json"]) == {"model", "messages", "stream"}


# --- responses --------------------------------------------------------------------------------


def test_response_with_tool_calls_thinking_usage_and_timings(ollama: OllamaServer) -> None:
    answer = {
        "model": "qwen3",
        "created_at": "2024-07-22T13:33:28.123648455-07:00",
        "message": {
            "role": "assistant", "content": "", "thinking": "The user wants the weather.",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "°C"}}},
                {"function": {"index": 5, "name": "get_time", "arguments": {}}},
            ],
        },
        "done": True, "done_reason": "stop", "total_duration": 885095291, "load_duration": 3753500,
        "prompt_eval_count": 122, "prompt_eval_duration": 328493000, "eval_count": 33, "eval_duration": 552222000,
    }  # fmt: skip
    ollama.reply(json_body=answer)
    result = modelport.completion("ollama/qwen3", USER, api_base=ollama.base_url)
    assert result.id == _id_of(json.dumps(answer).encode())
    assert result.created == STAMP_UNIX and result.model == "qwen3"
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == ""
    assert choice.message.reasoning_content == "The user wants the weather."
    calls = [c.to_dict() for c in choice.message.tool_calls]
    assert calls == [
        {"id": call_id(0, "get_weather", '{"city":"Paris","unit":"°C"}'), "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris","unit":"°C"}'}},
        {"id": call_id(5, "get_time", "{}"), "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]
    assert calls[0]["id"].startswith("call_0_") and len(calls[0]["id"]) == len("call_0_") + 8
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (122, 33, 155)
    extras = result.to_dict()
    assert extras["total_duration"] == 885095291 and extras["eval_duration"] == 552222000
    assert "done" not in extras and "created_at" not in extras


@pytest.mark.parametrize(("done_reason", "finish"), [("stop", "stop"), ("length", "length"), ("load", "load"), (None, "stop")])
def test_done_reason_becomes_finish_reason(ollama: OllamaServer, done_reason: Optional[str], finish: str) -> None:
    answer: Dict[str, Any] = {"model": "m", "created_at": "2023-12-12T14:13:43Z", "message": {"role": "assistant", "content": "Hi"}, "done": True, "eval_count": 1}
    if done_reason:
        answer["done_reason"] = done_reason
    ollama.reply(json_body=answer)
    result = modelport.completion("ollama/m", USER, api_base=ollama.base_url)
    assert result.choices[0].finish_reason == finish and result.created == 1702390423
    assert result.usage.prompt_tokens == 0 and result.usage.completion_tokens == 1


def test_default_echo_sync_and_async(ollama: OllamaServer) -> None:
    result = modelport.completion("ollama/llama3.2", USER, api_base=ollama.base_url)
    assert result.choices[0].message.content == "You said: hello there" and result.choices[0].finish_reason == "stop"

    async def run() -> Any:
        return await modelport.acompletion("ollama/llama3.2", USER, api_base=ollama.base_url, temperature=0)

    assert asyncio.run(run()).choices[0].message.content == "You said: hello there"
    assert ollama.last["json"]["options"] == {"temperature": 0} and ollama.last["json"]["stream"] is False


# --- streams ----------------------------------------------------------------------------------

HEAD = {"model": "llama3.2", "created_at": STAMP}
# Each line has its own time (Ollama stamps them to the nanosecond); all in one second here.
STREAM = [
    {**HEAD, "message": {"role": "assistant", "content": "Hel"}, "done": False},
    {**HEAD, "created_at": STAMP.replace(".123648455", ".2"), "message": {"role": "assistant", "content": "lo, "}, "done": False},
    {**HEAD, "created_at": STAMP.replace(".123648455", ""), "message": {"role": "assistant", "content": "wörld"}, "done": False},
    {**HEAD, "created_at": STAMP.replace(".123648455", ".987654321"), "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "length",
     "total_duration": 4883583458, "prompt_eval_count": 26, "eval_count": 3},
]  # fmt: skip


def _check_stream(chunks: List[Any]) -> None:
    assert len(chunks) == 5
    assert [c.choices[0].delta.content for c in chunks[:3]] == ["Hel", "lo, ", "wörld"]
    first_line = json.dumps(STREAM[0]).encode()
    assert {c.id for c in chunks} == {_id_of(first_line)}  # one id for the whole stream
    assert all(c.created == STAMP_UNIX and c.model == "llama3.2" for c in chunks)
    finish, usage = chunks[-2], chunks[-1]  # the done line became two chunks
    assert finish.choices[0].finish_reason == "length" and finish.choices[0].delta.to_dict() == {}
    assert usage.choices == [] and (usage.usage.prompt_tokens, usage.usage.completion_tokens, usage.usage.total_tokens) == (26, 3, 29)
    assert usage.to_dict()["total_duration"] == 4883583458
    rebuilt = modelport.stream_to_completion(chunks)
    assert rebuilt.choices[0].message.content == "Hello, wörld" and rebuilt.choices[0].finish_reason == "length"


def test_stream_sync_with_lines_cut_across_writes(ollama: OllamaServer) -> None:
    ollama.reply(lines=STREAM, piece=5)  # every line, and the UTF-8 of "ö", is cut across writes
    chunks = list(modelport.completion("ollama/llama3.2", USER, api_base=ollama.base_url, stream=True, stream_options={"include_usage": True}))
    assert ollama.last["json"]["stream"] is True and "stream_options" not in ollama.last["json"]
    _check_stream(chunks)


def test_stream_async_with_lines_cut_across_writes(ollama: OllamaServer) -> None:
    ollama.reply(lines=STREAM, piece=3)

    async def run() -> List[Any]:
        stream = await modelport.acompletion("ollama_chat/llama3.2", USER, api_base=ollama.base_url, stream=True)
        return [chunk async for chunk in stream]

    _check_stream(asyncio.run(run()))


def test_streamed_thinking_and_tool_calls_end_with_tool_calls(ollama: OllamaServer) -> None:
    lines = [
        {**HEAD, "message": {"role": "assistant", "content": "", "thinking": "Need "}, "done": False},
        {**HEAD, "message": {"role": "assistant", "content": "", "thinking": "a tool."}, "done": False},
        {**HEAD, "message": {"role": "assistant", "content": "", "tool_calls": [{"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Oslo"}}}]}, "done": False},
        {**HEAD, "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop", "prompt_eval_count": 10, "eval_count": 20},
    ]
    ollama.reply(lines=lines, piece=11)
    chunks = list(modelport.completion("ollama/qwen3", USER, api_base=ollama.base_url, stream=True))
    assert [c.choices[0].delta.reasoning_content for c in chunks[:2]] == ["Need ", "a tool."]
    assert chunks[2].choices[0].delta.tool_calls[0].to_dict() == {
        "index": 0, "id": call_id(0, "get_weather", '{"city":"Oslo"}'), "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
    }  # fmt: skip
    assert chunks[3].choices[0].finish_reason == "tool_calls"  # the done line said "stop"
    rebuilt = modelport.stream_to_completion(chunks)
    assert rebuilt.choices[0].message.reasoning_content == "Need a tool."
    assert rebuilt.choices[0].message.tool_calls[0].function.arguments == '{"city":"Oslo"}'


def test_an_error_line_is_raised_after_the_chunks_before_it(ollama: OllamaServer) -> None:
    ollama.reply(lines=[STREAM[0], {"error": "an error was encountered while running the model: unexpected EOF"}], piece=4)
    received = []
    with pytest.raises(modelport.InternalServerError, match="unexpected EOF") as caught:
        for chunk in modelport.completion("ollama/llama3.2", USER, api_base=ollama.base_url, stream=True):
            received.append(chunk)
    assert [c.choices[0].delta.content for c in received] == ["Hel"] and caught.value.provider == "ollama"
    ollama.reply(lines=[{"error": "the input length exceeds the context length"}])
    with pytest.raises(modelport.ContextWindowExceededError, match="context length"):
        list(modelport.completion("ollama/llama3.2", USER, api_base=ollama.base_url, stream=True))


def test_a_stream_without_its_done_line_is_interrupted(ollama: OllamaServer) -> None:
    ollama.reply(lines=STREAM[:2], piece=6)
    received = []
    with pytest.raises(modelport.StreamInterruptedError):
        for chunk in modelport.completion("ollama/llama3.2", USER, api_base=ollama.base_url, stream=True):
            received.append(chunk)
    assert [c.choices[0].delta.content for c in received] == ["Hel", "lo, "]


def test_default_echo_stream(ollama: OllamaServer) -> None:
    chunks = list(modelport.completion("ollama/llama3.2", USER, api_base=ollama.base_url, stream=True))
    rebuilt = modelport.stream_to_completion(chunks)
    assert rebuilt.choices[0].message.content == "You said: hello there" and rebuilt.usage.completion_tokens == 4


# --- errors -----------------------------------------------------------------------------------


def test_missing_model_is_not_found_with_a_pull_hint(ollama: OllamaServer) -> None:
    with pytest.raises(modelport.NotFoundError) as caught:
        modelport.completion("ollama/missing", USER, api_base=ollama.base_url)
    error = caught.value
    assert error.status == 404 and error.retryable is False and len(ollama.requests) == 1
    assert error.message.startswith('model "missing" not found, try pulling it first') and "ollama pull missing" in error.message
    with pytest.raises(modelport.NotFoundError, match="ollama pull missing"):
        list(modelport.completion("ollama/missing", USER, api_base=ollama.base_url, stream=True))


def test_a_base_url_that_is_not_ollama_gets_a_hint(ollama: OllamaServer) -> None:
    with pytest.raises(modelport.NotFoundError, match="404 page not found") as caught:
        modelport.completion("ollama/llama3.2", USER, api_base=ollama.base_url + "/v1")
    assert caught.value.status == 404 and "server root" in caught.value.message and ollama.last["path"] == "/v1/api/chat"


def test_error_bodies_map_to_typed_errors(ollama: OllamaServer, sleeps: List[float]) -> None:
    ollama.reply(400, json_body={"error": "invalid options: num_ctx must be a number"})
    with pytest.raises(modelport.BadRequestError) as bad:
        modelport.completion("ollama/m", USER, api_base=ollama.base_url)
    assert type(bad.value) is modelport.BadRequestError and bad.value.message == "invalid options: num_ctx must be a number"
    ollama.reply(400, json_body={"error": "the input length exceeds the context length"})
    with pytest.raises(modelport.ContextWindowExceededError) as long:
        modelport.completion("ollama/m", USER, api_base=ollama.base_url)
    assert long.value.status == 400 and long.value.retryable is False and sleeps == []
    ollama.reply(500, json_body={"error": "llama runner process has terminated: signal: killed"})
    ollama.reply(500, json_body={"error": "llama runner process has terminated: signal: killed"})
    ollama.reply(500, json_body={"error": "llama runner process has terminated: signal: killed"})
    ollama.requests.clear()
    with pytest.raises(modelport.InternalServerError, match="signal: killed") as crash:
        modelport.completion("ollama/m", USER, api_base=ollama.base_url)
    assert crash.value.retryable is True and len(ollama.requests) == 3 and len(sleeps) == 2  # retried twice


# --- embeddings -------------------------------------------------------------------------------


def test_embeddings_over_api_embed(ollama: OllamaServer) -> None:
    result = modelport.embedding("ollama/all-minilm", ["why", "is the sky"], api_base=ollama.base_url, dimensions=3, truncate=False, num_ctx=512)
    assert ollama.last["path"] == "/api/embed"
    assert ollama.last["json"] == {"model": "all-minilm", "input": ["why", "is the sky"], "dimensions": 3, "options": {"num_ctx": 512}, "truncate": False}
    assert result.to_dict() == {
        "object": "list",
        "model": "all-minilm",
        "data": [{"object": "embedding", "index": 0, "embedding": [3.0, 0.5, -0.25]}, {"object": "embedding", "index": 1, "embedding": [10.0, 0.5, -0.25]}],
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
        "total_duration": 14143917,
        "load_duration": 1019500,
    }

    async def run() -> Any:
        return await modelport.aembedding("ollama_chat/all-minilm", "sky", api_base=ollama.base_url, encoding_format="base64")

    encoded = asyncio.run(run()).data[0].embedding
    assert ollama.last["json"] == {"model": "all-minilm", "input": "sky"}
    assert base64.b64decode(encoded) == struct.pack("<3f", 3.0, 0.5, -0.25)
    with pytest.raises(modelport.InvalidRequestError, match="token ids"):
        modelport.embedding("ollama/all-minilm", [[1, 2, 3]], api_base=ollama.base_url)


# --- mock responses, the listing -------------------------------------------------------------


def test_mock_response_runs_through_ollamas_own_decoding() -> None:
    hooks = modelport.registry.hooks("ollama")
    assert hooks.encodes_responses and hooks.encodes_streams
    result = modelport.completion("ollama/m", USER, mock_response="pong")
    assert result.id == ANY_ID and result.choices[0].message.content == "pong"  # an Ollama id: decoded by the plugin
    chunks = list(modelport.completion("ollama/m", USER, mock_response="p o n g", stream=True, stream_options={"include_usage": True}))
    assert len({c.id for c in chunks}) == 1 and chunks[0].id == ANY_ID
    assert modelport.stream_to_completion(chunks).choices[0].message.content == "p o n g" and chunks[-1].usage.total_tokens == 2


def test_providers_lists_both_names() -> None:
    listing = {p.name: p for p in modelport.providers() if p.name in ("ollama", "ollama_chat")}
    assert set(listing) == {"ollama", "ollama_chat"}
    for row in listing.values():
        assert row.distribution == "modelport-ollama" and row.version == "0.2.0" and row.error is None
        assert row.operations == ("chat", "embedding") and row.info is not None
        assert row.info.name == "ollama" and row.info.aliases == ("ollama_chat",) and row.info.stream_framing == "ndjson"
        assert row.info.api_base == "http://localhost:11434" and row.info.api_base_env == ("OLLAMA_API_BASE",)


# --- the gateway, driven by the official openai SDK --------------------------------------------

MASTER = "sk-gateway-ollama-master"




@pytest.fixture
def gateway(ollama: OllamaServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("OLLAMA_GATEWAY_MASTER", MASTER)
    config = tmp_path / "config.yaml"
    config.write_text(f"""
model_list:
  - model_name: local-llama
    params: {{model: ollama_chat/llama3.2, api_base: {ollama.base_url}, num_ctx: 4096}}
  - model_name: local-embed
    params: {{model: ollama/all-minilm, api_base: {ollama.base_url}}}
  - model_name: not-pulled
    params: {{model: ollama/missing, api_base: {ollama.base_url}}}
router_settings: {{num_retries: 0}}
general_settings: {{master_key: os.environ/OLLAMA_GATEWAY_MASTER}}
""")
    server, thread, url = run_server(app_from_config(str(config)))
    yield url
    server.should_exit = True
    thread.join(10)


def test_gateway_with_the_openai_sdk(gateway: str, ollama: OllamaServer) -> None:
    sdk = openai.OpenAI(base_url=f"{gateway}/v1", api_key=MASTER, max_retries=0)
    result = sdk.chat.completions.create(model="local-llama", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    assert result.choices[0].message.content == "You said: hi" and result.id.startswith("chatcmpl-ollama-")
    assert result.usage is not None and result.usage.total_tokens == 26 + 3
    assert ollama.last["path"] == "/api/chat"
    assert ollama.last["json"] == {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False, "options": {"num_ctx": 4096, "num_predict": 5}}
    stream = sdk.chat.completions.create(
        model="local-llama", messages=[{"role": "user", "content": "a b c"}], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: a b c"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop" and chunks[-1].usage.completion_tokens == 5
    assert ollama.last["json"]["stream"] is True
    vectors = sdk.embeddings.create(model="local-embed", input=["abc", "de"])  # the SDK asks for base64
    assert [d.embedding for d in vectors.data] == [[3.0, 0.5, -0.25], [2.0, 0.5, -0.25]]
    with pytest.raises(openai.NotFoundError, match="ollama pull missing"):
        sdk.chat.completions.create(model="not-pulled", messages=[{"role": "user", "content": "x"}])
