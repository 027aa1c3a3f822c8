"""The Gemini provider (``gemini/``): the conformance kit with Gemini's documented mappings,
then real HTTP against a loopback server that speaks the Gemini API's own wire
(``models/{m}:generateContent``, ``:streamGenerateContent?alt=sse``, ``:batchEmbedContents``,
the ``x-goog-api-key`` header, Google's error envelope), and the gateway driven by the
official ``openai`` SDK.

The kit's mappings are written from the plugin's README (the documented rules), not from
its code.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import openai as openai_sdk
import pytest
from hypothesis import assume

import modelport
from helpers import run_server
from modelport.server import app_from_config
from modelport.testing import ProviderConformance

KEY = "AIzaSy-test-key-0123456789"
USER = [{"role": "user", "content": "hi"}]
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


# --- the conformance kit, with Gemini's documented mappings ---------------------------------

#: OpenAI fields the plugin maps; every other field is sent as it is at the top level.
_MAPPED = {
    "model", "messages", "stream", "stream_options", "temperature", "top_p", "top_k", "n", "max_tokens",
    "max_completion_tokens", "stop", "seed", "presence_penalty", "frequency_penalty", "response_format",
    "tools", "tool_choice", "reasoning_effort",
}  # fmt: skip
_CONFIG = {"temperature": "temperature", "top_p": "topP", "n": "candidateCount", "seed": "seed",
           "presence_penalty": "presencePenalty", "frequency_penalty": "frequencyPenalty", "max_tokens": "maxOutputTokens"}  # fmt: skip
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


def _media(url: str) -> Dict[str, Any]:
    # README: data URLs are inline_data; other URLs (the kit's have no extension, so no MIME type) file_data.
    if url.startswith("data:"):
        mime, _, data = url[5:].partition(";base64,")
        return {"inline_data": {"mime_type": mime, "data": data}}
    return {"file_data": {"file_uri": url}}


def _kit_part(part: Dict[str, Any]) -> Dict[str, Any]:
    kind = part["type"]
    if kind == "text":
        return {"text": part["text"]}
    if kind in ("image_url", "video_url"):
        return _media(part[kind]["url"])
    if kind == "input_audio":
        return {"inline_data": {"mime_type": "audio/" + part["input_audio"]["format"], "data": part["input_audio"]["data"]}}
    file = part["file"]
    return _media(file["file_data"]) if "file_data" in file else {"file_data": {"file_uri": file["file_id"]}}


def _kept(parts: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    # README: an empty text part is not sent beside other parts; a message keeps at least one part.
    return [p for p in parts if p != {"text": ""}] or [{"text": ""}]


def _texts(content: Any) -> List[str]:
    return [content] if isinstance(content, str) else [p["text"] for p in content]


def _tool_output(text: str) -> Dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"output": text}


def _finish(reason: str, had_tool_calls: bool) -> str:
    # README: STOP with function calls is tool_calls; Gemini has no tool_calls reason of its own.
    if reason in ("stop", "tool_calls"):
        return "tool_calls" if had_tool_calls else "stop"
    return reason


class TestGemini(ProviderConformance):
    provider = "gemini"
    _calls_seen = False  # expected_chunk: did this stream's candidate stream a tool call yet?

    def accepts_request(self, body: Dict[str, Any]) -> bool:
        # README: a tool message must answer an earlier assistant tool call (Gemini needs the name).
        seen = set()
        for message in body["messages"]:
            seen.update(call["id"] for call in message.get("tool_calls") or ())
            if message["role"] == "tool" and message["tool_call_id"] not in seen:
                return False
        return True

    def expected_request(self, body: Dict[str, Any]) -> Dict[str, Any]:
        system: List[Dict[str, Any]] = []
        contents: List[Dict[str, Any]] = []
        names: Dict[str, str] = {}
        for message in body["messages"]:
            role, content = message["role"], message.get("content")
            if role in ("system", "developer"):
                system += _kept([{"text": t} for t in _texts(content)])
                continue
            if role == "user":
                turn = "user"
                parts = [{"text": content}] if isinstance(content, str) else [_kit_part(p) for p in content]
            elif role == "assistant":
                turn = "model"
                parts = [{"text": content}] if content is not None else []
                for call in message.get("tool_calls") or ():
                    names[call["id"]] = call["function"]["name"]
                    parts.append({"functionCall": {"name": call["function"]["name"], "args": json.loads(call["function"]["arguments"])}})
            else:
                turn = "user"
                parts = [{"functionResponse": {"name": names[message["tool_call_id"]], "response": _tool_output(content)}}]
            parts = _kept(parts)
            if contents and contents[-1]["role"] == turn:
                contents[-1]["parts"] += parts
            else:
                contents.append({"role": turn, "parts": parts})
        wire: Dict[str, Any] = {"contents": contents}
        if system:
            wire["systemInstruction"] = {"parts": system}
        config = {_CONFIG[k]: v for k, v in body.items() if k in _CONFIG}
        if "stop" in body:
            config["stopSequences"] = [body["stop"]] if isinstance(body["stop"], str) else body["stop"]
        response_format = body.get("response_format", {}).get("type")
        if response_format in ("json_object", "json_schema"):
            config["responseMimeType"] = "application/json"
        if response_format == "json_schema":
            config["responseSchema"] = body["response_format"]["json_schema"]["schema"]  # {"type": "object"}: nothing to cut
        if config:
            wire["generationConfig"] = config
        if body.get("tools"):
            wire["tools"] = [{"functionDeclarations": [
                {"name": t["function"]["name"], "description": t["function"]["description"], "parameters": t["function"]["parameters"]}
                for t in body["tools"]
            ]}]  # fmt: skip
            choice = body["tool_choice"]
            config_mode = {"mode": _MODES[choice]} if isinstance(choice, str) else {"mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}
            wire["toolConfig"] = {"functionCallingConfig": config_mode}
        wire.update({k: v for k, v in body.items() if k not in _MAPPED})  # extras and `user`, at the top level
        return wire

    def expected_response(self, body: Dict[str, Any]) -> Dict[str, Any]:
        # README: no `created` on Gemini's wire (0 without a Date header), no system_fingerprint,
        # no extra fields; reasoning, tool calls (with their ids) and usage details survive.
        if body["object"] == "list":
            # Embeddings: Gemini returns the vectors alone (the model is the one called; no token counts).
            data = [{"object": "embedding", "index": d["index"], "embedding": d["embedding"]} for d in body["data"]]
            return {"object": "list", "data": data, "model": "conformance-model", "usage": {"prompt_tokens": 0, "total_tokens": 0}}
        choices = []
        for choice in body["choices"]:
            message = choice["message"]
            out: Dict[str, Any] = {"role": "assistant", "content": message["content"], "refusal": None}
            if "reasoning_content" in message:
                out["reasoning_content"] = message["reasoning_content"]
            if message.get("tool_calls"):
                out["tool_calls"] = [{"id": c["id"], "type": "function", "function": dict(c["function"])} for c in message["tool_calls"]]
            finish = _finish(choice["finish_reason"], bool(message.get("tool_calls")))
            choices.append({"index": choice["index"], "message": out, "finish_reason": finish, "logprobs": None})
        return {"id": body["id"], "object": "chat.completion", "created": 0, "model": body["model"], "choices": choices, "usage": body["usage"]}

    def expected_chunk(self, chunk: Dict[str, Any]) -> Dict[str, Any]:
        head = {"id": chunk["id"], "object": "chat.completion.chunk", "created": 0, "model": chunk["model"]}
        if not chunk["choices"]:
            return {**head, "choices": [], "usage": chunk["usage"]}
        (choice,) = chunk["choices"]
        # A Gemini stream ends at the event where its candidates finish (n=1 here): a stream
        # of several choices, one after the other, is not what Gemini sends.
        assume(choice["index"] == 0)
        delta = choice["delta"]
        if "role" in delta:
            self._calls_seen = False  # the first chunk of a stream
        if choice["finish_reason"] is not None:
            finish = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": _finish(choice["finish_reason"], self._calls_seen)}
            return {**head, "choices": [finish]}
        out: Dict[str, Any] = {"role": "assistant"} if "role" in delta else {}
        for key in ("reasoning_content", "content"):
            if key in delta:
                out[key] = delta[key]
        if "tool_calls" in delta:
            (call,) = delta["tool_calls"]
            # Gemini sends each function call whole: argument pieces have no wire form.
            assume("name" in call["function"])
            self._calls_seen = True
            out["tool_calls"] = [{"index": call["index"], "id": call["id"], "type": "function", "function": dict(call["function"])}]
        return {**head, "choices": [{"index": 0, "delta": out, "logprobs": None, "finish_reason": None}]}


# --- a loopback server speaking the Gemini API -------------------------------------------

_PATH = re.compile(r"^/v1beta/(models|tunedModels)/([^/:]+):(generateContent|streamGenerateContent|batchEmbedContents)$")


def google_error(code: int, status: str, message: str, *details: Dict[str, Any]) -> Dict[str, Any]:
    error: Dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return {"error": error}


def sse(*events: Any) -> bytes:
    """Gemini's SSE framing: ``data: <json>`` events ended by CRLF CRLF, no end marker."""
    return b"".join(b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\r\n\r\n" for e in events)


class GeminiServer:
    """``POST /v1beta/models/{m}:{method}`` on 127.0.0.1: scripted replies, else a Gemini-shaped echo.

    Checks the key like Google does (missing: 403 PERMISSION_DENIED; wrong: 400 with
    ``API_KEY_INVALID``), records every request, and writes each body with chunked
    transfer encoding in the given pieces (one network write each).
    """

    def __init__(self, key: Optional[str] = KEY) -> None:
        self.key = key
        self.requests: List[Dict[str, Any]] = []
        self._replies: List[Tuple[int, str, List[bytes]]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, name="gemini-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1beta"

    @property
    def last(self) -> Dict[str, Any]:
        return self.requests[-1]

    def reply(self, status: int = 200, *, json_body: Any = None, events: Optional[List[Any]] = None, raw: Optional[bytes] = None, piece: int = 0) -> None:
        """Queue one answer: a JSON body, SSE ``events`` (dicts or raw bytes), or ``raw`` bytes, cut every ``piece`` bytes."""
        if events is not None:
            body, kind = sse(*events), "text/event-stream"
        elif raw is not None:
            body, kind = raw, "text/event-stream"
        else:
            body, kind = json.dumps(json_body).encode(), "application/json; charset=UTF-8"
        pieces = [body[i : i + piece] for i in range(0, len(body), piece)] if piece else [body]
        with self._lock:
            self._replies.append((status, kind, pieces))

    def _answer(self, path: str, query: Dict[str, List[str]], headers: Dict[str, str], body: Dict[str, Any]) -> Tuple[int, str, List[bytes]]:
        match = _PATH.match(path)
        if not match:
            return 404, "application/json", [json.dumps(google_error(404, "NOT_FOUND", f"path {path} not found")).encode()]
        if self.key is not None and headers.get("x-goog-api-key") != self.key:
            if "x-goog-api-key" not in headers:
                err = google_error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without established identity).")
                return 403, "application/json", [json.dumps(err).encode()]
            info = {"@type": ERROR_INFO, "reason": "API_KEY_INVALID", "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}
            err = google_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", info)
            return 400, "application/json", [json.dumps(err).encode()]
        with self._lock:
            if self._replies:
                return self._replies.pop(0)
        model, method = match.group(2), match.group(3)
        if method == "batchEmbedContents":
            vectors = []
            for request in body["requests"]:
                size = request.get("outputDimensionality", 3)
                text = request["content"]["parts"][0]["text"]
                vectors.append({"values": [float(len(text))] + [0.5] * (size - 1)})
            return 200, "application/json", [json.dumps({"embeddings": vectors}).encode()]
        text = "You said: " + "".join(p.get("text", "") for p in body["contents"][-1]["parts"])
        head = {"modelVersion": f"{model}-001", "responseId": "resp-echo"}
        usage = {"promptTokenCount": 4, "candidatesTokenCount": 3, "totalTokenCount": 7}
        if method == "generateContent":
            candidate = {"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP", "index": 0}
            return 200, "application/json", [json.dumps({"candidates": [candidate], "usageMetadata": usage, **head}).encode()]
        words = text.split(" ")
        events = []
        for i, word in enumerate(words):
            candidate = {"content": {"parts": [{"text": word + (" " if i < len(words) - 1 else "")}], "role": "model"}, "index": 0}
            if i == len(words) - 1:
                candidate["finishReason"] = "STOP"
            # Real Gemini repeats usageMetadata on every event; only the last one is complete.
            events.append({"candidates": [candidate], "usageMetadata": usage if i == len(words) - 1 else {"promptTokenCount": 4, "totalTokenCount": 4}, **head})
        if query.get("alt") != ["sse"]:  # without alt=sse Gemini answers one JSON array
            return 200, "application/json", [json.dumps(events).encode()]
        raw = sse(*events)
        return 200, "text/event-stream", [raw[i : i + 7] for i in range(0, len(raw), 7)]

    def _handler_class(self) -> Any:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw or b"{}")
                url = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                query = parse_qs(url.query)
                server.requests.append({"path": url.path, "query": query, "headers": headers, "json": body})
                status, kind, pieces = server._answer(url.path, query, headers, body)
                self.send_response(status)  # also writes the Date header Google sends
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

    def __enter__(self) -> "GeminiServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(10)


@pytest.fixture
def gemini(monkeypatch: pytest.MonkeyPatch) -> Iterator[GeminiServer]:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_BASE", raising=False)
    with GeminiServer() as server:
        yield server


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> List[float]:
    recorded: List[float] = []
    monkeypatch.setattr(time, "sleep", recorded.append)  # the sync client's retry delay
    return recorded


def call(server: GeminiServer, messages: Any = USER, model: str = "gemini/gemini-2.5-flash", **kwargs: Any) -> Any:
    kwargs.setdefault("api_key", KEY)
    return modelport.completion(model, messages, api_base=server.base_url, **kwargs)


# --- chat over HTTP ----------------------------------------------------------------------

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Answer",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "title": {"type": "string", "title": "Title", "default": "x", "examples": ["a"]},
        "city": {"$ref": "#/$defs/City", "description": "where"},
        "tags": {"type": "array", "items": {"$ref": "#/definitions/Tag"}},
    },
    "required": ["title"],
    "$defs": {"City": {"type": "object", "title": "City", "properties": {"name": {"type": "string"}}, "additionalProperties": False}},
    "definitions": {"Tag": {"type": "string", "enum": ["a", "b"]}},
}
CLEANED = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "city": {"type": "object", "properties": {"name": {"type": "string"}}, "description": "where"},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
    },
    "required": ["title"],
}
WEATHER = {"type": "function", "function": {"name": "weather", "description": "Weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}, "strict": True}}
CLOCK = {"type": "function", "function": {"name": "clock", "description": "The time", "parameters": {"type": "object", "properties": {}}}}

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
    {"role": "user", "content": [
        {"type": "text", "text": "Look:"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/AAAA"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/photos/cat.PNG?size=2"}},
        {"type": "file", "file": {"file_id": "https://generativelanguage.googleapis.com/v1beta/files/abc", "filename": "report.pdf"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "mp3"}},
    ]},
    {"role": "user", "content": "And the weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
         "extra_content": {"google": {"thought_signature": "c2lnbmF0dXJl"}}},
        {"id": "call_b", "type": "function", "function": {"name": "clock", "arguments": ""}},
    ]},
    {"role": "tool", "tool_call_id": "call_a", "content": "sunny, 21 C"},
    {"role": "tool", "tool_call_id": "call_b", "content": '{"time": "12:00"}'},
]  # fmt: skip

