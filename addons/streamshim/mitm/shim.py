"""The conversion addon: moves bytes and flags between mitmproxy's hooks and the sans-IO core.

The rule of the product: the client always gets what it asked for; a host-matched rule decides
what the upstream is asked for. The dialect is resolved once, in ``request``; the response path
is chosen from what actually arrived:

=================  =================  ==========================================================
client asked for   upstream sent      what happens
=================  =================  ==========================================================
stream             a stream           live passthrough (``streams.LiveStream``)
stream             JSON               synthesized stream (``response`` hook)
JSON               a stream           aggregated JSON (``response`` hook; or, with ``keepalive``,
                                      ``streams.KeepaliveAggregate``: a space per upstream chunk)
JSON               JSON               untouched (optionally ``promote_tool_calls``)
any                non-2xx            passed on with its status and body
=================  =================  ==========================================================

Per-flow state is a ``FlowState`` kept in ``flow.metadata["streamshim"]`` (saved with the flow);
the addon holds only the rules addon and the live stream callables (for the ``error`` hook).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.tools.dump import DumpMaster

from .. import dialects, synthesize
from ..dialects.base import Aggregator, Dialect
from ..errors import BadResponse, StreamError
from ..framing import decode_json, json_utf8, sniff
from ..framing.encoding import decode_body
from ..passthrough import EventFilter, judge
from ..rules import Rule, RuleSet
from .flowtools import (
    comment,
    fail,
    is_http1,
    is_stream_type,
    json_bytes,
    listen_port,
    response_of,
    set_body,
)
from .rules_addon import Rules
from .state import FlowState
from .streams import KeepaliveAggregate, LiveStream, usage_note

log = logging.getLogger("streamshim")

USAGE_HEADER = "x-streamshim-usage-filled"


class Shim:
    def __init__(self, rules: Rules | RuleSet | None = None) -> None:
        self.rules = rules if isinstance(rules, Rules) else Rules(rules)
        # flow.id -> the live stream callable, so that a flow that ends in `error` (client or
        # upstream gone mid-stream) is still recorded; removed on either end
        self.live: dict[str, LiveStream] = {}
        # whether something reads a streamed flow's body after its hooks, so it must be kept:
        # set from the options in `configure` (a copy of every stream, spared in plain mitmdump)
        self.keep_bodies = True

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        self.keep_bodies = (
            not isinstance(ctx.master, DumpMaster)  # mitmweb, the console: flows are looked at
            or bool(getattr(opts, "save_stream_file", None))  # -w
            or getattr(opts, "flow_detail", 1) >= 3  # mitmdump prints bodies
            or getattr(opts, "streamshim_check", "auto") == "on"
        )

    # -- request ----------------------------------------------------------------------------
    def request(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        if req.method != "POST":
            return
        by_path = dialects.for_path(req.path)
        if by_path is None and not self.rules.any_api():
            return
        try:
            raw = req.get_content() or b""  # ValueError for a body its content-encoding does not fit
            body = decode_json(raw)
        except ValueError:  # also JSON nested too deeply to be a request
            log.debug("streamshim: %s %s: body is not JSON, passed through", req.method, req.pretty_url)
            return
        if not isinstance(body, dict):
            log.debug("streamshim: %s: body is not a JSON object, passed through", req.pretty_url)
            return
        model = body.get("model") if isinstance(body.get("model"), str) else None
        rule = self.rules.match(req.host, req.port, req.path, listen_port(flow), model)
        dialect = dialects.get(rule.api) if rule is not None and rule.api else by_path
        if dialect is None:
            return
        asked = dialect.asked(body)
        if asked is None:
            log.debug("streamshim: %s: not a request streamshim rewrites, passed through", req.pretty_url)
            return
        state = FlowState(
            api=dialect.name,
            rule=rule.name if rule else None,
            settings=(rule or Rule("none")).settings(),
            client_stream=asked.stream,
            client_usage=asked.usage,
            asked_n=asked.n,
        )
        changed = False
        if rule is not None and rule.upstream == "stream":
            before = json.dumps(body, sort_keys=True)
            state.injected_usage = dialect.ask_stream(body, asked)
            changed = json.dumps(body, sort_keys=True) != before
            req.headers["accept-encoding"] = "identity"
        elif rule is not None and rule.upstream == "json" and asked.stream:
            dialect.ask_json(body)
            changed = True
        if changed:
            state.client_request = raw
            req.content = json_utf8(json.dumps(body, ensure_ascii=False))
        state.save(flow)

    # -- response ---------------------------------------------------------------------------
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._decide(flow, live=True)

    def _decide(self, flow: http.HTTPFlow, live: bool) -> None:
        """Choose the response path from what arrived. ``live``: from ``responseheaders``, where a
        stream callable can still be set; otherwise the body is already buffered (a response set
        by server replay, which skips ``responseheaders``)."""
        resp = response_of(flow)
        state = FlowState.of(flow)
        streaming = is_stream_type(resp.headers.get("content-type", ""))
        if state is None:
            if streaming and live:  # every stream streams, matched by a rule or not
                unmatched = FlowState(api=dialects.DEFAULT.name, mode="passthrough")
                self._stream(flow, unmatched, dialects.DEFAULT, drop_usage=False, record=False)
            return
        state.upstream_status = resp.status_code
        state.upstream_headers = [[k, v] for k, v in resp.headers.items(multi=True)]
        dialect = dialects.get(state.api)
        if not 200 <= resp.status_code < 300:
            state.mode = "upstream-error"
            if streaming and live:
                self._stream(flow, state, dialect, drop_usage=False)
        elif streaming and state.client_stream:
            state.mode = "passthrough"
            if live:
                self._stream(flow, state, dialect, drop_usage=state.injected_usage)
        elif streaming:
            state.mode = "aggregate"
            if live and state.settings.keepalive:
                state.streamed = True
                resp.stream = KeepaliveAggregate(
                    flow,
                    state,
                    dialect,
                    lambda agg, answer: self._finish_answer(flow, state, dialect, answer, agg),
                )
        elif state.client_stream:
            state.mode = "synthesize"
        else:
            state.mode = "untouched"
        state.save(flow)

    def _stream(
        self, flow: http.HTTPFlow, state: FlowState, dialect: Dialect, drop_usage: bool, record: bool = True
    ) -> None:
        state.streamed = True
        stream = LiveStream(flow, state, dialect, strip_usage=drop_usage, keep_body=self.keep_bodies)
        if not record:  # a flow of no dialect: its account is the comment, no state is kept
            stream.state.save = lambda f: None  # type: ignore[method-assign]
        self.live[flow.id] = stream
        response_of(flow).stream = stream

    def response(self, flow: http.HTTPFlow) -> None:
        stream = self.live.pop(flow.id, None)
        if stream is not None and stream.at_end:
            stream.finish(None)
            return
        state = FlowState.of(flow)
        if state is None or flow.response is None:
            return
        self._convert(flow, state, flow.response)

    def error(self, flow: http.HTTPFlow) -> None:
        msg = flow.error.msg if flow.error else "unknown error"
        stream = self.live.pop(flow.id, None)
        if stream is not None:
            stream.finish(msg)
            return
        state = FlowState.of(flow)
        if state is not None:
            state.error = msg
            comment(flow, state, f"{state.mode or 'request'}: flow failed: {msg}", problem=True)
            state.save(flow)

    def done(self) -> None:
        # every live stream ends in the stream callable's last call or in `error`: none is left
        (log.warning if self.live else log.info)("streamshim: %d live stream(s) at shutdown", len(self.live))

    # -- buffered bodies --------------------------------------------------------------------
    def _convert(self, flow: http.HTTPFlow, state: FlowState, resp: http.Response) -> None:
        """A buffered 2xx body: what it really is (not its label) and what the client asked for
        choose the conversion."""
        if state.mode is None:
            self._decide(flow, live=False)
            state = FlowState.of(flow) or state
        if callable(resp.stream):
            return  # streamed: a flow loaded from a file (-r) with a callable that never ran
        if resp.stream:
            comment(
                flow,
                state,
                f"{state.mode}: switched to streaming by mitmproxy (stream_large_bodies); not converted",
                problem=True,
            )
            state.save(flow)
            return
        if state.mode == "upstream-error":
            return
        dialect = dialects.get(state.api)
        content = self._decoded(flow, state, dialect)
        if content is None:
            state.save(flow)
            return
        kind = sniff(content)
        if kind in ("sse", "ndjson"):
            if state.client_stream:
                self._buffered_passthrough(flow, state, dialect, content)
            else:
                self._aggregate(flow, state, dialect, content)
        elif kind != "json":
            self._fail_other(flow, state, dialect, content)
        elif state.client_stream:
            self._synthesize(flow, state, dialect, content)
        else:
            self._json_for_json_client(flow, state, dialect, content)
        state.save(flow)

    def _decoded(self, flow: http.HTTPFlow, state: FlowState, dialect: Dialect) -> bytes | None:
        resp = response_of(flow)
        try:
            return decode_body(resp.raw_content or b"", resp.headers.get("content-encoding", ""))
        except ValueError as exc:
            enc = resp.headers.get("content-encoding", "?")
            fail(
                flow,
                state,
                dialect,
                dialect.error_body(f"upstream body could not be decoded ({enc}): {exc}", "bad_encoding"),
                f"{state.mode}: cannot decode {enc} body: {exc}",
            )
            return None

    def _finish_answer(
        self, flow: http.HTTPFlow, state: FlowState, dialect: Dialect, answer: Any, agg: Aggregator
    ) -> tuple[str, str]:
        """What a JSON client is owed beyond the aggregate (changed in place): usage filled, tool
        calls promoted. Returns the comment's additions for each (a usage note makes it 🔶)."""
        return _fill_usage(flow, state, dialect, answer, agg), _promote(state, dialect, answer)

    def _aggregate(self, flow: http.HTTPFlow, state: FlowState, dialect: Dialect, content: bytes) -> None:
        resp = response_of(flow)
        state.mode = "aggregate"
        agg = dialect.aggregator(state.asked())
        agg.feed(content)
        state.upstream_response = resp.raw_content
        try:
            result = agg.finish()
        except StreamError as exc:
            fail(
                flow,
                state,
                dialect,
                dialect.error_body(
                    exc.describe(), exc.kind, partial=exc.partial, upstream_error=exc.upstream_error
                ),
                f"SSE→JSON failed: {exc.kind} at {exc.where()}: {exc.message}",
                status=dialect.error_status(exc.upstream_error),
            )
            return
        usage, promoted = self._finish_answer(flow, state, dialect, result, agg)
        if state.usage_filled:
            resp.headers[USAGE_HEADER] = state.usage_filled
        body = json_bytes(result)
        set_body(resp, body, "application/json")
        warn = f"; {'; '.join(agg.problems)}" if agg.problems else ""
        comment(
            flow,
            state,
            f"SSE→JSON: {agg.chunks} chunks, {len(content)} B → {len(body)} B{warn}{usage}{promoted}",
            warning=bool(usage),
        )

    def _synthesize(self, flow: http.HTTPFlow, state: FlowState, dialect: Dialect, content: bytes) -> None:
        resp = response_of(flow)
        state.mode = "synthesize"
        try:
            obj = decode_json(content)  # sniffed as JSON: it starts like JSON, it may not be JSON
        except ValueError as exc:
            fail(
                flow,
                state,
                dialect,
                dialect.error_body(f"upstream JSON is not valid JSON: {exc}", "bad_response"),
                f"JSON→SSE failed: upstream body is not valid JSON: {exc}",
            )
            return
        state.upstream_response = resp.raw_content
        found = dialects.detect(obj)
        note = ""
        if found is not None and found is not dialect and found.detect(obj) > dialect.detect(obj):
            # the request's path said one API, the answer is plainly another's: said, not hidden
            note = f"; the answer is {found.name}, not {dialect.name} as the request path said"
            dialect = found
        promoted = _promote(state, dialect, obj)
        try:
            body = synthesize(obj, dialect, usage=state.client_usage, chunk_chars=state.settings.chunk_chars)
        except BadResponse as exc:
            fail(
                flow,
                state,
                dialect,
                dialect.error_body(f"upstream JSON is not a {dialect.title} response: {exc}", "bad_response"),
                f"JSON→SSE failed: {exc}",
            )
            return
        framing = dialect.framing
        set_body(
            resp, body, f"{framing.media_type}; charset=utf-8", stream_headers=True, http1=is_http1(flow)
        )
        events = body.count(framing.event_ends[0])  # the encoder ends every event so
        comment(flow, state, f"JSON→SSE: {events} events, {len(content)} B → {len(body)} B{promoted}{note}")

    def _json_for_json_client(
        self, flow: http.HTTPFlow, state: FlowState, dialect: Dialect, content: bytes
    ) -> None:
        """Already the shape the client wants; optionally promote tool calls."""
        resp = response_of(flow)
        if is_stream_type(resp.headers.get("content-type", "")):  # a JSON body labelled as a stream
            set_body(resp, content, "application/json")
            comment(flow, state, "JSON labelled as SSE: passed on as JSON")
        if not state.settings.promote_tool_calls:
            return  # nothing to do: no parse on this path
        try:
            obj = decode_json(content)
        except ValueError as exc:  # passed on as it came, like any JSON answer to a JSON client
            comment(flow, state, f"JSON: not valid JSON ({exc}), tool calls not promoted", problem=True)
            return
        promoted = _promote(state, dialect, obj)
        if promoted:
            state.upstream_response = resp.raw_content
            set_body(resp, json_bytes(obj), "application/json")
            comment(flow, state, f"JSON{promoted}")

    def _buffered_passthrough(
        self, flow: http.HTTPFlow, state: FlowState, dialect: Dialect, content: bytes
    ) -> None:
        """A stream for a stream client that arrived whole (server replay, or mislabelled)."""
        resp = response_of(flow)
        repairer = dialect.repairer(
            state.asked(), strip_usage=state.injected_usage, repair=state.settings.repair
        )
        out = content
        if repairer is not None:
            pt = EventFilter(dialect, repairer)
            out = pt.feed(content) + pt.close()
        verdict = judge(out, dialect, state.asked())
        if out != resp.raw_content:
            state.upstream_response = resp.raw_content
            set_body(resp, out, dialect.framing.media_type, stream_headers=True, http1=is_http1(flow))
        comment(
            flow,
            state,
            f"SSE passthrough (buffered): {verdict.bytes} B{usage_note(state, repairer)}; "
            f"{verdict.summary()}",
            problem=not verdict.complete(),
        )

    def _fail_other(self, flow: http.HTTPFlow, state: FlowState, dialect: Dialect, content: bytes) -> None:
        resp = response_of(flow)
        ctype = resp.headers.get("content-type", "no content-type")
        what = "an empty body" if not content else f"{ctype}, neither a stream nor JSON: {content[:80]!r}"
        message = f"upstream answered {resp.status_code} with {what}"
        if not content and not state.client_stream and state.settings.upstream == "stream":
            # llama-cpp-python answers errors (context too long, an unsupported tool_choice) on its
            # stream path with 200 and nothing, where its non-stream path gives the real 4xx/5xx
            message += (
                " to the stream streamshim asked for (rule upstream: stream): the upstream's stream path "
                "failed where its non-stream path would have answered, likely with an error; look at the "
                "upstream's log"
            )
        fail(flow, state, dialect, dialect.error_body(message, "bad_response"), f"{state.mode}: {message}")


