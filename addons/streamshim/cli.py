"""The ``streamshim`` command line: the core's conversions on files or stdin.

    streamshim aggregate [FILE] [--api chat|completions] [--partial]
    streamshim synthesize [FILE] [--api …] [--include-usage] [--chunk-chars N]

Errors print one line to stderr naming what and where and exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
