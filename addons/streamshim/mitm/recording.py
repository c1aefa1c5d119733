"""Recordings: captured mitmproxy flows as replayable regression fixtures (scrubbing is
``scrub.py``).

- ``to_fixture``: put the upstream's original response where mitmproxy's server replay serves it
  from (``flow.response``) and keep what the client received in ``metadata["streamshim"]``.
- ``replay_flow``: run a recorded upstream response through the current addon and compare what a
  client gets now with what the recording says it got, by meaning (status, content, reasoning,
  tool calls, stop reasons, usage, error).
- ``flow_sides`` / ``check_flow``: the upstream's and the client's exchange of a flow, and the
  conformance of their streams.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from mitmproxy import exceptions, http, io
from mitmproxy.http import Headers

from .. import dialects
from ..check import Side, check_side
from ..dialects.base import Report
from ..errors import BadRecording, printable
from ..meaning import diff_meaning, meaning, short
from ..rules import Rule, RuleSet
from .shim import Shim
from .state import FlowState

FLOW_SUFFIXES = (".flow", ".flows", ".mitm")


# -- fixture form -------------------------------------------------------------------------------


def to_fixture(flow: http.HTTPFlow) -> None:
    """Serve-ready form: ``flow.response`` becomes the upstream's original response, and what the
    client received moves to ``metadata["streamshim"]["client_response"]``. Idempotent."""
    state = FlowState.of(flow)
    resp = flow.response
    if state is None or resp is None or state.fixture:
        return
    if flow.error is not None and state.mode in ("aggregate", "synthesize", "untouched"):
        # the upstream broke while the body was being buffered: mitmproxy answered the client
        # with its own 502, which is not in the flow
        body = json.dumps({"error": {"message": f"mitmproxy: {flow.error.msg}"}}).encode()
        state.client_response = {
            "status": 502,
            "headers": [["content-type", "application/json"]],
            "body": body,
        }
    else:
        state.client_response = _response_record(resp)
    _restore_upstream(resp, state)
    resp.stream = False
    state.fixture = True
    state.save(flow)


def _restore_upstream(resp: http.Response, state: FlowState) -> None:
    """Give ``resp`` the upstream's original status, headers and body, as far as they were kept."""
    if state.upstream_headers is not None:
        resp.headers = Headers([(k.encode(), v.encode()) for k, v in state.upstream_headers])
    if state.upstream_status is not None:
        resp.status_code = int(state.upstream_status)
    if state.upstream_response is not None:
        resp.raw_content = state.upstream_response


def _response_record(resp: http.Response) -> dict[str, Any]:
    return {
        "status": resp.status_code,
        "headers": [[k, v] for k, v in resp.headers.items(multi=True)],
        "body": resp.raw_content or b"",
    }


def read_flows(source: Path | BinaryIO) -> list[http.HTTPFlow]:
    """The HTTP flows of a flow file, given as a path or an open binary file. Raises ``OSError``
    when the file cannot be read and ``BadRecording`` when its bytes are not a flow file."""
    if isinstance(source, Path):
        with source.open("rb") as fh:
            return read_flows(fh)
    try:
        return [f for f in io.FlowReader(source).stream() if isinstance(f, http.HTTPFlow)]
    except OSError:
        raise
    except Exception as exc:
        # mitmproxy checks the tnetstring framing and little else: damaged bytes come out of its
        # reader as FlowReadException, but also as KeyError, AttributeError, TypeError, … from
        # building a flow of a state that is not one
        detail = str(exc) if isinstance(exc, exceptions.FlowReadException) else f"{type(exc).__name__}: {exc}"
        raise BadRecording(f"not a readable mitmproxy flow file ({printable(detail)})") from None


