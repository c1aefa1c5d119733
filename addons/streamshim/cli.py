"""The ``streamshim`` command line: the core's conversions on files or stdin.

    streamshim aggregate [FILE] [--api chat|completions|responses|…] [--partial]
    streamshim synthesize [FILE] [--api …] [--include-usage] [--chunk-chars N]
    streamshim scrub IN OUT [--header H] [--field F] [--fixture]
    streamshim replay PATH… [--update]
    streamshim check FILE… [--side …] [--usage-asked|--no-usage-asked] [--n N] [--all]
    streamshim diff A B [--side upstream|client]

Exit status, the same for every command:

- 0: done, nothing wrong (``check``: warnings at most; ``aggregate``: warnings go to stderr)
- 1: the input was read and its content has a problem: a broken stream (``aggregate``), a JSON
  body that is an error or no answer (``synthesize``), an error finding (``check``), a
  difference (``diff``, ``replay``)
- 2: the input cannot be read as what the command takes: a missing or unreadable file, not a
  flow file, not a stream where a stream is needed (``aggregate``, ``check``; decided by
  ``framing.sniff``, as everywhere in streamshim), not JSON where JSON is needed, nothing to
  check or compare, a damaged recording (``BadRecording``); or a usage error (argparse)
- 141: stdout was closed early (``… | head``): the command stops quietly, as one killed by
  SIGPIPE would; 130: interrupted (Ctrl-C)

When inputs fall under different codes, the highest of 0–2 wins: a run that could not read all of
its input is never reported as a clean result. Each error is one line on stderr,
``streamshim: FILE: what``, never a traceback, and every line of a message or a report is
terminal-safe: what comes from the input has its control characters, escape sequences and bidi
overrides escaped (``errors.printable``). The data commands write data: JSON on stdout is UTF-8
whatever the locale (a lone surrogate as its JSON escape), streams as synthesized.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from . import DEFAULT_CHUNK_CHARS, aggregate_with_problems, dialects, synthesize
from .check import Side, check_side
from .dialects.base import Report
from .errors import BadRecording, BadResponse, StreamError, printable
from .framing import decode_json, json_utf8, sniff
from .meaning import compare, decoded, is_stream, meaning

EXIT_OK = 0
EXIT_FINDING = 1  # a broken stream, an error finding, a difference
EXIT_BAD_INPUT = 2  # unreadable, or not what the command takes; argparse's usage errors are 2 too
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a command killed by it
EXIT_INTERRUPTED = 130  # 128 + SIGINT


class BadInput(Exception):
    """An input the command cannot use: one line on stderr, exit 2."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


def _say(where: str | None, message: str) -> None:
    """One line on stderr: ``streamshim: WHERE: MESSAGE``, terminal-safe (never more than a line)."""
    print(
        printable(f"streamshim: {where}: {message}" if where else f"streamshim: {message}"), file=sys.stderr
    )


def _out(line: str) -> None:
    """One line of a report on stdout, terminal-safe."""
    print(printable(line))


def _write(data: bytes) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _read(path: str | None) -> tuple[str, bytes]:
    if path in (None, "-"):
        stdin: BinaryIO = sys.stdin.buffer
        return "<stdin>", stdin.read()
    try:
        with open(path, "rb") as fh:
            return path, fh.read()
    except OSError as exc:
        raise BadInput(path, f"cannot read: {exc.strerror or exc}") from None


def _kind(body: bytes) -> str:
    """What a body that is not the expected kind is, for a message."""
    kind = sniff(body)
    if kind == "empty":
        return "it is empty" if not body else "it holds only whitespace"
    if kind == "json":
        return "it is JSON"
    if kind in dialects.FRAMINGS:
        return f"it is {_stream_name(kind)}"
    head = body[:60].decode("utf-8", "backslashreplace")
    return f"it starts with '{head}{'…' if len(body) > 60 else ''}'"


def _stream_name(framing: str) -> str:
    return {"sse": "an SSE stream", "ndjson": "an NDJSON stream"}.get(framing, f"a {framing} stream")


# the framings of the registered dialects' streams: what ``check`` takes, and ``diff`` beside JSON
STREAM_KINDS = tuple(dict.fromkeys(d.framing_name for d in dialects.DIALECTS))
STREAMS = "/".join(k.upper() for k in STREAM_KINDS)  # "SSE"


