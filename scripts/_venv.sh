# Sourced by serve.sh, test.sh and lock.sh: find Python 3.13+, make ./.venv holding exactly the
# lock file's versions (requirements.lock, or requirements-test.lock for "[test]") and the project.
# Usage: ensure_venv "<pip extras: [test] or empty>"
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

# What an install was made from: pyproject.toml and both lock files.
lock_digest() {
    cat pyproject.toml requirements.lock requirements-test.lock | sha256sum | cut -d' ' -f1
}

# Installs only when pyproject.toml or a lock file changed since the last install (a stamp in
# .venv), so a restart needs no package index. A change rebuilds .venv from scratch: nothing of
# an older lock lingers. The test set includes the service's (same versions), so it serves both.
ensure_venv() {
    local extras="${1:-}"
    local lock=requirements.lock
    [ "$extras" = "[test]" ] && lock=requirements-test.lock
    local stamp=.venv/.installed digest
    digest="$(lock_digest)"
    if [ -x .venv/bin/python ] && [ -f "$stamp" ] &&
        { [ "$(cat "$stamp")" = "$digest [test]" ] || [ "$(cat "$stamp")" = "$digest $extras" ]; }; then
        return
    fi
    rm -rf .venv
    "$(find_python)" -m venv .venv
    .venv/bin/python -m pip install --quiet --require-hashes -r "$lock"
    .venv/bin/python -m pip install --quiet --no-deps -e .
    echo "$digest $extras" >"$stamp"
}
