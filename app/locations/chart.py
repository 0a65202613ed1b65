"""The usage chart of the settings page: inline SVG drawn on the server (no script, nothing
loaded from elsewhere, so the page's strict CSP holds). One bar per day for the last 30 days:
sent (delivered to the carrier) with failed stacked on top; the SMS parts (credits) are in each
bar's tooltip and in the table beside the chart."""

from dataclasses import dataclass
from datetime import date, timedelta

from app.cast.schemas import UsageDay

WIDTH, HEIGHT = 300, 120
BAR_GAP = 2
LABEL_HEIGHT = 14
SCALE_WIDTH = 26  # left of the bars: the scale's numbers


@dataclass(frozen=True, slots=True)
class ChartDay:
    day: date
    sent: int
    failed: int
    parts: int


def usage_days(daily: list[UsageDay], today: date, days: int = 30) -> list[ChartDay]:
    """Cast's daily rows (newest first, days without traffic absent) as `days` days, oldest
    first, zero-filled."""
    by_date = {row.date: row for row in daily}
    result = []
    for offset in range(days - 1, -1, -1):
        day = today - timedelta(days=offset)
        row = by_date.get(day.isoformat())
        result.append(
            ChartDay(day, row.sent if row else 0, row.failed if row else 0, row.parts if row else 0)
        )
    return result


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    width: float
    sent_y: float
    sent_height: float
    failed_y: float
    failed_height: float
    tip: str


@dataclass(frozen=True, slots=True)
class Tick:
    """A line of the scale: messages per day at height `y`."""

    y: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    """Geometry of the usage chart (the template draws it as inline SVG)."""

    width: int
    height: int
    baseline: int
    bars: list[Bar]
    first: str
    last: str
    label: str
    scale: list[Tick]  # top (the busiest day), half and zero, in messages per day
    left: int  # where the bars start (the scale is left of it)


def usage_chart(days: list[ChartDay]) -> Chart:
    top = max([d.sent + d.failed for d in days] + [1])
    plot = HEIGHT - LABEL_HEIGHT
    slot = (WIDTH - SCALE_WIDTH) / max(len(days), 1)
    bars = []
    for index, day in enumerate(days):
        sent_h, failed_h = plot * day.sent / top, plot * day.failed / top
        bars.append(
            Bar(
                x=round(SCALE_WIDTH + index * slot + BAR_GAP / 2, 1),
                width=round(max(slot - BAR_GAP, 1), 1),
                sent_y=round(plot - sent_h, 1),
                sent_height=round(sent_h, 1),
                failed_y=round(plot - sent_h - failed_h, 1),
                failed_height=round(failed_h, 1),
                tip=f"{day.day.isoformat()}: {day.sent} sent, {day.failed} failed, "
                f"{day.parts} parts",
            )
        )
    first, last = days[0].day.strftime("%b %d"), days[-1].day.strftime("%b %d")
    label = (
        f"Messages per day from {first} to {last}: {sum(d.sent for d in days)} sent, "
        f"{sum(d.failed for d in days)} failed (highest day: {top})"
    )
    scale = [Tick(0, str(top)), Tick(plot / 2, f"{top / 2:g}"), Tick(plot, "0")]
    return Chart(WIDTH, HEIGHT, plot, bars, first, last, label, scale, SCALE_WIDTH)
