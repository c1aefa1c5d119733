"""Scrubbing: mask secrets in flows (auth headers, cookies, API-key query parameters, named
headers and JSON fields), the originals streamshim keeps included, before they are saved or
shared; and the ``Scrub`` addon (options, the ``streamshim.scrub`` command, scrub-on-save)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from mitmproxy import command, ctx, http
from mitmproxy import flow as mflow
from mitmproxy.http import Headers

from ..framing import decode_json, json_utf8
from .state import FlowState

MASK = "[scrubbed]"
SECRET_HEADERS = frozenset(
    {"authorization", "api-key", "x-api-key", "cookie", "set-cookie", "proxy-authorization", "x-goog-api-key"}
)
SECRET_QUERY = frozenset({"key", "api-key", "api_key", "access_token"})


class Scrub:
    """Addon: ``streamshim_scrub`` (scrub every flow as it completes, before ``-w`` saves it),
    ``streamshim_scrub_headers``/``_fields``, and the ``streamshim.scrub`` command."""

    def __init__(self) -> None:
        self.on_save = False
        self.headers: set[str] = set()
        self.fields: set[str] = set()

    def load(self, loader: Any) -> None:
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
            "streamshim_scrub_fields",
            Sequence[str],
            [],
            "JSON field names whose values are masked when scrubbing.",
        )

    def configure(self, updated: set[str]) -> None:
        # copied here, so the hooks need no mitmproxy context (``streamshim replay`` runs them bare)
        if updated & {"streamshim_scrub", "streamshim_scrub_headers", "streamshim_scrub_fields"}:
            self.on_save = ctx.options.streamshim_scrub
            self.headers = set(ctx.options.streamshim_scrub_headers)
            self.fields = set(ctx.options.streamshim_scrub_fields)

    def response(self, flow: http.HTTPFlow) -> None:
        if self.on_save:
            self.scrub([flow])

    def error(self, flow: http.HTTPFlow) -> None:
        if self.on_save:
            self.scrub([flow])

    @command.command("streamshim.scrub")
    def scrub(self, flows: Sequence[mflow.Flow]) -> None:
        """Mask secrets (auth headers, cookies, configured headers and JSON fields) in flows, their
        kept originals included, before they are saved or shared."""
        for f in flows:
            if isinstance(f, http.HTTPFlow):
                scrub_flow(f, self.headers, self.fields)


def scrub_flow(flow: http.HTTPFlow, headers: Iterable[str] = (), fields: Iterable[str] = ()) -> None:
    names = SECRET_HEADERS | {h.lower() for h in headers}
    field_names = frozenset(fields)
    _scrub_headers(flow.request.headers, names)
    query = flow.request.query
    for key in list(query.keys()):
        if key.lower() in SECRET_QUERY:
            query.set_all(key, [MASK] * len(query.get_all(key)))
    if field_names and flow.request.raw_content:
        flow.request.content = scrub_body(flow.request.get_content(strict=False) or b"", field_names)
    if flow.response is not None:
        _scrub_headers(flow.response.headers, names)
        if field_names and flow.response.raw_content:
            flow.response.content = scrub_body(flow.response.get_content(strict=False) or b"", field_names)
    state = FlowState.of(flow)
    if state is not None:
        if field_names:
            if state.client_request is not None:
                state.client_request = scrub_body(state.client_request, field_names)
            if state.upstream_response is not None:
                state.upstream_response = scrub_body(state.upstream_response, field_names)
        if state.upstream_headers is not None:
            state.upstream_headers = [
                [k, MASK if k.lower() in names else v] for k, v in state.upstream_headers
            ]
        client = state.client_response
        if isinstance(client, dict):
            client["headers"] = [[k, MASK if k.lower() in names else v] for k, v in client.get("headers", [])]
            if field_names and isinstance(client.get("body"), bytes):
                client["body"] = scrub_body(client["body"], field_names)
        state.save(flow)


def _scrub_headers(headers: Headers, names: frozenset[str] | set[str]) -> None:
    for name in list(headers.keys()):
        if name.lower() in names:
            headers.set_all(name, [MASK] * len(headers.get_all(name)))


def _mask(obj: Any, fields: frozenset[str]) -> tuple[Any, bool]:
    if isinstance(obj, dict):
        changed = False
        out = {}
        for k, v in obj.items():
            if k in fields:
                out[k] = MASK
                changed = True
            else:
                out[k], c = _mask(v, fields)
                changed |= c
        return out, changed
    if isinstance(obj, list):
        items = [_mask(v, fields) for v in obj]
        return [v for v, _ in items], any(c for _, c in items)
    return obj, False


def scrub_body(body: bytes, fields: frozenset[str]) -> bytes:
    """Mask JSON fields in a JSON body or in the ``data:`` lines of an SSE body. Bytes that hold no
    such field are returned unchanged."""
    try:
        obj = decode_json(body)
    except ValueError:
        obj = None
    if obj is not None:
        masked, changed = _mask(obj, fields)
        return json_utf8(json.dumps(masked, ensure_ascii=False)) if changed else body
    lines = body.split(b"\n")
    for i, line in enumerate(lines):
        if line.startswith(b"data:"):
            try:
                item = decode_json(line[5:])
            except ValueError:
                continue
            masked, changed = _mask(item, fields)
            if changed:
                lines[i] = b"data: " + json_utf8(json.dumps(masked, ensure_ascii=False))
    return b"\n".join(lines)


_SECRETISH = re.compile(rb"(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+(?!\[scrubbed\])[A-Za-z0-9._\-]{8,})")


def find_secrets(data: bytes) -> list[bytes]:
    """Strings that look like API keys or bearer tokens (used by the tests on raw flow files)."""
    return _SECRETISH.findall(data)
