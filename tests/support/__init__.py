from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository checkout the tests run from
