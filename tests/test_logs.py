import io
import json
import logging

from app.kit.logs import JsonFormatter, mask_phone, mask_phones_in


def test_a_phone_keeps_only_its_last_four_digits():
    assert mask_phone("+63 917 123 4567") == "********4567"


def test_phones_in_free_text_are_masked_but_identifiers_are_not():
    text = "Cannot send to +63 917 123 4567 (part of CAST00000001)"
    assert mask_phones_in(text) == "Cannot send to ********4567 (part of CAST00000001)"


def test_empty_text_stays_empty():
    assert mask_phones_in(None) is None and mask_phones_in("") == ""


def json_logger(stream: io.StringIO) -> logging.Logger:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"test-json-{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def events(stream: io.StringIO) -> list[str]:
    return [json.loads(line)["event"] for line in stream.getvalue().splitlines()]


async def test_a_line_logged_on_the_event_loop_is_written_at_once():
    """Nothing waits for the loop's turn to end: a crash right after loses no line."""
    stream = io.StringIO()
    json_logger(stream).info("at once")
    assert events(stream) == ["at once"]
