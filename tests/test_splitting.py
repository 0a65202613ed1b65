from app.messages.schemas import LogEntry
from app.outbound.schemas import OutboundMessage, Part
from app.outbound.splitting import compose_text, joined_text, split_text


def test_a_short_text_is_one_part():
    assert split_text("hello", 450) == ["hello"]


def test_a_long_text_splits_at_word_boundaries_in_order():
    text = " ".join(["abcdefghi"] * 100)  # 999 chars
    parts = split_text(text, 450)
    assert all(len(part) <= 450 for part in parts)
    assert " ".join(parts) == text


def test_the_parts_of_a_text_cut_at_spaces_join_back_into_the_text():
    text = " ".join(f"word{n}" for n in range(200))
    assert joined_text(split_text(text, 153)) == text


def test_a_word_longer_than_the_limit_is_cut():
    parts = split_text("x" * 1000, 450)
    assert [len(p) for p in parts] == [450, 450, 100]


def test_attachments_are_appended_one_per_line():
    assert compose_text("Hi", ["https://a/1.png", " "]) == "Hi\nhttps://a/1.png"


def test_attachments_alone_make_the_text():
    assert compose_text("", ["https://a/1.png"]) == "https://a/1.png"


def test_a_line_break_after_a_cut_does_not_cut_the_next_word():
    assert split_text("aaaaaaaaaaaa \naaaaaaaaaaaa", 12) == ["aaaaaaaaaaaa", "aaaaaaaaaaaa"]


def test_the_message_log_shows_a_split_message_as_one_text():
    text = " ".join(f"word{n}" for n in range(100))
    message = OutboundMessage(
        message_id="m1",
        location_id="loc-1",
        phone="+639171234567",
        parts=[Part(text=part) for part in split_text(text, 153)],
        received_at=1_700_000_000.0,
    )
    assert LogEntry.of_outbound(message).text == text
