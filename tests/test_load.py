"""Load (slow tier): many concurrent streams through one mitmdump with the addon. Every client
gets exactly the upstream's bytes (passthrough) or the aggregate of them (aggregate mode); aborted
streams leave no per-flow state behind and no unbounded memory growth."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_upstream import wait_port
from proxy import Mitmdump, free_port, stop_process

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))
from bench import request
from upstream import sse_body

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

RULES = """\
rules:
  - name: load-stream
    listen_port: {stream}
    upstream: stream
  - name: load-as-requested
    upstream: as-requested
"""


@pytest.fixture(scope="module")
def bench_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = (tmp_path_factory.mktemp("up") / "up.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "bench" / "upstream.py"), str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_port("127.0.0.1", port)
    yield f"http://127.0.0.1:{port}"
    stop_process(proc)
    log.close()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_200_concurrent_streams_exact_bytes_and_aggregates(bench_upstream: str, tmp_path: Path) -> None:
    proxy = Mitmdump(tmp_path, {"asis": bench_upstream, "stream": bench_upstream}, RULES).start()
    n = 2000
    try:

        async def main() -> tuple[list[bytes], list[bytes]]:
            live = [request(proxy.ports["asis"], f"sse:{n}", True) for _ in range(200)]
            agg = [request(proxy.ports["stream"], f"sse:{n}", False) for _ in range(200)]
            results = await asyncio.gather(*live, *agg)
            bodies = [r[3] for r in results]
            return bodies[:200], bodies[200:]

        streamed, aggregated = asyncio.run(main())
    finally:
        proxy.stop()
    expected = sse_body(n)
    assert sum(b == expected for b in streamed) == 200
    contents = [json.loads(b)["choices"][0]["message"]["content"] for b in aggregated]
    assert contents == ["tok " * n] * 200
    assert "streamshim: 0 live stream(s) at shutdown" in proxy.log()


def test_10000_aborted_streams_leave_nothing_behind(bench_upstream: str, tmp_path: Path) -> None:
    proxy = Mitmdump(tmp_path, {"asis": bench_upstream, "stream": bench_upstream}, RULES).start()
    assert proxy.proc is not None
    port = proxy.ports["asis"]

    async def abort_one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = b'{"model": "sse:100:20", "stream": true, "messages": []}'
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        await reader.readuntil(b"data: ")  # the stream has started: now the client goes away
        writer.transport.abort()

    async def batches(total: int) -> None:
        for _ in range(total // 100):
            await asyncio.gather(*(abort_one() for _ in range(100)))

    try:
        asyncio.run(batches(1000))  # warm-up: allocator pools, imports, caches
        before = rss_kb(proxy.proc.pid)
        asyncio.run(batches(10_000))
        asyncio.run(asyncio.sleep(3))  # the upstream's paced streams run out
        after = rss_kb(proxy.proc.pid)
    finally:
        proxy.stop()
    assert "streamshim: 0 live stream(s) at shutdown" in proxy.log()
    # 10,000 flows of ~2 KB each would be ~20 MB if any were kept
    assert after - before < 15_000, f"RSS grew {after - before} kB over 10,000 aborted streams"


def test_100_mb_stream_both_ways(bench_upstream: str, tmp_path: Path) -> None:
    n = 600_000  # ~100 MB of SSE
    proxy = Mitmdump(tmp_path, {"asis": bench_upstream, "stream": bench_upstream}, RULES).start()
    try:
        _, _, _, live = asyncio.run(request(proxy.ports["asis"], f"sse:{n}", True))
        _, _, _, agg = asyncio.run(request(proxy.ports["stream"], f"sse:{n}", False))
    finally:
        proxy.stop()
    assert len(live) > 100_000_000 and live == sse_body(n)
    assert json.loads(agg)["choices"][0]["message"]["content"] == "tok " * n
