"""End to end: a real mitmdump with the addon, in front of the fault upstream, driven by raw HTTP
(where headers and bytes matter) and by the real openai SDK."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from conftest import FAULT_RULES
from fault_upstream import CONTENT, TOOL_ARGS, USAGE, FaultUpstream, chat_chunks
from proxy import Mitmdump
from streamshim import aggregate
from streamshim.dialects.openai import encode_chunks as encode_data

pytestmark = pytest.mark.e2e
TEXT = "".join(CONTENT)


def post(shim: Mitmdump, label: str, model: str, stream: bool | None = None, **body: Any) -> httpx.Response:
    payload: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}], **body}
    if stream is not None:
        payload["stream"] = stream
    return httpx.post(f"{shim.url(label)}/v1/chat/completions", json=payload, timeout=30)


def open_stream(proxy: Mitmdump, label: str, model: str) -> Any:
    """A streaming request whose body the test reads as it arrives."""
    return httpx.stream(
        "POST",
        f"{proxy.url(label)}/v1/chat/completions",
        timeout=30,
        json={"model": model, "stream": True, "messages": []},
    )


def sse_text(body: bytes) -> str:
    return aggregate(body)["choices"][0]["message"]["content"]


# -- the four directions ---------------------------------------------------------------------


def test_forced_stream_aggregated_for_a_json_client(shim: Mitmdump, fault: FaultUpstream) -> None:
    r = post(shim, "stream", "sse", stream=False)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert int(r.headers["content-length"]) == len(r.content)
    out = r.json()
    assert out["object"] == "chat.completion"
    assert out["choices"][0]["message"] == {"role": "assistant", "content": TEXT}
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"] == USAGE
    sent = fault.last()
    assert sent.json()["stream"] is True
    assert sent.json()["stream_options"] == {"include_usage": True}
    assert sent.headers["accept-encoding"] == "identity"


def test_forced_json_synthesized_for_a_stream_client(shim: Mitmdump, fault: FaultUpstream) -> None:
    r = post(shim, "json", "json", stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert "content-length" not in r.headers and "content-encoding" not in r.headers
    assert r.content.endswith(b"data: [DONE]\n\n")
    assert b'"content":"Hell"' in r.content  # the rule's chunk_chars: 4
    out = aggregate(r.content)
    assert out["choices"][0]["message"]["content"] == TEXT
    assert out["usage"] == USAGE  # the client asked for include_usage
    sent = fault.last().json()
    assert sent["stream"] is False and "stream_options" not in sent


def test_synthesized_stream_has_no_usage_unless_asked(shim: Mitmdump) -> None:
    r = post(shim, "json", "json", stream=True)
    assert b'"usage"' not in r.content and sse_text(r.content) == TEXT


def test_live_passthrough_is_byte_exact(shim: Mitmdump, fault: FaultUpstream) -> None:
    r = post(shim, "asis", "sse", stream=True)
    assert r.status_code == 200
    assert r.content == encode_data(chat_chunks())
    assert fault.last().json()["stream"] is True and "stream_options" not in fault.last().json()


def test_passthrough_without_a_rule_still_streams(shim: Mitmdump) -> None:
    # the "norule" listener matches no rule (listen_port rules only): SSE must still stream
    r = post(shim, "norule", "sse-paced", stream=True)
    assert r.content == b"".join(encode_data([c], done=False) for c in chat_chunks()) + b"data: [DONE]\n\n"


def test_injected_usage_is_removed_for_the_client(shim: Mitmdump, fault: FaultUpstream) -> None:
    r = post(shim, "stream", "sse", stream=True)
    assert fault.last().json()["stream_options"] == {"include_usage": True}
    assert b'"usage"' not in r.content
    assert r.content == encode_data(chat_chunks(usage=False))
    asked = post(shim, "stream", "sse", stream=True, stream_options={"include_usage": True})
    assert asked.content == encode_data(chat_chunks())


def test_passthrough_is_live(shim: Mitmdump, fault: FaultUpstream) -> None:
    # the upstream paces 8 events 50 ms apart; the first must reach the client while the
    # upstream is still sending (a buffering proxy would deliver everything at the end)
    arrivals = []
    with open_stream(shim, "asis", "sse-paced") as r:
        for _ in r.iter_raw():
            arrivals.append(time.monotonic())
    assert len(arrivals) >= 4, "the body arrived in one piece: the passthrough buffered it"
    assert arrivals[-1] - arrivals[0] > 0.2


def test_repair_json_answer_to_a_stream_request(shim: Mitmdump) -> None:
    r = post(shim, "asis", "json", stream=True)  # llama-server does this for tool requests
    assert r.headers["content-type"].startswith("text/event-stream")
    assert sse_text(r.content) == TEXT


def test_repair_sse_answer_to_a_json_request(shim: Mitmdump) -> None:
    r = post(shim, "asis", "sse", stream=False)
    assert r.headers["content-type"] == "application/json"
    assert r.json()["choices"][0]["message"]["content"] == TEXT


def test_crlf_and_keepalive_comments(shim: Mitmdump) -> None:
    assert post(shim, "asis", "sse-crlf", stream=False).json()["choices"][0]["message"]["content"] == TEXT
    raw = post(shim, "asis", "sse-crlf", stream=True)
    assert raw.content.startswith(b": keep-alive\r\n\r\n") and sse_text(raw.content) == TEXT


@pytest.mark.parametrize("model", ["sse-gzip", "sse-br", "sse-deflate"])
@pytest.mark.parametrize("label,stream", [("asis", False), ("asis", True), ("stream", False)])
def test_compressed_sse(shim: Mitmdump, label: str, stream: bool, model: str) -> None:
    r = post(shim, label, model, stream=stream)
    assert r.status_code == 200
    body = r.content  # httpx decodes a content-encoding it is told about
    assert (sse_text(body) if stream else r.json()["choices"][0]["message"]["content"]) == TEXT
    if stream:
        assert "content-encoding" not in r.headers  # decoded on the fly, inspected, forwarded


@pytest.mark.parametrize("model", ["json-gzip", "json-br"])
def test_compressed_json_synthesized(shim: Mitmdump, model: str) -> None:
    r = post(shim, "asis", model, stream=True)
    assert "content-encoding" not in r.headers and sse_text(r.content) == TEXT


# -- faults -----------------------------------------------------------------------------------


def assert_openai_error(r: httpx.Response, status: int, *needles: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert isinstance(err["message"], str)
    for needle in needles:
        assert needle in err["message"], err["message"]
    return dict(err)


def test_error_event_is_502_for_a_json_client(shim: Mitmdump) -> None:
    err = assert_openai_error(post(shim, "stream", "error-event", stream=False), 502, "model overloaded")
    assert err["type"] == "upstream_stream_error" and err["code"] == "upstream_error"
    assert err["partial_response"]["choices"][0]["message"]["content"] == "Hello"  # 2 content chunks


def test_error_event_reaches_a_stream_client_as_sent(shim: Mitmdump) -> None:
    r = post(shim, "asis", "error-event", stream=True)
    assert r.status_code == 200
    assert r.content.endswith(b'data: {"error": {"message": "model overloaded", "type": "server_error"}}\n\n')


@pytest.mark.parametrize(
    "model,needle",
    [
        ("event-error", "boom"),
        ("malformed", "not valid JSON"),
        ("no-terminator", "without [DONE]"),
        ("sse-corrupt-gzip", "could not be decoded"),
        ("html", "text/html"),
    ],
)
def test_broken_streams_are_never_a_200_for_a_json_client(shim: Mitmdump, model: str, needle: str) -> None:
    assert_openai_error(post(shim, "stream", model, stream=False), 502, needle)


def test_bad_json_bodies_for_a_stream_client(shim: Mitmdump) -> None:
    assert_openai_error(post(shim, "asis", "json-corrupt-gzip", stream=True), 502, "could not be decoded")
    assert_openai_error(post(shim, "asis", "html", stream=True), 502, "text/html")


def test_disconnect_mid_stream_is_not_a_success(shim: Mitmdump) -> None:
    r = post(shim, "stream", "disconnect:3", stream=False)
    # the upstream dropped in the middle of the body streamshim was buffering: mitmproxy answers
    # with its own 502 naming the cause (no addon hook can replace it, README "Limits"), and
    # nothing of the partial answer reaches the client as if it were an answer
    assert (r.status_code, r.headers["content-type"]) == (502, "text/html")
    assert b"peer closed connection without sending complete message body" in r.content
    assert b"Hel" not in r.content and b"chat.completion" not in r.content
    with pytest.raises(httpx.HTTPError):  # a stream client sees the connection break, as it did
        post(shim, "asis", "disconnect:3", stream=True)


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_status_passed_on_in_both_directions(shim: Mitmdump, stream: bool) -> None:
    for label in ("stream", "json", "asis"):
        r = post(shim, label, "status-json:429", stream=stream)
        assert r.status_code == 429
        assert r.json() == {"error": {"message": "rate limited", "type": "rate_limit_error", "code": None}}
        html = post(shim, label, "status-html:503", stream=stream)
        assert html.status_code == 503 and b"502 Bad Gateway" in html.content


def test_keepalive_sends_spaces_then_the_json(shim: Mitmdump) -> None:
    r = post(shim, "keepalive", "sse", stream=False)
    assert r.status_code == 200
    assert r.content.startswith(b" ") and r.headers["content-type"] == "application/json"
    assert json.loads(r.content)["choices"][0]["message"]["content"] == TEXT
    bad = post(shim, "keepalive", "error-event", stream=False)
    assert bad.status_code == 200  # committed early: the documented trade-off
    assert "model overloaded" in json.loads(bad.content)["error"]["message"]


def test_promote_tool_calls(shim: Mitmdump) -> None:
    # tool calls already in choice 0: untouched
    r = post(shim, "promote", "json-tools", stream=False)
    assert r.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert "promoted" not in shim.flow_with(b'"json-tools"').comment


@pytest.mark.parametrize(
    "model,stream",
    [("json-tools-choice1", False), ("sse-tools-choice1", False), ("json-tools-choice1", True)],
)
def test_promote_tool_calls_moves_them_from_a_later_choice(shim: Mitmdump, model: str, stream: bool) -> None:
    """The case the option exists for: the server answers the tool call in choices[1] and the
    client reads choices[0]. Every buffered path (JSON as is, SSE aggregated, JSON synthesized)
    promotes; a live passthrough cannot (it is forwarded as it arrives)."""
    r = post(shim, "promote", model, stream=stream, user=f"promote-{model}-{stream}")
    assert r.status_code == 200
    body = aggregate(r.content) if stream else r.json()
    first = body["choices"][0]
    assert first["finish_reason"] == "tool_calls"
    assert [c["function"]["name"] for c in first["message"]["tool_calls"]] == ["get_weather"]
    assert "tool_calls" not in body["choices"][1]["message"]
    flow = shim.flow_with(f"promote-{model}-{stream}".encode())
    assert "tool calls promoted from choice 1 into choice 0" in flow.comment


def test_requests_that_are_not_for_us_pass_untouched(shim: Mitmdump, fault: FaultUpstream) -> None:
    r = httpx.post(
        f"{shim.url('stream')}/v1/chat/completions",
        content=b"[1, 2]",
        timeout=30,
        headers={"content-type": "application/json"},
    )
    assert fault.last().body == b"[1, 2]" and r.status_code == 200
    httpx.post(
        f"{shim.url('stream')}/v1/chat/completions", json={"model": "json", "stream": "yes"}, timeout=30
    )
    assert fault.last().json()["stream"] == "yes"
    httpx.post(f"{shim.url('stream')}/v1/embeddings", json={"model": "json", "input": "x"}, timeout=30)
    assert fault.last().json() == {"model": "json", "input": "x"}


# -- the real openai client -------------------------------------------------------------------


def client(shim: Mitmdump, label: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{shim.url(label)}/v1", api_key="sk-test-secret", max_retries=0)


MSG = [{"role": "user", "content": "weather?"}]


@pytest.mark.parametrize("label", ["stream", "json", "asis"])
def test_openai_sdk_sync_all_shapes(shim: Mitmdump, label: str) -> None:
    c = client(shim, label)
    for model in ("sse", "json"):
        r = c.chat.completions.create(model=model, messages=MSG)
        assert r.choices[0].message.content == TEXT and r.choices[0].finish_reason == "stop"
        parts = [
            ch.choices[0].delta.content
            for ch in c.chat.completions.create(model=model, messages=MSG, stream=True)
            if ch.choices and ch.choices[0].delta.content
        ]
        assert "".join(parts) == TEXT


def test_openai_sdk_stream_helper_tool_call_names(shim: Mitmdump) -> None:
    # the upstream repeats id and name in every delta (as llama-cpp-python does). Synthesized
    # from JSON, the stream is clean and the SDK's helper gets the right name.
    with client(shim, "asis").chat.completions.stream(model="json-tools", messages=MSG) as s:
        final = s.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert (call.function.name, call.function.arguments) == ("get_weather", "".join(TOOL_ARGS))
    # aggregated by streamshim for a JSON client: also right
    r = client(shim, "stream").chat.completions.create(model="sse-tools", messages=MSG)
    assert r.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert r.choices[0].finish_reason == "tool_calls"


def test_openai_sdk_async(shim: Mitmdump) -> None:
    async def main() -> tuple[str, str]:
        c = openai.AsyncOpenAI(base_url=f"{shim.url('json')}/v1", api_key="sk-test", max_retries=0)
        r = await c.chat.completions.create(model="json", messages=MSG)
        s = await c.chat.completions.create(model="json", messages=MSG, stream=True)
        parts = [ch.choices[0].delta.content async for ch in s if ch.choices and ch.choices[0].delta.content]
        await c.close()
        return r.choices[0].message.content or "", "".join(parts)

    assert asyncio.run(main()) == (TEXT, TEXT)


def test_openai_sdk_sees_errors_as_errors(shim: Mitmdump) -> None:
    with pytest.raises(openai.APIStatusError) as ei:
        client(shim, "stream").chat.completions.create(model="error-event", messages=MSG)
    assert ei.value.status_code == 502 and "model overloaded" in str(ei.value)


# -- what mitmweb and -w files show -----------------------------------------------------------


def test_flows_carry_comment_mark_and_both_sides(fault: FaultUpstream, tmp_path: Path) -> None:
    # a mitmdump of its own: -w files are flushed when mitmdump stops
    own = Mitmdump(
        tmp_path,
        {
            "stream": fault.url,
            "asis": fault.url,
            "json": fault.url,
            "keepalive": fault.url,
            "promote": fault.url,
            "repair": fault.url,
        },
        FAULT_RULES,
    ).start()
    try:
        post(own, "stream", "sse", stream=False, user="flowcheck-1")
        post(own, "asis", "sse", stream=True, user="flowcheck-2")
        assert post(own, "stream", "malformed", stream=False, user="flowcheck-3").status_code == 502
    finally:
        own.stop()
    agg = own.flow_with(b"flowcheck-1")
    assert agg.comment.startswith("streamshim [force-stream] SSE→JSON: 9 chunks")
    assert agg.marked == ":default:"
    meta = agg.metadata["streamshim"]
    assert json.loads(meta["client_request"])["stream"] is False  # what the client sent
    assert agg.request.json()["stream"] is True  # what went upstream
    assert meta["upstream_response"] == encode_data(chat_chunks())
    assert agg.response.json()["choices"][0]["message"]["content"] == TEXT  # what the client got
    live = own.flow_with(b"flowcheck-2")
    passthrough = "streamshim [as-requested] SSE passthrough: 1698 B in, 1698 B out; ended with [DONE]"
    assert live.comment == passthrough
    assert live.response.content == encode_data(chat_chunks())  # streamed, and still visible
    failed = own.flow_with(b"flowcheck-3")
    assert failed.marked == ":warning:" and "malformed at event 3" in failed.comment
    assert failed.response.status_code == 502 and failed.metadata["streamshim"]["upstream_status"] == 200


def test_gzip_request_compressed_upstream_body(fault: FaultUpstream) -> None:
    assert gzip.decompress(gzip.compress(b"x")) == b"x"  # sanity for the fixture's encoding


# -- connection-level faults: mitmproxy answers, the proxy keeps serving ------------------------


def still_serving(shim: Mitmdump) -> None:
    assert post(shim, "asis", "sse", stream=False).json()["choices"][0]["message"]["content"] == TEXT


@pytest.mark.parametrize("stream", [False, True])
def test_reset_before_headers(shim: Mitmdump, stream: bool) -> None:
    r = post(shim, "stream", "reset", stream=stream)
    assert r.status_code == 502  # mitmproxy's own answer: no response ever came
    still_serving(shim)


@pytest.mark.parametrize("after", [0, 1, 5])
def test_disconnect_after_n_chunks(shim: Mitmdump, after: int) -> None:
    r = post(shim, "stream", f"disconnect:{after}", stream=False)
    assert r.status_code == 502 and b'"finish_reason": "stop"' not in r.content
    with pytest.raises(httpx.HTTPError):
        post(shim, "asis", f"disconnect:{after}", stream=True)
    still_serving(shim)


def test_connection_refused(fault: FaultUpstream, tmp_path: Path) -> None:
    # lazy: connect when the request is there, so mitmproxy can answer 502 (eager, its default in
    # reverse mode, drops the client connection when the upstream refuses)
    own = Mitmdump(
        tmp_path,
        {"dead": "http://127.0.0.1:9"},
        "rules:\n  - name: d\n    upstream: stream\n",
        "--set",
        "connection_strategy=lazy",
    ).start()
    try:
        for stream in (False, True):
            r = post(own, "dead", "sse", stream=stream)
            assert r.status_code == 502 and b"Connect call failed" in r.content  # mitmproxy's own page
    finally:
        own.stop()
    assert "flow failed: [Errno 111] Connect call failed" in own.log()


def test_stalled_upstream_times_out_at_the_client_and_the_proxy_keeps_serving(shim: Mitmdump) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{shim.url('stream')}/v1/chat/completions",
            json={"model": "stall:20", "messages": []},
            timeout=httpx.Timeout(30, read=1.5),
        )
    still_serving(shim)


def test_no_secret_in_the_log(fault: FaultUpstream, tmp_path: Path) -> None:
    own = Mitmdump(tmp_path, {"s": fault.url}, "rules:\n  - name: s\n    upstream: stream\n").start()
    try:
        for model in ("sse", "malformed", "json"):
            httpx.post(
                f"{own.url('s')}/v1/chat/completions",
                headers={"authorization": "Bearer sk-log-secret-0123456"},
                json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
                timeout=30,
            )
    finally:
        own.stop()
    log = own.log()
    assert "streamshim [s]" in log and "sk-log-secret" not in log


def test_rules_edited_while_a_flow_is_in_flight(fault: FaultUpstream, tmp_path: Path) -> None:
    own = Mitmdump(tmp_path, {"s": fault.url}, "rules:\n  - name: first\n    upstream: stream\n").start()
    try:
        with open_stream(own, "s", "sse-paced") as r:
            chunks = r.iter_raw()
            first = next(chunks)
            own.rules_path.write_text("rules:\n  - name: broken\n    upstream: [\n")  # invalid, mid-flight
            rest = b"".join(chunks)
        assert first + rest == encode_data(chat_chunks(usage=False))  # finished under its own rule
        time.sleep(1.1)  # the file is checked at most once a second
        r2 = post(own, "s", "sse", stream=False)  # the last good rules still apply
        assert r2.status_code == 200 and r2.json()["choices"][0]["message"]["content"] == TEXT
        own.rules_path.unlink()
        time.sleep(1.1)
        assert post(own, "s", "sse", stream=False).status_code == 200
    finally:
        own.stop()
    log = own.log()
    assert "rules.yaml:4: invalid YAML" in log and "keeping the last good rules" in log
    assert "unreadable" in log and "streamshim [first] SSE→JSON" in log


@pytest.mark.slow
def test_huge_client_body_is_rewritten_and_answered(shim: Mitmdump, fault: FaultUpstream) -> None:
    """A 32 MB request (a long conversation): the stream flag is rewritten without losing a byte
    of the messages, in both directions, and the answers are converted as usual."""
    text = "x" * (32 * 1024 * 1024)
    r = post(shim, "stream", "sse", stream=False, messages=[{"role": "user", "content": text}])
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == TEXT
    sent = fault.last().json()
    assert sent["stream"] is True and sent["messages"][0]["content"] == text
    r = post(shim, "json", "json", stream=True, messages=[{"role": "user", "content": text}])
    assert r.status_code == 200 and sse_text(r.content) == TEXT
    sent = fault.last().json()
    assert sent["stream"] is False and sent["messages"][0]["content"] == text


def test_plain_mitmdump_judges_passthrough_streams_without_keeping_them(
    fault: FaultUpstream, tmp_path: Path
) -> None:
    """Without -w, mitmweb or --flow-detail 3 nothing reads a streamed flow's body: it is not
    kept (no copy of every stream), and the stream is judged by how it ended all the same. Cut and
    failed streams are still said, in the log (warning) as in the flow."""
    rules = "rules:\n  - name: as-requested\n    upstream: as-requested\n"
    m = Mitmdump(tmp_path, {"asis": fault.url}, rules, save=False).start()
    try:
        assert post(m, "asis", "sse", stream=True).content == encode_data(chat_chunks())
        assert b"model overloaded" in post(m, "asis", "error-then-done", stream=True).content
        post(m, "asis", "no-terminator", stream=True)
        with pytest.raises(httpx.HTTPError):
            post(m, "asis", "disconnect:2", stream=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and m.log().count("SSE passthrough") < 4:
            time.sleep(0.05)
    finally:
        m.stop()
    lines = [line for line in m.log().splitlines() if "SSE passthrough" in line]
    assert len(lines) == 4, m.log()
    assert "ended with [DONE]" in lines[0]
    assert "upstream error at byte 392" in lines[1] and "model overloaded" in lines[1]
    assert "ended without [DONE]: truncated" in lines[2]
    assert "broken:" in lines[3]


# -- repair: a stream client gets a stream its client library reads right ----------------------------


def test_repair_gives_the_sdk_stream_helper_the_right_tool_call(shim: Mitmdump) -> None:
    msgs = [{"role": "user", "content": "weather?"}]
    with client(shim, "asis").chat.completions.stream(model="sse-tools", messages=msgs) as s:
        raw = s.get_final_completion().choices[0].message.tool_calls[0]
    assert raw.function.name.startswith("get_weatherget_weather")  # the server repeats it
    with client(shim, "repair").chat.completions.stream(
        model="sse-tools", messages=msgs, user="repair-tools"
    ) as s:
        fixed = s.get_final_completion().choices[0].message.tool_calls[0]
    assert (fixed.id, fixed.function.name) == ("call_1", "get_weather")
    assert json.loads(fixed.function.arguments) == json.loads("".join(TOOL_ARGS))
    flow = shim.flow_with(b"repair-tools")
    assert "repaired: tool-call-repeated-id ×" in flow.comment and "tool-call-repeated-name ×" in flow.comment
    # the upstream's own bytes are kept beside what the client got: check tells the two apart
    assert b'"name":"get_weather"' in flow.metadata["streamshim"]["upstream_response"]


def test_repair_ends_a_cut_stream_with_an_error_the_sdk_raises(shim: Mitmdump) -> None:
    msgs = [{"role": "user", "content": "hi"}]
    quiet = list(
        client(shim, "asis").chat.completions.create(model="no-terminator", messages=msgs, stream=True)
    )
    assert quiet  # without repair the stream just ends: it looks complete to the SDK
    with pytest.raises(openai.APIError, match="without finish_reason"):
        list(
            client(shim, "repair").chat.completions.create(model="no-terminator", messages=msgs, stream=True)
        )


def test_repair_keeps_a_conformant_stream_byte_for_byte_and_live(shim: Mitmdump) -> None:
    assert post(shim, "repair", "sse", stream=True).content == encode_data(chat_chunks())
    arrivals = []
    with open_stream(shim, "repair", "sse-paced") as r:
        for _ in r.iter_raw():
            arrivals.append(time.monotonic())
    # 8 events 50 ms apart: each leaves as it arrives, the first long before the last
    assert len(arrivals) >= 4, "the body arrived in one piece: the repair buffered it"
    assert arrivals[-1] - arrivals[0] > 0.2