EXPECTED_CONTENTS = [
    {"role": "user", "parts": [
        {"text": "Look:"},
        {"inline_data": {"mime_type": "image/jpeg", "data": "/9j/AAAA"}},
        {"file_data": {"mime_type": "image/png", "file_uri": "https://example.com/photos/cat.PNG?size=2"}},
        {"file_data": {"mime_type": "application/pdf", "file_uri": "https://generativelanguage.googleapis.com/v1beta/files/abc"}},
        {"inline_data": {"mime_type": "audio/mp3", "data": "UklGRg=="}},
        {"text": "And the weather in Paris?"},
    ]},
    {"role": "model", "parts": [
        {"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnbmF0dXJl"},
        {"functionCall": {"name": "clock", "args": {}}},
    ]},
    {"role": "user", "parts": [
        {"functionResponse": {"name": "weather", "response": {"output": "sunny, 21 C"}}},
        {"functionResponse": {"name": "clock", "response": {"time": "12:00"}}},
    ]},
]  # fmt: skip

ANSWER = {
    "candidates": [
        {
            "content": {"role": "model", "parts": [
                {"text": "Thinking about ", "thought": True},
                {"text": "the weather.", "thought": True},
                {"text": "Let me "},
                {"text": "check."},
                {"functionCall": {"name": "weather", "args": {"city": "Paris", "days": 2}}, "thoughtSignature": "c2ln"},
                {"functionCall": {"id": "fc-7", "name": "clock", "args": {}}},
            ]},
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}],
        }
    ],
    "usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 30, "thoughtsTokenCount": 50, "cachedContentTokenCount": 64, "totalTokenCount": 200},
    "modelVersion": "gemini-2.5-flash-preview-05-20",
    "responseId": "resp-42",
}  # fmt: skip


