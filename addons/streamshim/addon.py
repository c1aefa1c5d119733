"""The mitmproxy layer: moves bytes and flags between mitmproxy's hooks and the sans-IO core.

The rule of the product: the client always gets what it asked for; a host-matched rule decides
what the upstream is asked for. The response path is chosen from what actually arrived:

=================  =================  ==========================================================
client asked for   upstream sent      what happens
=================  =================  ==========================================================
stream             SSE                live passthrough (``flow.response.stream`` callable)
stream             JSON               synthesized SSE (``response`` hook)
JSON               SSE                aggregated JSON (``response`` hook; or, with ``keepalive``,
                                      a stream callable that sends a space per upstream chunk)
JSON               JSON               untouched (optionally ``promote_tool_calls``)
any                non-2xx            passed on with its status and body
=================  =================  ==========================================================

Per-flow state lives in ``flow.metadata["streamshim"]`` (saved with the flow) and in the closures
of stream callables; the addon object holds only options and the loaded rules.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from mitmproxy import command, ctx, exceptions, hooks, http
from mitmproxy import flow as mflow
from mitmproxy.tools.dump import DumpMaster

from . import contentview, dialects, synthesize
from .dialects import chat
from .dialects.base import CHARS_PER_TOKEN, StreamAggregator, filled_usage
from .errors import BadResponse, StreamError
from .passthrough import Passthrough, StreamDecoder, decode_body
from .recording import check_flow, scrub_flow
from .rules import RulesError, RuleSet, load_rules, rule_settings
from .sse import sniff

log = logging.getLogger("streamshim")

META = "streamshim"
SHIPPED_RULES = Path(__file__).resolve().parents[2] / "rules.yaml"
RELOAD_CHECK_SECONDS = 1.0
MARK_OK = ":default:"
MARK_PROBLEM = ":warning:"
MARK_WARNING = ":large_orange_diamond:"  # conformance warnings only
CHECK_MAX_BYTES = 64 * 1024 * 1024  # larger streams are not checked in the proxy
CHECK_KEEP = 50  # findings kept in the flow's metadata (the comment has the counts)

StreamCallable = Callable[[bytes], bytes | Iterable[bytes]]


class StreamShim:
    def __init__(self) -> None:
        self.rules = RuleSet()
        self._rules_path: str = ""
        self._last_check = 0.0
        # flow.id -> finisher of a live stream callable, so that a flow that ends in `error`
        # (client or upstream gone mid-stream) is still recorded; removed on either end
        self._live: dict[str, Callable[[str | None], None]] = {}
        # scrub settings, copied from the options in `configure` (hooks need no ctx, so the addon
        # also runs outside mitmproxy, as `streamshim replay` does)
        self.scrub_on_save = False
        self.scrub_headers: set[str] = set()
        self.scrub_fields: set[str] = set()
        self.check_streams = False  # set from streamshim_check in `configure`
        self._contentview: object | None = None  # the "LLM stream" view this addon registered

    # -- options and rules ------------------------------------------------------------------
    def load(self, loader: Any) -> None:
        loader.add_option(
            "streamshim_rules",
            str,
            str(SHIPPED_RULES) if SHIPPED_RULES.is_file() else "",
            "Path of the streamshim rules file (YAML). Ordered rules, first match wins; each decides "
            "what the upstream is asked for: stream, json or as-requested. Reloaded when it changes. "
            "Empty: no rules (SSE still streams through, nothing is rewritten).",
        )
        loader.add_option(
            "streamshim_scrub",
            bool,
            False,
            "Mask secrets in every flow as it completes, before it is saved (-w): Authorization, "
            "api-key, x-api-key, cookie, set-cookie, proxy-authorization, the headers and JSON fields "
            "named in streamshim_scrub_headers/streamshim_scrub_fields, in requests, responses and the "
            "originals streamshim keeps. Response cookies are then masked for the client too.",
        )
        loader.add_option(
            "streamshim_scrub_headers", Sequence[str], [], "More header names to mask when scrubbing."
        )
        loader.add_option(
            "streamshim_check",
            str,
            "auto",
            "Check every chat/completions SSE stream (the upstream's, and the client's when streamshim "
            "made it) against the OpenAI chunk contract once its flow has ended: the result is added to "
            "the flow's comment and log, the flow is marked :warning: on an error finding and "
            ":large_orange_diamond: on warnings only, the findings are kept in its metadata "
            "(streamshim.check). auto: on in mitmweb and the console UI, where flows are looked at; off "
            "in mitmdump, where it would cost CPU on the hot path (`streamshim check FILE` checks saved "
            "flows).",
            choices=("auto", "on", "off"),
        )
        loader.add_option(
            "streamshim_scrub_fields",
            Sequence[str],
            [],
            "JSON field names whose values are masked when scrubbing.",
        )
        self._contentview = contentview.register()

    def configure(self, updated: set[str]) -> None:
        if "streamshim_check" in updated:
            mode = ctx.options.streamshim_check
            self.check_streams = mode == "on" or (mode == "auto" and not isinstance(ctx.master, DumpMaster))
        if updated & {"streamshim_scrub", "streamshim_scrub_headers", "streamshim_scrub_fields"}:
            self.scrub_on_save = ctx.options.streamshim_scrub
            self.scrub_headers = set(ctx.options.streamshim_scrub_headers)
            self.scrub_fields = set(ctx.options.streamshim_scrub_fields)
        if "streamshim_rules" in updated:
            self._rules_path = ctx.options.streamshim_rules
            try:
                self.rules = self._load()
            except RulesError as exc:
                # at startup mitmdump/mitmweb print this and exit ("Error logged during startup")
                raise exceptions.OptionsError(str(exc)) from None
            log.info("streamshim: %d rule(s) from %s", len(self.rules.rules), self.rules.source)

    def _load(self) -> RuleSet:
        if not self._rules_path:
            return RuleSet()
        return load_rules(self._rules_path)

    @command.command("streamshim.reload")
    def reload(self) -> None:
        """Reload the rules file now. A bad file is reported and the last good rules stay."""
        self._reload(force=True)

    def _reload(self, force: bool = False) -> None:
        if not self._rules_path:
            return
        try:
            mtime = os.stat(self._rules_path).st_mtime
        except OSError as exc:
            if force or self.rules.mtime is not None:
                log.warning(
                    "streamshim: rules file %s is unreadable (%s); keeping the last good rules",
                    self._rules_path,
                    exc.strerror,
                )
                self.rules = RuleSet(self.rules.rules, self.rules.source, None)
            return
        if not force and mtime == self.rules.mtime:
            return
        try:
            self.rules = self._load()
        except RulesError as exc:
            log.error("streamshim: %s; keeping the last good rules", exc)
            self.rules = RuleSet(self.rules.rules, self.rules.source, mtime)  # report once per change
            return
        log.info("streamshim: reloaded %d rule(s) from %s", len(self.rules.rules), self._rules_path)

    # -- request ----------------------------------------------------------------------------
    def request(self, flow: http.HTTPFlow) -> None:
        now = time.monotonic()
        if now - self._last_check >= RELOAD_CHECK_SECONDS:
            self._last_check = now
            self._reload()
        req = flow.request
        if req.method != "POST":
            return
        dialect = dialects.for_path(req.path)
        if dialect is None:
            return
        raw = req.get_content() or b""
        try:
            body = json.loads(raw)
        except ValueError:
            log.debug("streamshim: %s %s: body is not JSON, passed through", req.method, req.pretty_url)
            return
        if not isinstance(body, dict):
            log.debug("streamshim: %s: body is not a JSON object, passed through", req.pretty_url)
            return
        stream = body.get("stream", False)
        if stream is None:
            stream = False
        if not isinstance(stream, bool):
            log.debug("streamshim: %s: 'stream' is %r, not a boolean: passed through", req.pretty_url, stream)
            return
        model = body.get("model") if isinstance(body.get("model"), str) else None
        listen_port = _listen_port(flow)
        rule = self.rules.match(req.host, req.port, req.path, listen_port, model)
        so = body.get("stream_options")
        client_usage = bool(stream and isinstance(so, dict) and so.get("include_usage") is True)
        state: dict[str, Any] = {
            "rule": rule.name if rule else None,
            "api": dialect.NAME,
            "client_stream": stream,
            "client_include_usage": client_usage,
            "injected_usage": False,
            "settings": rule_settings(rule),
        }
        changed = False
        if rule is not None and rule.upstream == "stream":
            if not stream:
                body["stream"] = True
                changed = True
            if not client_usage:
                body["stream_options"] = {**(so if isinstance(so, dict) else {}), "include_usage": True}
                state["injected_usage"] = changed = True
            req.headers["accept-encoding"] = "identity"
        elif rule is not None and rule.upstream == "json" and stream:
            body["stream"] = False
            body.pop("stream_options", None)  # OpenAI rejects stream_options without stream
            changed = True
        if changed:
            state["client_request"] = raw
            req.content = json.dumps(body, ensure_ascii=False).encode("utf-8")
        flow.metadata[META] = state

    # -- response ---------------------------------------------------------------------------
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._decide(flow, live=True)

    def _decide(self, flow: http.HTTPFlow, live: bool) -> None:
        """Choose the response path from what arrived. ``live``: from ``responseheaders``, where a
        stream callable can still be set; otherwise the body is already buffered (a response set
        by server replay, which skips ``responseheaders``)."""
        resp = flow.response
        assert resp is not None
        state = flow.metadata.get(META)
        is_sse = _is_sse(resp.headers.get("content-type", ""))
        if state is None:
            if is_sse and live:  # every SSE response streams, matched by a rule or not
                resp.stream = self._passthrough(flow, {"mode": "passthrough"}, drop_usage=False)
            return
        state["upstream_status"] = resp.status_code
        state["upstream_headers"] = [[k, v] for k, v in resp.headers.items(multi=True)]
        if not 200 <= resp.status_code < 300:
            state["mode"] = "upstream-error"
            if is_sse and live:
                resp.stream = self._passthrough(flow, state, drop_usage=False)
            return
        if is_sse and state["client_stream"]:
            state["mode"] = "passthrough"
            if live:
                resp.stream = self._passthrough(flow, state, drop_usage=state["injected_usage"])
        elif is_sse:
            state["mode"] = "aggregate"
            if live and state["settings"]["keepalive"]:
                resp.stream = self._keepalive_aggregate(flow, state)
        elif state["client_stream"]:
            state["mode"] = "synthesize"
        else:
            state["mode"] = "untouched"

    def response(self, flow: http.HTTPFlow) -> None:
        # a live stream's callable has removed its entry by now; a flow loaded from a file (-r)
        # has a callable that never ran
        self._live.pop(flow.id, None)
        state = flow.metadata.get(META)
        resp = flow.response
        if state is not None and resp is not None:
            self._convert(flow, state, resp)
            self._check_after(flow)
        if self.scrub_on_save:
            self.scrub([flow])

    def _convert(self, flow: http.HTTPFlow, state: dict[str, Any], resp: http.Response) -> None:
        """A buffered 2xx body: what it really is (not its label) and what the client asked for
        choose the conversion."""
        if "mode" not in state:
            self._decide(flow, live=False)
        if callable(resp.stream):
            return  # streamed: the callable finished the flow
        if resp.stream:
            _comment(
                flow,
                state,
                f"{state.get('mode')}: switched to streaming by mitmproxy "
                "(stream_large_bodies); not converted",
                problem=True,
            )
            return
        if state["mode"] == "upstream-error":
            return
        content = _decoded(flow, state)
        if content is None:
            return
        kind = sniff(content)
        if kind == "sse":
            (self._buffered_passthrough if state["client_stream"] else self._aggregate)(flow, state, content)
        elif kind != "json":
            _fail_other(flow, state, content)
        elif state["client_stream"]:
            self._synthesize(flow, state, content)
        else:
            self._json_for_json_client(flow, state, content)

    def done(self) -> None:
        if self._contentview is not None:
            contentview.unregister(self._contentview)
            self._contentview = None
        # every live stream ends in the stream callable's last call or in `error`: none is left
        (log.warning if self._live else log.info)(
            "streamshim: %d live stream(s) at shutdown", len(self._live)
        )

    def error(self, flow: http.HTTPFlow) -> None:
        msg = flow.error.msg if flow.error else "unknown error"
        finish = self._live.pop(flow.id, None)
        state = flow.metadata.get(META)
        if finish is not None:
            finish(msg)
            self._check_after(flow)
        elif state is not None:
            state["error"] = msg
            _comment(flow, state, f"{state.get('mode', 'request')}: flow failed: {msg}", problem=True)
        if self.scrub_on_save:
            self.scrub([flow])

    # -- conformance ------------------------------------------------------------------------
    def _check_after(self, flow: http.HTTPFlow) -> None:
        """Check the flow's streams once this hook has returned (the client's last bytes are not
        held back by it); outside a running event loop (``streamshim replay``), now."""
        if not self.check_streams:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._check(flow, notify=False)
        else:
            loop.call_soon(self._check, flow, True)

    def _check(self, flow: http.HTTPFlow, notify: bool) -> None:
        state = flow.metadata.get(META)
        if state is None or flow.response is None:
            return
        size = max(len(flow.response.raw_content or b""), len(state.get("upstream_response") or b""))
        if size > CHECK_MAX_BYTES:
            reports = {}
            summary = f"check skipped: {size} B is over {CHECK_MAX_BYTES} B"
        else:
            reports = check_flow(flow)
            summary = "; ".join(f"check {side}: {r.summary()}" for side, r in reports.items())
        if not summary:
            return
        state["check"] = {
            side: {
                "summary": r.summary(),
                "findings": [[f.code, f.severity, f.event, f.message] for f in r.findings[:CHECK_KEEP]],
            }
            for side, r in reports.items()
        }
        flow.comment = f"{flow.comment}\n{summary}" if flow.comment else summary
        if any(r.errors for r in reports.values()):
            flow.marked = MARK_PROBLEM
        elif any(r.findings for r in reports.values()) and flow.marked != MARK_PROBLEM:
            flow.marked = MARK_WARNING
        errors = any(r.errors for r in reports.values())
        (log.warning if errors else log.info)(
            "%s %s: %s", flow.request.method, flow.request.pretty_url, summary
        )
        if notify:  # mitmweb shows the change
            ctx.master.addons.trigger(hooks.UpdateHook([flow]))

    # -- the paths --------------------------------------------------------------------------
    def _passthrough(self, flow: http.HTTPFlow, state: dict[str, Any], drop_usage: bool) -> StreamCallable:
        resp = flow.response
        assert resp is not None
        encoding = resp.headers.get("content-encoding", "").strip()
        decode: StreamDecoder | None = None
        if encoding:
            try:
                decode = StreamDecoder(encoding)
                del resp.headers["content-encoding"]  # the client gets the decoded stream
            except ValueError:  # unknown encoding: forward as is, without filtering
                drop_usage = False
        pt = Passthrough(drop_usage=drop_usage)
        keep: list[bytes] = []  # what arrived (a list: no re-copying while the stream grows)
        sent: list[bytes] = [] if (drop_usage or decode) else keep
        live = self._live

        def stream(data: bytes) -> bytes | Iterable[bytes]:
            if data:
                keep.append(data)
                try:
                    plain = decode.feed(data) if decode else data
                except ValueError as exc:  # corrupt compression mid-stream
                    pt.errors.append(f"cannot decode body: {exc}")
                    return []
                out = pt.feed(plain)
                if sent is not keep and out:
                    sent.append(out)
                return out if out else []
            tail = b""
            if decode is not None:
                try:
                    tail = pt.feed(decode.close())
                except ValueError as exc:
                    pt.errors.append(f"cannot decode body: {exc}")
            tail += pt.close()
            if sent is not keep and tail:
                sent.append(tail)
            live.pop(flow.id, None)
            finish(None)
            return tail if tail else []

        def finish(error: str | None) -> None:
            pt.settle(lambda: b"".join(sent))
            if sent is not keep:
                state["upstream_response"] = b"".join(keep)
            if resp.raw_content is None:
                resp.content = b"".join(sent)  # visible in mitmweb and -w files on mitmproxy 11 too
            extra = _usage_note(state, pt)
            text = f"SSE passthrough: {pt.events} events, {pt.bytes_in} B in, {pt.bytes_out} B out{extra}; "
            if error is None:
                _comment(flow, state, text + pt.summary(), problem=not pt.complete())
            elif pt.done:
                _comment(flow, state, text + f"connection closed after [DONE] ({error})")
            else:
                state["error"] = error
                _comment(flow, state, text + f"broken: {error}", problem=True)

        live[flow.id] = finish
        return stream

    def _keepalive_aggregate(self, flow: http.HTTPFlow, state: dict[str, Any]) -> StreamCallable:
        resp = flow.response
        assert resp is not None
        agg = _dialect(state).Aggregator()
        decode_errors: list[str] = []
        try:
            decode: StreamDecoder | None = StreamDecoder(resp.headers.get("content-encoding", ""))
        except ValueError as exc:
            decode = None
            decode_errors.append(str(exc))
        keep = bytearray()
        resp.headers["content-type"] = "application/json"
        for h in ("content-length", "content-encoding"):
            resp.headers.pop(h, None)

        def stream(data: bytes) -> bytes | Iterable[bytes]:
            if data:
                keep.extend(data)
                try:
                    agg.feed(decode.feed(data) if decode else data)
                except ValueError as exc:
                    decode_errors.append(f"cannot decode body: {exc}")
                return b" "  # leading whitespace is valid JSON: keeps idle-timeout gateways happy
            if decode is not None:
                try:
                    agg.feed(decode.close())
                except ValueError as exc:
                    decode_errors.append(f"cannot decode body: {exc}")
            state["upstream_response"] = bytes(keep)
            try:
                if decode_errors:
                    raise StreamError(decode_errors[0], byte_offset=len(keep))
                result: dict[str, Any] = agg.finish()
                filled = _fill_usage(flow, state, agg, result, headers=None)
                body = _json_bytes(result)
                _comment(
                    flow,
                    state,
                    f"SSE→JSON (keepalive): {agg.chunks} chunks, {len(keep)} B → {len(body)} B{filled}",
                    warning=bool(filled),
                )
            except StreamError as exc:
                body = _json_bytes(exc.to_openai())
                _comment(
                    flow,
                    state,
                    f"SSE→JSON (keepalive): {exc.kind} at {exc.where()}: {exc.message}; "
                    "status was already 200, error sent in the body",
                    problem=True,
                )
            resp.content = body
            return body

        return stream

    def _aggregate(self, flow: http.HTTPFlow, state: dict[str, Any], content: bytes) -> None:
        resp = flow.response
        assert resp is not None
        state["mode"] = "aggregate"
        agg = _dialect(state).Aggregator()
        agg.feed(content)
        state["upstream_response"] = resp.raw_content
        try:
            result = agg.finish()
        except StreamError as exc:
            _fail(
                flow, state, exc.to_openai(), f"SSE→JSON failed: {exc.kind} at {exc.where()}: {exc.message}"
            )
            return
        filled = _fill_usage(flow, state, agg, result, headers=resp.headers) + _promote(state, result)
        body = _json_bytes(result)
        _set_body(resp, body, "application/json")
        warn = f"; {'; '.join(agg.problems)}" if agg.problems else ""
        _comment(
            flow,
            state,
            f"SSE→JSON: {agg.chunks} chunks, {len(content)} B → {len(body)} B{warn}{filled}",
            warning=bool(filled),
        )

    def _synthesize(self, flow: http.HTTPFlow, state: dict[str, Any], content: bytes) -> None:
        resp = flow.response
        assert resp is not None
        state["mode"] = "synthesize"
        obj = json.loads(content)
        state["upstream_response"] = resp.raw_content
        promoted = _promote(state, obj)
        try:
            body = synthesize(
                obj,
                _dialect(state, obj),
                include_usage=state["client_include_usage"],
                chunk_chars=state["settings"]["chunk_chars"],
            )
        except BadResponse as exc:
            _fail(
                flow,
                state,
                _openai_error(f"upstream JSON is not a completion: {exc}", "bad_response"),
                f"JSON→SSE failed: {exc}",
            )
            return
        _set_body(resp, body, "text/event-stream; charset=utf-8", stream_headers=True, http1=_is_http1(flow))
        _comment(
            flow,
            state,
            f"JSON→SSE: {body.count(b'data: ') - 1} chunks, {len(content)} B → {len(body)} B{promoted}",
        )

    def _json_for_json_client(self, flow: http.HTTPFlow, state: dict[str, Any], content: bytes) -> None:
        """Already the shape the client wants; optionally promote tool calls."""
        resp = flow.response
        assert resp is not None
        if _is_sse(resp.headers.get("content-type", "")):  # a JSON body labelled as SSE
            _set_body(resp, content, "application/json")
            _comment(flow, state, "JSON labelled as SSE: passed on as JSON")
        if not state["settings"]["promote_tool_calls"]:
            return  # nothing to do: no parse on this path
        obj = json.loads(content)
        promoted = _promote(state, obj)
        if promoted:
            state["upstream_response"] = resp.raw_content
            _set_body(resp, _json_bytes(obj), "application/json")
            _comment(flow, state, f"JSON{promoted}")

    def _buffered_passthrough(self, flow: http.HTTPFlow, state: dict[str, Any], content: bytes) -> None:
        """An SSE answer for a stream client that arrived whole (server replay, or mislabelled)."""
        resp = flow.response
        assert resp is not None
        pt = Passthrough(drop_usage=state["injected_usage"])
        out = pt.feed(content) + pt.close()
        pt.settle(lambda: out)
        if out != resp.raw_content:
            state["upstream_response"] = resp.raw_content
            _set_body(resp, out, "text/event-stream", stream_headers=True, http1=_is_http1(flow))
        extra = _usage_note(state, pt)
        _comment(
            flow,
            state,
            f"SSE passthrough (buffered): {pt.events} events{extra}; {pt.summary()}",
            problem=not pt.complete(),
        )

    # -- scrubbing --------------------------------------------------------------------------
    @command.command("streamshim.scrub")
    def scrub(self, flows: Sequence[mflow.Flow]) -> None:
        """Mask secrets (auth headers, cookies, configured headers and JSON fields) in flows, their
        kept originals included, before they are saved or shared."""
        for f in flows:
            if isinstance(f, http.HTTPFlow):
                scrub_flow(f, self.scrub_headers, self.scrub_fields)


# -- helpers ------------------------------------------------------------------------------------


def _listen_port(flow: http.HTTPFlow) -> int | None:
    sockname = flow.client_conn.sockname
    try:
        return int(sockname[1])
    except (TypeError, IndexError, ValueError):
        return None


def _is_sse(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "text/event-stream"


def _is_http1(flow: http.HTTPFlow) -> bool:
    return flow.request.http_version.startswith("HTTP/1")


def _dialect(state: dict[str, Any], payload: Any = None) -> ModuleType:
    found = dialects.detect(payload) if payload is not None else None
    return found or dialects.get(state["api"])


def _decoded(flow: http.HTTPFlow, state: dict[str, Any], fail: bool = True) -> bytes | None:
    resp = flow.response
    assert resp is not None
    try:
        return decode_body(resp.raw_content or b"", resp.headers.get("content-encoding", ""))
    except ValueError as exc:
        if fail:
            enc = resp.headers.get("content-encoding", "?")
            _fail(
                flow,
                state,
                _openai_error(f"upstream body could not be decoded ({enc}): {exc}", "bad_encoding"),
                f"{state.get('mode')}: cannot decode {enc} body: {exc}",
            )
        return None


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def _openai_error(message: str, code: str) -> dict[str, Any]:
    return {
        "error": {
            "message": f"streamshim: {message}",
            "type": "upstream_stream_error",
            "code": code,
            "param": None,
        }
    }


def _set_body(
    resp: http.Response | None,
    body: bytes,
    content_type: str,
    stream_headers: bool = False,
    http1: bool = False,
) -> None:
    assert resp is not None
    for h in ("content-encoding", "transfer-encoding", "content-length"):
        resp.headers.pop(h, None)
    resp.headers["content-type"] = content_type
    if stream_headers:
        resp.headers["cache-control"] = "no-cache"
        if http1:
            # no content-length on a synthesized stream: chunked, as a live stream would be
            resp.headers["transfer-encoding"] = "chunked"
    resp.content = body


def _promote(state: dict[str, Any], response: dict[str, Any]) -> str:
    """``promote_tool_calls``: move a later choice's tool calls into choice 0 (chat only).
    Returns the comment's addition."""
    if not state["settings"]["promote_tool_calls"] or state["api"] != chat.NAME:
        return ""
    moved = chat.promote_tool_calls(response)
    return f"; tool calls promoted from choice {moved} into choice 0" if moved else ""


