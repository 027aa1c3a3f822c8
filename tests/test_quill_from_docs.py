"""The Quill sample plugin (tests/plugins/quill), tested the way docs/plugins.md describes.

- the conformance kit, with Quill's documented mappings declared from the API description;
- a loopback Quill server of our own (127.0.0.1, port 0) speaking exactly Quill's wire;
- calls through modelport's public API: chat plain and streamed (sync and async), picture
  jobs polled with progress, a broken job, the give-up timeout, a 429 retried after the
  ``wait`` of its body, ``no_credit`` not retried, ``mock_response`` and ``--dry-run``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Deque, Dict, Iterator, List, Optional, Tuple

import pytest
from hypothesis import assume

import modelport
from modelport.testing import ProviderConformance
from modelport.testing.strategies import chat_responses

KEY = "qk-very-secret-token-1234"

# --- Quill's documented mapping, written from the API description --------------------------

WHO = {"system": "rules", "developer": "rules", "user": "human", "assistant": "quill"}
HALT_FROM_OPENAI = {"stop": "natural", "length": "cap"}  # any other finish reason: natural
HALT_TO_OPENAI = {"natural": "stop", "cap": "length"}
CHAT_PARAMS = {"model", "messages", "temperature", "max_tokens", "max_completion_tokens", "stream", "stream_options"}
OPENAI_RESULT = {"id", "object", "created", "model", "choices", "usage"}


def _text(content: Any) -> Optional[str]:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "\n".join(p["text"] for p in content)
    return None


def _usage(usage: Any) -> Optional[Dict[str, int]]:
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _finish(reason: Any) -> str:
    return HALT_TO_OPENAI[HALT_FROM_OPENAI.get(reason, "natural")]


def _extras(payload: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in OPENAI_RESULT}


class TestQuillConformance(ProviderConformance):
    provider = "quill"
    # Quill says one thing per answer.
    chat_response_strategy = chat_responses(max_choices=1)

    def accepts_request(self, body: Dict[str, Any]) -> bool:
        # Quill speaks rules/human/quill lines of text: no tools, no tool messages, no media.
        for message in body["messages"]:
            if message.get("role") not in WHO or message.get("tool_calls"):
                return False
            if _text(message.get("content")) is None:
                return False
        return True

    def expected_request(self, body: Dict[str, Any]) -> Dict[str, Any]:
        knobs: Dict[str, Any] = {}
        if body.get("temperature") is not None:
            knobs["heat"] = body["temperature"]
        cap = body.get("max_completion_tokens")
        if cap is None:
            cap = body.get("max_tokens")
        if cap is not None:
            knobs["cap"] = cap
        return {
            **{k: v for k, v in body.items() if k not in CHAT_PARAMS},  # provider fields, top level
            "model": body["model"],
            "dialogue": [{"who": WHO[m["role"]], "says": _text(m["content"])} for m in body["messages"]],
            "knobs": knobs,
            "flow": bool(body.get("stream")),
        }

    def expected_response(self, body: Dict[str, Any]) -> Dict[str, Any]:
        # One reply of text, a natural or capped halt, in/out counts; fields Quill does not
        # know (tool calls, refusals, logprobs, usage details) are lost, unknown top-level
        # fields are kept.
        assume(len(body["choices"]) == 1)
        choice = body["choices"][0]
        message = {"role": "assistant", "content": choice["message"].get("content") or "", "refusal": None}
        return {
            **_extras(body),
            "id": body["id"],
            "object": "chat.completion",
            "created": body["created"],
            "model": body["model"],
            "choices": [
                {"index": 0, "message": message, "finish_reason": _finish(choice["finish_reason"]), "logprobs": None}
            ],
            "usage": _usage(body.get("usage")),
        }

    def expected_chunk(self, chunk: Dict[str, Any]) -> Dict[str, Any]:
        # A piece line per chunk of content (text only), a last line with the halt and counts.
        head = {
            **_extras(chunk),
            "id": chunk["id"],
            "object": "chat.completion.chunk",
            "created": chunk["created"],
            "model": chunk["model"],
        }
        if not chunk["choices"]:
            return {**head, "choices": [], "usage": _usage(chunk.get("usage"))}
        assume(len(chunk["choices"]) == 1)
        choice = chunk["choices"][0]
        if choice.get("finish_reason") is not None:
            assume(not (choice.get("delta") or {}).get("content"))
            return {
                **head,
                "choices": [
                    {"index": 0, "delta": {}, "logprobs": None, "finish_reason": _finish(choice["finish_reason"])}
                ],
            }
        delta = {"content": (choice.get("delta") or {}).get("content") or ""}
        return {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]}


# --- a loopback Quill ----------------------------------------------------------------------

Reply = Dict[str, Any]


class FakeQuill:
    """Quill on 127.0.0.1: replies are queued per (method, path); every request is recorded."""

    def __init__(self) -> None:
        self.replies: Dict[Tuple[str, str], Deque[Reply]] = {}
        self.requests: List[Dict[str, Any]] = []
        self.lock = threading.Lock()
        quill = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                with quill.lock:
                    quill.requests.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "json": json.loads(raw) if raw else None,
                            "at": time.monotonic(),
                        }
                    )
                    queue = quill.replies.get((self.command, self.path))
                    reply = queue.popleft() if queue else None
                if reply is None:
                    reply = trouble(404, "nothing scripted for this path", "not_found")
                if "lines" in reply:
                    self._stream(reply)
                else:
                    body = json.dumps(reply["json"]).encode("utf-8")
                    self.send_response(reply.get("status", 200))
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def _stream(self, reply: Reply) -> None:
                body = b"".join(json.dumps(line).encode("utf-8") + b"\n" for line in reply["lines"])
                self.send_response(200)
                self.send_header("content-type", "application/x-ndjson")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                cut = reply.get("cut", 7)  # writes cut across lines and inside UTF-8 sequences
                for start in range(0, len(body), cut):
                    part = body[start : start + cut]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.flush()
                    time.sleep(0.001)
                self.wfile.write(b"0\r\n\r\n")

            do_GET = _handle
            do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeQuill:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def queue(self, method: str, path: str, *replies: Reply) -> None:
        with self.lock:
            self.replies.setdefault((method, path), deque()).extend(replies)

    def sent(self, method: Optional[str] = None, path: Optional[str] = None) -> List[Dict[str, Any]]:
        with self.lock:
            return [
                r
                for r in self.requests
                if (method is None or r["method"] == method) and (path is None or r["path"] == path)
            ]


def answer(said: str, halt: str = "natural", counts: Tuple[int, int] = (3, 2)) -> Reply:
    return {
        "json": {
            "ref": "q-1",
            "engine": "quill-1",
            "when": 1700000000,
            "said": said,
            "halt": halt,
            "counts": {"in": counts[0], "out": counts[1]},
        }
    }


def flow(pieces: List[str], halt: str = "natural", counts: Tuple[int, int] = (3, 2), cut: int = 7) -> Reply:
    head = {"ref": "q-2", "engine": "quill-1", "when": 1700000001}
    lines = [{**head, "piece": p} for p in pieces]
    lines.append({**head, "halt": halt, "counts": {"in": counts[0], "out": counts[1]}})
    return {"lines": lines, "cut": cut}


def trouble(status: int, what: str, tag: str, wait: Optional[float] = None) -> Reply:
    return {"status": status, "json": {"trouble": {"what": what, "tag": tag, "wait": wait}}}


def job(phase: str, links: Optional[List[str]] = None, why: Optional[str] = None) -> Reply:
    body: Dict[str, Any] = {"phase": phase}
    if links is not None:
        body["links"] = links
    if why is not None:
        body["why"] = why
    return {"json": body}


@pytest.fixture
def quill() -> Iterator[FakeQuill]:
    with FakeQuill() as server:
        yield server


@pytest.fixture
def qclient() -> Iterator[modelport.Client]:
    # Our own client, so these tests do not depend on the shared fixture's retry caps.
    with modelport.Client(retry_backoff=0.01, timeout=10) as c:
        yield c


MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi ✓"}]
EXPECTED_DIALOGUE = [{"who": "rules", "says": "be brief"}, {"who": "human", "says": "hi ✓"}]


# --- chat ------------------------------------------------------------------------------------


def test_chat_plain(quill: FakeQuill, qclient: modelport.Client) -> None:
    quill.queue("POST", "/v2/complete", answer("hello there", halt="cap", counts=(5, 4)))
    reply = qclient.completion(
        "quill/quill-1", MESSAGES, api_base=quill.url, api_key=KEY, temperature=0.2, max_tokens=4
    )
    assert reply.id == "q-1" and reply.model == "quill-1" and reply.created == 1700000000
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == "hello there"
    assert reply.choices[0].finish_reason == "length"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (5, 4, 9)
    (sent,) = quill.sent()
    assert sent["headers"]["quill-token"] == KEY
    assert "authorization" not in sent["headers"]
    assert sent["json"] == {
        "model": "quill-1",
        "dialogue": EXPECTED_DIALOGUE,
        "knobs": {"heat": 0.2, "cap": 4},
        "flow": False,
    }


def test_chat_key_from_environment(
    quill: FakeQuill, qclient: modelport.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUILL_API_KEY", KEY)
    monkeypatch.setenv("QUILL_API_BASE", quill.url)
    quill.queue("POST", "/v2/complete", answer("ok"))
    assert qclient.completion("quill/quill-1", MESSAGES).choices[0].message.content == "ok"
    assert quill.sent()[0]["headers"]["quill-token"] == KEY


def test_chat_refuses_what_quill_lacks(quill: FakeQuill, qclient: modelport.Client) -> None:
    with pytest.raises(modelport.InvalidRequestError):
        qclient.completion("quill/quill-1", MESSAGES, api_base=quill.url, api_key=KEY, stop=["x"])
    image = [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}}]}
    ]
    with pytest.raises(modelport.InvalidRequestError):
        qclient.completion("quill/quill-1", image, api_base=quill.url, api_key=KEY)
    assert quill.sent() == []


def test_chat_stream(quill: FakeQuill, qclient: modelport.Client) -> None:
    quill.queue("POST", "/v2/complete", flow(["Hel", "lo ", "wörld ✓"], counts=(3, 3), cut=5))
    chunks = list(qclient.completion("quill/quill-1", MESSAGES, api_base=quill.url, api_key=KEY, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello wörld ✓"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.total_tokens == 6
    assert all(c.id == "q-2" and c.model == "quill-1" for c in chunks)
    rebuilt = modelport.stream_to_completion(chunks)
    assert rebuilt.choices[0].message.content == "Hello wörld ✓"
    (sent,) = quill.sent()
    assert sent["json"]["flow"] is True and sent["json"]["dialogue"] == EXPECTED_DIALOGUE


def test_chat_stream_cut_before_the_last_line(quill: FakeQuill, qclient: modelport.Client) -> None:
    head = {"ref": "q-3", "engine": "quill-1", "when": 1}
    quill.queue("POST", "/v2/complete", {"lines": [{**head, "piece": "half"}]})
    with pytest.raises(modelport.StreamInterruptedError):
        list(qclient.completion("quill/quill-1", MESSAGES, api_base=quill.url, api_key=KEY, stream=True))


def test_chat_async_plain_and_stream(quill: FakeQuill) -> None:
    quill.queue("POST", "/v2/complete", answer("async hello"), flow(["as", "ync"], halt="cap"))

    async def run() -> Tuple[Any, List[Any]]:
        async with modelport.AsyncClient(retry_backoff=0.01, timeout=10) as client:
            reply = await client.completion("quill/quill-1", MESSAGES, api_base=quill.url, api_key=KEY)
            stream = await client.completion("quill/quill-1", MESSAGES, api_base=quill.url, api_key=KEY, stream=True)
            return reply, [chunk async for chunk in stream]

    reply, chunks = asyncio.run(run())
    assert reply.choices[0].message.content == "async hello"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "async"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert [r["json"]["flow"] for r in quill.sent()] == [False, True]
    assert all(r["headers"]["quill-token"] == KEY for r in quill.sent())


# --- errors ----------------------------------------------------------------------------------


def test_overloaded_429_is_retried_after_wait(quill: FakeQuill, qclient: modelport.Client) -> None:
    quill.queue("POST", "/v2/complete", trouble(429, "too busy", "overloaded", wait=0.4), answer("after the wait"))
    reply = qclient.completion("quill/quill-1", MESSAGES, api_base=quill.url, api_key=KEY)
    assert reply.choices[0].message.content == "after the wait"
    first, second = quill.sent()
    assert second["at"] - first["at"] >= 0.4


def test_overloaded_503_is_retried(quill: FakeQuill, qclient: modelport.Client) -> None:
    quill.queue("POST", "/v2/complete", trouble(503, "warming up", "overloaded", wait=0.05), answer("up"))
    assert (
        qclient.completion("quill/quill-1", MESSAGES, api_base=quill.url, api_key=KEY).choices[0].message.content
        == "up"
    )
    assert len(quill.sent()) == 2


def test_no_credit_is_a_quota_error_not_retried(quill: FakeQuill, qclient: modelport.Client) -> None:
    quill.queue("POST", "/v2/complete", trouble(402, f"out of credit for {KEY}", "no_credit"), answer("never"))
    with pytest.raises(modelport.QuotaExceededError) as caught:
        qclient.completion("quill/quill-1", MESSAGES, api_base=quill.url, api_key=KEY)
    assert len(quill.sent()) == 1
    assert "out of credit" in str(caught.value)
    assert KEY not in str(caught.value)  # the core scrubs the key an upstream echoes
    assert caught.value.retryable is False


def test_bad_input_is_a_bad_request(quill: FakeQuill, qclient: modelport.Client) -> None:
    quill.queue("POST", "/v2/complete", trouble(400, "dialogue is empty", "bad_input"))
    with pytest.raises(modelport.BadRequestError, match="dialogue is empty"):
        qclient.completion("quill/quill-1", MESSAGES, api_base=quill.url, api_key=KEY)
    assert len(quill.sent()) == 1


# --- pictures --------------------------------------------------------------------------------


def test_picture_job_is_polled_until_ready(quill: FakeQuill, qclient: modelport.Client) -> None:
    quill.queue("POST", "/v2/pictures", {"json": {"job": "j-1"}})
    quill.queue(
        "GET",
        "/v2/jobs/j-1",
        job("queued"),
        job("drawing"),
        job("ready", links=["https://cdn.quill.example/j-1/0.png"]),
    )
    progress: List[Tuple[str, float]] = []
    result = qclient.image_generation(
        "quill/sketch-2",
        "a quill on parchment",
        size="512x512",
        api_base=quill.url,
        api_key=KEY,
        poll_every=0.05,
        on_progress=lambda status, elapsed: progress.append((status, elapsed)),
    )
    assert [image.url for image in result.data] == ["https://cdn.quill.example/j-1/0.png"]
    assert isinstance(result.created, int) and result.created > 0
    submit, *polls = quill.sent()
    assert submit["method"] == "POST" and submit["path"] == "/v2/pictures"
    assert submit["json"] == {"model": "sketch-2", "describe": "a quill on parchment", "dims": "512x512"}
    assert [(p["method"], p["path"]) for p in polls] == [("GET", "/v2/jobs/j-1")] * 3
    assert all(r["headers"]["quill-token"] == KEY for r in quill.sent())
    times = [r["at"] for r in quill.sent()]
    assert all(later - earlier >= 0.05 for earlier, later in zip(times, times[1:]))
    assert [status for status, _ in progress] == ["queued", "queued", "drawing"]
    elapsed = [e for _, e in progress]
    assert elapsed == sorted(elapsed)


def test_picture_default_dims(quill: FakeQuill, qclient: modelport.Client) -> None:
    quill.queue("POST", "/v2/pictures", {"json": {"job": "j-2"}})
    quill.queue("GET", "/v2/jobs/j-2", job("ready", links=["https://cdn.quill.example/j-2/0.png"]))
    qclient.image_generation("quill/sketch-2", "a cat", api_base=quill.url, api_key=KEY, poll_every=0.01)
    assert quill.sent()[0]["json"]["dims"] == "1024x1024"


def test_picture_job_async(quill: FakeQuill) -> None:
    quill.queue("POST", "/v2/pictures", {"json": {"job": "j-9"}})
    quill.queue(
        "GET",
        "/v2/jobs/j-9",
        job("drawing"),
        job("ready", links=["https://cdn.quill.example/j-9/a.png", "https://cdn.quill.example/j-9/b.png"]),
    )
    progress: List[str] = []

    async def run() -> Any:
        async with modelport.AsyncClient(retry_backoff=0.01, timeout=10) as client:
            return await client.image_generation(
                "quill/sketch-2",
                "two quills",
                api_base=quill.url,
                api_key=KEY,
                poll_every=0.02,
                on_progress=lambda status, elapsed: progress.append(status),
            )

    result = asyncio.run(run())
    assert len(result.data) == 2
    assert progress == ["queued", "drawing"]


def test_broken_job_is_an_error(quill: FakeQuill, qclient: modelport.Client) -> None:
    quill.queue("POST", "/v2/pictures", {"json": {"job": "j-3"}})
    quill.queue("GET", "/v2/jobs/j-3", job("drawing"), job("broken", why="ink spilled"))
    with pytest.raises(modelport.TaskFailedError, match="ink spilled"):
        qclient.image_generation("quill/sketch-2", "a mess", api_base=quill.url, api_key=KEY, poll_every=0.01)
    assert len(quill.sent("GET")) == 2


def test_job_gives_up_after_give_up_after(quill: FakeQuill, qclient: modelport.Client) -> None:
    quill.queue("POST", "/v2/pictures", {"json": {"job": "j-4"}})
    quill.queue("GET", "/v2/jobs/j-4", *[job("queued")] * 100)
    started = time.monotonic()
    with pytest.raises(modelport.TaskFailedError, match="j-4"):
        qclient.image_generation(
            "quill/sketch-2", "slow", api_base=quill.url, api_key=KEY, poll_every=0.05, give_up_after=0.3
        )
    took = time.monotonic() - started
    polls = len(quill.sent("GET"))
    assert 2 <= polls <= 6  # every 0.05 s for at most 0.3 s
    assert took < 2.0


def test_picture_options_are_checked_before_sending(quill: FakeQuill, qclient: modelport.Client) -> None:
    with pytest.raises(modelport.InvalidRequestError, match="poll_every"):
        qclient.image_generation("quill/sketch-2", "x", api_base=quill.url, api_key=KEY, poll_every=0)
    with pytest.raises(modelport.InvalidRequestError):
        qclient.image_generation("quill/sketch-2", "x", api_base=quill.url, api_key=KEY, n=2)
    assert quill.sent() == []


# --- mock_response ---------------------------------------------------------------------------


def test_mock_response_runs_quills_decoding() -> None:
    hooks = modelport.registry.hooks("quill")
    assert hooks.encodes_responses and hooks.encodes_streams
    reply = modelport.completion("quill/quill-1", MESSAGES, mock_response="mocked quill")
    assert reply.choices[0].message.content == "mocked quill"
    assert reply.choices[0].finish_reason == "stop"
    chunks = list(modelport.completion("quill/quill-1", MESSAGES, mock_response="mocked quill", stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "mocked quill"


def test_mock_response_for_pictures_is_the_final_result() -> None:
    result = modelport.image_generation(
        "quill/sketch-2", "x", mock_response={"created": 1, "data": [{"url": "https://cdn.quill.example/m.png"}]}
    )
    assert result.data[0].url == "https://cdn.quill.example/m.png"


# --- secrets ---------------------------------------------------------------------------------


def test_dry_run_redacts_the_key(qclient: modelport.Client) -> None:
    text = qclient.describe_request("chat", "quill/quill-1", messages=MESSAGES, api_key=KEY)
    assert KEY not in text
    assert "Quill-Token" in text and "/v2/complete" in text
    picture = qclient.describe_request("image_generation", "quill/sketch-2", prompt="x", api_key=KEY)
    assert KEY not in picture and "/v2/pictures" in picture
    request = qclient.build_request("chat", "quill/quill-1", messages=MESSAGES, api_key=KEY)
    assert request.headers["Quill-Token"] == KEY  # the real request carries it...
    assert KEY not in repr(request)  # ...its repr does not


def test_cli_dry_run_redacts_the_key() -> None:
    env = {**os.environ, "QUILL_API_KEY": KEY}
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "modelport"), "chat", "-m", "quill/quill-1", "--dry-run", "hi"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "/v2/complete" in done.stdout and "Quill-Token" in done.stdout
    assert KEY not in done.stdout + done.stderr
