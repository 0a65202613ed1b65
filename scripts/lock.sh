#!/usr/bin/env bash
# Refresh the lock files from pyproject.toml: the one deliberate way versions change.
#   bash scripts/lock.sh                 # newest versions within pyproject.toml's ranges
#   bash scripts/lock.sh --upgrade-package fastapi   # just one (any pip-compile option passes on)
# requirements.lock: what the service runs (serve.sh, the Docker image). requirements-test.lock:
# that plus the [test] extra, at the same versions (constrained by requirements.lock): what
# test.sh and CI install. Every line carries its sha256 hashes; installs use --require-hashes.
# pip-tools runs from a throw-away virtualenv, so it is never part of the project's own.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
PIP_TOOLS_VERSION="7.7.0"
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
"$(find_python)" -m venv "$tools"
"$tools/bin/python" -m pip install --quiet "pip-tools==$PIP_TOOLS_VERSION"
compile() {
    "$tools/bin/pip-compile" --quiet --generate-hashes --strip-extras --allow-unsafe \
        --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
        --no-header --annotation-style=line "$@" pyproject.toml
}
compile --output-file requirements.lock "$@"
compile --extra test --constraint requirements.lock --output-file requirements-test.lock "$@"
echo "requirements.lock and requirements-test.lock refreshed: review the diff, run the tests, commit"
