"""``passthrough.Kept`` and ``judge``: what is kept of a stream nobody reads afterwards, and how a
stream is judged from it: a long stream holds only its end, is still judged by how it ended, and
is never taken as complete when its end alone cannot show it."""

from __future__ import annotations

from helpers import chunk, delta, sse
from streamshim import dialects
from streamshim.passthrough import TAIL_BYTES, WHOLE_BYTES, Kept, judge

CHAT = dialects.get("chat")
PIECE = chunk(delta(content="tok " * 50))  # one event of ~300 B


def long_stream(size: int, done: bool = True, finish: bool = True) -> bytes:
    head = sse(chunk(delta(role="assistant", content="")), done=False)
    body = sse(*[PIECE] * (size // len(sse(PIECE, done=False)) + 1), done=False)
    end = sse(chunk(delta(finish_reason="stop")), done=done) if finish else b""
    return head + body + end


def kept(body: bytes, limit: int | None, step: int = 4096) -> Kept:
    k = Kept(limit)
    for i in range(0, len(body), step):
        k.add(body[i : i + step])
    return k


def test_without_a_limit_everything_is_kept() -> None:
    body = long_stream(WHOLE_BYTES + 1)
    k = kept(body, None)
    assert k.whole and b"".join(k.chunks) == body and k.total == len(body)


def test_past_the_limit_only_the_end_is_kept() -> None:
    body = long_stream(WHOLE_BYTES + 100_000)
    k = kept(body, WHOLE_BYTES)
    assert not k.whole and k.total == len(body)
    assert TAIL_BYTES <= k.held <= 2 * TAIL_BYTES + 4096
    assert body.endswith(b"".join(k.chunks))


def test_a_short_stream_is_kept_whole_under_the_limit() -> None:
    body = long_stream(100_000)
    k = kept(body, WHOLE_BYTES)
    assert k.whole and b"".join(k.chunks) == body


def test_one_chunk_larger_than_everything_is_kept() -> None:
    k = Kept(16)
    k.add(b"x" * 100)
    k.add(b"y" * 200_000)
    assert k.chunks == [b"y" * 200_000] and k.total == 200_100 and not k.whole


def test_a_long_stream_that_ended_well_is_judged_from_its_end() -> None:
    body = long_stream(WHOLE_BYTES + 100_000)
    verdict = judge(kept(body, WHOLE_BYTES), CHAT)
    assert verdict.done and verdict.complete() and verdict.bytes == len(body)
    assert verdict.summary() == "ended with [DONE]"


def test_an_error_at_the_end_of_a_long_stream_is_found() -> None:
    body = long_stream(WHOLE_BYTES + 100_000, done=False, finish=False)
    body += b'data: {"error": {"message": "out of memory", "code": 500}}\n\n'
    verdict = judge(kept(body, WHOLE_BYTES), CHAT)
    assert not verdict.complete() and "out of memory" in verdict.summary()


def test_a_long_stream_without_its_terminal_is_not_taken_as_complete() -> None:
    # with the whole stream the aggregation could tell; with its end alone it cannot: said, and a problem
    for finish in (True, False):
        body = long_stream(WHOLE_BYTES + 100_000, done=False, finish=finish)
        verdict = judge(kept(body, WHOLE_BYTES), CHAT)
        assert not verdict.done and not verdict.complete()
        said = "ended without [DONE]; whether it was cut is not known: only its last "
        assert verdict.summary().startswith(said)
    # kept whole, the same streams are told apart
    assert judge(kept(long_stream(100_000, done=False), WHOLE_BYTES), CHAT).complete()
    cut = judge(kept(long_stream(100_000, done=False, finish=False), WHOLE_BYTES), CHAT)
    assert not cut.complete() and cut.cut is not None
