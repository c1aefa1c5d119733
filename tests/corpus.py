"""Access to the shared corpus of real recorded streams (../shared/corpus, read-only)."""

from __future__ import annotations

import csv
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

_DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
CORPUS = Path(os.environ.get("STREAMSHIM_CORPUS") or _DEFAULT_CORPUS)
SKIP_REASON = f"shared corpus not found at {CORPUS} (it sits beside the project in CI and on dev boxes)"


@dataclass(frozen=True)
class Recorded:
    name: str  # file[#interaction]
    api: str  # chat / responses / anthropic / ...
    mode: str  # stream / json
    status: int
    request: str  # the request body as recorded
    body: bytes  # the raw response body


def require_corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(SKIP_REASON)
    return CORPUS


@functools.cache
def _cassette(path: Path) -> list[dict]:
    # libyaml's loader when PyYAML has it: the same documents, 14x faster than the pure-Python one
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)["interactions"]


@functools.cache
def recorded(api: str = "chat") -> tuple[Recorded, ...]:
    """Every recorded interaction of one API: the openai-python bodies and the fantasy cassettes."""
    if not CORPUS.is_dir():
        return ()
    out: list[Recorded] = []
    if api == "chat":
        for f in sorted((CORPUS / "openai-python").glob("*.bin")):
            out.append(Recorded(f"openai-python/{f.name[:12]}", "chat", "stream", 200, "", f.read_bytes()))
    with (CORPUS / "INDEX.tsv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["api"] != api:
                continue
            inter = _cassette(CORPUS / row["file"])[int(row["interaction"])]
            out.append(
                Recorded(
                    name=f"{row['file'].removeprefix('fantasy/')}#{row['interaction']}",
                    api=api,
                    mode=row["mode"],
                    status=int(row["status"]),
                    request=inter["request"].get("body") or "",
                    body=_bytes(inter["response"]["body"]),
                )
            )
    return tuple(out)


def _bytes(body: str | bytes) -> bytes:
    """A recorded body: text, or bytes where the cassette holds them as ``!!binary`` (Bedrock's
    binary event stream)."""
    return body if isinstance(body, bytes) else body.encode("utf-8")


def ids(items: tuple[Recorded, ...]) -> list[str]:
    return [r.name for r in items]