def _promote(state: FlowState, dialect: Dialect, response: Any) -> str:
    """``promote_tool_calls``: move a later choice's tool calls into choice 0. Returns the
    comment's addition."""
    if not state.settings.promote_tool_calls or not isinstance(response, dict):
        return ""
    moved = dialect.promote_tool_calls(response)
    return f"; tool calls promoted from choice {moved} into choice 0" if moved else ""


def _fill_usage(
    flow: http.HTTPFlow, state: FlowState, dialect: Dialect, result: Any, agg: Aggregator | None
) -> str:
    """A JSON client always gets the usage a non-stream body always has: when the stream carried
    none, the dialect fills it as the rule's ``fill_usage`` says, and it is said in the flow, the
    log and the ``x-streamshim-usage-filled`` response header. Returns the comment's addition."""
    if agg is None or not isinstance(result, dict) or dialect.usage_of(result) is not None:
        return ""
    method = state.settings.fill_usage
    why = "although streamshim asked for it" if state.injected_usage or state.client_usage else ""
    why = why or "(a non-stream answer always has one)"
    try:
        request = decode_json(flow.request.get_content() or b"")
    except ValueError:
        request = None
    how = dialect.fill_usage(result, method, agg.generated_pieces(), request)
    if how is None:
        return (
            f"; the stream carried no usage {why}: none filled (fill_usage: false)" if method == "off" else ""
        )
    state.usage_filled = method
    return f"; usage filled ({how}): the stream carried none {why}"
