#!/usr/bin/env bash
# Install everything and run the checks: ruff (lint + format) and the whole pytest suite.
# MongoDB tests use the mongoeco wire server on 127.0.0.1, or a real server via TEST_MONGO_URI.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv "[test]"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest -q --durations=15 "$@"  # the 15 slowest: keep CI short