def _print_json(obj: object) -> None:
    _write(json_utf8(json.dumps(obj, ensure_ascii=False, indent=2) + "\n"))  # UTF-8 whatever the locale


def _each(
    bodies: tuple[list[_Input], int],
    one: Callable[[_Input, argparse.Namespace], int],
    args: argparse.Namespace,
) -> int:
    """``one`` for each input body: the worst exit code, an input it cannot read said in one line."""
    items, code = bodies
    for item in items:
        try:
            code = max(code, one(item, args))
        except BadInput as exc:
            _say(exc.where, exc.message)
            code = EXIT_BAD_INPUT
    return code


def cmd_aggregate(args: argparse.Namespace) -> int:
    return _each(_bodies(args.file, stream=True), _aggregate, args)


def _aggregate(item: _Input, args: argparse.Namespace) -> int:
    name, body = item.name, item.side.body
    dialect = dialects.resolve(args.api, body=body)
    assert dialect is not None
    if sniff(body) != dialect.framing_name:
        raise BadInput(name, f"not {_stream_name(dialect.framing_name)}: {_kind(body)}")
    try:
        result, problems = aggregate_with_problems(body, dialect)
    except StreamError as exc:
        hint = ""
        if args.partial and exc.partial is not None:
            _print_json(exc.partial)
        elif exc.partial is not None:
            hint = " (--partial prints what was aggregated before the fault)"
        _say(name, f"{exc.kind} at {exc.where()}: {exc.message}{hint}")
        return EXIT_FINDING
    for problem in problems:
        _say(name, f"warning: {problem}")
    _print_json(result)
    return EXIT_OK


def cmd_synthesize(args: argparse.Namespace) -> int:
    return _each(_bodies(args.file, stream=False), _synthesize, args)


def _synthesize(item: _Input, args: argparse.Namespace) -> int:
    name, body = item.name, item.side.body
    try:
        resp = decode_json(body)
    except ValueError as exc:
        raise BadInput(name, f"not JSON: {exc if sniff(body) == 'json' else _kind(body)}") from None
    dialect = dialects.resolve(args.api, payload=resp)
    if dialect is not None and dialect.error_of(resp) is not None:
        _say(name, "the body is an error response, not an answer")
        return EXIT_FINDING
    try:
        out = synthesize(resp, dialect, usage=args.include_usage, chunk_chars=args.chunk_chars)
    except BadResponse as exc:
        _say(name, str(exc))
        return EXIT_FINDING
    _write(out)
    return EXIT_OK


def _bodies(path: str | None, stream: bool) -> tuple[list[_Input], int]:
    """The bodies to convert, and the exit status so far: a body file is one; in a flow file,
    each flow's upstream response that is a stream (``stream``) or a JSON body (not
    ``stream``), its content-encoding undone (one that cannot be undone is said, and is a
    finding: the stream's own fault, as in ``check``)."""
    items = _inputs(path, ("upstream",))
    if len(items) == 1 and items[0].side.name == "file":
        return items, EXIT_OK
    out, code = [], EXIT_OK
    for item in items:
        side = item.side
        try:
            body = decoded(side.headers, side.body)
        except ValueError as exc:
            _say(item.name, f"{exc} (skipped)")
            code = EXIT_FINDING
            continue
        if 200 <= side.status < 300 and is_stream(side.headers, body) == stream:
            out.append(_Input(item.name, replace(side, body=body)))
    if not out and code == EXIT_OK:
        what = "stream" if stream else "JSON answer"
        name = "<stdin>" if path in (None, "-") else str(path)
        raise BadInput(name, f"no upstream {what} in the flow file")
    return out, code


def _flows(name: str, data: bytes) -> list[Any]:
    """The HTTP flows (mitmproxy's ``HTTPFlow``) of a flow file's bytes, or ``BadInput``."""
    from .mitm.recording import read_flows

    try:
        return read_flows(io.BytesIO(data))
    except BadRecording as exc:
        raise BadInput(name, str(exc)) from None


