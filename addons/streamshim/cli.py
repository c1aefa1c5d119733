"""The ``streamshim`` command line: the core's conversions on files or stdin.

    streamshim aggregate [FILE] [--api chat|completions|responses|…] [--partial]
    streamshim synthesize [FILE] [--api …] [--include-usage] [--chunk-chars N]
    streamshim scrub IN OUT [--header H] [--field F] [--fixture]
    streamshim replay PATH… [--update]
    streamshim check FILE… [--side …] [--usage-asked|--no-usage-asked] [--n N] [--all]
    streamshim diff A B [--side upstream|client]

Errors print one line to stderr naming what and where and exit 1; ``check`` and ``diff`` exit 1
on an error finding or a difference and 2 on input they cannot read.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from . import DEFAULT_CHUNK_CHARS, aggregate_with_problems, dialects, synthesize
from .check import Side, check_side
from .dialects.base import Report
from .errors import BadResponse, StreamError
from .meaning import compare, decoded, is_stream, meaning


def _read(path: str | None, exit_code: int = 1) -> tuple[str, bytes]:
    if path in (None, "-"):
        stdin: BinaryIO = sys.stdin.buffer
        return "<stdin>", stdin.read()
    try:
        with open(path, "rb") as fh:
            return path, fh.read()
    except OSError as exc:
        _exit(f"{path}: cannot read: {exc.strerror}", exit_code)


def _exit(message: str, code: int) -> NoReturn:
    print(f"streamshim: {message}", file=sys.stderr)
    raise SystemExit(code)


def _print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def cmd_aggregate(args: argparse.Namespace) -> int:
    failed = 0
    for item in _bodies(args.file, stream=True):
        name, body = item.name, item.side.body
        try:
            result, problems = aggregate_with_problems(body, args.api)
        except StreamError as exc:
            failed += 1
            print(f"streamshim: {name}: {exc.kind} at {exc.where()}: {exc.message}", file=sys.stderr)
            if args.partial and exc.partial is not None:
                _print_json(exc.partial)
            elif exc.partial is not None:
                print(
                    "streamshim: (use --partial to print what was aggregated before the fault)",
                    file=sys.stderr,
                )
            continue
        for problem in problems:
            print(f"streamshim: {name}: warning: {problem}", file=sys.stderr)
        _print_json(result)
    return 1 if failed else 0


def cmd_synthesize(args: argparse.Namespace) -> int:
    failed = 0
    for item in _bodies(args.file, stream=False):
        name, body = item.name, item.side.body
        try:
            resp = json.loads(body)
        except ValueError as exc:
            print(f"streamshim: {name}: not a JSON body: {exc}", file=sys.stderr)
            failed += 1
            continue
        dialect = dialects.resolve(args.api, payload=resp)
        if dialect is not None and dialect.error_of(resp) is not None:
            print(f"streamshim: {name}: the body is an error response, not an answer", file=sys.stderr)
            failed += 1
            continue
        try:
            out = synthesize(resp, dialect, usage=args.include_usage, chunk_chars=args.chunk_chars)
        except BadResponse as exc:
            print(f"streamshim: {name}: {exc}", file=sys.stderr)
            failed += 1
            continue
        sys.stdout.buffer.write(out)
        sys.stdout.buffer.flush()
    return 1 if failed else 0


def _bodies(path: str | None, stream: bool) -> list[_Input]:
    """The bodies to convert: a body file is one; in a flow file, each flow's upstream response
    that is a stream (``stream``) or a JSON body (not ``stream``), its content-encoding undone."""
    items = _inputs(path, ("upstream",), exit_code=1)
    if len(items) == 1 and items[0].side.name == "file":
        return items
    out = []
    for item in items:
        side = item.side
        try:
            body = decoded(side.headers, side.body)
        except ValueError as exc:
            print(f"streamshim: {item.name}: {exc} (skipped)", file=sys.stderr)
            continue
        if 200 <= side.status < 300 and is_stream(side.headers, body) == stream:
            out.append(_Input(item.name, replace(side, body=body)))
    if not out:
        _exit(f"{path}: no {'stream' if stream else 'JSON answer'} in the flow file", 1)
    return out


def cmd_scrub(args: argparse.Namespace) -> int:
    from .mitm.recording import read_flows, to_fixture, write_flows
    from .mitm.scrub import scrub_flow

    try:
        flows = read_flows(Path(args.infile))
    except (OSError, ValueError) as exc:
        print(f"streamshim: {args.infile}: cannot read flows: {exc}", file=sys.stderr)
        return 1
    for f in flows:
        scrub_flow(f, args.header, args.field)
        if args.fixture:
            to_fixture(f)
    write_flows(Path(args.outfile), flows)
    what = "scrubbed fixture" if args.fixture else "scrubbed"
    print(f"streamshim: {len(flows)} {what} flow(s) written to {args.outfile}", file=sys.stderr)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from .mitm.recording import flow_files, read_flows, replay_flow, update_expectation, write_flows

    files = list(flow_files(args.paths))
    if not files:
        print("streamshim: no flow files found in " + ", ".join(args.paths), file=sys.stderr)
        return 1
    failed = total = 0
    for path in files:
        try:
            flows = read_flows(path)
        except (OSError, ValueError) as exc:
            print(f"streamshim: {path}: cannot read flows: {exc}", file=sys.stderr)
            failed += 1
            continue
        for i, f in enumerate(flows):
            total += 1
            outcome = replay_flow(f, f"{path}#{i}")
            if outcome.ok:
                print(f"ok    {outcome.name}")
                continue
            if args.update:
                update_expectation(f, outcome)
                print(f"updated {outcome.name}")
                continue
            failed += 1
            print(f"DIFF  {outcome.name}")
            for line in outcome.diffs:
                print(f"      {line}")
        if args.update:
            write_flows(path, flows)
    print(f"{total - failed} passed, {failed} failed")
    return 1 if failed else 0


# -- check and diff: SSE/JSON body files or mitmproxy flow files --------------------------------


@dataclass
class _Input:
    name: str  # "file", "file#3 upstream"
    side: Side


def _inputs(path: str | None, sides: Sequence[str], exit_code: int = 2) -> list[_Input]:
    """A body file is one input; a flow file gives the chosen sides of each of its flows."""
    from .mitm.recording import flow_sides, read_flows

    name, data = _read(path, exit_code)
    if not _looks_like_flows(data):
        return [_Input(name, Side("file", b"", 200, [], data))]
    try:
        flows = read_flows(io.BytesIO(data))  # the bytes already read (also from stdin)
    except (OSError, ValueError) as exc:
        _exit(f"{path}: neither an SSE/JSON body nor a readable flow file: {exc}", exit_code)
    out = []
    for i, f in enumerate(flows):
        got = flow_sides(f)
        if not got:
            print(f"streamshim: {name}#{i}: no response in the flow (skipped)", file=sys.stderr)
        out += [_Input(f"{name}#{i} {s}", got[s]) for s in sides if s in got]
    return out


def _looks_like_flows(data: bytes) -> bool:
    """mitmproxy flow files are tnetstrings: digits, a colon, then a dict (``}`` at the end)."""
    head = data[:12]
    colon = head.find(b":")
    return colon > 0 and head[:colon].isdigit() and data.rstrip()[-1:] == b"}"


def cmd_check(args: argparse.Namespace) -> int:
    sides = ("upstream", "client") if args.side == "both" else (args.side,)
    errors = checked = 0
    for path in args.files:
        seen: set[bytes] = set()
        for item in _inputs(path, sides):
            if item.side.body in seen:
                continue  # the same stream as the side before: a flow streamshim left untouched
            seen.add(item.side.body)
            try:
                report = check_side(item.side, args.api, usage_asked=args.usage_asked, n=args.n)
            except ValueError as exc:
                print(f"{item.name}: {exc}")
                errors += 1
                continue
            if report is None:
                continue  # a JSON side
            checked += 1
            errors += bool(report.errors)
            _print_report(item.name, report, args.all)
    if not checked:
        print("streamshim: no SSE stream found in " + ", ".join(args.files), file=sys.stderr)
        return 2
    return 1 if errors else 0


def _print_report(name: str, report: Report, show_all: bool, per_code: int = 3) -> None:
    print(f"{name}: {report.api} stream, {report.summary()}")
    if not report.findings:
        return
    print(f"  {'event':>6}  {'severity':<8}  {'code':<32}  message")
    shown: dict[str, int] = {}
    for f in report.findings:
        shown[f.code] = shown.get(f.code, 0) + 1
        if show_all or shown[f.code] <= per_code:
            event = "-" if f.event is None else str(f.event)
            print(f"  {event:>6}  {f.severity:<8}  {f.code:<32}  {f.message}")
    for code, count in shown.items():
        if not show_all and count > per_code:
            print(f"  {'':>6}  {'':<8}  {code:<32}  … {count - per_code} more (--all shows them)")


def cmd_diff(args: argparse.Namespace) -> int:
    a, b = _inputs(args.a, (args.side,)), _inputs(args.b, (args.side,))
    if len(a) != len(b):
        print(
            f"streamshim: {args.a} holds {len(a)} response(s), {args.b} holds {len(b)}: "
            "flows are compared in pairs, in order",
            file=sys.stderr,
        )
        return 2
    differ = 0
    for x, y in zip(a, b, strict=True):
        mx, my = (meaning(i.side.status, i.side.headers, i.side.body) for i in (x, y))
        diffs, notes = compare(mx, my)
        shapes = f"{mx.get('shape', '?')} vs {my.get('shape', '?')}"
        print(f"{'DIFF' if diffs else 'same'}  A={x.name}  B={y.name}  ({shapes})")
        for line in diffs + [f"note: {n}" for n in notes]:
            print(f"      {line}")
        if not diffs:
            print(f"      {_gist(mx)}")
        differ += bool(diffs)
    return 1 if differ else 0


def _gist(m: dict[str, Any]) -> str:
    """What both sides agree on, in one line."""
    outputs = next(((k, v) for k, v in m.items() if isinstance(v, list)), None)
    if outputs is None:
        return f"status {m.get('status')}" + (f", error {m['error']!r}" if "error" in m else "")
    label, items = outputs
    parts = [f"status {m.get('status')}", f"{len(items)} {label.rstrip('s')}(s)"]
    for item in items:
        calls = len(item.get("tool_calls") or ())
        text = item.get("content", item.get("text")) or ""
        finish, reason = list(item.items())[-1]  # an output's finish is its last key (Meaning.as_dict)
        parts.append(f"{finish} {reason!r}, {len(text)} chars, {calls} tool call(s)")
    return ", ".join(parts)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive number of characters")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamshim", description="Convert OpenAI-compatible streams (SSE) to JSON bodies and back."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    api_help = f"API dialect ({', '.join(dialects.names())}); default: detected from the payload"

    agg = sub.add_parser("aggregate", help="SSE body → the aggregated non-stream JSON")
    agg.add_argument(
        "file", nargs="?", help="SSE body, or a flow file (each upstream stream in it) (default: stdin)"
    )
    agg.add_argument("--api", choices=dialects.names(), help=api_help)
    agg.add_argument(
        "--partial", action="store_true", help="on error, still print what was aggregated so far"
    )
    agg.set_defaults(func=cmd_aggregate)

    syn = sub.add_parser("synthesize", help="non-stream JSON body → SSE")
    syn.add_argument(
        "file", nargs="?", help="JSON body, or a flow file (each upstream JSON answer in it) (default: stdin)"
    )
    syn.add_argument("--api", choices=dialects.names(), help=api_help)
    syn.add_argument("--include-usage", action="store_true", help="end with a usage chunk (choices: [])")
    syn.add_argument(
        "--chunk-chars",
        type=_positive,
        default=DEFAULT_CHUNK_CHARS,
        help=f"characters per content/arguments piece (default {DEFAULT_CHUNK_CHARS})",
    )
    syn.set_defaults(func=cmd_synthesize)

    scr = sub.add_parser("scrub", help="mask secrets in a mitmproxy flow file (headers, JSON fields)")
    scr.add_argument("infile", help="flow file written by mitmproxy (-w)")
    scr.add_argument("outfile", help="where to write the scrubbed flows")
    scr.add_argument(
        "--header", action="append", default=[], help="one more header name to mask (repeatable)"
    )
    scr.add_argument("--field", action="append", default=[], help="a JSON field name to mask (repeatable)")
    scr.add_argument(
        "--fixture",
        action="store_true",
        help="also make each flow a replay fixture: flow.response becomes the upstream's original "
        "response (what mitmdump --server-replay serves), what the client got is kept beside it",
    )
    scr.set_defaults(func=cmd_scrub)

    rep = sub.add_parser("replay", help="replay recorded upstream responses through the addon and compare")
    rep.add_argument("paths", nargs="+", help="flow files or folders of them (*.flow, *.mitm)")
    rep.add_argument(
        "--update", action="store_true", help="rewrite the expectations after a deliberate change"
    )
    rep.set_defaults(func=cmd_replay)

    chk = sub.add_parser(
        "check",
        help="conformance of SSE streams to the OpenAI chunk contract (codes, severity, event number)",
        description="Check chat/completions SSE streams. FILE is an SSE body or a mitmproxy flow file "
        "(every flow in it: the upstream's stream and, when streamshim made one, the client's). "
        "Exits 1 when any stream has an error finding.",
    )
    chk.add_argument("files", nargs="+", metavar="FILE", help="SSE body or flow file (- for stdin)")
    chk.add_argument("--api", choices=dialects.names(), help=api_help)
    chk.add_argument(
        "--side",
        choices=("both", "upstream", "client"),
        default="both",
        help="in flow files: which stream to check (default both)",
    )
    usage = chk.add_mutually_exclusive_group()
    usage.add_argument(
        "--usage-asked",
        dest="usage_asked",
        action="store_true",
        default=None,
        help="expect a usage chunk (default: from the flow's request; unknown for a body file)",
    )
    usage.add_argument("--no-usage-asked", dest="usage_asked", action="store_false", help="expect none")
    chk.add_argument("--n", type=_positive, help="choices asked for (default: from the flow's request)")
    chk.add_argument("--all", action="store_true", help="list every finding (default: 3 per code)")
    chk.set_defaults(func=cmd_check)

    dif = sub.add_parser(
        "diff",
        help="compare what two responses mean (stream or JSON): content, reasoning, tool calls, ...",
        description="Compare two responses by meaning: content, reasoning, tool calls (name and parsed "
        "arguments), stop reasons, usage (when both carry it), error. A and B are SSE/JSON body files "
        "or flow files (compared flow by flow, in order). Exits 1 when they differ.",
    )
    dif.add_argument("a", help="SSE/JSON body or flow file")
    dif.add_argument("b", help="SSE/JSON body or flow file")
    dif.add_argument(
        "--side",
        choices=("upstream", "client"),
        default="upstream",
        help="in flow files: the server's answer (upstream, default) or what the client got",
    )
    dif.set_defaults(func=cmd_diff)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
