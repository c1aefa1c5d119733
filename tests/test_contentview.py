"""The "LLM stream" content view: the core rendering (``streamshim.view``) and the mitmproxy adapter
(``streamshim.mitm.contentview``) through mitmproxy's own content view machinery, on the running line
(11: ``get_message_content_view``; 12: ``prettify_message``), auto-selection included."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import chunk, delta, sse
from mitmproxy import contentviews, http, version
from mitmproxy.test import taddons, tflow
from proxy import read_flows
from shim_addons import StreamShim
from streamshim import view
from streamshim.mitm import contentview

ROOT = Path(__file__).resolve().parents[1]
RECORDING = ROOT / "recordings" / "llama-tool__stream-client__as-requested.flow"
USAGE = {
    "prompt_tokens": 21,
    "completion_tokens": 17,
    "total_tokens": 38,
    "completion_tokens_details": {"reasoning_tokens": 9},
}


def tool_stream(done: bool = True) -> bytes:
    """A reasoning model's tool-call stream: the arguments arrive in three pieces."""
    call = {"index": 0, "id": "call_w1", "type": "function", "function": {"name": "get_weather"}}
    return sse(
        chunk(delta(role="assistant", content=None)),
        chunk(delta(reasoning_content="The user asks about Paris.")),
        chunk(delta(reasoning_content="\nI should call the tool.")),
        chunk(delta(content="Checking the weather.")),
        chunk(delta(tool_calls=[{**call, "function": {"name": "get_weather", "arguments": '{"city": "Pa'}}])),
        chunk(delta(tool_calls=[{"index": 0, "function": {"arguments": 'ris", "days": [1, '}}])),
        chunk(delta(tool_calls=[{"index": 0, "function": {"arguments": "2]}"}}])),
        chunk(delta(finish_reason="tool_calls")),
        chunk(usage=USAGE),
        done=done,
    )


EXPECTED = """\
LLM stream · chat · 10 events · finish_reason: tool_calls
model: m · id: c1
reasoning:
  The user asks about Paris.
  I should call the tool.
content:
  Checking the weather.
tool calls:
  [0] get_weather (id call_w1)
    {
      "city": "Paris",
      "days": [
        1,
        2
      ]
    }
finish_reason: tool_calls
usage: prompt_tokens 21 · completion_tokens 17 · total_tokens 38
  completion_tokens_details: reasoning_tokens 9"""


# -- the core rendering -----------------------------------------------------------------------------


def test_tool_call_stream_renders_the_assembled_message() -> None:
    assert view.render(tool_stream()) == EXPECTED


def test_lines_carry_styles_for_labels_code_and_title() -> None:
    lines = view.render_lines(tool_stream())
    assert lines[0] == [(view.TITLE_STYLE, EXPECTED.splitlines()[0])]
    assert [(view.LABEL, "tool calls:")] in lines
    assert [(view.CODE, '      "city": "Paris",')] in lines


def test_recorded_llama_stream() -> None:
    f = next(read_flows(RECORDING))
    text = view.render(f.response.content)
    assert text.splitlines()[0] == "LLM stream · chat · 20 events · finish_reason: tool_calls"
    assert "  [0] get_weather (id call__0_get_weather_cmpl-319ea4bd-eb02-4b4f-b1bd-04ee9820ff00)" in text
    assert '      "city": "\'2w"' in text.splitlines()  # the arguments {"city" :"'2w" }, re-indented


