"""One way to show a time: UTC ISO 8601 to the second in the admin API and the CLI, Philippine
time on the settings page; stored times stay epoch seconds."""

from datetime import UTC, datetime

from pydantic import BaseModel

from app.console import when
from app.timestamps import UtcTime, ph_time, utc_iso, utc_iso_text

AT = datetime(2026, 12, 7, 20, 3, 0, 654321, tzinfo=UTC).timestamp()


class View(BaseModel):
    at: UtcTime
    maybe: UtcTime | None = None


def test_a_time_is_shown_in_utc_to_the_second_with_z():
    assert utc_iso(AT) == "2026-12-07T20:03:00Z"


def test_the_cli_shows_times_the_same_way():
    assert (when(AT), when(None)) == ("2026-12-07T20:03:00Z", "-")


def test_an_iso_text_with_an_offset_and_microseconds_is_normalised():
    assert utc_iso_text("2026-12-08T04:03:00.123456+08:00") == "2026-12-07T20:03:00Z"
    assert utc_iso_text("2026-12-07T20:03:00") == "2026-12-07T20:03:00Z"  # naive: UTC
    assert utc_iso_text("yesterday") == "yesterday"


def test_the_settings_page_shows_philippine_time():
    assert ph_time(AT) == "2026-12-08 04:03 PHT"


def test_a_view_time_is_a_number_in_python_and_iso_in_json():
    view = View(at=AT)

    assert view.at == AT
    assert view.model_dump(mode="json") == {"at": "2026-12-07T20:03:00Z", "maybe": None}
    assert View.model_validate(view.model_dump()).at == AT
