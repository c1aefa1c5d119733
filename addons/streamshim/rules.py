"""The rules model: which upstream shape to ask for, per host, listening port, path and model.

``rules.yaml`` is a mapping with one key, ``rules``: an ordered list, first match wins. Loading is
strict: a YAML error, an unknown key or a bad value raises ``RulesError`` naming the file, the
line and what is wrong. mitmproxy-free.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from . import dialects
from .dialects.base import DEFAULT_CHUNK_CHARS, FILL_USAGE
from .errors import StreamShimError

UPSTREAM_VALUES = ("stream", "json", "as-requested")
# every registered dialect's endpoints (``*/chat/completions``, ``*/completions``, …)
DEFAULT_PATHS = tuple(dict.fromkeys(g for d in dialects.DIALECTS for g in d.path_globs()))


class RulesError(StreamShimError):
    """A rules file that cannot be used: the message names the file, the line and the problem."""


@dataclass(frozen=True)
class Settings:
    """What the response path needs of a rule, kept with each flow (rules may reload meanwhile,
    and ``streamshim replay`` uses the settings a recording was made with)."""

    upstream: str = "as-requested"
    chunk_chars: int = DEFAULT_CHUNK_CHARS
    keepalive: bool = False
    promote_tool_calls: bool = False
    fill_usage: str = "estimate"
    repair: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Any) -> Settings:
        """From a flow's metadata; keys it does not know are left out, missing ones default."""
        if not isinstance(data, dict):
            return cls()
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Rule:
    name: str
    upstream: str = "as-requested"
    host: str = "*"
    path: tuple[str, ...] = DEFAULT_PATHS
    listen_port: int | None = None
    model: str | None = None
    api: str | None = None  # the dialect, when the path does not tell (a gateway's own route)
    chunk_chars: int = DEFAULT_CHUNK_CHARS
    keepalive: bool = False
    promote_tool_calls: bool = False
    fill_usage: str = "estimate"
    repair: bool = False
    line: int = 0  # where the rule starts in its file, for messages

    def settings(self) -> Settings:
        return Settings(**{f.name: getattr(self, f.name) for f in fields(Settings)})

    def matches(self, host: str, port: int, path: str, listen_port: int | None, model: str | None) -> bool:
        """``host``/``port``: the upstream; ``listen_port``: the proxy port the client reached."""
        if self.listen_port is not None and self.listen_port != listen_port:
            return False
        host = host.lower()
        host_glob = self.host.lower()
        if not (fnmatch.fnmatchcase(host, host_glob) or fnmatch.fnmatchcase(f"{host}:{port}", host_glob)):
            return False
        clean = path.split("?", 1)[0]
        if not any(fnmatch.fnmatchcase(clean, p) for p in self.path):
            return False
        return self.model is None or (model is not None and fnmatch.fnmatchcase(model, self.model))


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    source: str = "<none>"
    mtime: float | None = field(default=None, compare=False)

    def match(
        self, host: str, port: int, path: str, listen_port: int | None = None, model: str | None = None
    ) -> Rule | None:
        for rule in self.rules:
            if rule.matches(host, port, path, listen_port, model):
                return rule
        return None


_FIELDS: dict[str, str] = {
    "name": "a name shown in mitmweb",
    "host": "a glob on the upstream host or host:port",
    "path": "a glob, or a list of globs, on the request path",
    "listen_port": "the proxy's listening port (an integer)",
    "model": "a glob on the request's model",
    "api": "the API dialect, one of " + ", ".join(dialects.BY_NAME),
    "upstream": "one of " + ", ".join(UPSTREAM_VALUES),
    "chunk_chars": "characters per synthesized piece (a positive integer)",
    "keepalive": "true/false",
    "promote_tool_calls": "true/false",
    "fill_usage": "estimate, zeros or false",
    "repair": "true/false",
}


def load_rules(path: str | Path) -> RuleSet:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        mtime = path.stat().st_mtime
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise RulesError(f"{path}: rules file is not UTF-8: {exc}") from None
    return parse_rules(text, str(path), mtime)


