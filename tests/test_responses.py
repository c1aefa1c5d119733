"""The Responses API dialect (``/v1/responses``) in the core: aggregation of real and broken
shapes (llama-server's, the Codex backend's, GitHub Copilot's), the synthesized grammar, meaning,
the judgement's markers, the request switches and the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fault_upstream import responses_events, responses_json, responses_scenario, responses_sse
from streamshim import aggregate, aggregate_with_problems, dialects, synthesize, view
from streamshim.check import check_stream
from streamshim.dialects.base import Asked
from streamshim.errors import BadResponse, TruncatedStream, UpstreamErrorEvent
from streamshim.meaning import compare, meaning
from streamshim.passthrough import judge
from test_cli import run as cli

R = dialects.get("responses")
TEXT = "Hello, world!"
Events = list[tuple[str, dict[str, Any]]]


def body_of(name: str) -> bytes:
    found = responses_scenario(name)
    assert isinstance(found, list)
    return responses_sse(found)


def llama_server_shape(events: Events) -> Events:
    """What llama.cpp's llama-server streams: no sequence_number, output_index or content_index,
    response.created without output, timings beside the terminal's response, no completed_at."""
    out = []
    for name, p in events:
        p = {k: v for k, v in p.items() if k not in ("sequence_number", "output_index", "content_index")}
        if name in ("response.created", "response.in_progress"):
            p["response"] = {k: p["response"][k] for k in ("id", "object", "status")}
        if name == "response.completed":
            p["response"] = {k: v for k, v in p["response"].items() if k != "completed_at"}
            p["timings"] = {"predicted_n": 6}
        out.append((name, p))
    return out


# -- aggregation ------------------------------------------------------------------------------


def test_the_body_is_the_terminal_response() -> None:
    assert aggregate(body_of("resp-sse")) == responses_json()
    assert aggregate(body_of("resp-sse-tools")) == responses_json(tools=True)


def test_incomplete_is_an_answer_with_its_status() -> None:
    out = aggregate(body_of("resp-incomplete"))
    assert out["status"] == "incomplete" and out["incomplete_details"] == {"reason": "max_output_tokens"}


def test_llama_server_stream_aggregates_and_check_names_what_it_lacks() -> None:
    answer = {**responses_json(), "completed_at": 1700000001}
    body = responses_sse(llama_server_shape(responses_events(answer)))
    out = aggregate(body)
    assert out == {k: v for k, v in answer.items() if k != "completed_at"}  # timings: not in the response
    report = check_stream(body)
    assert {f.code for f in report.findings} == {
        "sequence-missing",
        "output-index-missing",
        "content-index-missing",
        "created-no-output",
    }
    assert report.errors


def test_codex_empty_terminal_output_takes_the_done_items() -> None:
    out, problems = aggregate_with_problems(body_of("resp-codex"))
    assert out["output"] == responses_json(tools=True)["output"]
    assert problems == [
        "the terminal response.completed has an empty output: "
        "the 1 item(s) of the stream's output_item events are used"
    ]
    codes = {f.code for f in check_stream(body_of("resp-codex")).findings}
    assert codes == {"terminal-output-differs"}


def test_codex_empty_output_without_done_events_keeps_what_was_streamed() -> None:
    events = [
        (n, p)
        for n, p in responses_events(responses_json(tools=True))
        if n not in ("response.output_item.done", "response.function_call_arguments.done")
    ]
    events[-1][1]["response"]["output"] = []
    (call,) = aggregate(responses_sse(events))["output"]
    assert (call["name"], call["arguments"], call["status"]) == (
        "get_weather",
        '{"city": "Paris"}',
        "in_progress",
    )


def test_rotating_item_ids_are_kept_apart_by_output_index() -> None:
    events = responses_scenario("resp-rotating")
    assert isinstance(events, list)
    events[-1][1]["response"]["output"] = []  # so the items come from the stream
    (item,) = aggregate(responses_sse(events))["output"]
    assert item["content"][0]["text"] == TEXT
    codes = {f.code for f in check_stream(body_of("resp-rotating")).findings}
    assert {"item-id-mismatch", "item-id-changed"} <= codes