def test_chat_request_and_response_over_http(gemini: GeminiServer, validate: Any) -> None:
    gemini.reply(json_body=ANSWER)
    before = int(time.time())
    result = call(
        gemini, CONVERSATION, temperature=0.3, top_p=0.9, top_k=40, max_tokens=10, max_completion_tokens=256, stop="END",
        n=1, seed=7, presence_penalty=0.5, frequency_penalty=-0.5, reasoning_effort="low",
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}},
        tools=[WEATHER, CLOCK], tool_choice={"type": "function", "function": {"name": "weather"}},
        safetySettings=[{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    )  # fmt: skip
    sent = gemini.last
    assert sent["path"] == "/v1beta/models/gemini-2.5-flash:generateContent" and sent["query"] == {}
    assert sent["headers"]["x-goog-api-key"] == KEY and "authorization" not in sent["headers"]
    assert sent["json"] == {
        "contents": EXPECTED_CONTENTS,
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Answer in English."}]},
        "tools": [{"functionDeclarations": [
            {"name": "weather", "description": "Weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            {"name": "clock", "description": "The time"},
        ]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}},
        "generationConfig": {
            "temperature": 0.3, "topP": 0.9, "topK": 40, "candidateCount": 1, "seed": 7, "presencePenalty": 0.5,
            "frequencyPenalty": -0.5, "maxOutputTokens": 256, "stopSequences": ["END"],
            "responseMimeType": "application/json", "responseSchema": CLEANED,
            "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True},
        },
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    }  # fmt: skip
    validate(result.to_dict(), "CreateChatCompletionResponse")
    assert result.id == "resp-42" and result.model == "gemini-2.5-flash-preview-05-20"
    assert before - 2 <= result.created <= time.time() + 2  # from the response's Date header
    (choice,) = result.choices
    message = choice.to_dict()["message"]
    assert message["content"] == "Let me check." and message["reasoning_content"] == "Thinking about the weather."
    assert message["tool_calls"] == [
        {"id": "call_0_0", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris", "days": 2}'},
         "extra_content": {"google": {"thought_signature": "c2ln"}}},
        {"id": "fc-7", "type": "function", "function": {"name": "clock", "arguments": "{}"}},
    ]  # fmt: skip
    assert choice.finish_reason == "tool_calls"
    usage = result.usage.to_dict()
    assert usage == {"prompt_tokens": 120, "completion_tokens": 80, "total_tokens": 200,
                     "prompt_tokens_details": {"cached_tokens": 64}, "completion_tokens_details": {"reasoning_tokens": 50}}  # fmt: skip


def test_the_answer_goes_back_as_history(gemini: GeminiServer) -> None:
    """A tool-call answer, sent back with the tool results, reaches Gemini as its own turns."""
    gemini.reply(json_body=ANSWER)
    first = call(gemini, [{"role": "user", "content": "weather?"}], tools=[WEATHER, CLOCK])
    message = first.choices[0].message.to_dict()
    history = [{"role": "user", "content": "weather?"}, message]
    history += [{"role": "tool", "tool_call_id": c["id"], "content": "ok"} for c in message["tool_calls"]]
    assert call(gemini, history, tools=[WEATHER, CLOCK]).choices[0].message.content == "You said: "
    model_turn, tool_turn = gemini.last["json"]["contents"][1:]
    assert model_turn == {"role": "model", "parts": [
        {"text": "Let me check."},
        {"functionCall": {"name": "weather", "args": {"city": "Paris", "days": 2}}, "thoughtSignature": "c2ln"},
        {"functionCall": {"name": "clock", "args": {}}},
    ]}  # fmt: skip
    assert tool_turn["parts"] == [{"functionResponse": {"name": n, "response": {"output": "ok"}}} for n in ("weather", "clock")]


def test_echo_sync_and_async_with_env_key_base_and_models_prefix(gemini: GeminiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GEMINI_API_BASE", gemini.base_url)
    result = modelport.completion("gemini/models/gemini-2.0-flash", [{"role": "user", "content": "hello"}])
    assert result.choices[0].message.content == "You said: hello" and result.choices[0].finish_reason == "stop"
    assert gemini.last["path"] == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert gemini.last["headers"]["x-goog-api-key"] == KEY
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (4, 3, 7)

    async def run() -> Any:
        return await modelport.acompletion("gemini/gemini-2.0-flash", [{"role": "user", "content": "async"}])

    assert asyncio.run(run()).choices[0].message.content == "You said: async"
    # A tuned model keeps its own collection; a generationConfig keyword is merged with the mapped one.
    modelport.completion("gemini/tunedModels/my-tune", USER, temperature=0.2, top_k=5, generationConfig={"topK": 9, "responseModalities": ["TEXT"]})
    assert gemini.last["path"] == "/v1beta/tunedModels/my-tune:generateContent"
    assert gemini.last["json"]["generationConfig"] == {"temperature": 0.2, "topK": 9, "responseModalities": ["TEXT"]}
    assert "top_k" not in gemini.last["json"]


def test_candidates_become_choices_with_their_finish_reasons(gemini: GeminiServer) -> None:
    gemini.reply(json_body={"candidates": [
        {"content": {"role": "model", "parts": [{"text": "a"}]}, "finishReason": "MAX_TOKENS", "index": 0},
        {"content": {"role": "model", "parts": [{"text": "b"}]}, "finishReason": "SAFETY", "index": 1},
        {"content": {"role": "model", "parts": [{"text": "c"}]}, "finishReason": "RECITATION", "index": 2},
        {"finishReason": "PROHIBITED_CONTENT", "index": 3},
    ], "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 3, "totalTokenCount": 6}, "responseId": "r", "modelVersion": "m"})  # fmt: skip
    result = call(gemini, n=4)
    assert gemini.last["json"]["generationConfig"] == {"candidateCount": 4}
    assert [(c.index, c.message.content, c.finish_reason) for c in result.choices] == [
        (0, "a", "length"), (1, "b", "content_filter"), (2, "c", "content_filter"), (3, None, "content_filter")
    ]  # fmt: skip


def test_a_blocked_prompt_is_a_content_filter_error(gemini: GeminiServer) -> None:
    blocked = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []}, "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}}
    gemini.reply(json_body=blocked)
    with pytest.raises(modelport.ContentFilterError, match="SAFETY") as caught:
        call(gemini)
    assert caught.value.code == "SAFETY" and caught.value.retryable is False and caught.value.provider == "gemini"
    gemini.reply(events=[blocked])
    with pytest.raises(modelport.ContentFilterError, match="blocked the prompt"):
        list(call(gemini, stream=True))


# --- streams ---------------------------------------------------------------------------

HEAD = {"modelVersion": "gemini-2.5-flash", "responseId": "resp-s"}
TEXT_STREAM = [
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "Pondering", "thought": True}]}, "index": 0}], "usageMetadata": {"promptTokenCount": 9}, **HEAD},
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}], **HEAD},
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "lo, wörld"}]}, "index": 0}], **HEAD},
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "!"}]}, "finishReason": "MAX_TOKENS", "index": 0}],
     "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 4, "thoughtsTokenCount": 2, "totalTokenCount": 15}, **HEAD},
]  # fmt: skip


