"""The shape of the code, held as tests: a mitmproxy-free core, no import circle, and an API's
knowledge only in its dialect."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "addons" / "streamshim"
# what only the OpenAI dialects may know (the CLI's user-facing flag aside: cli.py names --include-usage
# and hands it to the dialect)
OPENAI_WORDS = re.compile(r"\[DONE\]|include_usage|finish_reason|\"choices\"|chat\.completion")

BLOCK_MITMPROXY = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "mitmproxy" or name.startswith("mitmproxy."):
            raise ImportError(f"mitmproxy is not installed here ({name})")
        return None
sys.meta_path.insert(0, Block())
"""


def test_the_core_works_without_mitmproxy() -> None:
    code = BLOCK_MITMPROXY + (
        "import json\n"
        "from streamshim import aggregate, synthesize, check, meaning, view, rules, passthrough\n"
        "from streamshim import framing, dialects\n"
        "resp = {'id': 'x', 'object': 'chat.completion', 'created': 1, 'model': 'm', 'choices': [{'index': 0,"
        " 'message': {'role': 'assistant', 'content': 'hi'}, 'logprobs': None, 'finish_reason': 'stop'}]}\n"
        "body = synthesize(resp)\n"
        "assert aggregate(body) == resp\n"
        "assert check.check_stream(body).errors == []\n"
        "assert meaning.meaning(200, [], body)['shape'] == 'sse'\n"
        "assert view.render(body).startswith('LLM stream')\n"
        "import streamshim.cli\n"
        "try:\n"
        "    import streamshim.mitm\n"
        "except ImportError as exc:\n"
        "    print('mitm refused:', exc)\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(PACKAGE.parent)}
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["mitm refused: mitmproxy is not installed here (mitmproxy)", "ok"]


def _modules() -> dict[str, Path]:
    return {
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in PACKAGE.rglob("*.py")
    }


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project's modules ``name`` imports, at any depth of its code (lazy imports count)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            mod = (f"{base}.{node.module}" if node.module else base) if node.level else (node.module or "")
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in known and t != name}
    return out


def test_no_import_circle_between_the_projects_modules() -> None:
    mods = _modules()
    graph = {name: _imports(name, path, set(mods)) for name, path in mods.items()}
    # a package's __init__ importing its own submodules is not a circle of the code
    for name in graph:
        graph[name] = {
            t for t in graph[name] if not (t.startswith(name + ".") and mods[name].name == "__init__.py")
        }
    circles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append([*trail[trail.index(nxt) :], nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert circles == []


def test_openai_specifics_live_only_in_the_openai_dialects() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "dialects":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if OPENAI_WORDS.search(line) and not (rel.name == "cli.py" and "include_usage" in line):
                found.append(f"{rel}:{n}: {line.strip()}")
    assert found == []


def test_only_the_mitm_layer_and_the_clis_flow_commands_import_mitmproxy() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "mitm":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            if any(n == "mitmproxy" or n.startswith("mitmproxy.") for n in names):
                found.append(f"{rel}:{node.lineno}")
    assert found == []
