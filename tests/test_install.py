"""What each suite of tests/run.sh installs: the test extra's lines per Python (pyproject markers),
the lines run.sh asks for, and the check that stops a suite which got another line."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUN_SH = (ROOT / "tests" / "run.sh").read_text()
CHECK = ROOT / "tests" / "check_versions.py"


def requirements(python: str, extra: str | None = None) -> dict[str, Requirement]:
    """The requirements that apply on ``python`` (merged per name: specifiers of all that apply)."""
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    if extra:
        reqs += [Requirement(r) for r in PROJECT["optional-dependencies"][extra]]
    out: dict[str, Requirement] = {}
    for r in reqs:
        if r.marker is None or r.marker.evaluate({"python_version": python, "extra": extra or ""}):
            if r.name in out:
                out[r.name].specifier &= r.specifier
            else:
                out[r.name] = r
    return out


# (Python, mitmproxy, openai) that pip may pick from the test extra, and what it must not
@pytest.mark.parametrize(
    ("python", "allowed", "refused"),
    [
        ("3.11", {"mitmproxy": "11.0.2", "openai": "2.54.0"}, {"openai": "3.54.0"}),
        ("3.12", {"mitmproxy": "12.2.3", "openai": "3.54.0"}, {"mitmproxy": "11.1.3", "openai": "2.54.0"}),
        ("3.13", {"mitmproxy": "12.2.3", "openai": "3.54.0"}, {"mitmproxy": "11.1.3", "openai": "2.54.0"}),
    ],
)
def test_the_test_extra_allows_only_its_lines(
    python: str, allowed: dict[str, str], refused: dict[str, str]
) -> None:
    reqs = requirements(python, "test")
    for name, v in allowed.items():
        assert reqs[name].specifier.contains(v), (python, name, v, str(reqs[name].specifier))
    for name, v in refused.items():
        assert not reqs[name].specifier.contains(v), (python, name, v, str(reqs[name].specifier))
    assert "httpx" in reqs  # the tests' raw client, which openai 3.x no longer brings
    assert ("httpcore" in reqs) == (python == "3.11")  # the pin for mitmproxy 11's h11 only


def test_the_plain_install_on_312_is_mitmproxy_12() -> None:
    # what the README's start command installs (no extras) on the Python it picks
    assert not requirements("3.12")["mitmproxy"].specifier.contains("11.1.3")
    assert requirements("3.11")["mitmproxy"].specifier.contains("11.0.2")


def test_run_sh_asks_each_suite_for_the_lines_the_extra_allows() -> None:
    suites = re.findall(r'suite "\$(py31[12])" (\S+) "([a-z,]+)" (\d+) (\d+)', RUN_SH)
    assert {(py, venv, mitm, oai) for py, venv, _, mitm, oai in suites} == {
        ("py311", ".venv-mitm11", "11", "2"),
        ("py312", ".venv-mitm12", "12", "3"),
    }
    # the suite installs "mitmproxy>=M,<M+1" "openai>=O,<O+1" and then checks what it got
    assert '"mitmproxy>=$mitm,<$((mitm + 1))" "openai>=$openai,<$((openai + 1))"' in RUN_SH
    assert 'tests/check_versions.py "mitmproxy=$mitm" "openai=$openai"' in RUN_SH


def check(*wanted: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), *wanted], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_version_check_passes_on_the_lines_installed_here() -> None:
    mitm, oai = version("mitmproxy"), version("openai")
    r = check(f"mitmproxy={mitm.split('.')[0]}", f"openai={oai.split('.')[0]}")
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout == f"== mitmproxy {mitm}, openai {oai} (Python {sys.version.split()[0]})\n"


def test_the_version_check_stops_a_suite_that_got_another_line() -> None:
    mitm = version("mitmproxy")
    other = "12" if mitm.startswith("11.") else "11"
    r = check(f"mitmproxy={other}", "no-such-package-here=1")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == (
        f"{sys.executable}: mitmproxy {mitm} where this suite is for mitmproxy {other}.x; "
        "no-such-package-here not installed where this suite is for no-such-package-here 1.x: "
        "pip resolved another line\n"
    )


def test_the_wheel_holds_every_module_of_the_package(tmp_path: Path) -> None:
    """A non-editable install gets the whole package (framing/, mitm/ and the dialects too)."""
    import zipfile

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("streamshim-*.whl")
    packed = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".py")}
    source = {str(p.relative_to(ROOT / "addons")) for p in (ROOT / "addons" / "streamshim").rglob("*.py")}
    assert source and source <= packed, sorted(source - packed)
