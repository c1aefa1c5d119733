"""The per-flow state of streamshim, typed, with one conversion to and from
``flow.metadata["streamshim"]`` (saved with the flow by ``-w``; the committed recordings and
flow files of earlier versions load with it).

The conversion from metadata checks every value against the field's type (and the rule settings
as a rules file's are checked): a damaged or hand-edited flow file is a ``BadRecording`` naming
the field, never a guess replayed or compared. Keys it does not know (a newer version's) are
kept as they are.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass, field, fields
from typing import Any, Union, get_args, get_origin, get_type_hints

from mitmproxy import http

from ..dialects.base import Asked
from ..errors import BadRecording
from ..meaning import short
from ..rules import RulesError, Settings

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
        """The flow's state (``None``: streamshim did not touch it). Raises ``BadRecording`` when
        the metadata is not what streamshim writes."""
        if not isinstance(flow.metadata, dict):
            raise BadRecording(f"the flow's metadata is {_type(flow.metadata)}, not a mapping")
        meta = flow.metadata.get(META)
        if meta is None:
            return None
        if not isinstance(meta, dict):
            raise BadRecording(f"metadata {META!r} is {_type(meta)}, not a mapping")
        return cls.from_meta(meta)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> FlowState:
        """The state kept in ``meta``, each value checked: ``BadRecording`` names one that is not
        of its field's type."""
        hints = _hints()
        state = cls(api="chat")
        for key, value in meta.items():
            if key == "settings":
                try:
                    state.settings = Settings.from_dict(value, f"metadata {META}.settings")
                except RulesError as exc:
                    raise BadRecording(str(exc)) from None
            elif key == "api" and value is None:
                continue  # the default dialect
            elif key in hints:
                if not _conforms(value, hints[key]):
                    raise BadRecording(f"metadata {META}.{key} is {_type(value)}")
                setattr(state, key, value)
            else:
                state.extra[key] = value
        if state.upstream_headers is not None:
            _check_headers(state.upstream_headers, f"{META}.upstream_headers")
        if state.client_response is not None:
            client = state.client_response
            for key, kind in (("status", int), ("headers", list), ("body", bytes)):
                if not _conforms(client.get(key), kind):
                    raise BadRecording(f"metadata {META}.client_response.{key} is {_type(client.get(key))}")
            _check_headers(client["headers"], f"{META}.client_response.headers")
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


# -- checking what a flow file holds ---------------------------------------------------------------


@functools.cache
def _hints() -> dict[str, Any]:
    """The type of each field kept as it is in the metadata (settings and extra have their own)."""
    return {k: v for k, v in get_type_hints(FlowState).items() if k not in ("settings", "extra")}


def _conforms(value: Any, hint: Any) -> bool:
    """Whether a value read from a flow file is of a field's type (``int`` excludes ``bool``)."""
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_conforms(value, h) for h in get_args(hint))
    if origin is list:
        (item,) = get_args(hint)
        return isinstance(value, list) and all(_conforms(v, item) for v in value)
    if origin is dict:
        k, v = get_args(hint)
        return isinstance(value, dict) and all(_conforms(a, k) and _conforms(b, v) for a, b in value.items())
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _check_headers(headers: list[Any], where: str) -> None:
    for item in headers:
        if not (isinstance(item, list | tuple) and len(item) == 2 and all(isinstance(x, str) for x in item)):
            raise BadRecording(f"metadata {where} holds {_type(item)}, not a [name, value] pair")


def _type(value: Any) -> str:
    return "missing" if value is None else f"a {type(value).__name__} ({short(value)[:40]})"
