"""Incremental, sans-IO stream decoders: bytes in (cut anywhere), events out.

A provider names its framing in ``ProviderInfo.stream_framing`` (``sse`` or ``ndjson``)
or supplies its own decoder through the ``stream_decoder`` hook; either way the decoder
only has to satisfy ``StreamDecoder``. The same decoder serves the sync and the async
transports, so framing is written once.

``SSEDecoder``: httpx-sse only wraps httpx responses, and the async path runs on aiohttp,
so one byte-level decoder serves both. It cuts whole network reads at blank lines (event
boundaries) and decodes each event once, instead of decoding line by line, which the
streaming benchmark showed to be the cheaper way. Follows the WHATWG event-stream
rules: LF, CR or CRLF line ends, ``:`` comments, multi-line ``data`` joined with
``\\n``, one optional space after the colon, ``event`` / ``id`` / ``retry`` fields.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Protocol, Type

from ._types import StreamEvent

__all__ = ["StreamDecoder", "SSEDecoder", "NDJSONDecoder", "decoder_for"]


class StreamDecoder(Protocol):
    """What the core needs of a stream decoder (one instance per stream)."""

    def feed(self, chunk: bytes) -> List[StreamEvent]:
        """The events that ``chunk`` completes (bytes may be cut at any boundary)."""

    def flush(self) -> List[StreamEvent]:
        """The events still complete at the end of the body."""

    @property
    def has_partial_line(self) -> bool:
        """True when the body so far ends inside an event (a cut stream)."""


class SSEDecoder:
    """Feed bytes as they arrive; get back the events they complete."""

    __slots__ = ("_pending", "_cr", "_id", "_retry", "_names")

    #: The class of the events made: a subclass may carry more per event (a plugin's
    #: decoder that translates each event as it is framed).
    event_class: Type[StreamEvent] = StreamEvent

    def __init__(self) -> None:
        self._pending = b""  # the start of an event whose blank line has not arrived yet
        self._cr = False  # the last read ended in CR: its LF may open the next read
        self._id = ""  # the last event id persists across events, per the spec
        self._retry: Optional[int] = None
        self._names: Dict[bytes, str] = {}  # "event: NAME" lines seen, decoded once each

    @property
    def has_partial_line(self) -> bool:
        """True when the bytes so far end inside a line (a stream cut mid-event)."""
        return bool(self._pending) and not self._pending.endswith(b"\n")

    def feed(self, chunk: bytes) -> List[StreamEvent]:
        # Byte values (13: CR, 10: LF) rather than one-byte strings: a plain memchr.
        if 13 in chunk or self._cr:
            chunk = self._normalise(chunk)
        if self._pending:
            chunk = self._pending + chunk
        blocks = chunk.split(b"\n\n")
        self._pending = blocks.pop()
        events = []
        make = self.event_class
        for block in blocks:
            if block[:6] == b"data: " and 10 not in block:  # the usual one-line event
                events.append(make(block[6:].decode("utf-8", "replace"), "", self._id, self._retry))
            elif block[:7] == b"event: ":  # a named event (typed SSE APIs)
                name, _, data = block.partition(b"\n")
                if data[:6] == b"data: " and 10 not in data:
                    event = self._names.get(name)
                    if event is None:
                        event = self._names[name] = name[7:].decode("utf-8", "replace")
                    events.append(make(data[6:].decode("utf-8", "replace"), event, self._id, self._retry))
                else:
                    parsed = self._parse(block.split(b"\n"))
                    if parsed is not None:
                        events.append(parsed)
            elif block:
                parsed = self._parse(block.split(b"\n"))
                if parsed is not None:
                    events.append(parsed)
        return events

    def _normalise(self, chunk: bytes) -> bytes:
        if self._cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._cr = chunk.endswith(b"\r")
        return chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

    def _parse(self, lines: List[bytes]) -> Optional[StreamEvent]:
        data: List[str] = []
        event = ""
        for line in lines:
            if not line:
                continue  # a stray blank line: an empty event, which is never dispatched
            if line[:1] == b":":
                continue
            name, colon, value = line.partition(b":")
            if colon and value[:1] == b" ":
                value = value[1:]
            text = value.decode("utf-8", errors="replace")
            if name == b"data":
                data.append(text)
            elif name == b"event":
                event = text
            elif name == b"id":
                if "\0" not in text:
                    self._id = text
            elif name == b"retry" and text.isdigit():
                self._retry = int(text)
        if not data:
            return None
        return self.event_class("\n".join(data), event, self._id, self._retry)

    def flush(self) -> List[StreamEvent]:
        """The event still open at the end of the stream, when its lines are complete.

        Servers often end with ``data: [DONE]`` and no blank line; that is accepted. A
        line cut in the middle yields nothing (``has_partial_line`` tells the caller).
        """
        pending = self._pending
        if not pending:
            return []
        if not pending.endswith(b"\n"):
            last = pending.rsplit(b"\n", 1)[-1]
            if last.replace(b" ", b"") != b"data:[DONE]":
                return []
        self._pending = b""
        event = self._parse(pending.split(b"\n"))
        return [event] if event is not None else []


class NDJSONDecoder:
    """Newline-delimited JSON (Ollama and many self-hosted servers): one event per line.

    Lines end in LF or CRLF; blank lines are skipped. The last line may lack its newline:
    ``flush`` delivers it (whether it is a whole JSON value is the parser's question).
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    @property
    def has_partial_line(self) -> bool:
        return bool(self._pending.strip())

    def feed(self, chunk: bytes) -> List[StreamEvent]:
        if self._pending:
            chunk = self._pending + chunk
        lines = chunk.split(b"\n")
        self._pending = lines.pop()
        return [StreamEvent(line.decode("utf-8", errors="replace")) for line in lines if line.strip()]

    def flush(self) -> List[StreamEvent]:
        pending, self._pending = self._pending, b""
        return [StreamEvent(pending.decode("utf-8", errors="replace"))] if pending.strip() else []


def decoder_for(framing: str) -> StreamDecoder:
    """A new decoder for a framing the core knows (``sse``, ``ndjson``)."""
    if framing == "ndjson":
        return NDJSONDecoder()
    return SSEDecoder()