def _check_text_stream(chunks: List[Any], validate: Any) -> None:
    for chunk in chunks:
        validate(chunk.to_dict(), "CreateChatCompletionStreamResponse")
    deltas = [c.to_dict()["choices"][0]["delta"] for c in chunks[:-2]]
    assert deltas == [
        {"role": "assistant", "reasoning_content": "Pondering"},
        {"role": "assistant", "content": "Hel"},
        {"role": "assistant", "content": "lo, wörld"},
        {"role": "assistant", "content": "!"},
    ]
    finish, usage = chunks[-2], chunks[-1]  # the last event became three chunks: its text, the finish, the usage
    assert finish.choices[0].finish_reason == "length" and finish.choices[0].delta.to_dict() == {}
    assert usage.choices == [] and usage.usage.to_dict() == {
        "prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15, "completion_tokens_details": {"reasoning_tokens": 2}
    }  # fmt: skip
    assert {c.id for c in chunks} == {"resp-s"} and {c.model for c in chunks} == {"gemini-2.5-flash"}
    rebuilt = modelport.stream_to_completion(chunks)
    assert rebuilt.choices[0].message.content == "Hello, wörld!" and rebuilt.choices[0].finish_reason == "length"
    assert rebuilt.choices[0].message.to_dict()["reasoning_content"] == "Pondering"


