#!/usr/bin/env bash
# Install everything and run the checks: ruff (lint + format) and the whole pytest suite.
# MongoDB tests use the mongoeco wire server on 127.0.0.1, or a real server via TEST_MONGO_URI.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv "[test]"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# The end-to-end flows run the bridge inside the test process (app/devkit/bridge_thread.py) and
# mostly wait on the fakes and the bridge's timers, not on the CPU: 3 pytest-xdist workers
# (TEST_WORKERS; 0 runs everything in this process), each taking the next test when it is free
# (worksteal), finish the suite in about a third of one process's time on 2 cores. Tests marked
# `alone` run while no other worker runs a test (tests/conftest.py). `-m "not process"` leaves
# out the tier that starts real bridge processes (signals, replicas, the wheel).
.venv/bin/python -m pytest -q --durations=15 -n "${TEST_WORKERS:-3}" --dist worksteal "$@"  # the 15 slowest
