"""The rules addon: the ``streamshim_rules`` option, loading, reloading on change, the
``streamshim.reload`` command. Other addons ask it for the rule of a request (``match``)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from mitmproxy import command, ctx, exceptions

from ..rules import Rule, RulesError, RuleSet, load_rules

log = logging.getLogger("streamshim")

SHIPPED_RULES = Path(__file__).resolve().parents[3] / "rules.yaml"
RELOAD_CHECK_SECONDS = 1.0


class Rules:
    def __init__(self, rules: RuleSet | None = None) -> None:
        self.rules = rules or RuleSet()
        self._path = ""
        self._last_check = 0.0

    def load(self, loader: Any) -> None:
        loader.add_option(
            "streamshim_rules",
            str,
            str(SHIPPED_RULES) if SHIPPED_RULES.is_file() else "",
            "Path of the streamshim rules file (YAML). Ordered rules, first match wins; each decides "
            "what the upstream is asked for: stream, json or as-requested. Reloaded when it changes. "
            "Empty: no rules (streams still pass through, nothing is rewritten).",
        )

    def configure(self, updated: set[str]) -> None:
        if "streamshim_rules" not in updated:
            return
        self._path = ctx.options.streamshim_rules
        try:
            self.rules = self._load()
        except RulesError as exc:
            # at startup mitmdump/mitmweb print this and exit ("Error logged during startup")
            raise exceptions.OptionsError(str(exc)) from None
        log.info("streamshim: %d rule(s) from %s", len(self.rules.rules), self.rules.source)

    def _load(self) -> RuleSet:
        return load_rules(self._path) if self._path else RuleSet()

    @command.command("streamshim.reload")
    def reload(self) -> None:
        """Reload the rules file now. A bad file is reported and the last good rules stay."""
        self._reload(force=True)

    def match(
        self, host: str, port: int, path: str, listen_port: int | None, model: str | None
    ) -> Rule | None:
        """The rule for a request; the file is checked for changes at most once a second."""
        now = time.monotonic()
        if now - self._last_check >= RELOAD_CHECK_SECONDS:
            self._last_check = now
            self._reload()
        return self.rules.match(host, port, path, listen_port, model)

    def any_api(self) -> bool:
        """Whether a rule names its dialect (``api:``), so paths no dialect claims may be ours."""
        return any(r.api for r in self.rules.rules)

    def _reload(self, force: bool = False) -> None:
        if not self._path:
            return
        try:
            mtime = os.stat(self._path).st_mtime
        except OSError as exc:
            if force or self.rules.mtime is not None:
                log.warning(
                    "streamshim: rules file %s is unreadable (%s); keeping the last good rules",
                    self._path,
                    exc.strerror,
                )
                self.rules = RuleSet(self.rules.rules, self.rules.source, None)
            return
        if not force and mtime == self.rules.mtime:
            return
        try:
            self.rules = self._load()
        except RulesError as exc:
            log.error("streamshim: %s; keeping the last good rules", exc)
            self.rules = RuleSet(self.rules.rules, self.rules.source, mtime)  # report once per change
            return
        log.info("streamshim: reloaded %d rule(s) from %s", len(self.rules.rules), self._path)
