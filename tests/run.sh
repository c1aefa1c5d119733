#!/usr/bin/env bash
# The project's test command (README "Run the tests", CI's .ci/run): for each supported
# mitmproxy line it makes (or reuses) a virtualenv, installs the project with its test extras and
# that line, checks that pip installed the versions the suite is for (and stops if not), checks
# lint, and runs the whole suite including the slow tiers.
#   Python 3.11    (.venv-mitm11) -> mitmproxy 11.0.x, openai 2.x, plus the llama-cpp-python server
#   Python >= 3.12 (.venv-mitm12) -> mitmproxy 12.x,   openai 3.x (what `pip install openai` gives)
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k sse`.
# STREAMSHIM_NO_CHROMIUM=1: do not install chromium; the browser tests then skip, saying why.
set -euo pipefail
cd "$(dirname "$0")/.."

# The browser tier (tests/test_mitmweb_browser.py) drives Debian's chromium, headless. Install it
# when it is missing and apt-get is at hand (as root, or with passwordless sudo); without it those
# tests skip, saying why.
if [ -n "${STREAMSHIM_NO_CHROMIUM:-}" ]; then
    echo "== STREAMSHIM_NO_CHROMIUM is set: chromium is not installed and the browser tests skip"
elif [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
    as_root=""
    [ "$(id -u)" -eq 0 ] || as_root="sudo -n"
    echo "== installing chromium (apt-get) for the mitmweb browser tests (STREAMSHIM_NO_CHROMIUM=1 skips this)"
    apt_install() { $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; }
    if ! apt_install; then
        $as_root apt-get update -q >/dev/null 2>&1 || true
        apt_install || echo "== could not install chromium: the browser tests will skip"
    fi
fi

# llama.cpp's own C++ llama-server (the real upstream of the Responses and Anthropic Messages
# tests): built once from the llama-cpp-python sdist into a cache (~10 CPU-minutes), then reused
# by both suites. In CI a failed build fails the run; elsewhere those tests skip, saying why.
if ! bash tests/build_llama_server.sh; then
    [ -n "${CI:-}" ] && { echo "== could not build llama-server" >&2; exit 1; }
    echo "== could not build llama-server: its tests will skip"
fi

# suite PYTHON VENV EXTRAS MITMPROXY_MAJOR OPENAI_MAJOR [pytest args]
suite() {
    local py=$1 venv=$2 extras=$3 mitm=$4 openai=$5
    shift 5
    echo "== $("$py" --version 2>&1) ($py) in $venv: mitmproxy $mitm.x, openai $openai.x (extras: $extras)"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[$extras]" \
        "mitmproxy>=$mitm,<$((mitm + 1))" "openai>=$openai,<$((openai + 1))"
    "$venv/bin/python" tests/check_versions.py "mitmproxy=$mitm" "openai=$openai"
    "$venv/bin/python" -m ruff check .
    "$venv/bin/python" -m ruff format --check .
    "$venv/bin/python" -m pytest -m "not fuzz" "$@"
}

# find_python TEST CANDIDATE...: the first candidate that runs and passes TEST (a Python
# expression on sys.version_info). Candidates are run, not looked up: pyenv's shim for a version
# that is installed but not selected is on PATH and fails.
find_python() {
    local test=$1 c
    shift
    for c in "$@"; do
        if "$c" -c "import sys; assert $test" >/dev/null 2>&1; then
            echo "$c"
            return 0
        fi
    done
    return 1
}
pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
py311=$(find_python 'sys.version_info[:2] == (3, 11)' python3.11 python3 \
    "$pyenv_root"/versions/3.11*/bin/python3) || py311=""
py312=$(find_python 'sys.version_info >= (3, 12)' python3.12 python3.13 python3.14 python3 \
    "$pyenv_root"/versions/3.1[2-9]*/bin/python3) || py312=""

missing=""
if [ -n "$py311" ]; then
    suite "$py311" .venv-mitm11 "test,server" 11 2 "$@"
else
    missing="Python 3.11 (the mitmproxy 11 line)"
    echo "== no Python 3.11 found: the mitmproxy 11 line is not tested on this machine"
fi
if [ -n "$py312" ]; then
    if [ -n "$py311" ]; then
        # the llama-cpp-python server (built once, for the first suite) serves this suite too
        STREAMSHIM_LLAMA_PYTHON="$PWD/.venv-mitm11/bin/python" suite "$py312" .venv-mitm12 "test" 12 3 "$@"
    else
        suite "$py312" .venv-mitm12 "test,server" 12 3 "$@"
    fi
else
    missing="${missing:+$missing and }Python >= 3.12 (the mitmproxy 12 line)"
    echo "== no Python >= 3.12 found: the mitmproxy 12 line is not tested on this machine"
fi
if [ -z "$py311" ] && [ -z "$py312" ]; then
    echo "== no Python 3.11 or >= 3.12 found: nothing was tested" >&2
    exit 1
fi
if [ -n "$missing" ] && [ -n "${CI:-}" ]; then
    echo "== CI tests both mitmproxy lines: $missing is missing" >&2
    exit 1
fi