def test_stream_sync_with_events_cut_across_writes(gemini: GeminiServer, validate: Any) -> None:
    gemini.reply(events=TEXT_STREAM, piece=5)  # every event (and the UTF-8 of "ö") cut across writes
    chunks = list(call(gemini, stream=True, stream_options={"include_usage": True}))
    sent = gemini.last
    assert sent["path"] == "/v1beta/models/gemini-2.5-flash:streamGenerateContent" and sent["query"] == {"alt": ["sse"]}
    assert sent["json"] == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}  # no stream flag in the body
    _check_text_stream(chunks, validate)


def test_stream_async_with_events_cut_across_writes(gemini: GeminiServer, validate: Any) -> None:
    gemini.reply(events=TEXT_STREAM, piece=3)

    async def run() -> List[Any]:
        stream = await modelport.acompletion("gemini/gemini-2.5-flash", USER, api_base=gemini.base_url, api_key=KEY, stream=True)
        return [chunk async for chunk in stream]

    _check_text_stream(asyncio.run(run()), validate)


def test_function_calls_streamed_across_events_keep_counting(gemini: GeminiServer) -> None:
    gemini.reply(events=[
        {"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": "Oslo"}}}]}, "index": 0}], **HEAD},
        {"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "weather", "args": {"city": "Rome"}}}, {"functionCall": {"name": "clock", "args": {}}}
        ]}, "index": 0}], **HEAD},
        {"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP", "index": 0}],
         "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 9, "totalTokenCount": 14}, **HEAD},
    ], piece=11)  # fmt: skip
    chunks = list(call(gemini, stream=True, tools=[WEATHER, CLOCK], tool_choice="required"))
    assert gemini.last["json"]["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert [(tc.index, tc.id, tc.function.name, tc.function.arguments) for tc in calls] == [
        (0, "call_0_0", "weather", '{"city": "Oslo"}'), (1, "call_0_1", "weather", '{"city": "Rome"}'), (2, "call_0_2", "clock", "{}")
    ]  # fmt: skip
    rebuilt = modelport.stream_to_completion(chunks)
    assert rebuilt.choices[0].finish_reason == "tool_calls" and len(rebuilt.choices[0].message.tool_calls) == 3
    assert rebuilt.usage.total_tokens == 14