@pytest.mark.parametrize(
    "scenario,message,upstream_error",
    [
        (
            "resp-failed",
            "upstream sent response.failed: The model crashed (server_error)",
            {"code": "server_error", "message": "The model crashed"},
        ),
        (
            "resp-error-flat",
            "upstream sent an error event: Slow down (rate_limit_exceeded)",
            {"code": "rate_limit_exceeded", "message": "Slow down", "param": None},
        ),
        (
            "resp-error-nested",
            "upstream sent an error event: Overloaded (overloaded)",
            {"type": "server_error", "code": "overloaded", "message": "Overloaded"},
        ),
    ],
)
def test_failures_are_errors_with_what_arrived(scenario: str, message: str, upstream_error: Any) -> None:
    with pytest.raises(UpstreamErrorEvent) as exc:
        aggregate(body_of(scenario))
    err = exc.value
    assert err.message == message and err.upstream_error == upstream_error
    assert err.event_number is not None
    partial = err.partial
    assert partial is not None and partial["id"] == "resp_fault"
    text = partial["output"][0]["content"][0]["text"]
    assert text and TEXT.startswith(text) and text != TEXT
    assert check_stream(body_of(scenario)).errors


def test_an_error_event_without_an_event_line_is_an_error_too() -> None:
    events = responses_events(responses_json())[:5]
    body = responses_sse(events) + b'data: {"type":"error","code":"x","message":"boom","param":null}\n\n'
    with pytest.raises(UpstreamErrorEvent, match="boom"):
        aggregate(body, "responses")


def test_a_cut_stream_says_what_was_unfinished() -> None:
    events = responses_events(responses_json())
    with pytest.raises(TruncatedStream) as exc:
        aggregate(responses_sse(events[:6]))
    assert exc.value.message == (
        "stream ended without a terminal event (response.completed / response.incomplete) after 6 events, "
        "unfinished: item 0 (message)"
    )
    assert exc.value.partial is not None
    assert exc.value.partial["status"] == "in_progress"
    assert exc.value.partial["output"][0]["content"][0]["text"] == "Hello, w"  # two 4-char deltas
    assert {f.code for f in check_stream(responses_sse(events[:6])).findings} == {"no-terminal"}


def test_a_cut_inside_reasoning_and_arguments_keeps_both() -> None:
    answer = {
        **responses_json(tools=True),
        "output": [
            {
                "id": "rs_1",
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "think hard"}],
                "content": [{"type": "reasoning_text", "text": "raw thoughts"}],
            },
            responses_json(tools=True)["output"][0],
        ],
    }
    events = responses_events(answer)
    done = next(i for i, (n, _) in enumerate(events) if n == "response.function_call_arguments.done")
    with pytest.raises(TruncatedStream) as exc:
        aggregate(responses_sse(events[:done]))
    reasoning, call = exc.value.partial["output"]  # type: ignore[index]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "think hard"}]
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "raw thoughts"}]
    assert call["arguments"] == '{"city": "Paris"}'


def test_events_after_the_terminal_are_ignored_and_said() -> None:
    body = (
        body_of("resp-sse")
        + b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta"}\n\n'
    )
    out, problems = aggregate_with_problems(body)
    assert out == responses_json()
    assert problems and "after the terminal response.completed ignored" in problems[0]
    assert {f.code for f in check_stream(body).findings} == {
        "event-after-terminal",
        "item-id-missing",
        "output-index-missing",
        "content-index-missing",
        "sequence-missing",
    } - {"item-id-missing", "output-index-missing", "content-index-missing", "sequence-missing"}


# -- synthesis ----------------------------------------------------------------------------------


