"""Used by tests/run.sh: fail unless this environment has the lines its suite claims.

    python tests/check_versions.py mitmproxy=12 openai=3

prints ``== mitmproxy 12.2.3, openai 3.54.0 (Python 3.12.1)`` and exits 0, or names each package
whose major version is another (or that is missing) on one line on stderr and exits 1."""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version


def check(wanted: list[str]) -> tuple[str, list[str]]:
    """``(summary, problems)`` for ``NAME=MAJOR`` items."""
    got, problems = [], []
    for item in wanted:
        name, _, major = item.partition("=")
        try:
            have = version(name)
        except PackageNotFoundError:
            have = "not installed"
        got.append(f"{name} {have}")
        if have.split(".")[0] != major:
            problems.append(f"{name} {have} where this suite is for {name} {major}.x")
    return ", ".join(got) + f" (Python {sys.version.split()[0]})", problems


def main(argv: list[str]) -> int:
    summary, problems = check(argv)
    if problems:
        print(f"{sys.executable}: {'; '.join(problems)}: pip resolved another line", file=sys.stderr)
        return 1
    print(f"== {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
