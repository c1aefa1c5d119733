"""The API dialects, and the one way to tell which applies: ``resolve``.

Every dialect implements ``base.Dialect``. Adding one is one module (or folder) here plus one line
in ``DIALECTS``; nothing outside this package knows any API.

Which dialect applies, in this order (``resolve``):

1. an explicit name: the rule key ``api:`` or the CLI's ``--api``;
2. the request path (``…/chat/completions``, ``…/completions``, ``…/responses``; the longest
   suffix wins);
3. only where there is no request (a file on the command line, a body in the content view): the
   payload's own shape, its ``object``/``type`` first.

The mitmproxy layer resolves once, in the ``request`` hook, and keeps the name in the flow's
state; a response whose payload is plainly another dialect's is noted on the flow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..framing import FRAMINGS, decode_json, sniff
from . import anthropic, chat, completions, responses
from .base import Dialect

DIALECTS: tuple[Dialect, ...] = (chat.DIALECT, completions.DIALECT, responses.DIALECT, anthropic.DIALECT)
BY_NAME: dict[str, Dialect] = {d.name: d for d in DIALECTS}
DEFAULT = chat.DIALECT
SNIFF_BYTES = 65536  # how much of a stream ``detect_body`` decodes to find a telling event

__all__ = [
    "BY_NAME",
    "DEFAULT",
    "DIALECTS",
    "FRAMINGS",
    "SNIFF_BYTES",
    "Dialect",
    "detect",
    "detect_body",
    "for_path",
    "get",
    "resolve",
]


def names() -> list[str]:
    return list(BY_NAME)


def get(name: str | Dialect) -> Dialect:
    if isinstance(name, Dialect):
        return name
    try:
        return BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown API {name!r}; known: {', '.join(BY_NAME)}") from None


def _surest(score: Callable[[Dialect], int]) -> Dialect | None:
    """The dialect with the highest score above 0 (the first registered, on a tie)."""
    best, top = None, 0
    for d in DIALECTS:
        s = score(d)
        if s > top:
            best, top = d, s
    return best


def for_path(path: str) -> Dialect | None:
    """The dialect whose endpoint a request path is (query ignored; the longest suffix), or None."""
    return _surest(lambda d: d.path_match(path))


def detect(payload: Any) -> Dialect | None:
    """The dialect of a JSON response body or one event's payload, from its own shape."""
    return _surest(lambda d: d.detect(payload))


def detect_body(body: bytes) -> Dialect | None:
    """The dialect of a body (a stream: from its first telling events, within ``SNIFF_BYTES``;
    a JSON body: from the object)."""
    kind = sniff(body)
    if kind == "json":
        try:
            return detect(decode_json(body))
        except ValueError:
            return None
    if kind in FRAMINGS:
        dec = FRAMINGS[kind].decoder()
        events = dec.feed(body[:SNIFF_BYTES])
        if len(body) <= SNIFF_BYTES:
            events += dec.close()
        for ev in events:
            try:
                found = detect(decode_json(ev.data))
            except ValueError:
                continue
            if found is not None:
                return found
    return None


def resolve(
    name: str | Dialect | None = None,
    *,
    path: str | None = None,
    body: bytes | None = None,
    payload: Any = None,
    default: Dialect | None = DEFAULT,
) -> Dialect | None:
    """The dialect that applies: ``name`` if given, else the request ``path``'s (None when a path
    is given but is no dialect's), else the shape of ``payload`` or ``body``, else ``default``."""
    if name is not None:
        return get(name)
    if path is not None:
        return for_path(path)
    found = None
    if payload is not None:
        found = detect(payload)
    elif body is not None:
        found = detect_body(body)
    return found or default
