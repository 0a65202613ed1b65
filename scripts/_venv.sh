# Sourced by serve.sh and test.sh: find Python 3.13+, make ./.venv, install the project into it.
# Usage: ensure_venv "<pip extras, e.g. [test] or empty>"
set -euo pipefail

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.13 python3.14 python3; do
        if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 13))' 2>/dev/null; then
            command -v "$candidate"
            return
        fi
    done
    for candidate in "$HOME"/.pyenv/versions/3.1[3-9]*/bin/python; do
        if [ -x "$candidate" ]; then
            echo "$candidate"
            return
        fi
    done
    echo "error: Python 3.13 or newer is needed (set PYTHON=/path/to/python3.13)" >&2
    return 1
}

ensure_venv() {
    local extras="${1:-}"
    if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 13))'; then
        rm -rf .venv
        "$(find_python)" -m venv .venv
    fi
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".${extras}"
}