def cmd_scrub(args: argparse.Namespace) -> int:
    from .mitm.recording import to_fixture, write_flows
    from .mitm.scrub import scrub_flow

    name, data = _read(args.infile)
    flows = _flows(name, data)
    if not flows:
        raise BadInput(name, "holds no HTTP flow")
    for i, f in enumerate(flows):
        try:
            scrub_flow(f, args.header, args.field)
            if args.fixture:
                to_fixture(f)
        except BadRecording as exc:
            raise BadInput(f"{name}#{i}", f"{exc}: nothing written") from None
    try:
        write_flows(Path(args.outfile), flows)
    except OSError as exc:
        raise BadInput(args.outfile, f"cannot write: {exc.strerror or exc}") from None
    what = "scrubbed fixture" if args.fixture else "scrubbed"
    _say(None, f"{len(flows)} {what} flow(s) written to {args.outfile}")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from .mitm.recording import FLOW_SUFFIXES, flow_files, replay_flow, update_expectation, write_flows

    code = EXIT_OK
    passed = failed = 0
    for path in args.paths:
        files = list(flow_files([path]))
        if not files:
            _say(path, f"no flow files ({', '.join('*' + s for s in FLOW_SUFFIXES)}) in this folder")
            code = EXIT_BAD_INPUT
        for file in files:
            try:
                flows = _flows(*_read(str(file)))
                if not flows:
                    raise BadInput(str(file), "holds no HTTP flow")
            except BadInput as exc:
                _say(exc.where, exc.message)
                code = EXIT_BAD_INPUT
                continue
            for i, f in enumerate(flows):
                try:
                    outcome = replay_flow(f, f"{file}#{i}")
                except BadRecording as exc:
                    _say(f"{file}#{i}", f"cannot be replayed: {exc}")
                    code = EXIT_BAD_INPUT
                    continue
                if outcome.ok:
                    passed += 1
                    _out(f"ok    {outcome.name}")
                elif args.update:
                    update_expectation(f, outcome)
                    passed += 1
                    _out(f"updated {outcome.name}")
                else:
                    failed += 1
                    code = max(code, EXIT_FINDING)
                    _out(f"DIFF  {outcome.name}")
                    for line in outcome.diffs:
                        _out(f"      {line}")
            if args.update:
                try:
                    write_flows(file, flows)
                except OSError as exc:
                    _say(str(file), f"cannot write: {exc.strerror or exc}")
                    code = EXIT_BAD_INPUT
    _out(f"{passed} passed, {failed} failed")
    return code


# -- check and diff: SSE/JSON body files or mitmproxy flow files --------------------------------


@dataclass
class _Input:
    name: str  # "file", "file#3 upstream"
    side: Side


def _inputs(
    path: str | None, sides: Sequence[str], bodies: Sequence[str] | None = None, what: str = ""
) -> list[_Input]:
    """A body file is one input, when ``sniff`` finds it one of ``bodies`` (``what`` names them;
    ``None``: any body, the command judges it); a flow file gives the chosen sides of each of its
    flows."""
    from .mitm.recording import flow_sides

    name, data = _read(path)
    if not _looks_like_flows(data):
        if bodies is not None and sniff(data) not in bodies:
            raise BadInput(name, f"neither {what} nor a flow file: {_kind(data)}")
        return [_Input(name, Side("file", b"", 200, [], data))]
    out = []
    for i, f in enumerate(_flows(name, data)):  # the bytes already read (also from stdin)
        try:
            got = flow_sides(f)
        except BadRecording as exc:
            raise BadInput(f"{name}#{i}", str(exc)) from None
        if not got:
            _say(f"{name}#{i}", "no response in the flow (skipped)")
        out += [_Input(f"{name}#{i} {s}", got[s]) for s in sides if s in got]
    return out


def _looks_like_flows(data: bytes) -> bool:
    """mitmproxy flow files are tnetstrings: digits, a colon, then a dict (``}`` at the end)."""
    head = data[:12]
    colon = head.find(b":")
    return colon > 0 and head[:colon].isdigit() and data.rstrip()[-1:] == b"}"


def cmd_check(args: argparse.Namespace) -> int:
    sides = ("upstream", "client") if args.side == "both" else (args.side,)
    code = EXIT_OK
    for path in args.files:
        try:
            inputs = _inputs(path, sides, STREAM_KINDS, f"an {STREAMS} stream")
        except BadInput as exc:
            _say(exc.where, exc.message)
            code = EXIT_BAD_INPUT
            continue
        seen: set[bytes] = set()
        checked = 0
        for item in inputs:
            if item.side.body in seen:
                continue  # the same stream as the side before: a flow streamshim left untouched
            seen.add(item.side.body)
            try:
                report = check_side(item.side, args.api, usage_asked=args.usage_asked, n=args.n)
            except ValueError as exc:  # a corrupt content-encoding: the stream's own fault
                _out(f"{item.name}: {exc}")
                checked += 1
                code = max(code, EXIT_FINDING)
                continue
            if report is None:
                continue  # a JSON side
            checked += 1
            if report.errors:
                code = max(code, EXIT_FINDING)
            _print_report(item.name, report, args.all)
        if not checked:
            name = "<stdin>" if path == "-" else path
            _say(name, f"no {STREAMS} stream to check in its {len(inputs)} response(s)")
            code = EXIT_BAD_INPUT
    return code


