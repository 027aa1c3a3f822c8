"""The Brook sample plugin (docs/plugins.md, worked example b): a provider whose request,
response, stream (NDJSON) and error shapes all differ from OpenAI's.

The kit's mappings below are Brook's documented rules, written from the docs, not from
the plugin's code; the HTTP tests run against a loopback server speaking Brook's wire.
"""

from __future__ import annotations

import ast
import asyncio
import json
import pathlib
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

import modelport
from modelport.provider import hookimpl
from modelport.testing import ProviderConformance, strategies

ROOT = pathlib.Path(__file__).resolve().parent.parent
BROOK_MODULE = ROOT / "tests" / "plugins" / "brook" / "modelport_brook.py"
USER = [{"role": "user", "content": "hi"}]
KEY = "sk-brook-secret"


# --- the conformance kit, with Brook's documented mappings ---------------------------------

_SPEAKER = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
#: OpenAI fields Brook maps (or, for stream_options, consumes: Brook always reports usage).
_CONSUMED = {"model", "messages", "temperature", "max_tokens", "max_completion_tokens", "stop", "stream", "stream_options"}


def _finish(reason: Any) -> str:
    # Brook knows "eos" and "max_tokens" only: OpenAI's "length" survives, every other reason reads as "stop".
    return "length" if reason == "length" else "stop"


def _usage(usage: Dict[str, Any]) -> Dict[str, Any]:
    # Brook reports input and output tokens; the details OpenAI adds are not on its wire.
    prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class TestBrook(ProviderConformance):
    provider = "brook"
    # Documented: Brook answers one reply per request (no `n`), so one choice per response.
    chat_response_strategy = strategies.chat_responses(max_choices=1)

    def accepts_request(self, body: Dict[str, Any]) -> bool:
        # Documented: text only, no tool calling (tool messages, tool calls, non-text parts are refused).
        for message in body["messages"]:
            if message["role"] not in _SPEAKER or message.get("tool_calls"):
                return False
            content = message.get("content")
            if isinstance(content, list) and any(part.get("type") != "text" for part in content):
                return False
            if not isinstance(content, (str, list)):
                return False
        return True

    def expected_request(self, body: Dict[str, Any]) -> Dict[str, Any]:
        # Documented: messages -> turns; temperature / max_tokens (as max_new_tokens) / stop
        # (always a list) -> options; stream always sent; every other field is sent as it is at
        # the top level (in real calls the core has refused the OpenAI parameters Brook lacks).
        turns = []
        for message in body["messages"]:
            content = message["content"]
            text = content if isinstance(content, str) else "\n".join(part["text"] for part in content)
            turns.append({"speaker": _SPEAKER[message["role"]], "text": text})
        options: Dict[str, Any] = {}
        if "temperature" in body:
            options["temperature"] = body["temperature"]
        if "max_tokens" in body:
            options["max_new_tokens"] = body["max_tokens"]
        if "stop" in body:
            options["stop"] = [body["stop"]] if isinstance(body["stop"], str) else body["stop"]
        wire = {"model": body["model"], "turns": turns, "options": options, "stream": bool(body.get("stream"))}
        wire.update({key: value for key, value in body.items() if key not in _CONSUMED})
        return wire

    def expected_response(self, body: Dict[str, Any]) -> Dict[str, Any]:
        # Documented: one reply (a result with several choices is encoded as its first), its
        # text as the content (no tool calls, no reasoning), finish and usage as above; no
        # extra fields survive Brook's wire.
        choice = body["choices"][0]
        message = {"role": "assistant", "content": choice["message"]["content"] or "", "refusal": None}
        return {
            "id": body["id"],
            "object": "chat.completion",
            "created": body["created"],
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": _finish(choice["finish_reason"]), "logprobs": None}],
            "usage": _usage(body["usage"]),
        }

    def expected_chunk(self, chunk: Dict[str, Any]) -> Dict[str, Any]:
        # Documented: each Brook line is one content chunk (text only, no role); the last line
        # gives the finish chunk and the usage chunk.
        head = {"id": chunk["id"], "object": "chat.completion.chunk", "created": chunk["created"], "model": chunk["model"]}
        if not chunk["choices"]:
            return {**head, "choices": [], "usage": _usage(chunk["usage"])}
        (choice,) = chunk["choices"]
        if choice["finish_reason"] is not None:
            return {**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": _finish(choice["finish_reason"])}]}
        delta = {"content": choice["delta"].get("content") or ""}
        return {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]}


