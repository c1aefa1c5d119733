"""The per-flow state of streamshim, typed, with one conversion to and from
``flow.metadata["streamshim"]`` (saved with the flow by ``-w``; the committed recordings and
flow files of earlier versions load with it)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from mitmproxy import http

from ..dialects.base import Asked
from ..rules import Settings

META = "streamshim"
# written even when empty (what the request hook decided); the others only once they are set
_ALWAYS = frozenset({"api", "rule", "settings", "client_stream", "client_usage", "injected_usage"})


@dataclass
class FlowState:
    api: str  # the dialect, decided once in the request hook
    rule: str | None = None
    settings: Settings = field(default_factory=Settings)
    client_stream: bool = False
    client_usage: bool = False  # the client asked for a usage record in its stream
    asked_n: int | None = None  # the outputs (choices) the client asked for, when it said
    injected_usage: bool = False  # streamshim asked the upstream for a usage record
    client_request: bytes | None = None  # the client's request body, when it was rewritten
    # the response path: passthrough, aggregate, synthesize, untouched, upstream-error
    mode: str | None = None
    streamed: bool = False  # a live stream callable carried the body
    upstream_status: int | None = None
    upstream_headers: list[list[str]] | None = None
    upstream_response: bytes | None = None  # the upstream's body, when the client got another
    summary: str | None = None  # the flow comment's text
    error: str | None = None
    usage_filled: str | None = None  # how usage was filled for a JSON client (estimate, zeros)
    check: dict[str, Any] | None = None  # the in-proxy conformance check's result
    # recordings (fixture form): what the client received, and that flow.response is the upstream's
    fixture: bool = False
    client_response: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys of newer versions, kept as they are

    @classmethod
    def of(cls, flow: http.HTTPFlow) -> FlowState | None:
        meta = flow.metadata.get(META)
        return cls.from_meta(meta) if isinstance(meta, dict) else None

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> FlowState:
        known = {f.name for f in fields(cls)} - {"settings", "extra"}
        state = cls(api=str(meta.get("api") or "chat"))
        for key, value in meta.items():
            if key == "settings":
                state.settings = Settings.from_dict(value)
            elif key in known:
                setattr(state, key, value)
            else:
                state.extra[key] = value
        return state

    def to_meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.name == "settings":
                value = value.to_dict()
            if f.name not in _ALWAYS and value in (None, False):
                continue
            out[f.name] = value
        out.update(self.extra)
        return out

    def asked(self) -> Asked:
        """What the client asked for, as the dialects take it."""
        return Asked(stream=self.client_stream, usage=self.client_usage, n=self.asked_n)

    def save(self, flow: http.HTTPFlow) -> None:
        flow.metadata[META] = self.to_meta()
