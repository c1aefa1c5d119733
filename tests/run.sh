#!/usr/bin/env bash
# The project's test command (README "Run the tests", CI's .ci/run): for each supported
# mitmproxy line it makes a fresh virtualenv, installs the project with its test extras, checks
# lint, and runs the whole suite including the slow tiers.
#   python3    (3.11 here) -> mitmproxy 11.0.x, plus the llama-cpp-python server extra
#   python3.12 (if present) -> mitmproxy 12.x
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k sse`.
set -euo pipefail
cd "$(dirname "$0")/.."

# The browser tier (tests/test_mitmweb_browser.py) drives Debian's chromium, headless. Install it
# when it is missing and apt-get is at hand (as root, or with passwordless sudo); without it those
# tests skip, saying why.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
    as_root=""
    [ "$(id -u)" -eq 0 ] || as_root="sudo -n"
    echo "== installing chromium (apt-get) for the mitmweb browser tests"
    apt_install() { $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; }
    if ! apt_install; then
        $as_root apt-get update -q >/dev/null 2>&1 || true
        apt_install || echo "== could not install chromium: the browser tests will skip"
    fi
fi

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

# A Python >= 3.12 for the mitmproxy 12 line: on PATH, or installed by pyenv but not selected.
find_py312() {
    local c
    for c in python3.12 python3.13 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3; do
        if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null
        then
            echo "$c"
            return 0
        fi
    done
    return 1
}

suite python3 .venv "test,server" "$@"
if py312=$(find_py312); then
    # the llama-cpp-python server (built once, for the first suite) serves this suite too
    STREAMSHIM_LLAMA_PYTHON="$PWD/.venv/bin/python" suite "$py312" .venv-mitm12 "test" "$@"
else
    echo "== no Python >= 3.12 found: the mitmproxy 12 line is not tested on this machine"
fi