# --- a loopback server speaking Brook's wire ---------------------------------------------


class BrookServer:
    """``POST /v1/generate`` on 127.0.0.1: scripted replies, else a Brook-shaped echo.

    Every body is sent with chunked transfer encoding in the given pieces, one network
    write each (with a short pause), so a stream's lines arrive cut across reads.
    """

    def __init__(self) -> None:
        self.requests: List[Dict[str, Any]] = []
        self._replies: List[Tuple[int, List[bytes]]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="brook-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def reply(self, status: int = 200, *, json_body: Any = None, lines: Optional[List[Dict[str, Any]]] = None, piece: int = 0) -> None:
        """Queue one answer: a JSON body, or NDJSON ``lines`` cut every ``piece`` bytes."""
        if lines is not None:
            raw = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        else:
            raw = json.dumps(json_body).encode()
        pieces = [raw[i : i + piece] for i in range(0, len(raw), piece)] if piece else [raw]
        with self._lock:
            self._replies.append((status, pieces))

    def _next(self, body: Dict[str, Any]) -> Tuple[int, List[bytes]]:
        with self._lock:
            if self._replies:
                return self._replies.pop(0)
        text = "You said: " + body["turns"][-1]["text"]
        head = {"id": "brk-echo", "model": body["model"], "created": 1700000000}
        usage = {"input": len(body["turns"]), "output": len(text.split())}
        if not body.get("stream"):
            return 200, [json.dumps({**head, "reply": {"text": text, "finish": "eos"}, "usage": usage}).encode()]
        words = text.split(" ")
        lines = [{**head, "delta": w + (" " if i < len(words) - 1 else "")} for i, w in enumerate(words)]
        lines.append({**head, "done": True, "finish": "eos", "usage": usage})
        raw = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        return 200, [raw[i : i + 9] for i in range(0, len(raw), 9)]

    def _handler_class(self) -> Any:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                server.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "json": body})
                status, pieces = server._next(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/x-ndjson" if body.get("stream") and status == 200 else "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for piece in pieces:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.flush()
                    threading.Event().wait(0.002)  # not time.sleep: tests patch it
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler

    def __enter__(self) -> "BrookServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(10)


@pytest.fixture
def brook() -> Iterator[BrookServer]:
    with BrookServer() as server:
        yield server


HEAD = {"id": "brk-1", "model": "brook-large", "created": 1700000000}
STREAM = [
    {**HEAD, "delta": "Hel"},
    {**HEAD, "delta": "lo, "},
    {**HEAD, "delta": "wörld"},
    {**HEAD, "done": True, "finish": "max_tokens", "usage": {"input": 7, "output": 3}},
]


def test_completion_over_http(brook: BrookServer) -> None:
    brook.reply(json_body={**HEAD, "reply": {"text": "Hello", "finish": "max_tokens"}, "usage": {"input": 7, "output": 1}})
    messages = [{"role": "system", "content": "be brief"}, *USER]
    result = modelport.completion("brook/brook-large", messages, api_base=brook.base_url, api_key=KEY, temperature=0.2, max_tokens=5, stop="\n", top_k=40)
    sent = brook.requests[-1]
    assert sent["path"] == "/v1/generate" and sent["headers"]["x-brook-key"] == KEY and "authorization" not in sent["headers"]
    assert sent["json"] == {
        "model": "brook-large",
        "turns": [{"speaker": "system", "text": "be brief"}, {"speaker": "user", "text": "hi"}],
        "options": {"temperature": 0.2, "max_new_tokens": 5, "stop": ["\n"]},
        "stream": False,
        "top_k": 40,
    }
    assert result.id == "brk-1" and result.model == "brook-large"
    assert result.choices[0].message.content == "Hello" and result.choices[0].finish_reason == "length"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (7, 1, 8)


def test_default_echo_round_trips(brook: BrookServer) -> None:
    result = modelport.completion("brook/m", USER, api_base=brook.base_url)
    assert result.choices[0].message.content == "You said: hi" and result.choices[0].finish_reason == "stop"
    chunks = list(modelport.completion("brook/m", USER, api_base=brook.base_url, stream=True))
    assert modelport.stream_to_completion(chunks).choices[0].message.content == "You said: hi"


def _check_stream(chunks: List[Any]) -> None:
    assert [c.choices[0].delta.content for c in chunks[:3]] == ["Hel", "lo, ", "wörld"]
    finish, usage = chunks[-2], chunks[-1]  # the last line became two chunks
    assert len(chunks) == 5
    assert finish.choices[0].finish_reason == "length" and not finish.usage
    assert usage.choices == [] and (usage.usage.prompt_tokens, usage.usage.completion_tokens, usage.usage.total_tokens) == (7, 3, 10)
    rebuilt = modelport.stream_to_completion(chunks)
    assert rebuilt.choices[0].message.content == "Hello, wörld" and rebuilt.choices[0].finish_reason == "length"
    assert rebuilt.usage.total_tokens == 10


def test_stream_sync_with_lines_cut_across_writes(brook: BrookServer) -> None:
    brook.reply(lines=STREAM, piece=5)  # every line (and the UTF-8 of "ö") is cut across writes
    chunks = list(modelport.completion("brook/brook-large", USER, api_base=brook.base_url, api_key=KEY, stream=True))
    assert brook.requests[-1]["json"]["stream"] is True
    _check_stream(chunks)


def test_stream_async_with_lines_cut_across_writes(brook: BrookServer) -> None:
    brook.reply(lines=STREAM, piece=3)

    async def run() -> List[Any]:
        stream = await modelport.acompletion("brook/brook-large", USER, api_base=brook.base_url, api_key=KEY, stream=True)
        return [chunk async for chunk in stream]

    _check_stream(asyncio.run(run()))


def test_an_error_line_in_the_stream_is_raised_after_the_chunks_before_it(brook: BrookServer) -> None:
    brook.reply(lines=[{**HEAD, "delta": "par"}, {"problem": {"kind": "overloaded", "detail": "shard lost"}}], piece=4)
    received = []
    with pytest.raises(modelport.InternalServerError, match="shard lost"):
        for chunk in modelport.completion("brook/m", USER, api_base=brook.base_url, stream=True):
            received.append(chunk)
    assert [c.choices[0].delta.content for c in received] == ["par"]


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> List[float]:
    recorded: List[float] = []
    monkeypatch.setattr(time, "sleep", recorded.append)  # the sync client's retry delay
    return recorded


def test_429_is_retried_after_the_retry_in_of_its_body(brook: BrookServer, sleeps: List[float]) -> None:
    brook.reply(429, json_body={"problem": {"kind": "rate_limited", "detail": "slow down", "retry_in": 2.5}})
    result = modelport.completion("brook/m", USER, api_base=brook.base_url)
    assert result.choices[0].message.content == "You said: hi"
    assert sleeps == [2.5] and len(brook.requests) == 2


def test_model_loading_is_retried_and_quota_is_not(brook: BrookServer, sleeps: List[float]) -> None:
    brook.reply(400, json_body={"problem": {"kind": "model_loading", "detail": "warming up", "retry_in": 0.5}})
    assert modelport.completion("brook/m", USER, api_base=brook.base_url).choices[0].message.content == "You said: hi"
    assert sleeps == [0.5]
    brook.reply(429, json_body={"problem": {"kind": "quota_exhausted", "detail": "no credit left"}})
    with pytest.raises(modelport.QuotaExceededError, match="no credit left") as caught:
        modelport.completion("brook/m", USER, api_base=brook.base_url)
    assert caught.value.retryable is False and len(brook.requests) == 3 and sleeps == [0.5]


def test_error_envelope_maps_to_the_class_for_its_status(brook: BrookServer, sleeps: List[float]) -> None:
    brook.reply(401, json_body={"problem": {"kind": "bad_key", "detail": "key not recognised"}})
    with pytest.raises(modelport.AuthenticationError) as caught:
        modelport.completion("brook/m", USER, api_base=brook.base_url, api_key=KEY)
    error = caught.value
    assert error.message == "key not recognised" and error.code == "bad_key" and error.status == 401
    assert error.provider == "brook" and error.retryable is False and sleeps == []
    brook.reply(404, json_body={"problem": {"kind": "no_model", "detail": "no model brook/x"}})
    with pytest.raises(modelport.NotFoundError, match="no model"):
        list(modelport.completion("brook/x", USER, api_base=brook.base_url, stream=True))


def test_openai_parameters_brook_lacks_are_refused_or_dropped(brook: BrookServer) -> None:
    with pytest.raises(modelport.InvalidRequestError, match="top_p"):
        modelport.completion("brook/m", USER, api_base=brook.base_url, top_p=0.5)
    modelport.completion("brook/m", USER, api_base=brook.base_url, top_p=0.5, drop_params=True)
    assert "top_p" not in brook.requests[-1]["json"]
    with pytest.raises(modelport.InvalidRequestError, match="text only"):
        modelport.completion("brook/m", [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.invalid/a.png"}}]}])


class _Spy:
    """Wraps Brook's decoding hooks to record the wire values they decode."""

    def __init__(self) -> None:
        self.responses: List[Any] = []
        self.lines: List[Any] = []

    @hookimpl(wrapper=True)
    def transform_response(self, call: Any, response: Any) -> Any:
        self.responses.append(response.json())
        return (yield)

    @hookimpl(wrapper=True)
    def parse_stream_chunk(self, call: Any, event: Any) -> Any:
        self.lines.append(json.loads(event.data))
        return (yield)


def test_mock_response_runs_through_brooks_own_decoding() -> None:
    hooks = modelport.registry.hooks("brook")
    assert hooks.encodes_responses and hooks.encodes_streams
    spy = _Spy()
    hooks.pm.register(spy, name="brook-spy")
    try:
        result = modelport.completion("brook/m", USER, mock_response="hi")
        chunks = list(modelport.completion("brook/m", USER, mock_response="h i", stream=True, stream_options={"include_usage": True}))
    finally:
        hooks.pm.unregister(spy)
    assert result.choices[0].message.content == "hi" and result.choices[0].finish_reason == "stop"
    # The mock reached transform_response in Brook's shape, not OpenAI's.
    assert spy.responses == [{"id": "chatcmpl-mock", "model": "m", "created": result.created, "reply": {"text": "hi", "finish": "eos"}, "usage": {"input": 1, "output": 1}}]
    assert [line.get("delta") for line in spy.lines] == ["", "h ", "i", None]
    assert spy.lines[-1]["done"] is True and spy.lines[-1]["usage"] == {"input": 1, "output": 1}
    assert chunks[0].to_dict()["choices"][0]["delta"] == {"content": ""}  # no role: Brook lines carry none
    assert modelport.stream_to_completion(chunks).choices[0].message.content == "h i"
    assert chunks[-1].usage.total_tokens == 2


def test_describe_request_redacts_the_brook_key() -> None:
    with modelport.Client() as client:
        text = client.describe_request("chat", "brook/m", messages=USER, api_key=KEY)
        request = client.build_request("chat", "brook/m", messages=USER, api_key=KEY)
    assert KEY not in text and "X-Brook-Key: [REDACTED]" in text and "/v1/generate" in text
    assert request.headers["X-Brook-Key"] == KEY and KEY not in repr(request)


# --- the docs show the real files ----------------------------------------------------------

_MARKED_BLOCK = re.compile(r"<!-- (?P<kind>file|excerpt): (?P<path>[^ ]+) -->\n```[a-z]*\n(?P<code>.*?)```\n", re.DOTALL)


def test_docs_code_blocks_are_the_files_on_disk() -> None:
    """A block after ``<!-- file: PATH -->`` is that whole file; after ``<!-- excerpt: PATH -->``, a verbatim part of it."""
    docs = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    blocks = list(_MARKED_BLOCK.finditer(docs))
    assert len(re.findall(r"<!-- (?:file|excerpt): ", docs)) == len(blocks), "a marker is not followed by a fenced code block"
    shown = {m["path"] for m in blocks if m["kind"] == "file"}
    assert {"tests/plugins/brook/modelport_brook.py", "tests/plugins/acme/modelport_acme.py"} <= shown
    for block in blocks:
        source = (ROOT / block["path"]).read_text(encoding="utf-8")
        if block["kind"] == "file":
            assert block["code"] == source, f"docs/plugins.md shows a different {block['path']}"
        else:
            assert block["code"] in source, f"docs/plugins.md quotes lines that are not in {block['path']}:\n{block['code']}"


def test_brook_imports_only_the_provider_toolkit() -> None:
    for node in ast.walk(ast.parse(BROOK_MODULE.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "modelport":
            assert node.module == "modelport.provider", f"line {node.lineno}: from {node.module} import ..."
        elif isinstance(node, ast.Import):
            assert not any(alias.name.split(".")[0] == "modelport" for alias in node.names), f"line {node.lineno}: import modelport..."
