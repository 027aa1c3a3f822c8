"""Typed chunk streams (sync and async) and rebuilding a full response from chunks.

Per-chunk work is the hot path: bytes -> SSE events -> the provider's
``parse_stream_chunk`` (resolved once to a plain function) -> a typed chunk. A stream
that ends before its end marker raises ``StreamInterruptedError``; nothing after the
marker is expected, and the connection is drained so it returns to the pool.
"""

from __future__ import annotations

from typing import Any, AsyncGenerator, AsyncIterator, Dict, Generator, Iterable, Iterator, List, Union

from ._sse import SSEDecoder
from ._wire import END_OF_STREAM, IGNORE_EVENT, Call, stamp_error
from .errors import ProviderError, StreamInterruptedError
from .types import ChatCompletion, ChatCompletionChunk, Completion, OpenAIObject

__all__ = ["Stream", "AsyncStream", "stream_to_completion"]


class _ChunkParser:
    """Turns network reads into typed chunks; shared by Stream and AsyncStream."""

    __slots__ = ("_decoder", "_parse", "_load", "_call", "done")

    def __init__(self, hooks: Any, call: Call, chunk_type: Any) -> None:
        self._decoder = SSEDecoder()
        self._parse = hooks.parse_stream_chunk
        self._load = chunk_type.from_dict
        self._call = call
        self.done = False

    def feed(self, raw: bytes) -> List[Any]:
        if self.done:
            return []
        return self._typed(self._decoder.feed(raw))

    def _typed(self, events: List[Any]) -> List[Any]:
        out = []
        parse, load, call = self._parse, self._load, self._call
        for event in events:
            item = parse(call, event)
            if item is IGNORE_EVENT:
                continue
            if item is END_OF_STREAM:
                self.done = True
                break
            out.append(load(item))
        return out

    def finish(self) -> List[Any]:
        """Chunks still framed at the end of the body; raises if the end marker never came."""
        if self.done:
            return []
        out = self._typed(self._decoder.flush())
        if not self.done:
            call = self._call
            cut = " in the middle of an event" if self._decoder.has_partial_line else ""
            raise StreamInterruptedError(
                f"the stream ended{cut} before its end marker ([DONE]); the response is incomplete",
                provider=call.provider,
                model=call.model,
            )
        return out


class Stream:
    """A sync iterator of typed chunks; a context manager, ``close()`` releases the connection."""

    def __init__(self, handle: Any, hooks: Any, call: Call, chunk_type: Any) -> None:
        self._handle = handle
        self._parser = _ChunkParser(hooks, call, chunk_type)
        self._call = call
        self._iterator = self._iterate()
        self.response_headers: Dict[str, str] = dict(handle.head.headers) if handle is not None else {}

    def _iterate(self) -> Generator[Any, None, None]:
        parser = self._parser
        try:
            pieces = self._handle.iter_bytes()
            for raw in pieces:
                chunks = parser.feed(raw)
                if chunks:
                    yield from chunks
                if parser.done:
                    for _ in pieces:  # drain so the connection is reused
                        pass
                    return
            yield from parser.finish()
        except ProviderError as exc:
            raise stamp_error(exc, self._call)
        finally:
            self._handle.close()

    def __iter__(self) -> Iterator[Any]:
        return self._iterator

    def __next__(self) -> Any:
        return next(self._iterator)

    def close(self) -> None:
        self._iterator.close()
        self._handle.close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class AsyncStream:
    """An async iterator of typed chunks; ``async with`` or ``await close()`` releases it."""

    def __init__(self, handle: Any, hooks: Any, call: Call, chunk_type: Any) -> None:
        self._handle = handle
        self._parser = _ChunkParser(hooks, call, chunk_type)
        self._call = call
        self._iterator = self._iterate()
        self.response_headers: Dict[str, str] = dict(handle.head.headers) if handle is not None else {}

    async def _iterate(self) -> AsyncGenerator[Any, None]:
        parser = self._parser
        try:
            pieces = self._handle.iter_bytes()
            async for raw in pieces:
                chunks = parser.feed(raw)
                for chunk in chunks:
                    yield chunk
                if parser.done:
                    async for _ in pieces:  # drain so the connection is reused
                        pass
                    return
            for chunk in parser.finish():
                yield chunk
        except ProviderError as exc:
            raise stamp_error(exc, self._call)
        finally:
            await self._handle.close()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterator

    async def __anext__(self) -> Any:
        return await self._iterator.__anext__()

    async def close(self) -> None:
        await self._iterator.aclose()
        await self._handle.close()

    async def __aenter__(self) -> "AsyncStream":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


# --- rebuilding a response -------------------------------------------------------------


