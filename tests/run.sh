#!/usr/bin/env bash
# The project's test command (README "Run the tests", CI's .ci/run): for each supported
# mitmproxy line it makes a fresh virtualenv, installs the project with its test extras, checks
# lint, and runs the whole suite including the slow tiers.
#   python3    (3.11 here) -> mitmproxy 11.0.x, plus the llama-cpp-python server extra
#   python3.12 (if present) -> mitmproxy 12.x
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k sse`.
set -euo pipefail
cd "$(dirname "$0")/.."

suite() {
    local py=$1 venv=$2 extras=$3
    shift 3
    echo "== $("$py" --version 2>&1) in $venv (extras: $extras)"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[$extras]"
    "$venv/bin/python" -c 'import mitmproxy.version as v; print("== mitmproxy", v.VERSION)'
    "$venv/bin/python" -m ruff check .
    "$venv/bin/python" -m ruff format --check .
    "$venv/bin/python" -m pytest -m "not fuzz" "$@"
}

suite python3 .venv "test,server" "$@"
if python3.12 -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    suite python3.12 .venv-mitm12 "test" "$@"
else
    echo "== python3.12 not found: the mitmproxy 12 line is not tested on this machine"
fi