def test_a_stream_cut_before_its_finish_reason_is_interrupted(gemini: GeminiServer) -> None:
    gemini.reply(events=TEXT_STREAM[:2], piece=6)  # the body ends cleanly, but no candidate ever finished
    received: List[Any] = []
    with pytest.raises(modelport.StreamInterruptedError, match="before its end marker"):
        for chunk in call(gemini, stream=True):
            received.append(chunk)
    assert [c.choices[0].delta.to_dict() for c in received] == [
        {"role": "assistant", "reasoning_content": "Pondering"}, {"role": "assistant", "content": "Hel"}
    ]  # fmt: skip
    gemini.reply(raw=sse(TEXT_STREAM[0]) + b'data: {"candidates": [{"content": {"parts": [{"te')  # cut mid-event
    with pytest.raises(modelport.StreamInterruptedError, match="in the middle of an event"):
        list(call(gemini, stream=True))


def test_an_error_event_in_the_stream_is_raised_after_the_chunks_before_it(gemini: GeminiServer) -> None:
    gemini.reply(events=[TEXT_STREAM[1], google_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")])
    received: List[Any] = []
    with pytest.raises(modelport.ServiceUnavailableError, match="overloaded"):
        for chunk in call(gemini, stream=True):
            received.append(chunk)
    assert [c.choices[0].delta.content for c in received] == ["Hel"]


# --- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status,name,message,details,cls,retryable",
    [
        (400, "INVALID_ARGUMENT", "Invalid JSON payload received. Unknown name \"foo\"", (), modelport.BadRequestError, False),
        (400, "INVALID_ARGUMENT", "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).", (), modelport.ContextWindowExceededError, False),
        (403, "PERMISSION_DENIED", "You do not have permission to access the requested resource", (), modelport.PermissionDeniedError, False),
        (404, "NOT_FOUND", "models/gemini-9 is not found for API version v1beta", (), modelport.NotFoundError, False),
        (500, "INTERNAL", "An internal error has occurred.", (), modelport.InternalServerError, True),
        (503, "UNAVAILABLE", "The model is overloaded. Please try again later.", (), modelport.ServiceUnavailableError, True),
    ],
)  # fmt: skip
def test_google_error_envelopes_map_to_classes(gemini: GeminiServer, sleeps: List[float], status: int, name: str, message: str, details: Any, cls: Any, retryable: bool) -> None:
    for _ in range(3):  # enough for the retries of a retryable error
        gemini.reply(status, json_body=google_error(status, name, message, *details))
    with pytest.raises(cls) as caught:
        call(gemini, num_retries=1)
    error = caught.value
    assert type(error) is cls and error.status == status and error.message == message
    assert error.type == name and error.code == name and error.retryable is retryable and error.provider == "gemini"
    assert len(gemini.requests) == (2 if retryable else 1)


def test_an_invalid_key_is_an_authentication_error(gemini: GeminiServer) -> None:
    with pytest.raises(modelport.AuthenticationError, match="API key not valid") as caught:
        call(gemini, api_key="AIza-wrong")
    assert caught.value.status == 400 and caught.value.code == "API_KEY_INVALID" and caught.value.retryable is False
    assert "AIza-wrong" not in str(caught.value)
    with pytest.raises(modelport.PermissionDeniedError, match="unregistered callers"):
        modelport.completion("gemini/gemini-2.5-flash", USER, api_base=gemini.base_url)  # no key at all


def test_429_is_retried_after_the_retry_delay_of_its_body(gemini: GeminiServer, sleeps: List[float]) -> None:
    quota = {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests"}]}
    retry = {"@type": RETRY_INFO, "retryDelay": "7s"}
    gemini.reply(429, json_body=google_error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.", quota, retry))
    assert call(gemini).choices[0].message.content == "You said: hi"
    assert sleeps == [7.0] and len(gemini.requests) == 2
    gemini.reply(429, json_body=google_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted", {"@type": RETRY_INFO, "retryDelay": "0.25s"}))
    with pytest.raises(modelport.RateLimitError) as caught:
        call(gemini, num_retries=0)
    assert caught.value.retry_after == 0.25 and caught.value.retryable is True


# --- requests refused before sending ------------------------------------------------------


def test_requests_gemini_cannot_take_are_refused_before_sending(gemini: GeminiServer) -> None:
    answer_without_call = [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "call_zz", "content": "42"}]
    cases = [
        (dict(messages=answer_without_call), "call_zz"),
        (dict(response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": {"$ref": "https://x.invalid/s.json"}}}), r"\$ref"),
        (dict(response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": {"$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}}, "$ref": "#/$defs/N"}}}), "recursive"),
        (dict(reasoning_effort="extreme"), "reasoning_effort"),
        (dict(tools=[{"type": "web_search"}]), "function tools"),
        (dict(logprobs=True), "logprobs"),  # an OpenAI parameter Gemini lacks: refused by the core
        (dict(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}]}]), "base64"),
    ]  # fmt: skip
    for kwargs, match in cases:
        messages = kwargs.pop("messages", USER)
        with pytest.raises(modelport.InvalidRequestError, match=match):
            call(gemini, messages, **kwargs)
    assert gemini.requests == []
    call(gemini, logprobs=True, drop_params=True)
    assert "logprobs" not in json.dumps(gemini.last["json"])


