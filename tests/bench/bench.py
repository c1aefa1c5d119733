"""What streamshim costs, as ratios against baselines measured in the same run (loopback).

    .venv/bin/python tests/bench/bench.py            # the README table (a few minutes)
    .venv/bin/python tests/bench/bench.py --quick    # smaller sizes, for a smoke run
    .venv/bin/python tests/bench/bench.py --profile  # and where the passthrough time goes (py-spy)

Prints a markdown table: scenario, baseline, streamshim, ratio, target. A benchmark, not a test:
nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT / "addons"), str(ROOT / "tests")]

from fault_upstream import wait_port  # noqa: E402
from proxy import free_ports  # noqa: E402
from upstream import sse_body  # noqa: E402

MITMDUMP = Path(sys.executable).with_name("mitmdump")
RULES = """\
rules:
  - name: bench-stream
    listen_port: {stream}
    upstream: stream
  - name: bench-json
    listen_port: {json}
    upstream: json
  - name: bench-repair
    listen_port: {repair}
    upstream: as-requested
    repair: true
  - name: bench-as-requested
    upstream: as-requested
"""


# -- processes ------------------------------------------------------------------------------------


@contextmanager
def process(args: list[str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as fh:
        proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT)
        try:
            wait_port("127.0.0.1", port, 30)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def stack(tmp: Path) -> Iterator[dict[str, int]]:
    """The upstream and four proxies in front of it; returns the port of each."""
    up, bare, stream_only, shim_asis, shim_stream, shim_json, shim_repair = free_ports(7)
    (tmp / "rules.yaml").write_text(RULES.format(stream=shim_stream, json=shim_json, repair=shim_repair))
    mitm = [str(MITMDUMP), "-q", "--listen-host", "127.0.0.1", "--set", "connection_strategy=lazy"]
    target = f"reverse:http://127.0.0.1:{up}"
    with (
        process([sys.executable, str(HERE / "upstream.py"), str(up)], up, tmp / "up.log"),
        process([*mitm, "--mode", f"{target}@{bare}"], bare, tmp / "bare.log"),
        process(
            [*mitm, "-s", str(HERE / "stream_only.py"), "--mode", f"{target}@{stream_only}"],
            stream_only,
            tmp / "stream_only.log",
        ) as stream_only_proc,
        process(
            [
                *mitm,
                "-s",
                str(ROOT / "addons" / "streamshim.py"),
                "--set",
                f"streamshim_rules={tmp / 'rules.yaml'}",
                "--mode",
                f"{target}@{shim_asis}",
                "--mode",
                f"{target}@{shim_stream}",
                "--mode",
                f"{target}@{shim_json}",
                "--mode",
                f"{target}@{shim_repair}",
            ],
            shim_asis,
            tmp / "shim.log",
        ) as shim_proc,
    ):
        for port in (shim_stream, shim_json, shim_repair):
            wait_port("127.0.0.1", port)
        yield {
            "direct": up,
            "bare": bare,
            "stream_only": stream_only,
            "shim": shim_asis,
            "shim_stream": shim_stream,
            "shim_json": shim_json,
            "shim_repair": shim_repair,
            "pid:stream_only": stream_only_proc.pid,
            "pid:shim": shim_proc.pid,
        }


# -- profile: py-spy attached to a proxy while a scenario runs ---------------------------------------


@contextmanager
def profiled(pid: int, out: Path) -> Iterator[None]:
    """Sample ``pid`` with py-spy (raw collapsed stacks) for the duration of the block."""
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    spy = subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--rate", "500", "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)


def where_time_goes(raw: Path, top: int = 6) -> list[str]:
    """Share of the samples per leaf function (self time), and inside streamshim's code at all."""
    self_time: dict[str, int] = {}
    inside = total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        inside += n if any("streamshim" in f and "bench" not in f for f in frames[1:]) else 0
        leaf = frames[-1]
        self_time[leaf] = self_time.get(leaf, 0) + n
    if not total:
        return ["no samples"]
    ranked = sorted(self_time.items(), key=lambda kv: -kv[1])[:top]
    return [f"{inside / total:.0%} of samples inside streamshim's code"] + [
        f"{n / total:5.1%}  {leaf}" for leaf, n in ranked
    ]


# -- a raw HTTP/1.1 client: one request, timestamps of what arrives ---------------------------------


def dechunk(raw: bytes) -> bytes:
    out, pos = [], 0
    while True:
        end = raw.index(b"\r\n", pos)
        size = int(raw[pos:end], 16)
        if size == 0:
            return b"".join(out)
        out.append(raw[end + 2 : end + 2 + size])
        pos = end + 4 + size


