"""Corpus-seeded mutants of LLM responses and flow files, for ``tests/test_fuzz_mutation.py``.

Seeds are real bodies, grouped by API: the streams and JSON bodies of ``../shared/corpus`` (every
API in it: those of registered dialects in full, a few of the others, which no dialect should
claim), both sides of every flow in ``recordings/``, and, for every registered dialect
(``dialects.names()``), bodies drawn from its generator in ``tests/responses.py`` and the streams
synthesized from them, so every dialect has material without the corpus too, and a dialect
registered later is fuzzed without a change here. A mutant's seed is taken from a group chosen
first, each group as likely as another: a dialect with few recordings is fuzzed as much as chat.

A mutant is a seed with one to three of these applied (``Mutator.mutate`` returns the bytes and
the names of the mutations, so a failure says how its input was made):

- ``flip``: one to eight bit flips
- ``cut``: the body cut at a random offset; ``drop``: a random range taken out
- ``splice``: the head of this body joined to the tail of another seed
- ``swap``: one JSON value (in a ``data:`` payload or a JSON body; the first payload half the
  time, where dialects are detected) replaced by ``-1``, ``true``, ``1e999``, ``"\\ud800"``,
  ``null``, ``[]``, ``{}``, a huge integer, a too-deep array, …; ``unkey``: one key removed
- ``eol``: line ends changed to CRLF, CR or a mix
- ``event``: an event duplicated, dropped or moved; ``[DONE]``, an error event, a comment, an empty
  ``data:`` line or a BOM inserted
- ``noise``: control characters, terminal escapes, bidi overrides or invalid UTF-8 inserted

Flow files get byte mutations, a swapped value in their tnetstring state, or a mutated body in
place of a response (``flow_mutant``).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corpus import CORPUS, recorded
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from mitmproxy import http
from mitmproxy.io import FlowReader, tnetstring
from responses import RESPONSES
from streamshim import dialects, synthesize
from streamshim.mitm.recording import flow_api, flow_sides

ROOT = Path(__file__).resolve().parents[1]
DEEP = "[" * 5000 + "]" * 5000  # deeper than Python's recursion limit
ALMOST_DEEP = "[" * 240 + "]" * 240  # within framing.MAX_JSON_DEPTH where it lands: parsed, then walked
HOSTILE_JSON = [
    "-1",
    "true",
    "false",
    "1e999",
    "-1e999",
    '"\\ud800"',
    '"\\udfff\\ud800"',
    "null",
    "[]",
    "{}",
    "0",
    '""',
    "1.5",
    '"x"',
    "123456789012345678901234567890",
    "9" * 5000,  # over Python's int digit limit
    "NaN",
    "-Infinity",
    "[-1]",
    '{"index": -1}',
    '[{"index": true, "delta": -1}]',
    '"\\u001b[2J\\u009b31m\\u202e"',
    DEEP,
    ALMOST_DEEP,
]
HOSTILE_STATE: list[Any] = [-1, True, None, [], {}, b"", "x", 2**70, 1e999, b"\xff\xfe", [b"x"]]
NOISE = [
    b"\x00",
    b"\x1b[2J",
    b"\x1b]0;title\x07",
    b"\xc2\x9b31m",  # C1 CSI in UTF-8
    b"\xe2\x80\xae",  # RIGHT-TO-LEFT OVERRIDE
    b"\xff\xfe",
    b"\xed\xa0\x80",  # an encoded surrogate: invalid UTF-8
    b"\r",
    b"\x7f",
    b"\xef\xbb\xbf",
]
EVENTS = [
    b"data: [DONE]\n\n",
    b"event: error\n",
    b'event: error\ndata: {"error": {"message": "overloaded"}}\n\n',
    b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "x"}}\n\n',
    b": keep-alive\n\n",
    b"data:\n\n",
    b"data: \n\n",
    b"retry: x\nid: \x00\n\n",
    b'data: {"choices": -1}\n\n',
]


FOREIGN = 8  # seeds of each corpus API that is no registered dialect's
DRAWN = 12  # responses drawn per dialect from its generator in tests/responses.py


@dataclass(frozen=True)
class Seeds:
    streams: dict[str, tuple[bytes, ...]]  # stream bodies, by API
    bodies: dict[str, tuple[bytes, ...]]  # JSON response bodies, by API
    requests: tuple[bytes, ...]  # request bodies (usage, n)
    flows: tuple[bytes, ...]  # flow files
    every: tuple[bytes, ...]  # every stream and body, whatever its API (for splices)


def _completions() -> list[tuple[str, dict[str, Any]]]:
    """A few hand-made responses (dialect, body) with everything at once: tool calls, n>1,
    logprobs, reasoning."""
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"c": 1}'}}
    lp = {"content": [{"token": "Hi", "logprob": -0.1, "top_logprobs": []}], "refusal": None}
    top = {"id": "x", "created": 1, "model": "m", "usage": {"prompt_tokens": 1, "completion_tokens": 2}}
    chat = {
        **top,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi", "reasoning_content": "think"},
                "logprobs": lp,
                "finish_reason": "stop",
            },
            {
                "index": 1,
                "message": {"role": "assistant", "content": None, "tool_calls": [call, call]},
                "finish_reason": "tool_calls",
            },
        ],
    }
    legacy = {
        **top,
        "object": "text_completion",
        "choices": [
            {
                "text": "Hello there",
                "index": 0,
                "logprobs": {"tokens": ["Hello", " there"], "token_logprobs": [-1, -2]},
                "finish_reason": "length",
            }
        ],
    }
    return [("chat", chat), ("completions", legacy)]


def _drawn(name: str) -> list[Any]:
    """``DRAWN`` valid responses of a dialect from its generator, the same on every run."""
    out: list[Any] = []

    @settings(
        max_examples=DRAWN,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def draw(data: st.DataObject) -> None:
        out.append(data.draw(RESPONSES[name]))

    draw()
    return out


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _corpus_apis() -> list[str]:
    if not (CORPUS / "INDEX.tsv").is_file():
        return []
    with (CORPUS / "INDEX.tsv").open(encoding="utf-8") as fh:
        return sorted({row["api"] for row in csv.DictReader(fh, delimiter="\t")})


@functools.cache
def seeds() -> Seeds:
    names = dialects.names()
    streams: dict[str, list[bytes]] = {name: [] for name in names}
    bodies: dict[str, list[bytes]] = {name: [] for name in names}
    requests: list[bytes] = []
    for api in _corpus_apis():
        # a registered dialect's recordings in full; a few of another API's, which no dialect may
        # claim wrongly
        got = recorded(api)
        for kind, mode in ((streams, "stream"), (bodies, "json")):
            items = [r.body for r in got if r.mode == mode]
            kind.setdefault(api, []).extend(items if api in names else items[:FOREIGN])
        requests += [r.request.encode("utf-8") for r in got if r.request and api in names]
    flows: list[bytes] = []
    for path in sorted((ROOT / "recordings").glob("*.flow")):
        data = path.read_bytes()
        flows.append(data)
        for f in FlowReader(io.BytesIO(data)).stream():
            assert isinstance(f, http.HTTPFlow)
            api = flow_api(f) or "recordings"
            for side in flow_sides(f).values():
                body = side.body
                if body.lstrip().startswith(b"{"):
                    bodies.setdefault(api, []).append(body)
                elif body.startswith((b"data:", b"event:")):
                    streams.setdefault(api, []).append(body)
                requests.append(side.request)
    for name, resp in [*((n, r) for n in names for r in _drawn(n)), *_completions()]:
        bodies[name].append(json.dumps(resp).encode())
        streams[name].append(synthesize(resp, name, usage=True, chunk_chars=3))
    by_stream = {k: tuple(v) for k, v in sorted(streams.items()) if v}
    bodies = {k: [b for b in v if _is_json(b)] for k, v in bodies.items()}  # not a gzipped one
    by_body = {k: tuple(v) for k, v in sorted(bodies.items()) if v}
    every = tuple(b for group in (*by_stream.values(), *by_body.values()) for b in group)
    return Seeds(by_stream, by_body, tuple(r for r in requests if r), tuple(flows), every)


# -- the mutator -----------------------------------------------------------------------------------

_DATA_LINE = re.compile(rb"^data: ?(.*?)\r?$", re.M)
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_MARK = "\x00streamshim-fuzz-mark\x00"


class Mutator:
    def __init__(self, rng: random.Random, seeds: Seeds) -> None:
        self.rng = rng
        self.seeds = seeds
        self.ops: dict[str, Callable[[bytes], bytes]] = {
            "flip": self.flip,
            "cut": self.cut,
            "drop": self.drop,
            "splice": self.splice,
            "swap": self.swap,
            "unkey": self.unkey,
            "eol": self.eol,
            "event": self.event,
            "noise": self.noise,
        }
        # structural mutations more often than blind ones: they reach past the JSON parser
        self.weights = [2, 2, 1, 2, 6, 2, 1, 2, 1]
        self.made: list[tuple[str, bytes]] = []  # the mutants of the current case: how, bytes
        self.notes: list[str] = []  # and how the entry point was called

    def new_case(self) -> None:
        self.made.clear()
        self.notes.clear()

    def describe(self) -> str:
        """The current case: how the entry point was called, each input and how it was made."""
        lines = [f"  called with {', '.join(self.notes)}"] if self.notes else []
        for how, data in self.made:
            lines.append(f"  input ({how}): {data[:600]!r}{'…' if len(data) > 600 else ''}")
        return "\n".join(lines)

    def mutate(self, data: bytes) -> tuple[bytes, list[str]]:
        names = self.rng.choices(list(self.ops), self.weights, k=self.rng.choice((1, 1, 2, 3)))
        for name in names:
            data = self.ops[name](data)
        self.made.append(("+".join(names), data))
        return data, names

    def _seed(self, groups: dict[str, tuple[bytes, ...]]) -> bytes:
        """A seed of a group (an API) chosen first: each API as likely as another."""
        return self.rng.choice(groups[self.rng.choice(list(groups))])

    def stream(self) -> tuple[bytes, list[str]]:
        return self.mutate(self._seed(self.seeds.streams))

    def body(self) -> tuple[bytes, list[str]]:
        return self.mutate(self._seed(self.seeds.bodies))

    def seed_body(self) -> bytes:
        """An unmutated JSON body."""
        return self._seed(self.seeds.bodies)

    def any_body(self) -> tuple[bytes, list[str]]:
        return self.stream() if self.rng.random() < 0.6 else self.body()

    # -- blind ------------------------------------------------------------------------------------
    def flip(self, data: bytes) -> bytes:
        if not data:
            return data
        out = bytearray(data)
        for _ in range(self.rng.randint(1, 8)):
            i = self.rng.randrange(len(out))
            out[i] ^= 1 << self.rng.randrange(8)
        return bytes(out)

    def cut(self, data: bytes) -> bytes:
        return data[: self.rng.randint(0, len(data))]

    def drop(self, data: bytes) -> bytes:
        a = self.rng.randint(0, len(data))
        b = self.rng.randint(a, min(len(data), a + self.rng.choice((1, 8, 64, 4096))))
        return data[:a] + data[b:]

    def splice(self, data: bytes) -> bytes:
        other = self.rng.choice(self.seeds.every)
        return data[: self.rng.randint(0, len(data))] + other[self.rng.randint(0, len(other)) :]

    def eol(self, data: bytes) -> bytes:
        new = self.rng.choice((b"\r\n", b"\r", b"\n\r"))
        if self.rng.random() < 0.5:
            return data.replace(b"\n", new)
        a = self.rng.randint(0, len(data))
        return data[:a] + data[a:].replace(b"\n", new)

    def noise(self, data: bytes) -> bytes:
        i = self.rng.randint(0, len(data))
        return data[:i] + self.rng.choice(NOISE) * self.rng.choice((1, 1, 3)) + data[i:]

    # -- events -----------------------------------------------------------------------------------
    def _events(self, data: bytes) -> list[bytes]:
        out, pos = [], 0
        for m in _EVENT_END.finditer(data):
            out.append(data[pos : m.end()])
            pos = m.end()
        if pos < len(data):
            out.append(data[pos:])
        return out

    def event(self, data: bytes) -> bytes:
        events = self._events(data)
        rng = self.rng
        op = rng.choice(("dup", "drop", "move", "insert", "insert", "bom"))
        if op == "bom":
            return b"\xef\xbb\xbf" + data
        if op == "insert" or not events:
            events.insert(rng.randint(0, len(events)), rng.choice(EVENTS))
        elif op == "dup":
            i = rng.randrange(len(events))
            events.insert(i, events[i])
        elif op == "drop":
            del events[rng.randrange(len(events))]
        else:
            ev = events.pop(rng.randrange(len(events)))
            events.insert(rng.randint(0, len(events)), ev)
        return b"".join(events)

    # -- JSON values --------------------------------------------------------------------------------
    def _payload_span(self, data: bytes) -> tuple[int, int] | None:
        """Where one JSON text is: a ``data:`` payload (the first one half the time) or the body."""
        lines = [m for m in _DATA_LINE.finditer(data) if m.group(1)[:1] in (b"{", b"[")]
        if not lines:
            return (0, len(data)) if data.lstrip()[:1] in (b"{", b"[") else None
        m = lines[0] if self.rng.random() < 0.5 else self.rng.choice(lines)
        return m.start(1), m.end(1)

    def _edit_json(self, data: bytes, edit: Callable[[Any], str | None]) -> bytes:
        span = self._payload_span(data)
        if span is None:
            return self.noise(data)
        a, b = span
        try:
            obj = json.loads(data[a:b])
        except (ValueError, RecursionError):
            return self.flip(data)
        text = edit(obj)
        if text is None:
            return data
        return data[:a] + text.encode("utf-8", "surrogatepass") + data[b:]

    def swap(self, data: bytes) -> bytes:
        def edit(obj: Any) -> str:
            paths = list(_paths(obj, ()))
            target = self.rng.choice(paths)
            new = _set(obj, target, _MARK)
            text = json.dumps(new, ensure_ascii=self.rng.random() < 0.5)
            return text.replace(json.dumps(_MARK), self.rng.choice(HOSTILE_JSON), 1)

        return self._edit_json(data, edit)

    def unkey(self, data: bytes) -> bytes:
        def edit(obj: Any) -> str | None:
            keyed = [p for p in _paths(obj, ()) if p and isinstance(p[-1], str)]
            if not keyed:
                return None
            path = self.rng.choice(keyed)
            parent = _get(obj, path[:-1])
            del parent[path[-1]]
            return json.dumps(obj, ensure_ascii=False)

        return self._edit_json(data, edit)

    # -- flow files ---------------------------------------------------------------------------------
    def flow_file(self) -> tuple[bytes, list[str]]:
        """A mutated flow file: its bytes, a value of its state, or one of its bodies."""
        data = self.rng.choice(self.seeds.flows)
        how = self.rng.choice(("bytes", "state", "state", "body", "body"))
        if how == "bytes":
            out, names = self.mutate(data)
            return out, ["flow-bytes", *names]
        made = self._flow_file(data, how)
        self.made.append(("+".join(made[1]), made[0]))
        return made

    def _flow_file(self, data: bytes, how: str) -> tuple[bytes, list[str]]:
        state = tnetstring.loads(data)
        if how == "state":
            paths = list(_paths(state, ()))
            path = self.rng.choice(paths)
            new = _set(state, path, self.rng.choice(HOSTILE_STATE))
            return tnetstring.dumps(new), ["flow-state:" + ".".join(map(str, path))]
        # a response body (or the one the client got) replaced by a mutant
        bodies = [p for p in _paths(state, ()) if p and p[-1] in ("content", "body", "upstream_response")]
        bodies = [p for p in bodies if isinstance(_get(state, p), bytes)]
        if not bodies:
            return data, ["flow-unchanged"]
        path = self.rng.choice(bodies)
        body, names = self.any_body()
        return tnetstring.dumps(_set(state, path, body)), ["flow-body:" + ".".join(map(str, path)), *names]


def _paths(obj: Any, path: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*path, i))


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        obj = obj[p]
    return obj


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _get(obj, path[:-1])[path[-1]] = value
    return obj
