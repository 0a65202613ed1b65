"""Is an inbound SMS an opt-out or opt-in keyword? Only when it is the whole text."""

import string
from dataclasses import dataclass

_TRAILING = string.punctuation + string.whitespace + "¡¿…"


@dataclass(frozen=True, slots=True)
class Keyword:
    word: str  # as configured (upper case)
    opt_out: bool  # True: STOP and its kin; False: START and its kin


def match_keyword(
    text: str, opt_out_words: tuple[str, ...], opt_in_words: tuple[str, ...]
) -> Keyword | None:
    """The keyword `text` is: trimmed, any case, trailing punctuation ignored; else None.

    "Stop." and " STOP!! " are STOP; "stop texting me" and "STOP 2" are not keywords.
    """
    word = text.strip().rstrip(_TRAILING).upper()
    if word in opt_out_words:
        return Keyword(word, opt_out=True)
    if word in opt_in_words:
        return Keyword(word, opt_out=False)
    return None
