"""The stream callables (``flow.response.stream``) of the mitmproxy layer, as objects: mitmproxy
calls one with each chunk of the upstream's body as it arrives, then with ``b""``; it returns
what to send the client now (``[]``, never ``b""``, mid-stream). ``finish(error)`` ends it: from
the ``response`` hook once the last byte has left, or from the ``error`` hook when the client or
the upstream went away.

- ``LiveStream``: passthrough, live: the upstream's bytes as they are, or event by event
  (``passthrough.EventFilter``) with the injected usage taken out and the content-encoding
  undone; judged (``passthrough.judge``) by how it ended.
- ``KeepaliveAggregate``: a JSON client of a streamed upstream with ``keepalive``: a space per
  upstream chunk while aggregating, the JSON (or an error body) at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from mitmproxy import http

from ..dialects.base import Aggregator, Dialect, Repairer
from ..errors import StreamError
from ..framing.encoding import StreamDecoder
from ..passthrough import WHOLE_BYTES, EventFilter, Kept, judge
from .flowtools import comment, json_bytes
from .state import FlowState

StreamCallable = Callable[[bytes], bytes | Iterable[bytes]]


class LiveStream:
    """A stream for a stream client, live. With nothing to rewrite (no injected usage to take
    out, no repair asked, no content-encoding to undo) each chunk is kept and handed on as it is,
    and nothing else happens on the client's path; otherwise the body is decoded and, when the
    dialect has a ``Repairer`` for it, forwarded event by event through it. What the stream was
    is judged once, in ``finish``, after its last byte has left."""

    def __init__(
        self,
        flow: http.HTTPFlow,
        state: FlowState,
        dialect: Dialect,
        strip_usage: bool,
        keep_body: bool = True,
    ) -> None:
        """``keep_body``: the flow gets the stream's body at the end (something reads it); without
        it only what the judgement reads is kept of a long stream (``passthrough.Kept``)."""
        resp = flow.response
        assert resp is not None
        self.flow, self.state, self.resp, self.dialect = flow, state, resp, dialect
        encoding = resp.headers.get("content-encoding", "").strip()
        self.decode: StreamDecoder | None = None
        repair = state.settings.repair
        if encoding:
            try:
                self.decode = StreamDecoder(encoding)
                del resp.headers["content-encoding"]  # the client gets the decoded stream
            except ValueError:  # unknown encoding: forward as is, without rewriting
                strip_usage = repair = False
        self.repairer = dialect.repairer(state.asked(), strip_usage=strip_usage, repair=repair)
        self.filter = EventFilter(dialect, self.repairer) if self.repairer is not None else None
        self.keep_body = keep_body
        limit = None if keep_body else WHOLE_BYTES
        self.keep = Kept(limit)  # what arrived (chunks in a list: no re-copying while it grows)
        rewritten = self.filter is not None or self.decode is not None
        self.sent = Kept(limit) if rewritten else self.keep
        self.decode_errors: list[str] = []
        self.at_end = False  # mitmproxy called it with the end of the body (b"")
        self.ended = False

    def __call__(self, data: bytes) -> bytes | Iterable[bytes]:
        if self.sent is self.keep:  # nothing to rewrite: the bytes go on as they came
            if data:
                self.keep.add(data)
                return data
            self.at_end = True
            return []
        if data:
            self.keep.add(data)
            try:
                out = self.decode.feed(data) if self.decode else data
            except ValueError as exc:  # corrupt compression mid-stream
                self.decode_errors.append(f"cannot decode body: {exc}")
                return []
            if self.filter is not None:
                out = self.filter.feed(out)
            if out:
                self.sent.add(out)
            return out if out else []
        tail = b""
        clean = True
        if self.decode is not None:
            try:
                tail = self.decode.close()
            except ValueError as exc:
                self.decode_errors.append(f"cannot decode body: {exc}")
                clean = False
        if self.filter is not None:
            tail = self.filter.feed(tail) + self.filter.close(clean=clean and not self.decode_errors)
        if tail:
            self.sent.add(tail)
        self.at_end = True
        return tail if tail else []

    def finish(self, error: str | None) -> None:
        """The flow ended (``response`` hook) or failed (``error``): judge it by how it ended (its
        last events: ``passthrough.judge``) and say so. With ``keep_body``, give the flow the body
        the client got (and the upstream's, when they differ), for what reads the flow afterwards
        (a ``-w`` file, mitmweb, ``--flow-detail 3``, the in-proxy check); otherwise the chunks
        are let go unjoined (plain mitmdump: the cost of a copy of every stream saved)."""
        if self.ended:
            return
        self.ended = True
        state, flow = self.state, self.flow
        verdict = judge(self.sent, self.dialect, state.asked())
        verdict.errors[:0] = self.decode_errors
        received = self.keep.total
        if self.keep_body:
            if self.sent is not self.keep:
                state.upstream_response = b"".join(self.keep.chunks)
            if self.resp.raw_content is None:
                self.resp.content = b"".join(self.sent.chunks)  # visible in mitmweb and -w files on 11 too
        text = f"SSE passthrough: {received} B in, {verdict.bytes} B out"
        text += usage_note(state, self.repairer) + "; "
        if error is None:
            comment(flow, state, text + verdict.summary(), problem=not verdict.complete())
        elif verdict.done:
            comment(flow, state, text + f"connection closed after {verdict.terminal_name} ({error})")
        else:
            state.error = error
            comment(flow, state, text + f"broken: {error}", problem=True)
        state.save(flow)


def usage_note(state: FlowState, repairer: Repairer | None) -> str:
    """What the repairer did (the usage streamshim asked the upstream for taken out again, the
    repairs made), for the flow's account."""
    counts = dict(repairer.counts) if repairer is not None else {}
    note = ""
    removed = counts.pop("usage-injected", 0)
    if removed:
        note = f", injected usage removed from {removed} chunk(s)"
    elif state.injected_usage:
        note = ", no usage arrived although streamshim asked for it"
    if counts:
        note += ", repaired: " + ", ".join(f"{k} ×{n}" if n > 1 else k for k, n in counts.items())
    return note


class KeepaliveAggregate:
    def __init__(
        self,
        flow: http.HTTPFlow,
        state: FlowState,
        dialect: Dialect,
        finish_answer: Callable[[Aggregator, Any], tuple[str, str]],
    ) -> None:
        resp = flow.response
        assert resp is not None
        self.flow, self.state, self.resp, self.dialect = flow, state, resp, dialect
        self.finish_answer = finish_answer  # fills usage, promotes; returns the comment's additions
        self.agg = dialect.aggregator(state.asked())
        self.decode_errors: list[str] = []
        try:
            self.decode: StreamDecoder | None = StreamDecoder(resp.headers.get("content-encoding", ""))
        except ValueError as exc:
            self.decode = None
            self.decode_errors.append(str(exc))
        self.keep = bytearray()
        resp.headers["content-type"] = "application/json"
        for h in ("content-length", "content-encoding"):
            resp.headers.pop(h, None)

    def __call__(self, data: bytes) -> bytes | Iterable[bytes]:
        if data:
            self.keep.extend(data)
            try:
                self.agg.feed(self.decode.feed(data) if self.decode else data)
            except ValueError as exc:
                self.decode_errors.append(f"cannot decode body: {exc}")
            return b" "  # leading whitespace is valid JSON: keeps idle-timeout gateways happy
        return self.finish(None)

    def finish(self, error: str | None) -> bytes:
        agg, state, flow = self.agg, self.state, self.flow
        if self.decode is not None:
            try:
                agg.feed(self.decode.close())
            except ValueError as exc:
                self.decode_errors.append(f"cannot decode body: {exc}")
        state.upstream_response = bytes(self.keep)
        size = len(self.keep)
        try:
            if self.decode_errors:
                raise StreamError(self.decode_errors[0], byte_offset=size)
            result = agg.finish()
            usage, promoted = self.finish_answer(agg, result)
            body = json_bytes(result)
            text = f"SSE→JSON (keepalive): {agg.chunks} chunks, {size} B → {len(body)} B{usage}{promoted}"
            comment(flow, state, text, warning=bool(usage))
        except StreamError as exc:
            body = json_bytes(
                self.dialect.error_body(
                    exc.describe(), exc.kind, partial=exc.partial, upstream_error=exc.upstream_error
                )
            )
            comment(
                flow,
                state,
                f"SSE→JSON (keepalive): {exc.kind} at {exc.where()}: {exc.message}; "
                "status was already 200, error sent in the body",
                problem=True,
            )
        self.resp.content = body
        state.save(flow)
        return body
