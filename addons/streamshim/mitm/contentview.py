"""The "LLM stream" content view for mitmproxy, mitmweb and mitmdump, on both mitmproxy lines.

It renders a stream body of any registered API dialect as the message the client assembles from
it (``view.render_lines``), and is chosen automatically for such bodies.

- mitmproxy 11: a ``contentviews.View`` (``__call__`` returns a title and lines of
  ``(style, text)``), added with ``contentviews.add`` and taken out with ``contentviews.remove``.
- mitmproxy 12: a ``contentviews.Contentview`` (``prettify`` returns text), added with
  ``contentviews.add``. 12 has no public way to take a view out again (``contentviews.remove`` is a
  deprecated no-op), so ``unregister`` drops it from the registry's name table itself.

The ``LLMView`` addon below registers it in ``load`` and takes it out in ``done``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mitmproxy import contentviews, http
from mitmproxy import flow as mflow

from .. import dialects, view
from .flowtools import STREAM_TYPES
from .state import META

NAME = view.TITLE
PRIORITY = 2.0  # above every built-in view (JSON claims 1 for application/json, Raw 0.1)

# the core's styles → mitmproxy 11's contentview styles (console palette and mitmweb CSS)
STYLES_11 = {
    view.TITLE_STYLE: "highlight",
    view.LABEL: "header",
    view.TEXT: "text",
    view.CODE: "text",
    view.ERROR: "error",
}

IS_12 = hasattr(contentviews, "Contentview")  # mitmproxy ≥ 12


def priority(data: bytes, content_type: str | None, flow: mflow.Flow | None) -> float:
    """``PRIORITY`` for a stream body of a dialect's endpoint (by its request path, or, without
    one, by its first telling event), 0 otherwise."""
    if not data:
        return 0
    if content_type is not None and content_type.split(";", 1)[0].strip().lower() not in STREAM_TYPES:
        return 0
    if content_type is not None and _path_api(flow) is not None:
        return PRIORITY
    return PRIORITY if view.looks_like_stream(data) else 0


def _path_api(flow: mflow.Flow | None) -> str | None:
    """The flow's dialect: the one streamshim decided (its state), else the request path's."""
    if isinstance(flow, http.HTTPFlow):
        state = flow.metadata.get(META) if isinstance(flow.metadata, dict) else None  # a damaged file
        if isinstance(state, dict) and isinstance(state.get("api"), str) and state["api"] in dialects.BY_NAME:
            return str(state["api"])
        found = dialects.for_path(flow.request.path)
        if found is not None:
            return found.name
    return None


def _lines_11(data: bytes, flow: mflow.Flow | None) -> tuple[str, Iterator[list[tuple[str, str]]]]:
    lines = view.render_lines(data, default_api=_path_api(flow))
    return NAME, iter([[(STYLES_11.get(style, "text"), text) for style, text in line] for line in lines])


if IS_12:

    class LLMStreamContentview(contentviews.Contentview):
        """mitmproxy 12's view API."""

        @property
        def name(self) -> str:
            return NAME

        @property
        def syntax_highlight(self) -> Any:
            return "none"

        def prettify(self, data: bytes, metadata: Any) -> str:
            return view.render(data, default_api=_path_api(metadata.flow))

        def render_priority(self, data: bytes, metadata: Any) -> float:
            return priority(data, metadata.content_type, metadata.flow)

else:  # 11; on 12 merely subclassing View warns (it is deprecated there)
    from mitmproxy.contentviews.base import View

    class LLMStreamView(View):
        """mitmproxy 11's view API: a title and lines of ``(style, text)``."""

        name = NAME

        def __call__(
            self,
            data: bytes,
            *,
            content_type: str | None = None,
            flow: mflow.Flow | None = None,
            http_message: http.Message | None = None,
            **unknown_metadata: Any,
        ) -> tuple[str, Iterator[list[tuple[str, str]]]]:
            return _lines_11(data, flow)

        def render_priority(
            self,
            data: bytes,
            *,
            content_type: str | None = None,
            flow: mflow.Flow | None = None,
            http_message: http.Message | None = None,
            **unknown_metadata: Any,
        ) -> float:
            return priority(data, content_type, flow)


def register() -> object:
    """Add the view (replacing one of the same name, e.g. from a reloaded script); returns the
    handle for ``unregister``."""
    if IS_12:
        cv = LLMStreamContentview()
        contentviews.add(cv)  # replaces a view of the same name
        return cv
    old = contentviews.get(NAME)
    if old is not None:
        contentviews.remove(old)
    v = LLMStreamView()
    contentviews.add(v)
    return v


def unregister(handle: object) -> None:
    """Take out the view ``register`` added, unless another has replaced it since."""
    if IS_12:
        # no public API for this on 12: drop it from the name table (if it is still ours)
        table = getattr(getattr(contentviews, "registry", None), "_by_name", None)
        key = NAME.lower()
        if isinstance(table, dict) and table.get(key) is handle:
            del table[key]
        return
    if handle in contentviews.views:
        contentviews.remove(handle)


class LLMView:
    """Addon: the "LLM stream" content view, registered while the addon is loaded."""

    def __init__(self) -> None:
        self._handle: object | None = None

    def load(self, loader: Any) -> None:
        self._handle = register()

    def done(self) -> None:
        if self._handle is not None:
            unregister(self._handle)
            self._handle = None