USAGE_HEADER = "x-streamshim-usage-filled"


def _fill_usage(
    flow: http.HTTPFlow,
    state: dict[str, Any],
    agg: StreamAggregator,
    result: dict[str, Any],
    headers: http.Headers | None,
) -> str:
    """A JSON client always gets ``usage`` (a non-stream body always has one): when the stream
    carried none, fill it as the rule's ``fill_usage`` says, and say so in the flow, the log and
    the ``x-streamshim-usage-filled`` response header. Returns the comment's addition."""
    if result.get("usage") is not None:
        return ""
    method = state["settings"].get("fill_usage", "estimate")
    why = (
        "although include_usage was asked"
        if state.get("injected_usage") or state.get("client_include_usage")
        else "(a non-stream answer always has one)"
    )
    try:
        request = json.loads(flow.request.get_content() or b"")
    except ValueError:
        request = None
    usage = filled_usage(method, agg.generated_pieces(), request)
    if usage is None:
        return f"; the stream carried no usage {why}: none filled (fill_usage: false)"
    result["usage"] = usage
    state["usage_filled"] = method
    if headers is not None:
        headers[USAGE_HEADER] = method
    if method == "zeros":
        how = "zeros"
    else:
        how = (
            f"estimate: {usage['completion_tokens']} completion tokens = chunks with generated text, "
            f"{usage['prompt_tokens']} prompt tokens = request characters / {CHARS_PER_TOKEN}"
        )
    return f"; usage filled ({how}): the stream carried none {why}"


