"""A scriptable OpenAI-compatible HTTP server on 127.0.0.1, for tests, demos and benchmarks.

It runs aiohttp's server on its own thread and event loop, records every request, and
answers with queued ``Reply`` objects (status, JSON or raw body, SSE events, delays,
cuts) or, when none is queued, with a deterministic echo of the OpenAI API.

    with FakeUpstream() as up:
        up.reply(status=429, json={"error": {"message": "slow down"}}, headers={"Retry-After": "0"})
        modelport.completion(model="openai/x", messages=[...], api_base=up.base_url)
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Union

import attrs

__all__ = ["FakeUpstream", "Reply", "RecordedRequest", "echo_text"]


@attrs.define
class Reply:
    """One scripted answer; ``sse`` items are dicts (sent as ``data: <json>``) or raw event text."""

    status: int = 200
    json: Any = None
    body: Union[bytes, str, None] = None
    headers: Dict[str, str] = attrs.field(factory=dict)
    sse: Optional[List[Union[Dict[str, Any], str]]] = None
    #: End an SSE reply with ``data: [DONE]``.
    done: bool = True
    #: Drop the connection after the SSE events instead of ending the body cleanly.
    abort: bool = False
    delay: float = 0.0
    chunk_delay: float = 0.0
    content_type: Optional[str] = None
    #: Only answer requests to this path (``None``: any path).
    path: Optional[str] = None


@attrs.define
class RecordedRequest:
    method: str
    path: str
    headers: Dict[str, str]
    body: bytes
    json: Any = None
    form: Dict[str, Any] = attrs.field(factory=dict)
    #: Every value of each form field, for fields sent more than once (``name[]``).
    form_lists: Dict[str, List[str]] = attrs.field(factory=dict)
    files: Dict[str, Any] = attrs.field(factory=dict)
    query: Dict[str, str] = attrs.field(factory=dict)
    #: The client's (host, port): equal across requests that reused one connection.
    peer: Any = None


def echo_text(body: Dict[str, Any]) -> str:
    """The echo handler's reply to a chat request: the last user text, quoted."""
    text = ""
    for message in body.get("messages") or []:
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            text = str(content or "")
    return f"You said: {text}"


def _words(text: str) -> List[str]:
    parts = text.split(" ")
    return [p + (" " if i < len(parts) - 1 else "") for i, p in enumerate(parts)]


Handler = Callable[[RecordedRequest], Optional[Reply]]


class FakeUpstream:
    """The server; use as a context manager or call ``start()`` / ``stop()``."""

    def __init__(self, handler: Optional[Handler] = None) -> None:
        self.requests: List[RecordedRequest] = []
        self._replies: List[Reply] = []
        self._handler = handler
        self._lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._runner: Any = None
        self.port = 0

    # -- scripting ------------------------------------------------------------------------

    def reply(self, reply: Optional[Reply] = None, *, times: int = 1, **fields: Any) -> "FakeUpstream":
        """Queue an answer (``Reply`` or its fields) for the next ``times`` matching requests."""
        reply = reply or Reply(**fields)
        with self._lock:
            self._replies.extend([reply] * times)
        return self

    def clear(self) -> None:
        with self._lock:
            self._replies.clear()
            self.requests.clear()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def last(self) -> RecordedRequest:
        return self.requests[-1]

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> "FakeUpstream":
        ready = threading.Event()
        failure: List[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported to start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    async def _serve(self) -> None:
        from aiohttp import web

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        import socket

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> "FakeUpstream":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- serving ---------------------------------------------------------------------------

    async def _record(self, request: Any) -> RecordedRequest:
        body = await request.read()
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            query=dict(request.query),
            peer=request.transport.get_extra_info("peername") if request.transport else None,
        )
        content_type = request.headers.get("Content-Type", "")
        if content_type.startswith("application/json") and body:
            try:
                recorded.json = json.loads(body)
            except ValueError:
                pass
        elif content_type.startswith("multipart/form-data"):
            recorded.form, recorded.form_lists, recorded.files = _parse_multipart(content_type, body)
        return recorded

    def _next_reply(self, recorded: RecordedRequest) -> Optional[Reply]:
        with self._lock:
            self.requests.append(recorded)
            for position, reply in enumerate(self._replies):
                if reply.path is None or reply.path == recorded.path:
                    return self._replies.pop(position)
        if self._handler is not None:
            return self._handler(recorded)
        return None

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        recorded = await self._record(request)
        reply = self._next_reply(recorded) or _echo(recorded)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.sse is None:
            if reply.json is not None:
                body = json.dumps(reply.json).encode()
                content_type = reply.content_type or "application/json"
            else:
                raw = reply.body or b""
                body = raw.encode() if isinstance(raw, str) else raw
                content_type = reply.content_type or "text/plain"
            headers = {"Content-Type": content_type, **reply.headers}
            return web.Response(status=reply.status, body=body, headers=headers)
        response = web.StreamResponse(
            status=reply.status,
            headers={"Content-Type": reply.content_type or "text/event-stream", "Cache-Control": "no-cache", **reply.headers},
        )
        await response.prepare(request)
        for item in reply.sse:
            event = f"data: {json.dumps(item)}\n\n" if isinstance(item, dict) else item
            await response.write(event.encode())
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
        if reply.abort:
            request.transport.close()
            return response
        if reply.done:
            await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _parse_multipart(content_type: str, body: bytes) -> Any:
    """Form fields and files of a multipart body, with the standard library's MIME parser."""
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    form: Dict[str, Any] = {}
    lists: Dict[str, List[str]] = {}
    files: Dict[str, Any] = {}
    for part in message.iter_parts():
        name = str(part.get_param("name", header="content-disposition"))
        payload: Any = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename:
            files[name] = (filename, payload, part.get_content_type())
        else:
            form[name] = payload.decode()
            lists.setdefault(name, []).append(form[name])
    return form, lists, files


