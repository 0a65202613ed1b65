"""Turn a GHL message into the texts Cast sends."""


def compose_text(message: str, attachments: list[str]) -> str:
    """Cast cannot send MMS: attachment URLs are appended to the text, one per line."""
    urls = [url.strip() for url in attachments if url and url.strip()]
    if not urls:
        return message
    return "\n".join([message.rstrip(), *urls]) if message.strip() else "\n".join(urls)


def split_text(text: str, limit: int) -> list[str]:
    """Split at word boundaries into parts of at most `limit` characters, in order.

    A single word longer than `limit` (a long URL) is cut where it must be.
    """
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[: limit + 1]
        cut = max(window.rfind(" "), window.rfind("\n"))
        if cut <= 0:
            parts.append(rest[:limit])
            rest = rest[limit:]
        else:
            parts.append(rest[:cut].rstrip())
            rest = rest[cut + 1 :]
        rest = rest.lstrip(" \n")
    if rest:
        parts.append(rest)
    return [part for part in parts if part]


def joined_text(parts: list[str]) -> str:
    """The parts as one text again, for the message log: `split_text` cut them at a space or a
    line break, so a space goes between them (also inside a word longer than a part, the one
    cut `split_text` makes elsewhere)."""
    return " ".join(parts)