def _print_report(name: str, report: Report, show_all: bool, per_code: int = 3) -> None:
    _out(f"{name}: {report.api} stream, {report.summary()}")
    if not report.findings:
        return
    _out(f"  {'event':>6}  {'severity':<8}  {'code':<32}  message")
    shown: dict[str, int] = {}
    for f in report.findings:
        shown[f.code] = shown.get(f.code, 0) + 1
        if show_all or shown[f.code] <= per_code:
            event = "-" if f.event is None else str(f.event)
            _out(f"  {event:>6}  {f.severity:<8}  {f.code:<32}  {f.message}")
    for code, count in shown.items():
        if not show_all and count > per_code:
            _out(f"  {'':>6}  {'':<8}  {code:<32}  … {count - per_code} more (--all shows them)")


def cmd_diff(args: argparse.Namespace) -> int:
    kinds = (*STREAM_KINDS, "json")
    a, b = (_inputs(p, (args.side,), kinds, f"an {STREAMS}/JSON body") for p in (args.a, args.b))
    for path, items in ((args.a, a), (args.b, b)):
        if not items:
            raise BadInput(path, "no response to compare in it")
    if len(a) != len(b):
        raise BadInput(
            args.a,
            f"holds {len(a)} response(s), {args.b} holds {len(b)}: flows are compared in pairs, in order",
        )
    differ = False
    for x, y in zip(a, b, strict=True):
        mx, my = (meaning(i.side.status, i.side.headers, i.side.body) for i in (x, y))
        diffs, notes = compare(mx, my)
        shapes = f"{mx.get('shape', '?')} vs {my.get('shape', '?')}"
        _out(f"{'DIFF' if diffs else 'same'}  A={x.name}  B={y.name}  ({shapes})")
        for line in diffs + [f"note: {n}" for n in notes]:
            _out(f"      {line}")
        if not diffs:
            _out(f"      {_gist(mx)}")
        differ = differ or bool(diffs)
    return EXIT_FINDING if differ else EXIT_OK


def _gist(m: dict[str, Any]) -> str:
    """What both sides agree on, in one line."""
    outputs = next(((k, v) for k, v in m.items() if isinstance(v, list)), None)
    if outputs is None:
        return f"status {m.get('status')}" + (f", error {m['error']!r}" if "error" in m else "")
    label, items = outputs
    parts = [f"status {m.get('status')}", f"{len(items)} {label.rstrip('s')}(s)"]
    for item in items:
        calls = item.get("tool_calls")
        text = item.get("content", item.get("text"))  # as the body has it: any JSON value
        finish, reason = list(item.items())[-1]  # an output's finish is its last key (Meaning.as_dict)
        parts.append(
            f"{finish} {reason!r}, {len(text) if isinstance(text, str) else 0} chars, "
            f"{len(calls) if isinstance(calls, list) else 0} tool call(s)"
        )
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
    """Run one command; returns its exit status (argparse exits 2 itself on a usage error)."""
    args = build_parser().parse_args(argv)
    # the addon's log lines (``replay`` runs it) are meant for mitmproxy's event log: here the
    # report says what happened, and stderr holds only ``streamshim: …`` lines
    logging.getLogger("streamshim").addHandler(logging.NullHandler())
    try:
        try:
            code: int = args.func(args)
        except BadInput as exc:
            _say(exc.where, exc.message)
            code = EXIT_BAD_INPUT
        except KeyboardInterrupt:
            _say(None, "interrupted")
            code = EXIT_INTERRUPTED
        sys.stdout.flush()  # a closed pipe shows here, not at exit
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    return code


def _silence_stdout() -> None:
    """The reader went away (``| head``): what is still buffered goes nowhere, without the
    "Exception ignored … BrokenPipeError" Python would print at exit."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (tests): nothing is flushed at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