def write_flows(path: Path, flows: Iterable[http.HTTPFlow]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        writer = io.FlowWriter(fh)
        for f in flows:
            writer.add(f)
    tmp.replace(path)


def flow_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(q for q in p.iterdir() if q.suffix in FLOW_SUFFIXES)
        else:
            yield p


# -- the two sides of a flow ---------------------------------------------------------------------


def flow_sides(flow: http.HTTPFlow) -> dict[str, Side]:
    """The upstream exchange (what the server was asked and answered) and the client exchange
    (what the client asked and got), for a flow as mitmproxy saved it or in fixture form. A flow
    streamshim did not touch has the same exchange on both sides."""
    if flow.response is None:
        return {}
    state = FlowState.of(flow)
    up = _response_record(_upstream_response(flow, state))
    client = expected_response(flow)
    sent = flow.request.raw_content or b""
    asked = state.client_request if state is not None else None
    return {
        "upstream": Side("upstream", sent, up["status"], up["headers"], up["body"]),
        "client": Side(
            "client",
            asked if asked is not None else sent,
            client["status"],
            client["headers"],
            client["body"],
        ),
    }


def flow_api(flow: http.HTTPFlow) -> str | None:
    """The flow's dialect: the one streamshim decided, else its request path's."""
    state = FlowState.of(flow)
    if state is not None and state.api in dialects.BY_NAME:
        return state.api
    found = dialects.for_path(flow.request.path)
    return found.name if found else None


def check_flow(flow: http.HTTPFlow) -> dict[str, Report]:
    """Check the upstream's stream and, when streamshim made or changed it, the client's."""
    api = flow_api(flow)
    out: dict[str, Report] = {}
    seen: set[bytes] = set()
    for name, side in flow_sides(flow).items():
        if side.body in seen:
            continue
        seen.add(side.body)
        try:
            report = check_side(side, api)
        except ValueError:
            continue  # undecodable: the conversion already said so on the flow
        if report is not None:
            out[name] = report
    return out


# -- replay -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    name: str
    diffs: list[str] = field(default_factory=list)
    now: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.diffs


def expected_response(flow: http.HTTPFlow) -> dict[str, Any]:
    """What the recording says the client received."""
    state = FlowState.of(flow)
    if state is not None and isinstance(state.client_response, dict):
        return dict(state.client_response)
    assert flow.response is not None
    return _response_record(flow.response)


def replay_flow(flow: http.HTTPFlow, name: str = "") -> Outcome:
    """Run the recorded upstream response through the current addon with the recorded rule."""
    state = FlowState.of(flow)
    outcome = Outcome(name or flow.request.pretty_url)
    if flow.response is None:
        outcome.diffs.append("the recording has no response to replay")
        return outcome
    rules = RuleSet()
    if state is not None and state.rule:
        api = state.api if state.api in dialects.BY_NAME else None
        rule = Rule(name=state.rule, host="*", path=("*",), api=api, **state.settings.to_dict())
        rules = RuleSet((rule,), "<recording>")
    shim = Shim(rules)
    f = flow.copy()
    f.metadata = {}
    f.comment = ""
    client_request = state.client_request if state is not None else None
    if client_request is not None:
        f.request.content = client_request
    upstream = _upstream_response(flow, state)
    f.response = None
    # the addon's hooks need no mitmproxy context: run them directly
    shim.request(f)
    if (f.request.raw_content or b"") != (flow.request.raw_content or b""):
        outcome.diffs.append(
            f"request sent upstream: recorded {short(flow.request.get_text(strict=False))}, "
            f"now {short(f.request.get_text(strict=False))}"
        )
    f.response = upstream
    shim.responseheaders(f)
    if callable(f.response.stream):
        out = b""
        body = upstream.raw_content or b""
        for piece in [body[i : i + 512] for i in range(0, len(body), 512)] + [b""]:
            got = f.response.stream(piece)
            out += got if isinstance(got, bytes) else b"".join(got)
        f.response.stream = False
        f.response.raw_content = out
    else:
        shim.response(f)
    now = _response_record(f.response)
    expected = expected_response(flow)
    outcome.now = now
    api = flow_api(flow)
    was = meaning(expected["status"], expected["headers"], expected["body"], api)
    got = meaning(now["status"], now["headers"], now["body"], api)
    if "error" in was and "error" in got:  # the wording of an error may change; its presence may not
        was["error"] = got["error"] = "(an error)"
    outcome.diffs += diff_meaning(was, got)
    return outcome


def _upstream_response(flow: http.HTTPFlow, state: FlowState | None) -> http.Response:
    assert flow.response is not None
    resp = flow.response.copy()
    if state is not None and not state.fixture:
        _restore_upstream(resp, state)
    return resp


def update_expectation(flow: http.HTTPFlow, outcome: Outcome) -> None:
    state = FlowState.of(flow) or FlowState(api=flow_api(flow) or dialects.DEFAULT.name)
    state.client_response = outcome.now
    state.save(flow)
