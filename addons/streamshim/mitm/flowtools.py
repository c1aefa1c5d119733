"""Small operations on a flow that the mitmproxy-layer addons share: its one-line account
(comment, mark, log), replacing a response body, failing a flow with the dialect's error body."""

from __future__ import annotations

import json
import logging
from typing import Any

from mitmproxy import http

from .. import dialects
from ..dialects.base import Dialect
from ..framing import json_utf8
from .state import FlowState

log = logging.getLogger("streamshim")

MARK_OK = ":default:"
MARK_PROBLEM = ":warning:"  # the client did not get a good answer, or the stream broke
MARK_WARNING = ":large_orange_diamond:"  # a good answer with something filled in or to look at


def comment(
    flow: http.HTTPFlow, state: FlowState, text: str, problem: bool = False, warning: bool = False
) -> None:
    """The flow's one-line account (comment, mark, log). ``problem``: the client did not get a
    good answer (⚠); ``warning``: it did, with something streamshim had to fill in (🔶)."""
    line = f"streamshim [{state.rule or 'no rule'}] {text}"
    state.summary = text
    flow.comment = line
    flow.marked = MARK_PROBLEM if problem else MARK_WARNING if warning else MARK_OK
    (log.warning if problem else log.info)("%s %s: %s", flow.request.method, flow.request.pretty_url, line)


def response_of(flow: http.HTTPFlow) -> http.Response:
    """The flow's response (hooks after ``responseheaders`` always have one)."""
    if flow.response is None:
        raise RuntimeError(f"streamshim: flow {flow.id} has no response in a response hook")
    return flow.response


def json_bytes(obj: Any) -> bytes:
    """A JSON body; a lone surrogate (``"\\ud800"``, valid JSON) as its JSON escape."""
    return json_utf8(json.dumps(obj, ensure_ascii=False))


def set_body(
    resp: http.Response, body: bytes, content_type: str, stream_headers: bool = False, http1: bool = False
) -> None:
    for h in ("content-encoding", "transfer-encoding", "content-length"):
        resp.headers.pop(h, None)
    resp.headers["content-type"] = content_type
    if stream_headers:
        resp.headers["cache-control"] = "no-cache"
        if http1:
            # no content-length on a synthesized stream: chunked, as a live stream would be
            resp.headers["transfer-encoding"] = "chunked"
    resp.content = body


def fail(
    flow: http.HTTPFlow,
    state: FlowState,
    dialect: Dialect,
    error_body: dict[str, Any],
    text: str,
    status: int = 502,
) -> None:
    """Answer the client ``status`` (502 unless the dialect says otherwise for an upstream's own
    error) with ``error_body`` (the dialect's envelope), keeping the upstream's own response in
    the state."""
    resp = response_of(flow)
    state.upstream_response = resp.raw_content
    state.upstream_status = resp.status_code
    resp.status_code = status
    resp.reason = http.status_codes.RESPONSES.get(status, "Error")
    set_body(resp, json_bytes(error_body), "application/json")
    comment(flow, state, text, problem=True)


def listen_port(flow: http.HTTPFlow) -> int | None:
    sockname = flow.client_conn.sockname
    try:
        return int(sockname[1])
    except (TypeError, IndexError, ValueError):
        return None


# the media types of the registered dialects' framings (text/event-stream, …)
STREAM_TYPES = frozenset(d.framing.media_type for d in dialects.DIALECTS)


def is_stream_type(content_type: str) -> bool:
    """A streaming media type of a registered dialect's framing (SSE)."""
    return content_type.split(";", 1)[0].strip().lower() in STREAM_TYPES


def is_http1(flow: http.HTTPFlow) -> bool:
    return flow.request.http_version.startswith("HTTP/1")
