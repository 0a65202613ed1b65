"""JSON-lines logging with a request id; phone numbers masked, secrets never passed in."""

import json
import logging
import re
import secrets
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


# A phone number in free text, whatever its spelling ('+63 917-123-4567', '+63+9171234567',
# '0917x123x4567', '0917.123.4567'): digits and separators, at least 7 digits (checked below);
# not digits inside an identifier such as CAST00000001.
_PHONE_IN_TEXT = re.compile(r"(?<![A-Za-z0-9])\+?\d[\d \t()+./_*#xX-]{5,}\d(?![A-Za-z0-9])")
_PHONE_MIN_DIGITS = 7
_DIGIT = re.compile(r"\d")  # text with no digit has no number (the pattern's scan is ~30x slower)
# Log fields that carry free text (reasons, errors): masked again when the line is written.
_FREE_TEXT_FIELDS = ("reason", "detail", "error", "exc")


def _mask_match(match: re.Match[str]) -> str:
    found = match.group()
    if sum(ch.isdigit() for ch in found) < _PHONE_MIN_DIGITS:
        return found
    return mask_phone(found)


def mask_phones_in(text: str | None) -> str | None:
    """Free text (a failure reason, a history detail) with every phone number in it masked."""
    if not text or not _DIGIT.search(text):
        return text
    return _PHONE_IN_TEXT.sub(_mask_match, text)


def mask_phone(phone: str | None) -> str:
    """Keep only the last 4 digits: '+639171234567' -> '*********4567'."""
    if not phone:
        return ""
    digits = "".join(ch for ch in phone if ch.isdigit())
    return "*" * max(len(digits) - 4, 0) + digits[-4:]


_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False)  # as json.dumps, built once


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": mask_phones_in(record.getMessage()),
        }
        request_id = request_id_var.get()
        if request_id:
            line["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        for key in _FREE_TEXT_FIELDS:  # a reason may quote input: no number leaves unmasked
            value = line.get(key)
            if isinstance(value, str):
                line[key] = mask_phones_in(value)
        return _ENCODER.encode(line)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "pymongo"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").disabled = True


def new_request_id() -> str:
    """16 hex digits: a correlation id, not a secret."""
    return secrets.token_hex(8)