def _merge_tool_call(calls: Dict[int, Dict[str, Any]], delta: Dict[str, Any], position: int) -> None:
    index = delta.get("index", position)
    current = calls.get(index)
    if current is None:
        current = calls[index] = {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
    if delta.get("id"):  # DashScope repeats "id": "" after the first delta: keep the real one
        current["id"] = delta["id"]
    if delta.get("type"):
        current["type"] = delta["type"]
    function = delta.get("function") or {}
    if function.get("name"):
        current["function"]["name"] += function["name"] if not current["function"]["name"] else ""
    if function.get("arguments"):
        current["function"]["arguments"] += function["arguments"]
    for key, value in delta.items():
        if key not in ("index", "id", "type", "function"):
            current[key] = value


def stream_to_completion(chunks: Iterable[Union[OpenAIObject, Dict[str, Any]]]) -> Any:
    """Rebuild the full response a stream of chunks describes.

    Chat chunks give a ``ChatCompletion`` (content and reasoning joined, tool calls merged
    by index even when later deltas carry an empty id, usage from the usage chunk, extra
    fields kept); legacy completion chunks give a ``Completion``.
    """
    items = [c.to_dict() if isinstance(c, OpenAIObject) else c for c in chunks]
    if not items:
        raise ValueError("stream_to_completion needs at least one chunk")
    if any(item.get("object") == "text_completion" for item in items) or any(
        "text" in choice for item in items for choice in item.get("choices") or ()
    ):
        return _rebuild_text(items)
    return _rebuild_chat(items)


def _rebuild_chat(items: List[Dict[str, Any]]) -> ChatCompletion:
    top: Dict[str, Any] = {"object": "chat.completion"}
    choices: Dict[int, Dict[str, Any]] = {}
    for item in items:
        for key, value in item.items():
            if key == "choices":
                continue
            if key == "object":
                continue
            if key == "usage":
                if value is not None:
                    top["usage"] = value
                continue
            if value is not None or key not in top:
                top[key] = value
        for position, choice in enumerate(item.get("choices") or ()):
            index = choice.get("index", position)
            acc = choices.setdefault(
                index, {"index": index, "message": {"role": "assistant"}, "finish_reason": None, "logprobs": None, "_text": {}, "_calls": {}}
            )
            delta = choice.get("delta") or {}
            message = acc["message"]
            for key, value in delta.items():
                if key == "tool_calls":
                    for pos, tool_delta in enumerate(value or ()):
                        _merge_tool_call(acc["_calls"], tool_delta, pos)
                elif key == "role":
                    if value:
                        message["role"] = value
                elif isinstance(value, str) and key in ("content", "reasoning_content", "reasoning", "refusal"):
                    acc["_text"].setdefault(key, []).append(value)
                elif value is not None or key not in message:
                    message[key] = value
            if choice.get("finish_reason") is not None:
                acc["finish_reason"] = choice["finish_reason"]
            if choice.get("logprobs") is not None:
                logprobs = acc["logprobs"] or {}
                for key, value in choice["logprobs"].items():
                    if isinstance(value, list):
                        logprobs[key] = (logprobs.get(key) or []) + value
                    else:
                        logprobs[key] = value
                acc["logprobs"] = logprobs
            for key, value in choice.items():
                if key not in ("index", "delta", "finish_reason", "logprobs"):
                    acc[key] = value
    top.setdefault("usage", None)
    built = []
    for index in sorted(choices):
        acc = choices[index]
        message = acc.pop("message")
        for key, parts in acc.pop("_text").items():
            message[key] = "".join(parts)
        message.setdefault("content", None)
        message.setdefault("refusal", None)
        calls = acc.pop("_calls")
        if calls:
            message["tool_calls"] = [calls[i] for i in sorted(calls)]
        built.append({**acc, "message": message})
    top["choices"] = built
    return ChatCompletion.from_dict(top)


def _rebuild_text(items: List[Dict[str, Any]]) -> Completion:
    top: Dict[str, Any] = {"object": "text_completion"}
    choices: Dict[int, Dict[str, Any]] = {}
    for item in items:
        for key, value in item.items():
            if key in ("choices", "object"):
                continue
            if key == "usage":
                if value is not None:
                    top["usage"] = value
                continue
            if value is not None or key not in top:
                top[key] = value
        for position, choice in enumerate(item.get("choices") or ()):
            index = choice.get("index", position)
            acc = choices.setdefault(index, {"index": index, "text": "", "logprobs": None, "finish_reason": None})
            acc["text"] += choice.get("text") or ""
            for key, value in choice.items():
                if key in ("index", "text"):
                    continue
                if value is not None or key not in acc:
                    acc[key] = value
    top["choices"] = [choices[i] for i in sorted(choices)]
    return Completion.from_dict(top)


def chunk_type_for(operation: str) -> Any:
    return ChatCompletionChunk if operation == "chat" else Completion
