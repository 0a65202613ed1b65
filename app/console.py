"""What the `cast-ghl` commands print: tables for people, JSON for scripts (`--json`)."""

import json
from collections.abc import Sequence
from typing import Any, TextIO

from pydantic import BaseModel

from app.timestamps import utc_iso


class Output:
    """Tables for people, JSON for scripts."""

    def __init__(self, out: TextIO, as_json: bool) -> None:
        self.out, self.as_json = out, as_json

    def line(self, text: str = "") -> None:
        print(text, file=self.out)

    def json(self, value: Any) -> None:
        print(json.dumps(value, indent=2, ensure_ascii=False, default=str), file=self.out)

    def listing(
        self,
        items: Sequence[BaseModel],
        empty: str,
        headers: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        """A list command's answer: JSON of the items, a line when empty, else the table."""
        if self.as_json:
            self.json([dump(item) for item in items])
        elif not items:
            self.line(empty)
        else:
            self.table(headers, rows)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        cells = [[_cell(v) for v in row] for row in rows]
        widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
        for row in [list(headers), *cells]:
            self.line("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def when(timestamp: float | None) -> str:
    return "-" if timestamp is None else utc_iso(timestamp)


def dump(value: BaseModel) -> dict[str, Any]:
    return value.model_dump(mode="json", by_alias=True)