def parse_rules(text: str, source: str = "<rules>", mtime: float | None = None) -> RuleSet:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise RulesError(f"{where}: invalid YAML: {problem}") from None
    if root is None:
        raise RulesError(f"{source}: empty rules file (expected a mapping with a 'rules' list)")
    if not isinstance(root, yaml.MappingNode):
        raise RulesError(f"{source}:{_line(root)}: expected a mapping with a 'rules' list")
    rules_node = None
    for key, value in root.value:
        if key.value != "rules":
            raise RulesError(f"{source}:{_line(key)}: unknown top-level key {key.value!r} (expected 'rules')")
        rules_node = value
    if rules_node is None:
        raise RulesError(f"{source}: missing 'rules' list")
    if isinstance(rules_node, yaml.ScalarNode) and rules_node.value in ("", "~", "null"):
        return RuleSet((), source, mtime)
    if not isinstance(rules_node, yaml.SequenceNode):
        raise RulesError(f"{source}:{_line(rules_node)}: 'rules' must be a list")
    rules = []
    names: dict[str, int] = {}
    for i, node in enumerate(rules_node.value):
        rule = _rule(node, i, source)
        if rule.name in names:
            raise RulesError(
                f"{source}:{rule.line}: duplicate rule name {rule.name!r} (first at line {names[rule.name]})"
            )
        names[rule.name] = rule.line
        rules.append(rule)
    return RuleSet(tuple(rules), source, mtime)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _rule(node: yaml.Node, i: int, source: str) -> Rule:
    if not isinstance(node, yaml.MappingNode):
        raise RulesError(f"{source}:{_line(node)}: rule #{i + 1} must be a mapping of keys to values")
    values: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = key_node.value
        where = f"{source}:{_line(key_node)}"
        if key not in _FIELDS:
            raise RulesError(f"{where}: rule #{i + 1}: unknown key {key!r} (known: {', '.join(_FIELDS)})")
        value = yaml.SafeLoader(yaml.serialize(value_node)).get_single_data()
        values[key] = _check(key, value, where, i)
    line = _line(node)
    if "name" not in values:
        raise RulesError(f"{source}:{line}: rule #{i + 1} has no 'name'")
    if "upstream" not in values:
        raise RulesError(
            f"{source}:{line}: rule {values['name']!r} has no 'upstream' ({_FIELDS['upstream']})"
        )
    return Rule(line=line, **values)


def _check(key: str, value: Any, where: str, i: int) -> Any:
    def bad(detail: str = "") -> RulesError:
        return RulesError(f"{where}: rule #{i + 1}: bad {key} {value!r}: expected {_FIELDS[key]}{detail}")

    if key in ("name", "host", "model"):
        if not isinstance(value, str) or not value:
            raise bad()
        if key != "name":
            _check_glob(value, bad)
        return value
    if key == "path":
        globs = [value] if isinstance(value, str) else value
        if not isinstance(globs, list) or not globs or not all(isinstance(g, str) and g for g in globs):
            raise bad()
        for g in globs:
            _check_glob(g, bad)
        return tuple(globs)
    if key == "fill_usage" and value is False:  # `false` (also YAML's `off`, `no`): do not fill
        return "off"
    if key in ("upstream", "fill_usage", "api"):
        allowed = {"upstream": UPSTREAM_VALUES, "fill_usage": FILL_USAGE, "api": tuple(dialects.BY_NAME)}
        if value not in allowed[key]:
            raise bad()
        return value
    if key == "listen_port":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
            raise bad()
        return value
    if key == "chunk_chars":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise bad()
        return value
    if not isinstance(value, bool):  # keepalive, promote_tool_calls, repair
        raise bad()
    return value


def _check_glob(glob: str, bad: Any) -> None:
    # fnmatch accepts anything; an unclosed '[' silently matches only itself, which is never meant
    depth = 0
    for ch in glob:
        if ch == "[":
            depth += 1
        elif ch == "]" and depth:
            depth -= 1
    if depth:
        raise bad(" (unclosed '[' in the glob)")