async def request(port: int, model: str, stream: bool) -> tuple[float, float, list[float], bytes]:
    """(time to first body byte, time to last byte, arrival time of each event end, body)."""
    body = json.dumps({"model": model, "stream": stream, "messages": []}).encode()
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    raw = bytearray()
    head_end = -1
    first = 0.0
    arrivals: list[float] = []
    while True:
        data = await reader.read(65536)
        if not data:
            break
        now = time.perf_counter()
        raw += data
        if head_end < 0:
            head_end = raw.find(b"\r\n\r\n")
            if head_end >= 0 and len(raw) > head_end + 4:
                first = now
        elif not first:
            first = now
        arrivals.extend([now] * data.count(b"\n\n"))
    last = time.perf_counter()
    writer.close()
    head, payload = bytes(raw[:head_end]), bytes(raw[head_end + 4 :])
    if b"chunked" in head.lower():
        payload = dechunk(payload)
    return first - start, last - start, arrivals, payload


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def best(fn: Callable[[], float], repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def med(fn: Callable[[], float], repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


# -- scenarios --------------------------------------------------------------------------------------


def rounds(names: Sequence[str], count: int, once: Callable[[str], object]) -> dict[str, list[Any]]:
    """``once(name)`` ``count`` times for each name, in rounds (each round in a rotated order)."""
    out: dict[str, list[Any]] = {name: [] for name in names}
    for i in range(count):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            out[name].append(once(name))
    return out


def passthrough(ports: dict[str, int], n: int, repeat: int) -> list[list[str]]:
    rows = []
    eps: dict[str, float] = {}
    ttfb: dict[str, float] = {}
    expected = sse_body(n)
    names = ("direct", "bare", "stream_only", "shim", "shim_repair")
    # in rounds, one request to each proxy per round, so that what drifts during the run (CPU
    # clock, the other process on the two cores) falls on every proxy alike
    fast = rounds(names, 2 * repeat + 1, lambda name: run(request(ports[name], f"sse:{n}", True)))
    for name, results in fast.items():
        assert all(r[3] == expected for r in results), f"{name}: body differs from the upstream's"  # type: ignore[index]
        eps[name] = statistics.median((n + 3) / r[1] for r in results)  # type: ignore[index]
        ttfb[name] = statistics.median(r[0] for r in results)  # type: ignore[index]
    rows.append(
        [
            f"1a. passthrough, {n} chunks as fast as possible: events/s",
            f"stream-only mitmdump {eps['stream_only']:,.0f} (direct {eps['direct']:,.0f}; "
            f"bare mitmdump {eps['bare']:,.0f}, buffered)",
            f"{eps['shim']:,.0f}",
            f"{eps['shim'] / eps['stream_only']:.2f}×",
            "≥ 0.95×",
        ]
    )
    rows.append(
        [
            f"1c. repaired passthrough (`repair: true`), {n} chunks as fast as possible: events/s",
            f"stream-only mitmdump {eps['stream_only']:,.0f}",
            f"{eps['shim_repair']:,.0f}",
            f"{eps['shim_repair'] / eps['stream_only']:.2f}×",
            "report",
        ]
    )
    paced = rounds(names, max(5, repeat), lambda name: run(request(ports[name], "sse:25:20", True)))
    t = {name: statistics.median(r[0] for r in rs) * 1000 for name, rs in paced.items()}  # type: ignore[index]
    rows.append(
        [
            "1b. passthrough, paced 50 chunks/s: time to first byte (ms)",
            f"stream-only {t['stream_only']:.2f} (direct {t['direct']:.2f}; bare mitmdump {t['bare']:.0f}: "
            f"waits for the whole stream)",
            f"{t['shim']:.2f}",
            f"{t['shim'] - t['stream_only']:+.2f} ms",
            "≤ +1 ms",
        ]
    )
    rows.append(
        [
            "1d. repaired passthrough, paced 50 chunks/s: time to first byte (ms)",
            f"stream-only {t['stream_only']:.2f}",
            f"{t['shim_repair']:.2f}",
            f"{t['shim_repair'] - t['stream_only']:+.2f} ms",
            "report",
        ]
    )
    return rows


def chat_stream(n: int, tools: bool) -> bytes:
    from streamshim.dialects.openai import encode_chunks as encode_data

    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    chunks = [
        {
            **base,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
        }
    ]
    for i in range(n):
        if tools:
            call = {"index": 0, "function": {"arguments": f'"k{i}": {i}, '}}
            if i == 0:
                call = {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "f", "arguments": "{"},
                }
            delta = {"tool_calls": [call]}
        else:
            delta = {"content": "tok "}
        chunks.append({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return encode_data(chunks)


def library(n_content: int, n_tools: int, repeat: int) -> list[list[str]]:
    from openai._models import construct_type
    from openai.lib.streaming.chat import ChatCompletionStreamState
    from openai.types.chat import ChatCompletionChunk
    from streamshim import aggregate

    def ours(body: bytes) -> float:
        t = time.perf_counter()
        aggregate(body, "chat")
        return time.perf_counter() - t

    def sdk(body: bytes) -> float:
        t = time.perf_counter()
        state = ChatCompletionStreamState()
        for line in body.split(b"\n"):
            if line.startswith(b"data: {"):
                state.handle_chunk(construct_type(type_=ChatCompletionChunk, value=json.loads(line[6:])))
        state.get_final_completion()
        return time.perf_counter() - t

    def floor(body: bytes) -> float:
        t = time.perf_counter()
        parts = []
        for line in body.split(b"\n"):
            if line.startswith(b"data: {"):
                delta = json.loads(line[6:])["choices"][0]["delta"]
                calls = delta.get("tool_calls")  # the text the stream carries: content or arguments
                parts.append(calls[0]["function"]["arguments"] if calls else delta.get("content") or "")
        "".join(parts)
        return time.perf_counter() - t

    rows = []
    for label, n, tools in (("content", n_content, False), ("tool-call", n_tools, True)):
        body = chat_stream(n, tools)
        o, s, f = (
            best(lambda b=body: ours(b), repeat),
            best(lambda b=body: sdk(b), 2),
            best(lambda b=body: floor(b), repeat),
        )
        rows.append(
            [
                f"2. aggregate() a {n:,}-chunk {label} stream: chunks/s",
                f"SDK {n / s:,.0f}; floor (json.loads + join the text) {n / f:,.0f}",
                f"{n / o:,.0f}",
                f"{s / o:.1f}× the SDK; {o / f:.2f}× the floor's time",
                "≥ 10× SDK; ≤ 1.5× floor",
            ]
        )
    return rows


def memory(n: int) -> list[list[str]]:
    with tempfile.NamedTemporaryFile(suffix=".sse", delete=False) as fh:
        fh.write(chat_stream(n, False))
        path = fh.name
    code = (
        f"import sys, tracemalloc; sys.path.insert(0, {str(ROOT / 'addons')!r})\n"
        f"body = open({path!r}, 'rb').read()\n"
        "from streamshim import aggregate\n"
        "tracemalloc.start()\n"
        "out = aggregate(body, 'chat')\n"
        "print(tracemalloc.get_traced_memory()[1], len(body))"
    )
    grown, size = map(int, subprocess.check_output([sys.executable, "-c", code]).split())
    os.unlink(path)
    return [
        [
            f"2m. peak memory allocated while aggregating {n:,} chunks",
            f"SSE body {size / 1e6:.1f} MB",
            f"{grown / 1e6:.1f} MB",
            f"{grown / size:.2f}× the body",
            "report",
        ]
    ]


def end_to_end(ports: dict[str, int], n: int, repeat: int) -> list[list[str]]:
    def total(port: int, model: str, stream: bool) -> float:
        return run(request(port, model, stream))[1]  # type: ignore[index]

    from streamshim import aggregate
    from upstream import sse_body as body_of

    agg_base = med(lambda: total(ports["bare"], f"sse:{n}", False), repeat)
    agg = med(lambda: total(ports["shim_stream"], f"sse:{n}", False), repeat)
    syn_base = med(lambda: total(ports["bare"], f"json:{n}", True), repeat)
    syn = med(lambda: total(ports["shim_json"], f"json:{n}", True), repeat)
    body = body_of(n)

    def parse() -> float:
        t = time.perf_counter()
        aggregate(body, "chat")
        return time.perf_counter() - t

    lib = best(parse, repeat)  # the aggregation itself, in this process
    added = agg - agg_base
    return [
        [
            f"3. aggregate mode ({n:,} chunks → JSON): total time (ms)",
            f"bare mitmdump buffering the SSE {agg_base * 1000:.0f}",
            f"{agg * 1000:.0f}",
            f"{agg / agg_base:.2f}×",
            "report",
        ],
        [
            f"3b. aggregate mode: time added to buffering, against the library's own aggregate() of "
            f"the same body ({lib * 1000:.0f} ms)",
            f"{lib * 1000:.0f} ms (aggregate() in one process)",
            f"{added * 1000:.0f} ms added",
            f"{added / lib:.2f}× the library",
            "≤ 1.5× the library",
        ],
        [
            f"4. synthesize mode (JSON of {n:,} tokens → SSE): time to last byte (ms)",
            f"bare mitmdump returning the JSON {syn_base * 1000:.0f}",
            f"{syn * 1000:.0f}",
            f"{syn / syn_base:.2f}×",
            "report",
        ],
    ]


def concurrency(ports: dict[str, int], streams: int, chunks: int, runs: int = 1) -> list[list[str]]:
    expected = sse_body(chunks)
    pace = 0.02

    async def many(port: int) -> tuple[list[float], int]:
        results = await asyncio.gather(
            *(request(port, f"sse:{chunks}:{pace * 1000:.0f}", True) for _ in range(streams))
        )
        late: list[float] = []
        bad = 0
        for _, _, arrivals, body in results:
            if body != expected:
                bad += 1
            # token i is due pace*i after token 0; lateness is measured against the stream's own
            # best case (its earliest token relative to that schedule), so it is >= 0
            tokens = arrivals[1 : chunks + 1]
            if tokens:
                offset = min(a - pace * i for i, a in enumerate(tokens))
                late.extend(a - pace * i - offset for i, a in enumerate(tokens))
        return late, bad

    def pct(values: list[float], p: float) -> float:
        return sorted(values)[min(len(values) - 1, int(p * len(values)))] * 1000

    # the proxies take turns, so that the machine's drift hits both alike
    base: list[dict[float, float]] = []
    shim: list[dict[float, float]] = []
    base_bad = shim_bad = 0
    for _ in range(runs):
        late, bad = run(many(ports["stream_only"]))  # type: ignore[misc]
        base.append({p: pct(late, p) for p in (0.5, 0.99)})
        base_bad += bad
        late, bad = run(many(ports["shim"]))  # type: ignore[misc]
        shim.append({p: pct(late, p) for p in (0.5, 0.99)})
        shim_bad += bad

    rows = []
    for p in (0.5, 0.99):
        b = statistics.median(r[p] for r in base)
        m = statistics.median(r[p] for r in shim)
        added = sorted(s[p] - r[p] for s, r in zip(shim, base, strict=True))
        spread = (
            f" (median of {runs} alternating runs; added per run {added[0]:+.1f} … {added[-1]:+.1f} ms)"
            if runs > 1
            else ""
        )
        rows.append(
            [
                f"5. {streams} concurrent paced streams × {chunks} chunks: p{p * 100:g} chunk lateness (ms)",
                f"stream-only mitmdump {b:.1f}",
                f"{m:.1f}",
                f"{m - b:+.1f} ms added{spread}",
                "p99 added ≤ 20 ms",
            ]
        )
    rows.append(
        [
            "5. streams whose bytes differ from the upstream's",
            f"{base_bad} of {streams * runs}",
            f"{shim_bad} of {streams * runs}",
            "",
            "0",
        ]
    )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="after the table: where the passthrough time goes in each proxy (py-spy, pip install py-spy)",
    )
    ap.add_argument(
        "--only",
        default="library,memory,passthrough,end_to_end,concurrency",
        help="comma-separated scenarios to run (default: all of them)",
    )
    ap.add_argument(
        "--runs",
        type=int,
        default=1,
        help="run the concurrency scenario this many times, alternating the proxies, and report the "
        "spread (the 2-core machine is noisy)",
    )
    args = ap.parse_args()
    q = args.quick
    only = set(args.only.split(","))
    repeat = 3 if q else 5
    rows: list[list[str]] = []
    if "library" in only:
        rows += library(2_000 if q else 20_000, 500 if q else 5_000, repeat)
    if "memory" in only:
        rows += memory(10_000 if q else 100_000)
    with tempfile.TemporaryDirectory() as tmp, stack(Path(tmp)) as ports:
        if "passthrough" in only:
            rows += passthrough(ports, 5_000 if q else 50_000, repeat)
        if "end_to_end" in only:
            rows += end_to_end(ports, 2_000 if q else 20_000, repeat)
        if "concurrency" in only:
            rows += concurrency(ports, 20 if q else 200, 50 if q else 500, args.runs)
        profiles = profile(ports, 5_000 if q else 50_000, Path(tmp)) if args.profile else {}
    import mitmproxy.version

    print(
        f"streamshim benchmark — Python {sys.version.split()[0]}, mitmproxy {mitmproxy.version.VERSION}, "
        f"{os.cpu_count()} cores\n"
    )
    print("| scenario | baseline | streamshim | ratio | target |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for name, lines in profiles.items():
        print(f"\nprofile of the {name} mitmdump during 1a (py-spy, self time per function):")
        print("\n".join(f"    {line}" for line in lines))
    return 0


def profile(ports: dict[str, int], n: int, tmp: Path) -> dict[str, list[str]]:
    out = {}
    for name in ("stream_only", "shim"):
        raw = tmp / f"{name}.prof"
        with profiled(ports[f"pid:{name}"], raw):
            for _ in range(5):
                run(request(ports[name], f"sse:{n}", True))
        out[name] = where_time_goes(raw)
    return out


if __name__ == "__main__":
    sys.exit(main())
