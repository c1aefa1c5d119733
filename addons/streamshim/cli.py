"""The ``streamshim`` command line: the core's conversions on files or stdin.

    streamshim aggregate [FILE] [--api chat|completions] [--partial]
    streamshim synthesize [FILE] [--api …] [--include-usage] [--chunk-chars N]
    streamshim scrub IN OUT [--header H] [--field F] [--fixture]
    streamshim replay PATH… [--update]

Errors print one line to stderr naming what and where and exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from . import DEFAULT_CHUNK_CHARS, aggregate_with_problems, dialects, synthesize
from .errors import BadResponse, StreamError


def _read(path: str | None) -> tuple[str, bytes]:
    if path in (None, "-"):
        stdin: BinaryIO = sys.stdin.buffer
        return "<stdin>", stdin.read()
    try:
        with open(path, "rb") as fh:
            return path, fh.read()
    except OSError as exc:
        raise SystemExit(f"streamshim: {path}: cannot read: {exc.strerror}") from None


def _print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def cmd_aggregate(args: argparse.Namespace) -> int:
    name, body = _read(args.file)
    try:
        result, problems = aggregate_with_problems(body, args.api)
    except StreamError as exc:
        print(f"streamshim: {name}: {exc.kind} at {exc.where()}: {exc.message}", file=sys.stderr)
        if args.partial and exc.partial is not None:
            _print_json(exc.partial)
        elif exc.partial is not None:
            print(
                "streamshim: (use --partial to print what was aggregated before the fault)", file=sys.stderr
            )
        return 1
    for problem in problems:
        print(f"streamshim: {name}: warning: {problem}", file=sys.stderr)
    _print_json(result)
    return 0


def cmd_synthesize(args: argparse.Namespace) -> int:
    name, body = _read(args.file)
    try:
        resp = json.loads(body)
    except ValueError as exc:
        print(f"streamshim: {name}: not a JSON body: {exc}", file=sys.stderr)
        return 1
    if isinstance(resp, dict) and "error" in resp and "choices" not in resp:
        print(f"streamshim: {name}: the body is an error response, not a completion", file=sys.stderr)
        return 1
    try:
        out = synthesize(resp, args.api, include_usage=args.include_usage, chunk_chars=args.chunk_chars)
    except BadResponse as exc:
        print(f"streamshim: {name}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    return 0


def cmd_scrub(args: argparse.Namespace) -> int:
    from .recording import read_flows, scrub_flow, to_fixture, write_flows

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
    from .recording import flow_files, read_flows, replay_flow, update_expectation, write_flows

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
    api_help = f"API dialect ({', '.join(dialects.DIALECTS)}); default: detected from the payload"

    agg = sub.add_parser("aggregate", help="SSE body → the aggregated non-stream JSON")
    agg.add_argument("file", nargs="?", help="SSE body (default: stdin)")
    agg.add_argument("--api", choices=list(dialects.DIALECTS), help=api_help)
    agg.add_argument(
        "--partial", action="store_true", help="on error, still print what was aggregated so far"
    )
    agg.set_defaults(func=cmd_aggregate)

    syn = sub.add_parser("synthesize", help="non-stream JSON body → SSE")
    syn.add_argument("file", nargs="?", help="JSON body (default: stdin)")
    syn.add_argument("--api", choices=list(dialects.DIALECTS), help=api_help)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