def test_the_synthesized_grammar() -> None:
    answer = {
        **responses_json(),
        "output": [
            {
                "id": "rs_1",
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "hm"}],
                "encrypted_content": "enc",
            },
            {
                "id": "msg_1",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {
                        "type": "output_text",
                        "annotations": [
                            {"type": "url_citation", "start_index": 0, "end_index": 2, "url": "u"}
                        ],
                        "logprobs": [],
                        "text": "Hi",
                    },
                    {"type": "refusal", "refusal": "no"},
                ],
            },
            {"id": "ws_1", "type": "web_search_call", "status": "completed", "action": {"type": "search"}},
        ],
    }
    events = [(n, json.loads(p)) for n, p in _events(synthesize(answer, "responses"))]
    assert [n for n, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.annotation.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.content_part.added",
        "response.refusal.delta",
        "response.refusal.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.output_item.done",
        "response.completed",
    ]
    assert [p["sequence_number"] for _, p in events] == list(range(len(events)))
    assert all(p["type"] == n for n, p in events)
    created = events[0][1]["response"]
    assert (created["status"], created["output"], created["usage"]) == ("in_progress", [], None)
    assert events[2][1]["item"] == {
        "id": "rs_1",
        "type": "reasoning",
        "summary": [],
        "encrypted_content": "enc",
    }
    assert events[8][1]["item"]["status"] == "in_progress" and events[8][1]["item"]["content"] == []
    assert events[9][1]["part"] == {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
    assert events[10][1] == {
        "type": "response.output_text.delta",
        "item_id": "msg_1",
        "output_index": 1,
        "content_index": 0,
        "delta": "Hi",
        "logprobs": [],
        "sequence_number": 10,
    }
    assert events[19][1]["item"] == answer["output"][2]  # no delta grammar: the whole item, twice
    assert events[-1][1]["response"] == answer


@pytest.mark.parametrize(
    "status,terminal", [("incomplete", "response.incomplete"), ("failed", "response.failed")]
)
def test_the_terminal_event_follows_the_status(status: str, terminal: str) -> None:
    names = [n for n, _ in _events(synthesize({**responses_json(), "status": status}, "responses"))]
    assert names[-1] == terminal and "[DONE]" not in names


def test_synthesize_refuses_what_is_not_a_response() -> None:
    for bad in ({"choices": []}, {"output": [1]}, {"output": [{"type": 3}]}, []):
        with pytest.raises(BadResponse):
            synthesize(bad, "responses")


def _events(body: bytes) -> list[tuple[str, str]]:
    from streamshim.framing.sse import SSEDecoder

    dec = SSEDecoder()
    return [(e.event, e.data) for e in dec.feed(body) + dec.close()]


# -- meaning, view, error envelope -----------------------------------------------------------


def test_meaning_compares_text_reasoning_calls_status_usage_not_ids() -> None:
    answer = {
        **responses_json(status="incomplete"),
        "output": [
            {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "why"}]},
            *responses_json()["output"],
            *responses_json(tools=True)["output"],
        ],
    }
    m = meaning(200, [], json.dumps(answer).encode())
    assert m == {
        "status": 200,
        "shape": "json",
        "output": [
            {
                "text": TEXT,
                "reasoning_summary": "why",
                "tool_calls": [("get_weather", {"city": "Paris"})],
                "status": "incomplete: max_output_tokens",
            }
        ],
        "usage": answer["usage"],
    }
    other_ids = json.loads(json.dumps(answer).replace("msg_fault", "msg_x").replace("call_1", "call_2"))
    streamed = meaning(200, [], synthesize(other_ids, "responses"))
    assert compare(streamed, m) == ([], [])


def test_the_view_renders_a_responses_stream() -> None:
    text = view.render(body_of("resp-sse-tools"))
    assert text.startswith("LLM stream · responses · 11 events · status: completed")
    assert "[0] get_weather (id call_1)" in text and '"city": "Paris"' in text
    broken = view.render(body_of("resp-failed"))
    assert "BROKEN (upstream_error)" in broken and "The model crashed" in broken


