"""The contract every registered dialect passes, present and future (parametrised over the
registry). A new dialect is one module plus one line in ``dialects.DIALECTS`` plus its strategy
in ``tests/responses.py``; these properties then hold for it or the suite fails:

- ``aggregate(synthesize(x)) == x`` on generated responses;
- arbitrary bytes, in arbitrary splits, give only the core's typed errors;
- the conformance checker finds no error in what ``synthesize`` produced;
- a cut synthesized stream is an error, or an answer that means the same: never a wrong success
  (given what the request asked for: a stream of fewer choices than ``n`` is cut);
- the view renders it;
- ``meaning`` of the stream equals ``meaning`` of the JSON body.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from responses import RESPONSES
from streamshim import aggregate, dialects, synthesize, view
from streamshim.check import check_stream
from streamshim.errors import BadResponse, StreamError
from streamshim.meaning import compare, meaning

NAMES = dialects.names()
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
STREAM = [("content-type", "text/event-stream")]
JSON = [("content-type", "application/json")]


def test_every_dialect_has_generated_responses() -> None:
    assert set(RESPONSES) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data(), chunk_chars=st.integers(1, 12))
def test_round_trip(name: str, data: st.DataObject, chunk_chars: int) -> None:
    resp = data.draw(RESPONSES[name])
    body = synthesize(resp, name, usage=True, chunk_chars=chunk_chars)
    assert aggregate(body, name) == resp
    assert aggregate(body) == resp  # detected from the stream itself


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(body=st.binary(max_size=400), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_arbitrary_bytes_give_only_typed_errors(name: str, body: bytes, cuts: list[int]) -> None:
    agg = dialects.get(name).aggregator()
    bounds = [0, *sorted(c for c in cuts if c < len(body)), len(body)]
    for a, b in itertools.pairwise(bounds):
        agg.feed(body[a:b])
    with contextlib.suppress(StreamError):
        agg.finish()


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(value=JSON_VALUES, usage=st.booleans())
def test_arbitrary_json_to_synthesize_gives_only_typed_errors(name: str, value: Any, usage: bool) -> None:
    with contextlib.suppress(BadResponse):
        synthesize(value, name, usage=usage)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_the_checker_finds_no_error_in_a_synthesized_stream(name: str, data: st.DataObject) -> None:
    resp = data.draw(RESPONSES[name])
    report = check_stream(synthesize(resp, name), name)
    assert report.errors == [], [f.line() for f in report.errors]


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_a_cut_stream_is_an_error_or_means_the_same(name: str, data: st.DataObject) -> None:
    resp = data.draw(RESPONSES[name])
    body = synthesize(resp, name, usage=True)
    cut = data.draw(st.integers(0, len(body) - 1))
    want = _meaning_without_usage(meaning(200, JSON, json.dumps(resp).encode(), name))
    try:
        got = aggregate(body[:cut], name, n=_outputs(name, resp))
    except StreamError:
        return
    assert _meaning_without_usage(meaning(200, JSON, json.dumps(got).encode(), name)) == want


@pytest.mark.parametrize("name", NAMES)
def test_cutting_early_is_always_an_error(name: str) -> None:
    """Not vacuous: the first half of a synthesized stream is never a success."""

    @SETTINGS
    @given(resp=RESPONSES[name])
    def run(resp: dict[str, Any]) -> None:
        body = synthesize(resp, name)
        with pytest.raises(StreamError):
            aggregate(body[: len(body) // 2], name, n=_outputs(name, resp))

    run()


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_the_view_renders_stream_and_json(name: str, data: st.DataObject) -> None:
    resp = data.draw(RESPONSES[name])
    stream_text = view.render(synthesize(resp, name), name)
    assert stream_text.startswith(f"{view.TITLE} · {name} · ")
    json_text = view.render(json.dumps(resp).encode(), name)
    assert json_text.startswith(f"LLM response · {name} · JSON")


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_meaning_of_the_stream_equals_meaning_of_the_json(name: str, data: st.DataObject) -> None:
    resp = data.draw(RESPONSES[name])
    streamed = meaning(200, STREAM, synthesize(resp, name, usage=True), name)
    plain = meaning(200, JSON, json.dumps(resp).encode(), name)
    assert (streamed["shape"], plain["shape"]) == ("sse", "json")
    diffs, _ = compare(streamed, plain)
    assert diffs == []


def _meaning_without_usage(m: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in m.items() if k not in ("usage", "shape")}


def _outputs(name: str, resp: dict[str, Any]) -> int:
    """How many outputs the request asked for (OpenAI's ``n``): as many as the answer has."""
    return len(dialects.get(name).meaning(resp).outputs)
