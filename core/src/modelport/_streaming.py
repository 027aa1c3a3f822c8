"""Typed chunk streams, sync and async.

Per-chunk work is the hot path: bytes -> the provider's decoder -> its
``parse_stream_chunk`` (resolved once to a plain function) -> a typed chunk, all in
the engine's ``ChunkParser``. A stream that ends before its end marker raises
``StreamInterruptedError``; nothing after the marker is expected, and the connection
is drained so it returns to the pool.
"""

from __future__ import annotations

import warnings
from typing import Any, AsyncGenerator, AsyncIterator, Dict, Generator, Iterator

from ._engine import ChunkParser, stamp_error
from ._rebuild import stream_to_completion
from .errors import ProviderError
from .provider._types import Call

__all__ = ["Stream", "AsyncStream", "stream_to_completion"]


class Stream:
    """A sync iterator of typed chunks; a context manager, ``close()`` releases the connection.

    Chunks that arrived before a malformed event or an upstream error are delivered
    first; the error is raised after them.
    """

    def __init__(self, handle: Any, parser: ChunkParser, call: Call) -> None:
        self._handle = handle
        self._parser = parser
        self._call = call
        self._iterator = self._iterate()
        self._open = True
        self.response_headers: Dict[str, str] = dict(handle.head.headers)

    def _iterate(self) -> Generator[Any, None, None]:
        parser = self._parser
        try:
            pieces = self._handle.iter_bytes()
            for raw in pieces:
                chunks = parser.feed(raw)
                if chunks:
                    yield from chunks
                if parser.done:
                    if parser.error is not None:
                        raise parser.error
                    for _ in pieces:  # drain so the connection is reused
                        pass
                    return
            yield from parser.finish()
            if parser.error is not None:
                raise parser.error
        except ProviderError as exc:
            raise stamp_error(exc, self._call)
        finally:
            self._open = False
            self._handle.close()

    def __iter__(self) -> Iterator[Any]:
        return self._iterator

    def __next__(self) -> Any:
        return next(self._iterator)

    def close(self) -> None:
        self._open = False
        self._iterator.close()
        self._handle.close()

    def __del__(self) -> None:
        if getattr(self, "_open", False):
            self._open = False
            warnings.warn(
                "a modelport stream was dropped before it ended; use `with` or call close() to release its connection",
                ResourceWarning,
                stacklevel=2,
            )
            self._handle.close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class AsyncStream:
    """An async iterator of typed chunks; ``async with`` or ``await aclose()`` releases it."""

    def __init__(self, handle: Any, parser: ChunkParser, call: Call) -> None:
        self._handle = handle
        self._parser = parser
        self._call = call
        self._iterator = self._iterate()
        self._open = True
        self.response_headers: Dict[str, str] = dict(handle.head.headers)

    async def _iterate(self) -> AsyncGenerator[Any, None]:
        parser = self._parser
        try:
            pieces = self._handle.aiter_bytes()
            async for raw in pieces:
                for chunk in parser.feed(raw):
                    yield chunk
                if parser.done:
                    if parser.error is not None:
                        raise parser.error
                    async for _ in pieces:  # drain so the connection is reused
                        pass
                    return
            for chunk in parser.finish():
                yield chunk
            if parser.error is not None:
                raise parser.error
        except ProviderError as exc:
            raise stamp_error(exc, self._call)
        finally:
            self._open = False
            await self._handle.aclose()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterator

    async def __anext__(self) -> Any:
        return await self._iterator.__anext__()

    async def aclose(self) -> None:
        self._open = False
        await self._iterator.aclose()
        await self._handle.aclose()

    def __del__(self) -> None:
        if getattr(self, "_open", False):
            # Nothing can be awaited here: the handle gives its connection back when it is
            # collected; the warning says how to release it promptly.
            warnings.warn(
                "a modelport async stream was dropped before it ended; use `async with` or await aclose()",
                ResourceWarning,
                stacklevel=2,
            )

    #: The v1 name of ``aclose``.
    close = aclose

    async def __aenter__(self) -> "AsyncStream":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()
