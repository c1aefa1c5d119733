"""The event-stream decoder against the WHATWG algorithm, and the encoder's exact bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streamshim.dialects.openai import DONE_BYTES
from streamshim.dialects.openai import encode_chunks as encode_data
from streamshim.framing import Event
from streamshim.framing.sse import SSEDecoder, encode_event


def decode(*parts: bytes) -> tuple[list[Event], SSEDecoder]:
    dec = SSEDecoder()
    events: list[Event] = []
    for p in parts:
        events += dec.feed(p)
    events += dec.close()
    return events, dec


def datas(*parts: bytes) -> list[str]:
    return [e.data for e in decode(*parts)[0]]


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"])
def test_line_endings(eol: bytes) -> None:
    body = b"data: a" + eol + eol + b"data: b" + eol + eol
    assert datas(body) == ["a", "b"]


def test_crlf_split_across_feeds() -> None:
    # the CR ends one feed, the LF starts the next: one line end, not two
    events, dec = decode(b"data: a\r", b"\ndata: b\r\n\r", b"\n")
    assert [e.data for e in events] == ["a\nb"]
    assert dec.problems == []


def test_lone_cr_then_data_in_next_feed() -> None:
    assert datas(b"data: a\r", b"\rdata: b\r\r") == ["a", "b"]


def test_data_with_and_without_space_and_multiline() -> None:
    assert datas(b"data:x\n\ndata:  two spaces\n\ndata: l1\ndata: l2\n\n") == ["x", " two spaces", "l1\nl2"]


def test_event_id_retry_fields() -> None:
    events, dec = decode(b"event: error\nid: 7\nretry: 1500\ndata: {}\n\ndata: next\n\n")
    assert (events[0].event, events[0].id, events[0].retry, events[0].data) == ("error", "7", 1500, "{}")
    # event type resets per event; id and retry persist
    assert (events[1].event, events[1].id, events[1].retry) == ("message", "7", 1500)
    assert dec.last_event_id == "7"


def test_invalid_retry_and_id_with_nul_are_ignored() -> None:
    events, _ = decode(b"retry: 12a\nid: a\x00b\ndata: x\n\n")
    assert (events[0].retry, events[0].id) == (None, None)


def test_comments_are_counted_not_dispatched() -> None:
    events, dec = decode(b": keep-alive\n\n: OPENROUTER PROCESSING\n\ndata: x\n\n")
    assert [e.data for e in events] == ["x"]
    assert dec.comments == 2
    assert dec.last_comment == "OPENROUTER PROCESSING"


def test_leading_bom_stripped_even_when_split() -> None:
    assert datas(b"\xef", b"\xbb", b"\xbfdata: x\n\n") == ["x"]
    # only a leading BOM is special
    assert datas(b"data: \xef\xbb\xbfx\n\n") == ["\ufeffx"]


def test_field_without_colon_and_unknown_fields() -> None:
    # "data" alone is a data line with an empty value: the spec dispatches an event with data ""
    assert datas(b"data\n\nfoo: bar\ndata: y\n\n") == ["", "y"]


def test_event_without_data_is_not_dispatched() -> None:
    events, _ = decode(b"event: ping\n\ndata: x\n\n")
    assert [(e.event, e.data) for e in events] == [("message", "x")]


def test_final_event_without_blank_line_is_accepted_and_reported() -> None:
    events, dec = decode(b"data: a\n\ndata: b")
    assert [e.data for e in events] == ["a", "b"]
    assert len(dec.problems) == 1 and "without the blank line" in dec.problems[0]
    events, dec = decode(b"data: a\n\ndata: b\n")
    assert [e.data for e in events] == ["a", "b"] and dec.problems


def test_event_numbers_and_byte_offsets() -> None:
    body = b": c\n\ndata: one\n\nevent: x\ndata: two\n\n"
    events, _ = decode(body)
    assert [(e.number, e.offset) for e in events] == [(1, 5), (2, 16)]
    assert body[16:].startswith(b"event: x")


def test_utf8_split_inside_a_character() -> None:
    raw = "data: olá 🌍\n\n".encode()
    assert datas(raw[:10], raw[10:13], raw[13:]) == ["olá 🌍"]


def test_encoder_openai_framing() -> None:
    assert encode_data([{"a": 1, "b": "é"}]) == b'data: {"a":1,"b":"\xc3\xa9"}\n\n' + DONE_BYTES
    assert DONE_BYTES == b"data: [DONE]\n\n"
    assert encode_event("x\ny", event="error", id="3") == b"event: error\nid: 3\ndata: x\ndata: y\n\n"


_field_lines = st.lists(
    st.one_of(
        st.builds(
            lambda s: b"data: " + s, st.binary(max_size=8).filter(lambda b: b"\r" not in b and b"\n" not in b)
        ),
        st.just(b": comment"),
        st.just(b"event: error"),
        st.just(b""),
        st.just(b"id: 5"),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(lines=_field_lines, eol=st.sampled_from([b"\n", b"\r", b"\r\n"]), cuts=st.lists(st.integers(0, 400)))
def test_decoding_is_split_invariant(lines: list[bytes], eol: bytes, cuts: list[int]) -> None:
    body = eol.join(lines) + eol
    whole, dec_whole = decode(body)
    points = sorted({c % (len(body) + 1) for c in cuts})
    parts = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    split, dec_split = decode(*parts)
    assert split == whole
    assert dec_split.comments == dec_whole.comments
    assert dec_split.problems == dec_whole.problems
