"""Conformance check of a stream against its API's contract. Sans-IO, knows no API itself.

``check_stream(body, api)`` decodes the body with the dialect's framing and feeds each event to
the dialect's checker (``Dialect.checker``). The ``Report`` holds findings, each with a code, a
severity and the number of the event where it was seen (``None`` for the stream as a whole).

Severity is decided per dialect by what the most-used client of that API does with the stream:
``error`` when it gets wrong or incomplete data, ``warning`` when it copes. Each dialect's codes
are in its ``codes`` table (``codes(api)``); the README lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import dialects
from .dialects.base import Dialect, Finding, Report, Severity
from .framing import decode_json
from .meaning import decoded, is_stream

__all__ = ["Finding", "Report", "Side", "check_side", "check_stream", "codes", "request_expectations"]


def codes(api: str | Dialect = "chat") -> dict[str, tuple[Severity, str]]:
    """The finding codes of a dialect: code → (severity, meaning)."""
    return dict(dialects.get(api).codes)


def check_stream(
    body: bytes,
    api: str | Dialect | None = None,
    *,
    usage_asked: bool | None = None,
    n: int | None = None,
) -> Report:
    """Check one stream body. ``api``: the dialect (default: detected, else chat).
    ``usage_asked``: whether the request asked for a usage record (``None``: unknown, not
    checked). ``n``: the number of choices asked for (``None``: not checked)."""
    dialect = dialects.resolve(api, body=body)
    assert dialect is not None
    checker = dialect.checker(usage_asked=usage_asked, n=n)
    dec = dialect.framing.decoder()
    for ev in [*dec.feed(body), *dec.close()]:
        checker.event(ev.number, ev.event, ev.data)
    return checker.finish(dec.events, dec.problems)


def request_expectations(
    request_body: bytes | str | None, api: str | Dialect = "chat"
) -> tuple[bool | None, int | None]:
    """``usage_asked`` and ``n`` from a request body (``None`` when unknown)."""
    try:
        req: Any = decode_json(request_body or b"")
    except ValueError:
        return None, None
    if not isinstance(req, dict):
        return None, None
    asked = dialects.get(api).asked({**req, "stream": True})
    if asked is None:
        return None, None
    return asked.usage, asked.n


@dataclass
class Side:
    """One exchange of a flow: what was asked (request body) and the response (as sent)."""

    name: str  # "upstream" or "client"
    request: bytes
    status: int
    headers: list[list[str]]
    body: bytes  # as on the wire (content-encoding not removed)


def check_side(side: Side, api: str | None = None, **expect: Any) -> Report | None:
    """The conformance report of one side's stream; ``None`` when that side is not a stream.
    ``api``: the dialect (default: detected from the body). ``expect`` (usage_asked, n)
    overrides what the side's request asked for. Raises ``ValueError`` for a body whose
    content-encoding is corrupt."""
    body = decoded(side.headers, side.body)
    if not is_stream(side.headers, body):
        return None
    dialect = dialects.resolve(api, body=body)
    assert dialect is not None
    usage, n = request_expectations(side.request, dialect) if side.request else (None, None)
    kwargs = {"usage_asked": usage, "n": n} | {k: v for k, v in expect.items() if v is not None}
    return check_stream(body, dialect, **kwargs)