def _usage_note(state: dict[str, Any], pt: Passthrough) -> str:
    """What became of the usage streamshim asked the upstream for, for a stream client."""
    if pt.usage_removed:
        return f", injected usage removed from {pt.usage_removed} chunk(s)"
    if state.get("injected_usage"):
        return ", no usage arrived although streamshim asked for it (include_usage)"
    return ""


def _fail(flow: http.HTTPFlow, state: dict[str, Any], error_body: dict[str, Any], comment: str) -> None:
    resp = flow.response
    assert resp is not None
    state["upstream_response"] = resp.raw_content
    state["upstream_status"] = resp.status_code
    resp.status_code = 502
    resp.reason = "Bad Gateway"
    _set_body(resp, _json_bytes(error_body), "application/json")
    _comment(flow, state, comment, problem=True)


def _fail_other(flow: http.HTTPFlow, state: dict[str, Any], content: bytes) -> None:
    resp = flow.response
    assert resp is not None
    ctype = resp.headers.get("content-type", "no content-type")
    what = "an empty body" if not content else f"{ctype}, neither SSE nor JSON: {content[:80]!r}"
    message = f"upstream answered {resp.status_code} with {what}"
    if not content and not state["client_stream"] and state["settings"]["upstream"] == "stream":
        # llama-cpp-python answers errors (context too long, an unsupported tool_choice) on its
        # stream path with 200 and nothing, where its non-stream path gives the real 4xx/5xx
        message += (
            " to the stream streamshim asked for (rule upstream: stream): the upstream's stream path "
            "failed where its non-stream path would have answered, likely with an error; look at the "
            "upstream's log"
        )
    _fail(
        flow,
        state,
        _openai_error(message, "bad_response"),
        f"{state.get('mode')}: {message}",
    )


def _comment(
    flow: http.HTTPFlow, state: dict[str, Any], text: str, problem: bool = False, warning: bool = False
) -> None:
    """The flow's one-line account (comment, mark, log). ``problem``: the client did not get a
    good answer (⚠); ``warning``: it did, with something streamshim had to fill in (🔶)."""
    rule = state.get("rule")
    line = f"streamshim [{rule or 'no rule'}] {text}"
    state["summary"] = text
    flow.comment = line
    flow.marked = MARK_PROBLEM if problem else MARK_WARNING if warning else MARK_OK
    (log.warning if problem else log.info)("%s %s: %s", flow.request.method, flow.request.pretty_url, line)
