"""One way to show a time. The admin API and the CLI: UTC, ISO 8601, to the second
(`2026-12-07T20:03:00Z`); the settings page: Philippine time, where its users are
(app/ph_time.py). Stored times stay epoch seconds; only what is shown is formatted."""

from datetime import UTC, datetime
from typing import Annotated

from pydantic import PlainSerializer

from app.ph_time import PH_TIME


def utc_iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_iso_text(value: str) -> str:
    """An ISO 8601 time given as text (any offset, fractions of a second) in the one form; text
    that is not one is shown as it is."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return utc_iso(parsed.timestamp())


def ph_time(at: float) -> str:
    """The settings page's form: `2026-12-08 04:03 PHT`."""
    return datetime.fromtimestamp(at, PH_TIME).strftime("%Y-%m-%d %H:%M PHT")


UtcTime = Annotated[float, PlainSerializer(utc_iso, return_type=str, when_used="json")]
"""An epoch time in a view: a number in Python, `2026-12-07T20:03:00Z` in JSON."""
