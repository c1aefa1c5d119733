"""The rules model: strict loading with file:line messages, and matching."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamshim.rules import DEFAULT_PATHS, Rule, RulesError, load_rules, parse_rules

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_rules_cover_the_three_use_cases() -> None:
    rs = load_rules(ROOT / "rules.yaml")
    by_name = {r.name: r for r in rs.rules}
    assert (
        by_name["vllm-streaming-path"].upstream == "stream"
        and by_name["vllm-streaming-path"].listen_port == 8001
    )
    assert by_name["llama-server-tools"].upstream == "json"
    assert by_name["stream-only-upstream"].keepalive is True
    assert rs.rules[-1].host == "*" and rs.rules[-1].upstream == "as-requested"
    # stream clients of the catch-all get repaired streams; the BFCL streaming port stays byte-exact
    assert rs.rules[-1].repair is True and by_name["vllm-streaming-path"].repair is False
    # the BFCL path port streams, the direct port 8002 falls through to the catch-all
    assert rs.match("localhost", 8000, "/v1/chat/completions", 8001).name == "vllm-streaming-path"
    assert rs.match("localhost", 8000, "/v1/chat/completions", 8002).name == "catch-all"
    assert rs.match("localhost", 8080, "/v1/chat/completions", 9999).name == "llama-server-tools"


@pytest.mark.parametrize(
    "text,message",
    [
        ("rules:\n  - name: a\n    upstream: [\n", ":4: invalid YAML"),
        ("rules:\n  - name: a\n    upstream: stream\n    colour: red\n", ":4: rule #1: unknown key 'colour'"),
        (
            "rules:\n  - name: a\n    upstream: sideways\n",
            ":3: rule #1: bad upstream 'sideways': expected one of",
        ),
        ("rules:\n  - name: a\n", ":2: rule 'a' has no 'upstream'"),
        (
            "rules:\n  - name: a\n    upstream: stream\n    fill_usage: guess\n",
            ":4: rule #1: bad fill_usage 'guess': expected estimate, zeros or false",
        ),
        ("rules:\n  - upstream: json\n", ":2: rule #1 has no 'name'"),
        (
            "rules:\n  - name: a\n    upstream: json\n    listen_port: 70000\n",
            ":4: rule #1: bad listen_port 70000",
        ),
        ("rules:\n  - name: a\n    upstream: json\n    chunk_chars: 0\n", ":4: rule #1: bad chunk_chars 0"),
        (
            "rules:\n  - name: a\n    upstream: json\n    keepalive: maybe\n",
            ":4: rule #1: bad keepalive 'maybe'",
        ),
        ("rules:\n  - name: a\n    upstream: json\n    host: 'api[.example'\n", "unclosed '['"),
        (
            "rules:\n  - name: a\n    upstream: json\n  - name: a\n    upstream: stream\n",
            ":4: duplicate rule name",
        ),
        ("rulez: []\n", ":1: unknown top-level key 'rulez'"),
        ("- name: a\n", ":1: expected a mapping with a 'rules' list"),
        ("rules: 3\n", ":1: 'rules' must be a list"),
        ("", "empty rules file"),
    ],
)
def test_bad_rules_name_file_line_and_problem(text: str, message: str) -> None:
    with pytest.raises(RulesError) as ei:
        parse_rules(text, "my.yaml")
    assert str(ei.value).startswith("my.yaml")
    assert message in str(ei.value)


def test_unreadable_file() -> None:
    with pytest.raises(RulesError, match=r"nope\.yaml: cannot read rules file"):
        load_rules("/nonexistent/nope.yaml")


def test_matching_host_port_path_model_first_wins() -> None:
    rs = parse_rules(
        """
rules:
  - name: azure
    host: "*.openai.azure.com"
    upstream: json
  - name: local-8000
    host: "localhost:8000"
    model: "qwen*"
    upstream: stream
  - name: legacy-only
    host: "localhost:8000"
    path: "*/v1/completions"
    upstream: json
  - name: rest
    upstream: as-requested
"""
    )
    assert (
        rs.match("x.openai.azure.com", 443, "/openai/deployments/d/chat/completions?api-version=1").name
        == "azure"
    )
    assert rs.match("localhost", 8000, "/v1/chat/completions", model="qwen3-8b").name == "local-8000"
    assert rs.match("localhost", 8000, "/v1/chat/completions", model="llama").name == "rest"
    assert rs.match("localhost", 8000, "/v1/completions", model="llama").name == "legacy-only"
    assert rs.match("LOCALHOST", 8000, "/v1/chat/completions", model="qwen").name == "local-8000"
    assert Rule("r").path == DEFAULT_PATHS
    assert not Rule("r", path=DEFAULT_PATHS).matches("h", 1, "/v1/embeddings", None, None)


def test_fill_usage_values() -> None:
    def fill(value: str) -> str:
        return (
            parse_rules(f"rules:\n  - name: a\n    upstream: stream\n    fill_usage: {value}\n")
            .rules[0]
            .fill_usage
        )

    assert parse_rules("rules:\n  - name: a\n    upstream: stream\n").rules[0].fill_usage == "estimate"
    assert [fill(v) for v in ("estimate", "zeros", "false", "off", "no")] == [
        "estimate",
        "zeros",
        *["off"] * 3,
    ]