def _echo(recorded: RecordedRequest) -> Reply:
    """The default answers: OpenAI's shapes, deterministic in the request."""
    body = recorded.json if isinstance(recorded.json, dict) else {}
    model = body.get("model") or recorded.form.get("model") or "echo"
    created = int(time.time())
    path = recorded.path
    if "/v1/" not in path:
        return Reply(status=404, json={"error": {"message": f"no route {recorded.method} {path}", "type": "invalid_request_error", "code": "not_found"}})
    if path.endswith("/chat/completions"):
        text = echo_text(body)
        usage = {"prompt_tokens": len(str(body.get("messages")).split()), "completion_tokens": len(text.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if body.get("stream"):
            head = {"id": "chatcmpl-echo", "object": "chat.completion.chunk", "created": created, "model": model}
            events: List[Any] = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]}]
            events += [{**head, "choices": [{"index": 0, "delta": {"content": w}, "logprobs": None, "finish_reason": None}]} for w in _words(text)]
            events.append({**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]})
            if (body.get("stream_options") or {}).get("include_usage"):
                events.append({**head, "choices": [], "usage": usage})
            return Reply(sse=events)
        return Reply(json={
            "id": "chatcmpl-echo", "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None}, "logprobs": None, "finish_reason": "stop"}],
            "usage": usage,
        })  # fmt: skip
    if path.endswith("/completions"):
        prompt = body.get("prompt")
        text = f"You wrote: {prompt if isinstance(prompt, str) else json.dumps(prompt)}"
        usage = {"prompt_tokens": 1, "completion_tokens": len(text.split()), "total_tokens": 1 + len(text.split())}
        head = {"id": "cmpl-echo", "object": "text_completion", "created": created, "model": model}
        if body.get("stream"):
            events = [{**head, "choices": [{"index": 0, "text": w, "logprobs": None, "finish_reason": None}]} for w in _words(text)]
            events.append({**head, "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}]})
            if (body.get("stream_options") or {}).get("include_usage"):
                events.append({**head, "choices": [], "usage": usage})
            return Reply(sse=events)
        return Reply(json={**head, "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}], "usage": usage})
    if path.endswith("/embeddings"):
        inputs = body.get("input")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        size = int(body.get("dimensions") or 8)
        data = []
        for index, item in enumerate(inputs):
            seed = sum(str(item).encode()) * 31 + len(str(item))  # depends on the text alone
            vector = [((seed * (k + 1)) % 97) / 97.0 for k in range(size)]
            if body.get("encoding_format") == "base64":
                packed: Any = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
            else:
                packed = vector
            data.append({"object": "embedding", "index": index, "embedding": packed})
        tokens = sum(len(str(i).split()) for i in inputs)
        return Reply(json={"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
    if path.endswith("/models"):
        return Reply(json={"object": "list", "data": [{"id": "echo", "object": "model", "created": 0, "owned_by": "modelport"}]})
    return Reply(status=404, json={"error": {"message": f"no route {recorded.method} {path}", "type": "invalid_request_error", "code": "not_found"}})
