"""The stream decoders (SSE against the event-stream rules, NDJSON): bytes cut anywhere give the same events."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from modelport.provider import NDJSONDecoder, SSEDecoder, StreamEvent
from modelport.provider import StreamEvent as ServerSentEvent


def decode(*pieces: bytes, decoder=None):
    decoder = decoder if decoder is not None else SSEDecoder()
    events = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.flush())
    return events, decoder


def test_basic_events_and_comments():
    events, _ = decode(b": keep-alive\n\ndata: {\"a\": 1}\n\nevent: error\ndata: x\nid: 7\nretry: 100\n\n")
    assert events == [ServerSentEvent('{"a": 1}'), ServerSentEvent("x", "error", "7", 100)]


def test_multiline_data_and_no_space_after_colon():
    events, _ = decode(b"data:one\ndata: two\n\n")
    assert [e.data for e in events] == ["one\ntwo"]


def test_crlf_and_cr_line_ends_even_when_split():
    events, _ = decode(b"data: a\r", b"\n\r\ndata: b\r\rdata: c\n\n")
    assert [e.data for e in events] == ["a", "b", "c"]


def test_done_without_final_blank_line_is_kept():
    events, decoder = decode(b"data: 1\n\ndata: [DONE]")
    assert [e.data for e in events] == ["1", "[DONE]"]


def test_partial_line_at_end_is_reported_not_invented():
    events, decoder = decode(b"data: 1\n\ndata: {\"cut")
    assert [e.data for e in events] == ["1"]
    assert decoder.has_partial_line


def test_utf8_split_across_reads():
    raw = "data: 我是\n\n".encode()
    events, _ = decode(raw[:8], raw[8:])
    assert events[0].data == "我是"


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failures
@given(
    st.lists(st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30), min_size=1, max_size=8),
    st.lists(st.integers(min_value=0, max_value=400), max_size=10),
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
)
def test_any_split_gives_the_same_events(datas, cuts, newline):
    raw = b"".join(b"data: " + d.encode() + newline + newline for d in datas)
    points = sorted({min(c, len(raw)) for c in cuts})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)])]
    events, _ = decode(*pieces)
    assert [e.data for e in events] == datas


def _split(raw: bytes, cuts):
    points = sorted({min(c, len(raw)) for c in cuts})
    return [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)])]


_line_text = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30)


@settings(deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["", "token", "error"]), st.lists(_line_text, min_size=1, max_size=3), st.text("0123456789", max_size=3)), min_size=1, max_size=6),
    st.lists(st.integers(min_value=0, max_value=600), max_size=12),
)
def test_sse_fields_survive_any_split(events, cuts):
    """Event names, multi-line data and ids come out the same however the bytes are cut."""
    raw = b""
    for name, lines, event_id in events:
        if name:
            raw += f"event: {name}\n".encode()
        raw += b"".join(f"data: {line}\n".encode() for line in lines)
        if event_id:
            raw += f"id: {event_id}\n".encode()
        raw += b": comment\n\n"
    whole, _ = decode(raw)
    assert [(e.event, e.data) for e in whole] == [(n, "\n".join(lines)) for n, lines, _ in events]
    split, _ = decode(*_split(raw, cuts))
    assert split == whole


@settings(deadline=None)
@given(
    st.lists(_line_text.filter(lambda t: t.strip() != ""), min_size=1, max_size=8),
    st.lists(st.integers(min_value=0, max_value=400), max_size=10),
    st.sampled_from([b"\n", b"\r\n"]),
    st.booleans(),
)
def test_ndjson_any_split_gives_the_same_lines(lines, cuts, newline, final_newline):
    raw = newline.join(line.encode() for line in lines) + (newline if final_newline else b"")
    events, decoder = decode(*_split(raw, cuts), decoder=NDJSONDecoder())
    assert [e.data.strip() for e in events] == [line.strip() for line in lines]
    assert not decoder.has_partial_line


def test_ndjson_skips_blank_lines_and_reports_a_cut_last_line():
    decoder = NDJSONDecoder()
    assert [e.data for e in decoder.feed(b'{"a":1}\n\n  \n{"b"')] == ['{"a":1}']
    assert decoder.has_partial_line
    assert [e.data for e in decoder.flush()] == ['{"b"']


def test_a_subclass_chooses_the_event_class():
    """A plugin's decoder may frame into its own StreamEvent subclass (one object per event)."""

    class Marked(StreamEvent):
        __slots__ = ("mark",)

    class Marking(SSEDecoder):
        event_class = Marked

    decoder = Marking()
    events = decoder.feed(b"event: delta\ndata: {}\n\ndata: one\n\nid: 4\nevent: x\ndata: a\ndata: b\n\n") + decoder.flush()
    assert [type(e) for e in events] == [Marked, Marked, Marked]
    assert [(e.event, e.data, e.id) for e in events] == [("delta", "{}", ""), ("", "one", ""), ("x", "a\nb", "4")]