def test_arguments_that_are_not_json_are_shown_raw() -> None:
    body = sse(
        chunk(delta(tool_calls=[{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{oops"}}])),
        chunk(delta(finish_reason="tool_calls")),
    )
    assert "    arguments (not valid JSON):\n      {oops\n" in view.render(body)


def test_cut_stream_names_the_fault_and_shows_what_arrived() -> None:
    body = tool_stream(done=False)
    cut = body[: body.index(b'"finish_reason":"tool_calls"')]  # inside the finishing chunk
    text = view.render(cut)
    lines = text.splitlines()
    assert lines[0] == "LLM stream · chat · 8 events · BROKEN (truncated) · finish_reason: none"
    assert lines[1].startswith("stream broken: truncated at event 8 (byte ")
    assert "stream ended in the middle of an event" in lines[1]
    assert "what arrived before the fault:" in lines
    assert "  Checking the weather." in lines
    assert '      "city": "Paris",' in lines  # the arguments had all arrived
    assert lines[-1] == "finish_reason: none"


def test_error_event_shows_the_upstream_error_and_the_partial_message() -> None:
    first = sse(chunk(delta(content="Hel")), done=False)
    body = first + b'data: {"error": {"message": "model overloaded", "type": "server_error"}}\n\n'
    lines = view.render(body).splitlines()
    assert lines[0] == "LLM stream · chat · 2 events · BROKEN (upstream_error) · finish_reason: none"
    assert lines[1] == (
        f"stream broken: upstream_error at event 2 (byte {len(first)}): upstream sent an error: "
        "model overloaded (server_error)"
    )
    assert lines[2:7] == [
        "upstream error:",
        "  {",
        '    "message": "model overloaded",',
        '    "type": "server_error"',
        "  }",
    ]
    assert lines[-2:] == ["  Hel", "finish_reason: none"]


def test_stream_with_nothing_assembled() -> None:
    text = view.render(b'data: {"error": {"message": "no", "code": 429}}\n\n')
    assert "stream broken: upstream_error at event 1 (byte 0): upstream sent an error: no" in text
    assert text.splitlines()[-1] == "nothing was assembled before the fault"


def test_several_choices_and_legacy_completions() -> None:
    text = view.render(
        sse(chunk(delta(0, content="A"), delta(1, content="B")), chunk(delta(0, "stop"), delta(1, "length")))
    )
    assert text.splitlines()[0] == "LLM stream · chat · 3 events · finish_reason: stop, length"
    assert "choice 0:\n  content:\n    A\n  finish_reason: stop\nchoice 1:\n  content:\n    B\n" in text
    legacy = sse(
        {"id": "t", "object": "text_completion", "model": "m", "choices": [{"index": 0, "text": "Once"}]},
        {
            "id": "t",
            "object": "text_completion",
            "model": "m",
            "choices": [{"index": 0, "text": " upon", "finish_reason": "length"}],
        },
    )
    assert view.render(legacy) == (
        "LLM stream · completions · 3 events · finish_reason: length\nmodel: m · id: t\ntext:\n  Once upon\n"
        "finish_reason: length"
    )


def test_non_stream_json_bodies() -> None:
    body = {
        "id": "x",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi", "reasoning": "think"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    assert view.render(json.dumps(body).encode()) == (
        "LLM response · chat · JSON · finish_reason: stop\nmodel: m · id: x\nreasoning:\n  think\n"
        "content:\n  Hi\nfinish_reason: stop\nusage: prompt_tokens 1 · completion_tokens 2 · total_tokens 3"
    )
    # streamshim's own 502 for a broken stream, with what arrived
    err = {
        "error": {
            "message": "streamshim: upstream stream failed at event 4 (byte 579): boom",
            "type": "upstream_stream_error",
            "code": "upstream_error",
            "partial_response": {**body, "usage": None},
        }
    }
    lines = view.render(json.dumps(err).encode()).splitlines()
    assert lines[:3] == [
        "LLM response · error",
        "error (upstream_error): streamshim: upstream stream failed at event 4 (byte 579): boom",
        "partial response (what arrived before the fault):",
    ]
    assert "  Hi" in lines


@pytest.mark.parametrize("body", [b"", b"hello", b"[1, 2]", b'{"a": 1}', b"<html>"])
def test_other_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        view.render(body)


# -- priority ---------------------------------------------------------------------------------------


def sse_flow(
    body: bytes, path: str = "/v1/chat/completions", ctype: str = "text/event-stream"
) -> http.HTTPFlow:
    f = tflow.tflow(resp=True)
    f.request.method = "POST"
    f.request.path = path
    f.response.headers["content-type"] = ctype
    f.response.content = body
    return f


def test_priority() -> None:
    stream = tool_stream()
    chat = sse_flow(stream)
    assert contentview.priority(stream, "text/event-stream", chat) == contentview.PRIORITY > 1
    legacy = sse_flow(stream, "/v1/completions")
    assert contentview.priority(stream, "text/event-stream", legacy) == contentview.PRIORITY
    # an error-only stream on a completions path: the path says what it is
    assert contentview.priority(b'data: {"error": 1}\n\n', "text/event-stream", chat) == contentview.PRIORITY
    # no flow (e.g. mitmproxy's view of a body alone): the first chunk says what it is
    assert contentview.priority(stream, "text/event-stream", None) == contentview.PRIORITY
    assert contentview.priority(stream, None, None) == contentview.PRIORITY
    other = sse_flow(b"event: tick\ndata: 1\n\n", "/events")
    assert contentview.priority(b"event: tick\ndata: 1\n\n", "text/event-stream", other) == 0
    assert contentview.priority(b'{"choices": []}', "application/json", chat) == 0
    assert contentview.priority(stream, "application/json", chat) == 0
    assert contentview.priority(b"", "text/event-stream", chat) == 0
    assert contentview.priority(b"<html></html>", "text/html", None) == 0


# -- through mitmproxy's content view machinery -------------------------------------------------------


def auto_view(f: http.HTTPFlow) -> tuple[str, str]:
    """(the view mitmproxy picks for the response, its text), as mitmweb and mitmdump get them."""
    assert f.response is not None
    if contentview.IS_12:
        result = contentviews.prettify_message(f.response, f)
        return str(result.view_name), result.text
    desc, lines, error = contentviews.get_message_content_view("auto", f.response, f)
    assert error is None, error
    return desc, "\n".join("".join(text for _, text in line) for line in lines)


@pytest.fixture
def registered() -> Iterator[object]:
    with taddons.context():  # mitmproxy 12 reads ctx.options while prettifying
        handle = contentview.register()
        yield handle
        contentview.unregister(handle)


def test_auto_selected_for_a_chat_stream(registered: object) -> None:
    name, text = auto_view(sse_flow(tool_stream()))
    assert name == "LLM stream"
    assert text == EXPECTED


def test_auto_selected_for_a_responses_stream(registered: object) -> None:
    from fault_upstream import responses_events, responses_json, responses_sse

    body = responses_sse(responses_events(responses_json(tools=True)))
    name, text = auto_view(sse_flow(body, "/v1/responses"))
    assert name == "LLM stream"
    assert text.splitlines()[:4] == [
        "LLM stream · responses · 11 events · status: completed",
        "model: fault · id: resp_fault",
        "tool calls:",
        "  [0] get_weather (id call_1)",
    ]


def test_auto_selected_for_a_recorded_flow(registered: object) -> None:
    f = next(read_flows(RECORDING))
    name, text = auto_view(f)
    assert name == "LLM stream"
    assert '      "city": "\'2w"' in text.splitlines()


def test_gzip_stream_is_rendered_decoded(registered: object) -> None:
    f = sse_flow(b"")
    f.response.headers["content-encoding"] = "gzip"
    f.response.content = tool_stream()  # encodes it, as the header says
    assert f.response.raw_content != tool_stream()
    name, text = auto_view(f)
    assert name.removeprefix("[decoded gzip] ") == "LLM stream"  # 11 puts the encoding in the title
    assert "usage: prompt_tokens 21" in text


def test_not_selected_for_other_bodies(registered: object) -> None:
    assert auto_view(sse_flow(b"event: tick\ndata: 1\n\n", "/events"))[0] != "LLM stream"
    assert auto_view(sse_flow(b'{"choices": []}', ctype="application/json"))[0] == "JSON"


def test_unregister_takes_it_out(registered: object) -> None:
    f = sse_flow(tool_stream())
    assert auto_view(f)[0] == "LLM stream"
    contentview.unregister(registered)
    assert auto_view(f)[0] != "LLM stream"
    contentview.unregister(registered)  # twice: nothing left to do


def test_the_addon_registers_it_on_load_and_removes_it_when_done() -> None:
    shim = StreamShim()
    f = sse_flow(tool_stream())
    with taddons.context(shim):
        assert auto_view(f)[0] == "LLM stream"
        shim.done()
        assert auto_view(f)[0] != "LLM stream"


def test_the_api_matches_the_running_line() -> None:
    # 11 has only the View API; 12 adds Contentview (and keeps View as a deprecated wrapper)
    major = int(version.VERSION.split(".")[0])
    assert contentview.IS_12 is (major >= 12)


def test_auto_selected_for_anthropic_messages(registered: object) -> None:
    """An Anthropic Messages stream (a recording from llama-server) and a synthesized one with
    thinking and a tool call: the view picks itself and shows the assembled message."""
    import anthropic_streams

    f = next(read_flows(ROOT / "recordings" / "anthropic-tool__stream-client__as-requested.flow"))
    name, text = auto_view(f)
    assert name == "LLM stream"
    assert text.startswith("LLM stream · anthropic · ") and "stop_reason: tool_use" in text
    assert "get_weather" in text
    name, text = auto_view(sse_flow(anthropic_streams.stream("thinking"), "/v1/messages"))
    assert name == "LLM stream"
    assert "reasoning:\n  The user wants the weather; call the tool." in text
    assert '  [0] get_weather (id toolu_01)\n    {\n      "city": "Paris",' in text
