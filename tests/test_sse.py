"""The byte-level SSE decoder against the event-stream rules."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from modelport.provider import SSEDecoder
from modelport.provider import StreamEvent as ServerSentEvent


def decode(*pieces: bytes):
    decoder = SSEDecoder()
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
