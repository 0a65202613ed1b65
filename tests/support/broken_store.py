"""Databases that fail under a running store, for the store's error-contract tests."""

import contextlib
import sqlite3
from pathlib import Path

from app.devkit.processes import free_port

SHORT_TIMEOUT_MS = 100


def corrupt_sqlite_schema(path: Path) -> None:
    """Overwrite the file's table definitions with garbage through a second connection, as a
    damaged file would have them: from then on every statement of any connection that reads a
    table fails with sqlite3.DatabaseError ("malformed database schema"), which is not an
    OperationalError."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        (version,) = conn.execute("PRAGMA schema_version").fetchone()
        conn.execute("PRAGMA writable_schema=ON")
        conn.execute("UPDATE sqlite_schema SET sql = 'garbage' WHERE type = 'table'")
        conn.execute(f"PRAGMA schema_version={version + 1}")


def with_short_timeouts(uri: str, timeout_ms: int = SHORT_TIMEOUT_MS) -> str:
    """`uri` with server-selection and connect timeouts of `timeout_ms` (URI options win over
    the store's defaults), so an unreachable server fails an operation quickly."""
    separator = "&" if "?" in uri else "/?"
    return f"{uri}{separator}serverSelectionTimeoutMS={timeout_ms}&connectTimeoutMS={timeout_ms}"


def unreachable_mongo_uri() -> str:
    """A MongoDB URI on a port nothing listens on, with short timeouts."""
    return with_short_timeouts(f"mongodb://127.0.0.1:{free_port()}/?directConnection=true")
