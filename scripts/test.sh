#!/usr/bin/env bash
# Install everything and run the checks: ruff (lint + format) and the whole pytest suite.
# MongoDB tests use the mongoeco wire server on 127.0.0.1, or a real server via TEST_MONGO_URI.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv "[test]"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# On TEST_WORKERS processes (pytest-xdist; default 4): most of an end-to-end test is waiting for
# a bridge to start or for real time to pass, so 4 workers keep 2 cores busy (19 min in one
# process, about 11 in four). Tests marked `alone` run while no other worker runs a test
# (tests/conftest.py). `-n 0` runs the suite in one process.
.venv/bin/python -m pytest -q --durations=15 -n "${TEST_WORKERS:-4}" "$@"  # the 15 slowest: keep CI short
