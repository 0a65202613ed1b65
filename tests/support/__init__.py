from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # the repository checkout the tests run from

# End-to-end flows run on SQLite (tests/e2e/conftest.py, `backend`); the MongoDB smoke tests, a
# few flows that touch every part of the store (send and status, a reply, a restart), run on both.
ON_BOTH_STORES = pytest.mark.parametrize("backend", ["sqlite", "mongodb"], indirect=True)
