"""The settings page's usage chart: its scale."""

from datetime import date

from app.cast.schemas import UsageDay
from app.locations.chart import SCALE_WIDTH, usage_chart, usage_days


def test_the_chart_has_a_scale_from_zero_to_the_busiest_day():
    rows = [UsageDay(date="2026-11-30", sent=5, failed=1, parts=7)]

    chart = usage_chart(usage_days(rows, date(2026, 11, 30)))

    assert [(t.y, t.label) for t in chart.scale] == [
        (0, "6"),
        (chart.baseline / 2, "3"),
        (chart.baseline, "0"),
    ]


def test_the_bars_start_right_of_the_scale():
    chart = usage_chart(usage_days([], date(2026, 11, 30)))

    assert chart.left == SCALE_WIDTH and min(bar.x for bar in chart.bars) >= SCALE_WIDTH
    assert max(bar.x + bar.width for bar in chart.bars) <= chart.width