def test_describe_request_redacts_the_key() -> None:
    with modelport.Client() as client:
        text = client.describe_request("chat", "gemini/gemini-2.5-flash", messages=USER, api_key=KEY, stream=True)
        request = client.build_request("chat", "gemini/gemini-2.5-flash", messages=USER, api_key=KEY)
    assert KEY not in text and "x-goog-api-key: [REDACTED]" in text
    assert "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse" in text
    assert request.headers["x-goog-api-key"] == KEY and KEY not in repr(request)


# --- embeddings ------------------------------------------------------------------------


def test_embeddings_float_and_base64(gemini: GeminiServer, validate: Any) -> None:
    result = modelport.embedding("gemini/text-embedding-004", ["a", "bcd"], api_base=gemini.base_url, api_key=KEY, dimensions=4, taskType="RETRIEVAL_DOCUMENT")
    sent = gemini.last
    assert sent["path"] == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert sent["json"] == {"requests": [
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": t}]}, "taskType": "RETRIEVAL_DOCUMENT", "outputDimensionality": 4}
        for t in ("a", "bcd")
    ]}  # fmt: skip
    validate(result.to_dict(), "CreateEmbeddingResponse")
    assert [d.embedding for d in result.data] == [[1.0, 0.5, 0.5, 0.5], [3.0, 0.5, 0.5, 0.5]]
    assert result.model == "text-embedding-004" and result.usage.prompt_tokens == 0
    packed = modelport.embedding("gemini/models/text-embedding-004", "hello", api_base=gemini.base_url, api_key=KEY, encoding_format="base64")
    assert gemini.last["json"]["requests"] == [{"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]}}]
    assert struct.unpack("<3f", base64.b64decode(packed.data[0].embedding)) == (5.0, 0.5, 0.5)
    with pytest.raises(modelport.InvalidRequestError, match="token ids"):
        modelport.embedding("gemini/text-embedding-004", [[1, 2, 3]], api_base=gemini.base_url, api_key=KEY)


# --- the provider listing and the gateway ----------------------------------------------


def test_providers_lists_gemini_with_its_operations() -> None:
    (listing,) = [p for p in modelport.providers() if p.name == "gemini"]
    assert listing.distribution == "modelport-gemini" and listing.operations == ("chat", "embedding") and listing.error is None
    info = modelport.registry.hooks("gemini").info
    assert info.api_key_env == ("GEMINI_API_KEY",) and info.api_base_env == ("GEMINI_API_BASE",)
    assert "x-goog-api-key" in info.secret_headers and "key" in info.secret_fields




def test_gateway_serves_gemini_to_the_openai_sdk(gemini: GeminiServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_MASTER", "sk-master")
    config = tmp_path / "config.yaml"
    config.write_text(f"""
model_list:
  - model_name: gem
    params: {{model: gemini/gemini-2.5-flash, api_base: {gemini.base_url}, api_key: {KEY}}}
  - model_name: gem-embed
    params: {{model: gemini/text-embedding-004, api_base: {gemini.base_url}, api_key: {KEY}}}
router_settings: {{num_retries: 0}}
general_settings: {{master_key: os.environ/GATEWAY_MASTER}}
""")
    server, thread, url = run_server(app_from_config(str(config)))
    try:
        sdk = openai_sdk.OpenAI(base_url=f"{url}/v1", api_key="sk-master", max_retries=0)
        raw = sdk.chat.completions.with_raw_response.create(model="gem", messages=[{"role": "system", "content": "terse"}, {"role": "user", "content": "hello"}], max_tokens=20)
        result = raw.parse()
        assert result.choices[0].message.content == "You said: hello" and result.choices[0].finish_reason == "stop"
        # The gateway answers with the name the client asked for; the upstream's is in a header.
        assert result.usage.total_tokens == 7 and result.model == "gem"
        assert raw.headers["x-modelport-upstream-model"] == "gemini-2.5-flash-001"
        assert gemini.last["json"] == {
            "contents": [{"role": "user", "parts": [{"text": "hello"}]}],
            "systemInstruction": {"parts": [{"text": "terse"}]},
            "generationConfig": {"maxOutputTokens": 20},
        }
        assert gemini.last["headers"]["x-goog-api-key"] == KEY
        stream = sdk.chat.completions.create(model="gem", messages=[{"role": "user", "content": "a b c"}], stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: a b c"
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop" and chunks[-1].usage.total_tokens == 7
        assert gemini.last["query"] == {"alt": ["sse"]}
        vectors = sdk.embeddings.create(model="gem-embed", input=["xy", "z"], dimensions=2)  # the SDK asks for base64
        assert [d.embedding for d in vectors.data] == [[2.0, 0.5], [1.0, 0.5]]
        gemini.reply(429, json_body=google_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted", {"@type": RETRY_INFO, "retryDelay": "1s"}))
        with pytest.raises(openai_sdk.RateLimitError, match="exhausted"):
            sdk.chat.completions.create(model="gem", messages=[{"role": "user", "content": "x"}])
    finally:
        server.should_exit = True
        thread.join(10)
