"""Shared fixtures: the fault upstream and a real mitmdump in front of it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_upstream import FaultUpstream
from proxy import Mitmdump

FAULT_RULES = """\
rules:
  - name: force-stream
    listen_port: {stream}
    upstream: stream
  - name: force-json
    listen_port: {json}
    upstream: json
    chunk_chars: 4
  - name: keepalive
    listen_port: {keepalive}
    upstream: stream
    keepalive: true
  - name: promote
    listen_port: {promote}
    upstream: as-requested
    promote_tool_calls: true
  - name: repair
    listen_port: {repair}
    upstream: as-requested
    repair: true
  - name: as-requested
    listen_port: {asis}
    upstream: as-requested
"""


@pytest.fixture(scope="session")
def fault() -> Iterator[FaultUpstream]:
    server = FaultUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shim(fault: FaultUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mitmdump]:
    labels = ("stream", "json", "keepalive", "promote", "repair", "asis", "norule")
    rules = FAULT_RULES
    proc = Mitmdump(tmp_path_factory.mktemp("mitm"), {label: fault.url for label in labels}, rules).start()
    yield proc
    proc.stop()
