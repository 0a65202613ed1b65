"""The message log: a page of the selection, or all of it as CSV."""

import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from pydantic import ValidationError

from app.kit.errors import ApiError
from app.messages.repository import MessageLogRepository
from app.messages.schemas import CSV_COLUMNS, LogEntry, MessagePage, MessageQuery

EXPORT_BATCH = 500
# A spreadsheet runs a cell starting with one of these as a formula: such a cell (a body, a
# failure reason) is exported with a leading apostrophe, as OWASP advises.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def message_query(fields: Mapping[str, str]) -> MessageQuery:
    """The log's filters from query parameters or form fields; the first problem as a 400
    `invalid_query` naming the parameter."""
    try:
        return MessageQuery.model_validate(dict(fields))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        reason = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            reason = "not a filter of the message log"
        message = f"{field}: {reason}" if field else reason
        raise ApiError(400, "invalid_query", message, field) from exc


LocationNames = Callable[[], Awaitable[dict[str, str]]]


async def _no_names() -> dict[str, str]:
    return {}


class MessageLog:
    def __init__(self, repository: MessageLogRepository, names: LocationNames = _no_names) -> None:
        self._repository = repository
        self._names = names

    async def page(self, query: MessageQuery) -> MessagePage:
        """One page, newest first; `next_cursor` continues it (None: nothing more)."""
        rows = await self._repository.select(query, query.limit + 1)
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        named = await self._named([entry for _, entry in rows])
        return MessagePage(
            messages=named, next_cursor=rows[-1][0].encode() if more and rows else None
        )

    async def export_csv(self, query: MessageQuery) -> AsyncIterator[str]:
        """The whole selection from the query's cursor on, as CSV, read in batches so any size
        streams. The first chunk (the header line and the first batch) comes after the first
        read, so a caller that awaits it before answering answers a failed read with an error,
        not with a 200 and a cut file."""
        header: list[list[str]] = [list(CSV_COLUMNS)]
        cursor = query.cursor
        while True:
            rows = await self._repository.select(
                query.model_copy(update={"cursor": cursor}), EXPORT_BATCH
            )
            entries = await self._named([entry for _, entry in rows])
            yield _csv_lines(header + [_csv_row(entry) for entry in entries])
            header = []
            if len(rows) < EXPORT_BATCH:
                return
            cursor = rows[-1][0]

    async def _named(self, entries: list[LogEntry]) -> list[LogEntry]:
        names = await self._names() if entries else {}
        for entry in entries:
            entry.location_name = names.get(entry.location_id or "")
        return entries


def _csv_row(entry: LogEntry) -> list[str]:
    values = entry.model_dump()
    return [_safe_cell(values[column]) for column in CSV_COLUMNS]


def _safe_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _csv_lines(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()