def test_the_error_envelope() -> None:
    body = R.error_body("it broke", "truncated", partial={"output": []})
    assert body == {
        "error": {
            "message": "streamshim: it broke",
            "type": "upstream_stream_error",
            "code": "truncated",
            "param": None,
            "partial_response": {"output": []},
        }
    }
    assert R.error_of(body) == ("truncated", "streamshim: it broke", {"output": []})
    assert R.error_of(responses_json()) is None  # a response with "error": null is an answer
    assert R.error_of({"error": {"code": 400, "message": "'input' is required"}}) == (
        "400",
        "'input' is required",
        None,
    )


# -- the live watch ------------------------------------------------------------------------------


def test_the_watch_knows_the_end_and_the_errors() -> None:
    ok = judge(body_of("resp-sse"), R)
    assert ok.complete() and ok.done and ok.summary() == "ended with response.completed/incomplete"
    incomplete = judge(body_of("resp-incomplete"), R)
    assert incomplete.complete() and incomplete.done
    failed_body = body_of("resp-failed")
    failed = judge(failed_body, R)
    at = failed_body.index(b"event: response.failed")
    assert not failed.complete() and failed.errors[0].startswith(
        f"upstream error at byte {at}: event: response.failed"
    )
    for scenario in ("resp-error-flat", "resp-error-nested"):
        body = body_of(scenario)
        found = judge(body, R)
        at = body.index(b"event: error")
        assert not found.complete()
        assert found.errors[0].startswith(f"upstream error at byte {at}: event: error")
    cut = judge(body_of("resp-no-terminal"), R)
    assert not cut.complete() and cut.cut is not None and cut.cut.kind == "truncated"
    untyped = judge(body_of("resp-no-terminal") + b"event: error\ndata: boom\n\n", R)
    assert not untyped.complete() and untyped.cut is not None and untyped.cut.kind == "upstream_error"


def test_a_text_that_talks_about_sse_is_not_an_error() -> None:
    answer = responses_json()
    answer["output"][0]["content"][0]["text"] = (
        'event: error\ndata: {"type":"error"} and "type": "response.failed"'
    )
    verdict = judge(synthesize(answer, "responses"), R)
    assert verdict.complete() and verdict.done, verdict.summary()


# -- the request ------------------------------------------------------------------------------


def test_paths() -> None:
    for path in ("/v1/responses", "/responses", "/openai/v1/responses?api-version=1", "/v1/responses/"):
        assert dialects.for_path(path) is R, path
    for path in ("/v1/responses/resp_1", "/v1/responses/input_tokens", "/v1/responses/compact"):
        assert dialects.for_path(path) is None, path
    assert dialects.for_path("/v1/chat/completions").name == "chat"


def test_request_switches() -> None:
    assert R.asked({"stream": True}) == Asked(True)
    assert R.asked({}) == Asked(False)
    assert R.asked({"stream": "yes"}) is None
    assert R.asked({"background": True, "stream": False}) is None
    body: dict[str, Any] = {"input": "x"}
    assert R.ask_stream(body, Asked(False)) is False and body == {"input": "x", "stream": True}
    body = {"stream": True, "stream_options": {"include_obfuscation": False}}
    R.ask_json(body)
    assert body == {"stream": False}


def test_fill_usage_when_the_terminal_has_none() -> None:
    answer = {**responses_json(), "usage": None}
    how = R.fill_usage(answer, "estimate", 4, {"input": "x" * 40, "instructions": "y" * 8})
    assert how is not None and how.startswith("estimate: 4 output tokens")
    assert answer["usage"]["input_tokens"] == 12 and answer["usage"]["total_tokens"] == 16
    assert R.fill_usage(answer, "estimate", 4, None) is None  # filled already


