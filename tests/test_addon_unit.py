"""The mitmproxy layer with mitmproxy's own test helpers (taddons, tflow): options, rules
reloading and the hooks, without a network."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import pytest
from helpers import chunk, delta, sse
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow, tutils
from shim_addons import StreamShim
from streamshim import aggregate

RULES = """\
rules:
  - name: to-stream
    host: "up.example"
    upstream: stream
  - name: to-json
    host: "json.example"
    upstream: json
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def flow(host: str, body: dict | bytes, path: str = "/v1/chat/completions") -> tflow.HTTPFlow:
    f = tflow.tflow()
    f.request.host = host
    f.request.port = 443
    f.request.path = path
    f.request.method = "POST"
    f.request.content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return f


def test_default_option_is_the_shipped_rules_file() -> None:
    shim = StreamShim()
    with taddons.context(shim) as tctx:
        assert Path(tctx.options.streamshim_rules).name == "rules.yaml"
        shim.rules_addon.configure({"streamshim_rules"})  # what mitmproxy does at startup
        assert [r.name for r in shim.rules.rules][-1] == "catch-all"


def test_bad_rules_raise_options_error_with_file_and_line(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", "rules:\n  - name: a\n    upstream: nope\n")
    shim = StreamShim()
    with (
        taddons.context(shim) as tctx,
        pytest.raises(exceptions.OptionsError, match=r"bad\.yaml:3: rule #1: bad upstream 'nope'"),
    ):
        tctx.configure(shim, streamshim_rules=str(bad))


def test_bad_edit_keeps_last_good_rules_and_reload_command(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "r.yaml", RULES)
    shim = StreamShim()
    with taddons.context(shim) as tctx:
        tctx.configure(shim, streamshim_rules=str(path))
        assert [r.name for r in shim.rules.rules] == ["to-stream", "to-json"]
        write(path, "rules:\n  - name: x\n    upstream: [\n")
        os.utime(path, (1, 1))
        with caplog.at_level(logging.ERROR, "streamshim"):
            shim.reload()
        assert "r.yaml:4: invalid YAML" in caplog.text and "keeping the last good rules" in caplog.text
        assert [r.name for r in shim.rules.rules] == ["to-stream", "to-json"]
        write(path, "rules:\n  - name: only\n    upstream: json\n")
        os.utime(path, (2, 2))
        shim.rules_addon._reload()  # what a request does, at most once a second
        assert [r.name for r in shim.rules.rules] == ["only"]
        path.unlink()
        with caplog.at_level(logging.WARNING, "streamshim"):
            shim.reload()
        assert "unreadable" in caplog.text and [r.name for r in shim.rules.rules] == ["only"]


def test_rules_file_made_unreadable_keeps_last_good_rules(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The file turns into something that cannot be read (here a directory: as root, a chmod
    would not stop the read): one clear error naming the file, the last good rules stay."""
    shim = StreamShim()
    path = write(tmp_path / "r.yaml", RULES)
    with taddons.context(shim) as tctx:
        tctx.configure(shim, streamshim_rules=str(path))
        path.unlink()
        path.mkdir()
        with caplog.at_level(logging.ERROR, "streamshim"):
            shim.reload()
        assert f"{path}: cannot read rules file: Is a directory; keeping the last good rules" in caplog.text
        assert [r.name for r in shim.rules.rules] == ["to-stream", "to-json"]
        f = flow("up.example", {"model": "m", "messages": []})
        shim.request(f)
        assert f.request.json()["stream"] is True  # still served by the last good rules


def test_request_rewrite_to_stream_and_back(tmp_path: Path) -> None:
    shim = StreamShim()
    with taddons.context(shim) as tctx:
        tctx.configure(shim, streamshim_rules=str(write(tmp_path / "r.yaml", RULES)))
        f = flow("up.example", {"model": "m", "messages": []})
        shim.request(f)
        sent = f.request.json()
        assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
        assert f.request.headers["accept-encoding"] == "identity"
        meta = f.metadata["streamshim"]
        assert meta["rule"] == "to-stream" and meta["client_stream"] is False and meta["injected_usage"]
        assert json.loads(meta["client_request"]) == {"model": "m", "messages": []}

        g = flow("json.example", {"model": "m", "stream": True, "stream_options": {"include_usage": True}})
        shim.request(g)
        assert g.request.json() == {"model": "m", "stream": False}
        assert g.metadata["streamshim"]["client_usage"] is True


@pytest.mark.parametrize(
    "body,path",
    [
        (b"not json", "/v1/chat/completions"),
        (b"[1]", "/v1/chat/completions"),
        (b'{"stream": "yes"}', "/v1/chat/completions"),
        (b'{"input": "x"}', "/v1/embeddings"),
    ],
)
def test_requests_not_for_us_are_untouched(tmp_path: Path, body: bytes, path: str) -> None:
    shim = StreamShim()
    with taddons.context(shim) as tctx:
        tctx.configure(shim, streamshim_rules=str(write(tmp_path / "r.yaml", RULES)))
        f = flow("up.example", body, path)
        shim.request(f)
        assert f.request.content == body and "streamshim" not in f.metadata


def test_response_hooks_aggregate_and_synthesize(tmp_path: Path) -> None:
    shim = StreamShim()
    body = sse(chunk(delta(role="assistant", content="hi")), chunk(delta(finish_reason="stop")))
    with taddons.context(shim) as tctx:
        tctx.configure(shim, streamshim_rules=str(write(tmp_path / "r.yaml", RULES)), streamshim_check="on")
        f = flow("up.example", {"model": "m", "messages": [{"role": "user", "content": "Hi!?"}]})
        shim.request(f)
        f.response = tutils.tresp(content=body, headers=[(b"content-type", b"text/event-stream")])
        shim.responseheaders(f)
        assert f.response.stream is False  # aggregated from the buffered body in `response`
        shim.response(f)
        assert f.response.headers["content-type"] == "application/json"
        assert f.response.json()["choices"][0]["message"]["content"] == "hi"
        # streamshim asked the upstream for usage (include_usage) and none came: the client's JSON
        # gets an estimate (a non-stream body always has usage), said in a header and the comment
        assert f.response.json()["usage"] == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        assert f.response.headers["x-streamshim-usage-filled"] == "estimate"
        assert f.metadata["streamshim"]["usage_filled"] == "estimate"
        assert f.comment.splitlines() == [
            "streamshim [to-stream] SSE→JSON: 2 chunks, 313 B → 246 B; usage filled (estimate: 1 completion "
            "tokens = chunks with generated text, 1 prompt tokens = request characters / 4): the stream "
            "carried none although streamshim asked for it",
            "check upstream: 3 events: 1 error, 0 warnings (usage-missing)",
        ]
        # and the upstream's stream did not conform (usage asked, none sent): marked as a problem
        assert f.marked == ":warning:"
        assert f.metadata["streamshim"]["check"] == {
            "upstream": {
                "summary": "3 events: 1 error, 0 warnings (usage-missing)",
                "findings": [["usage-missing", "error", None, "include_usage asked, no chunk carried usage"]],
            }
        }

        g = flow("json.example", {"model": "m", "stream": True})
        shim.request(g)
        resp = aggregate(body)
        g.response = tutils.tresp(
            content=json.dumps(resp).encode(), headers=[(b"content-type", b"application/json")]
        )
        shim.responseheaders(g)
        shim.response(g)
        assert g.response.headers["content-type"].startswith("text/event-stream")
        assert "content-length" not in g.response.headers
        assert aggregate(g.response.content) == resp
        assert g.comment.splitlines()[1:] == ["check client: 4 events: conforms"]
        assert g.marked == ":default:"


def test_check_marks_and_can_be_off(tmp_path: Path) -> None:
    body = sse(
        chunk(delta(role="assistant", content="hi")),
        chunk(delta(finish_reason="stop"), created=2),
        chunk(usage={"total_tokens": 3}),
    )

    def run(check: str = "on") -> tflow.HTTPFlow:
        shim = StreamShim()
        with taddons.context(shim) as tctx:
            tctx.configure(
                shim, streamshim_rules=str(write(tmp_path / "r.yaml", RULES)), streamshim_check=check
            )
            f = flow("up.example", {"model": "m", "messages": []})
            shim.request(f)
            f.response = tutils.tresp(content=body, headers=[(b"content-type", b"text/event-stream")])
            shim.responseheaders(f)
            shim.response(f)
            return f

    f = run()
    assert f.comment.splitlines()[1] == "check upstream: 4 events: 0 errors, 1 warning (created-changed)"
    assert f.marked == ":large_orange_diamond:"
    off = run("off")
    assert len(off.comment.splitlines()) == 1 and off.marked == ":default:"
    assert "check" not in off.metadata["streamshim"]


def test_check_is_on_where_flows_are_looked_at() -> None:
    """auto: on in mitmweb and the console UI, off in mitmdump (the hot path)."""
    from mitmproxy.tools.dump import DumpMaster
    from mitmproxy.tools.web.master import WebMaster

    async def under(master_cls: type) -> bool:
        shim = StreamShim()
        with taddons.context(shim) as tctx:
            tctx.master.__class__ = master_cls  # what `ctx.master` is in that tool
            tctx.configure(shim, streamshim_check="on")
            tctx.configure(shim, streamshim_check="auto")
            return shim.check_streams

    assert asyncio.run(under(DumpMaster)) is False
    assert asyncio.run(under(WebMaster)) is True


def test_check_runs_after_the_hook_returns(tmp_path: Path) -> None:
    """In the proxy the check is deferred to the event loop: the response hook (and the client's
    last bytes) do not wait for it; mitmweb is told about the change with an update."""
    body = sse(chunk(delta(role="assistant", content="hi")), chunk(delta(finish_reason="stop")))
    updated = []

    class Watch:
        def update(self, flows: list) -> None:
            updated.extend(flows)

    async def go() -> tflow.HTTPFlow:
        shim = StreamShim()
        with taddons.context(shim) as tctx:
            tctx.master.addons.add(Watch())
            tctx.configure(
                shim, streamshim_rules=str(write(tmp_path / "r.yaml", RULES)), streamshim_check="on"
            )
            f = flow("up.example", {"model": "m", "messages": [], "stream": True})
            shim.request(f)
            f.response = tutils.tresp(content=body, headers=[(b"content-type", b"text/event-stream")])
            shim.responseheaders(f)
            shim.response(f)
            assert "check" not in f.comment and updated == []
            await asyncio.sleep(0)
            return f

    f = asyncio.run(go())
    assert f.comment.splitlines()[-1] == "check upstream: 3 events: 1 error, 0 warnings (usage-missing)"
    assert updated == [f]


def test_passthrough_callable_streams_and_records(tmp_path: Path) -> None:
    shim = StreamShim()
    body = sse(
        chunk(delta(role="assistant", content="hi")),
        chunk(delta(finish_reason="stop")),
        chunk(usage={"total_tokens": 3}),
    )
    with taddons.context(shim) as tctx:
        tctx.configure(shim, streamshim_rules=str(write(tmp_path / "r.yaml", RULES)))
        f = flow("up.example", {"model": "m", "messages": [], "stream": True})
        shim.request(f)
        f.response = tutils.tresp(content=None, headers=[(b"content-type", b"text/event-stream")])
        shim.responseheaders(f)
        assert callable(f.response.stream)
        out = b""
        for i in range(0, len(body), 7):  # arbitrary splits
            piece = f.response.stream(body[i : i + 7])
            out += piece if isinstance(piece, bytes) else b"".join(piece)
        tail = f.response.stream(b"")
        out += tail if isinstance(tail, bytes) else b"".join(tail)
        shim.response(f)  # what mitmproxy calls once the last byte has left: the stream is judged
        # the injected usage chunk is removed for a client that did not ask for it
        assert out == sse(chunk(delta(role="assistant", content="hi")), chunk(delta(finish_reason="stop")))
        assert f.response.content == out
        assert f.metadata["streamshim"]["upstream_response"] == body
        assert "injected usage removed from 1 chunk(s)" in f.comment
        assert shim.live == {}


def test_a_long_stream_nothing_reads_holds_only_its_end(tmp_path: Path) -> None:
    # plain mitmdump (no -w, no mitmweb): a stream is not kept for the flow, and past WHOLE_BYTES
    # only its end is held; it is still judged by how it ended. When the flow is read, all of it.
    from streamshim.passthrough import WHOLE_BYTES

    piece = chunk(delta(content="x" * 2000))
    body = sse(chunk(delta(role="assistant", content="")), *[piece] * (WHOLE_BYTES // 2000 + 10))
    for keep in (False, True):
        shim = StreamShim()
        with taddons.context(shim) as tctx:
            tctx.configure(shim, streamshim_rules=str(write(tmp_path / "r.yaml", RULES)))
            shim.shim.keep_bodies = keep
            f = flow("nomatch.example", {"model": "m", "stream": True})
            shim.request(f)
            f.response = tutils.tresp(content=None, headers=[(b"content-type", b"text/event-stream")])
            shim.responseheaders(f)
            stream = shim.live[f.id]
            assert _stream_through(f, body, step=65536) == body
            assert stream.keep.whole is keep and stream.keep.total == len(body)
            shim.response(f)
            said = f"SSE passthrough: {len(body)} B in, {len(body)} B out; ended with [DONE]"
            assert f.comment.endswith(said), f.comment
            assert f.response.raw_content == (body if keep else None) and f.marked != ":warning:"


def test_client_disconnect_cleans_up_and_records(tmp_path: Path) -> None:
    shim = StreamShim()
    with taddons.context(shim) as tctx:
        tctx.configure(shim, streamshim_rules=str(write(tmp_path / "r.yaml", RULES)))
        f = flow("nomatch.example", {"model": "m", "stream": True})
        shim.request(f)
        f.response = tutils.tresp(content=None, headers=[(b"content-type", b"text/event-stream")])
        shim.responseheaders(f)
        f.response.stream(sse(chunk(delta(content="par")), done=False))
        assert len(shim.live) == 1
        f.error = tflow.terr("Client disconnected.")
        shim.error(f)
        assert shim.live == {}
        assert "broken: Client disconnected." in f.comment and f.marked == ":warning:"
        assert b"par" in f.response.content


def _stream_through(f: tflow.HTTPFlow, body: bytes, step: int = 7) -> bytes:
    """Feed ``body`` to the flow's stream callable in pieces; what the client gets."""
    assert f.response is not None and callable(f.response.stream)
    out = b""
    for piece in [body[i : i + step] for i in range(0, len(body), step)] + [b""]:
        got = f.response.stream(piece)
        out += got if isinstance(got, bytes) else b"".join(got)
    return out


def test_injected_usage_is_taken_out_of_a_chunk_that_carries_more(tmp_path: Path) -> None:
    # llama-server moves its `timings` onto the usage-only chunk when include_usage is asked: a
    # client that did not ask for usage loses only the usage, never the timings
    shim = StreamShim()
    timings = {"prompt_n": 5, "predicted_n": 2}
    body = sse(
        chunk(delta(role="assistant", content="hi")),
        chunk(delta(finish_reason="stop")),
        chunk(usage={"total_tokens": 3}, timings=timings),
    )
    with taddons.context(shim) as tctx:
        tctx.configure(shim, streamshim_rules=str(write(tmp_path / "r.yaml", RULES)))
        f = flow("up.example", {"model": "m", "messages": [], "stream": True})
        shim.request(f)
        f.response = tutils.tresp(content=None, headers=[(b"content-type", b"text/event-stream")])
        shim.responseheaders(f)
        out = _stream_through(f, body)
        shim.response(f)
        assert out == sse(
            chunk(delta(role="assistant", content="hi")),
            chunk(delta(finish_reason="stop")),
            chunk(timings=timings),
        )
        assert "injected usage removed from 1 chunk(s)" in f.comment


def test_injected_usage_that_never_came_is_said_for_a_stream_client(tmp_path: Path) -> None:
    shim = StreamShim()
    body = sse(chunk(delta(role="assistant", content="hi")), chunk(delta(finish_reason="stop")))
    with taddons.context(shim) as tctx:
        tctx.configure(shim, streamshim_rules=str(write(tmp_path / "r.yaml", RULES)))
        f = flow("up.example", {"model": "m", "messages": [], "stream": True})
        shim.request(f)
        f.response = tutils.tresp(content=None, headers=[(b"content-type", b"text/event-stream")])
        shim.responseheaders(f)
        assert _stream_through(f, body) == body
        assert f.comment == ""  # nothing is judged on the client's path
        shim.response(f)
        assert "no usage arrived although streamshim asked for it" in f.comment


@pytest.mark.parametrize(
    "fill,usage,header",
    [
        ("estimate", {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}, "estimate"),
        ("zeros", {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}, "zeros"),
        ("off", None, None),
    ],
)
def test_usage_filled_for_a_json_client_as_the_rule_says(
    tmp_path: Path, fill: str, usage: dict | None, header: str | None
) -> None:
    value = "false" if fill == "off" else fill
    rules = f"rules:\n  - name: r\n    host: '*'\n    upstream: stream\n    fill_usage: {value}\n"
    body = sse(
        chunk(delta(role="assistant", content="a")),
        chunk(delta(content="b")),
        chunk(delta(finish_reason="stop")),
    )
    shim = StreamShim()
    with taddons.context(shim) as tctx:
        tctx.configure(shim, streamshim_rules=str(write(tmp_path / "r.yaml", rules)))
        f = flow("up.example", {"model": "m", "messages": [{"role": "user", "content": "0123456789"}]})
        shim.request(f)
        f.response = tutils.tresp(content=body, headers=[(b"content-type", b"text/event-stream")])
        shim.responseheaders(f)
        shim.response(f)
        got = f.response.json()
        assert got.get("usage") == usage
        assert f.response.headers.get("x-streamshim-usage-filled") == header
        assert f.metadata["streamshim"].get("usage_filled") == header
        # the client's body misses (or has a made-up) usage: always said, always marked 🔶
        assert f.marked == ":large_orange_diamond:"
        if fill == "off":
            assert "carried no usage although streamshim asked for it: none filled" in f.comment
        else:
            assert f"usage filled ({fill}" in f.comment


def test_usage_the_stream_carried_is_never_replaced(tmp_path: Path) -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}
    body = sse(chunk(delta(role="assistant", content="a", finish_reason="stop")), chunk(usage=usage))
    shim = StreamShim()
    with taddons.context(shim) as tctx:
        tctx.configure(shim, streamshim_rules=str(write(tmp_path / "r.yaml", RULES)))
        f = flow("up.example", {"model": "m", "messages": []})
        shim.request(f)
        f.response = tutils.tresp(content=body, headers=[(b"content-type", b"text/event-stream")])
        shim.responseheaders(f)
        shim.response(f)
        assert f.response.json()["usage"] == usage
        assert "x-streamshim-usage-filled" not in f.response.headers
        assert "usage" not in f.comment and f.marked == ":default:"


def test_empty_200_to_a_forced_stream_says_what_it_means(tmp_path: Path) -> None:
    # llama-cpp-python answers e.g. a context overflow on its stream path with 200 and no body
    shim = StreamShim()
    with taddons.context(shim) as tctx:
        tctx.configure(shim, streamshim_rules=str(write(tmp_path / "r.yaml", RULES)))
        f = flow("up.example", {"model": "m", "messages": []})
        shim.request(f)
        f.response = tutils.tresp(content=b"", headers=[(b"content-type", b"text/event-stream")])
        shim.responseheaders(f)
        shim.response(f)
        assert f.response.status_code == 502
        message = f.response.json()["error"]["message"]
        assert message.startswith("streamshim: upstream answered 200 with an empty body to the stream")
        assert "its non-stream path would have answered" in message and "upstream's log" in message
        assert "its non-stream path would have answered" in f.comment


def test_a_rule_names_the_dialect_of_a_route_no_path_tells(tmp_path: Path) -> None:
    """Rule key ``api``: a gateway's own route (here /gw/generate) is chat completions."""
    rules = (
        "rules:\n  - name: gw\n    host: '*'\n    path: '/gw/*'\n    api: chat\n    upstream: stream\n"
        "  - name: rest\n    host: '*'\n    upstream: stream\n"
    )
    shim = StreamShim()
    with taddons.context(shim) as tctx:
        tctx.configure(shim, streamshim_rules=str(write(tmp_path / "r.yaml", rules)))
        f = flow("up.example", {"model": "m", "messages": []}, path="/gw/generate")
        shim.request(f)
        assert f.request.json()["stream"] is True
        assert f.metadata["streamshim"]["api"] == "chat" and f.metadata["streamshim"]["rule"] == "gw"
        other = flow("up.example", {"model": "m", "messages": []}, path="/other/generate")
        shim.request(other)  # no dialect's path, no rule naming one: not ours
        assert "streamshim" not in other.metadata and "stream" not in other.request.json()


def test_the_dialect_is_resolved_once_by_name_then_path_then_payload() -> None:
    from streamshim import dialects

    chat_body = b'data: {"object":"chat.completion.chunk","choices":[]}\n\n'
    assert dialects.resolve("completions", path="/v1/chat/completions").name == "completions"
    assert dialects.resolve(path="/v1/chat/completions", body=b"").name == "chat"
    assert dialects.resolve(path="/v1/completions?x=1").name == "completions"
    assert dialects.resolve(path="/v1/embeddings", body=chat_body) is None  # a path decides alone
    assert dialects.resolve(body=chat_body).name == "chat"
    assert (
        dialects.resolve(payload={"object": "text_completion", "choices": [{"delta": {}}]}).name
        == "completions"
    )
    assert dialects.resolve(body=b"nothing") is dialects.DEFAULT
    with pytest.raises(ValueError, match="unknown API 'x'; known: chat, completions"):
        dialects.resolve("x")
