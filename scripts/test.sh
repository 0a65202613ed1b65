#!/usr/bin/env bash
# Install everything and run the checks: ruff (lint + format) and the whole pytest suite.
# MongoDB tests use the mongoeco wire server on 127.0.0.1, or a real server via TEST_MONGO_URI.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv "[test]"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# In one process by default: on 2 cores, 4 pytest-xdist workers (TEST_WORKERS=4) take ~12-16 min
# instead of ~19, but three timing-bound end-to-end tests then fail now and then (a 30 s wait for
# 50 statuses, a start-up log line, a pacer's let-go to the ms). Tests marked `alone` run while
# no other worker runs a test (tests/conftest.py).
.venv/bin/python -m pytest -q --durations=15 -n "${TEST_WORKERS:-0}" "$@"  # the 15 slowest: keep CI short