def test_detection() -> None:
    assert dialects.detect(responses_json()) is R
    assert dialects.detect_body(body_of("resp-sse")) is R
    assert dialects.detect({"type": "response.output_text.delta"}) is R
    assert dialects.detect({"choices": [{"message": {}}]}).name == "chat"


# -- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize("api", [(), ("--api", "responses")])
def test_cli_on_bodies(tmp_path: Path, api: tuple[str, ...]) -> None:
    sse_file, json_file = tmp_path / "s.sse", tmp_path / "r.json"
    sse_file.write_bytes(body_of("resp-sse-tools"))
    json_file.write_text(json.dumps(responses_json(tools=True)))
    agg = cli("aggregate", *api, str(sse_file))
    assert agg.returncode == 0 and json.loads(agg.stdout) == responses_json(tools=True), agg.stderr
    syn = cli("synthesize", *api, "--chunk-chars", "2", str(json_file))
    assert syn.returncode == 0 and aggregate(syn.stdout) == responses_json(tools=True)
    assert b'"delta":"{\\""' in syn.stdout and b"[DONE]" not in syn.stdout
    chk = cli("check", *api, str(sse_file))
    assert chk.returncode == 0 and chk.stdout.decode().startswith(
        f"{sse_file}: responses stream, 11 events: conforms"
    )


def test_cli_errors_name_what_and_where(tmp_path: Path) -> None:
    failed = cli("aggregate", stdin=body_of("resp-failed"))
    assert failed.returncode == 1 and failed.stdout == b""
    lines = failed.stderr.decode().splitlines()
    assert lines[0] == (
        "streamshim: <stdin>: upstream_error at event 7 (byte 1335): "
        "upstream sent response.failed: The model crashed (server_error)"
        " (--partial prints what was aggregated before the fault)"
    )
    cut = cli("aggregate", "--api", "responses", stdin=body_of("resp-no-terminal"))
    assert (
        cut.returncode == 1
        and b"truncated at byte" in cut.stderr
        and b"without a terminal event" in cut.stderr
    )
    partial = cli("aggregate", "--partial", stdin=body_of("resp-no-terminal"))
    assert json.loads(partial.stdout)["output"][0]["content"][0]["text"] == TEXT
    bad = cli("synthesize", "--api", "responses", stdin=b'{"output": 3}')
    assert (
        bad.returncode == 1
        and bad.stderr
        == b"streamshim: <stdin>: response has no 'output' list: not a Responses API response\n"
    )
    checked = cli("check", "-", stdin=body_of("resp-error-flat"))
    assert checked.returncode == 1 and b"upstream-error" in checked.stdout


def test_cli_on_flow_files(tmp_path: Path) -> None:
    from mitmproxy.test import tflow
    from streamshim.mitm.recording import write_flows

    flows = []
    for model, body, ctype in (
        ("resp-sse", body_of("resp-sse"), "text/event-stream"),
        ("resp-json", json.dumps(responses_json(tools=True)).encode(), "application/json"),
    ):
        f = tflow.tflow(resp=True)
        f.request.path = "/v1/responses"
        f.request.content = json.dumps({"model": model, "input": "hi"}).encode()
        f.response.headers["content-type"] = ctype
        f.response.content = body
        flows.append(f)
    path = tmp_path / "flows.mitm"
    write_flows(path, flows)
    agg = cli("aggregate", str(path))
    assert agg.returncode == 0, agg.stderr
    assert json.loads(agg.stdout) == responses_json()  # the flow whose answer is a stream
    syn = cli("synthesize", str(path))
    assert syn.returncode == 0 and aggregate(syn.stdout) == responses_json(tools=True)
    chk = cli("check", str(path))
    assert chk.returncode == 0 and b"#0 upstream: responses stream, 12 events: conforms" in chk.stdout
    none = cli("aggregate", str(tmp_path / "nothing.mitm"))
    assert none.returncode == 2 and none.stderr.count(b"\n") == 1  # a missing file: bad input
