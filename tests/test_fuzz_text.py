"""Property-based tests (hypothesis) of the phone normaliser and the body splitter."""

import re

import phonenumbers
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.outbound.splitting import compose_text, split_text
from app.phone import InvalidPhoneNumber, parse_text, to_cast_local, to_e164

# Mobile prefixes (after the trunk 0) that the phonenumbers metadata knows as PH mobiles.
MOBILE_PREFIXES = ["905", "906", "915", "917", "918", "920", "927", "935", "945", "956", "966"]
MOBILE_PREFIXES += ["977", "995", "998", "999"]

subscriber = st.text(alphabet="0123456789", min_size=7, max_size=7)
national = st.tuples(st.sampled_from(MOBILE_PREFIXES), subscriber).map("".join)
any_national = st.text(alphabet="0123456789", min_size=9, max_size=9).map(lambda d: "9" + d)
separators = st.sampled_from(["", " ", "-", ".", "  "])


def spellings(number: str, sep: str) -> list[str]:
    """The ways people and CRMs write one PH mobile ('9171234567' = 917 123 4567)."""
    a, b, c = number[:3], number[3:6], number[6:]
    return [
        f"+63{sep}{a}{sep}{b}{sep}{c}",
        f"63{a}{b}{c}",
        f"0{a}{sep}{b}{sep}{c}",
        f"({'0' + a}){sep}{b}{sep}{c}",
        f"{a}{b}{c}",
        f"  +63 {a} {b} {c}  ",
    ]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
@example("")
@example("+")
@example("0" * 200)
@example("+63" + "9" * 50)
@example("".join(chr(0xFF10 + int(d)) for d in "9171234567"))  # full-width digits
def test_any_text_is_a_local_mobile_or_a_reasoned_refusal(raw):
    try:
        local = to_cast_local(raw)
    except InvalidPhoneNumber as exc:
        assert str(exc)
        return
    assert re.fullmatch(r"09\d{9}", local)


@settings(max_examples=200, deadline=None)
@given(national, separators)
def test_every_spelling_of_a_mobile_gives_the_same_local_and_e164_forms(number, sep):
    for raw in spellings(number, sep):
        assert to_cast_local(raw) == "0" + number, raw
        assert to_e164(raw) == "+63" + number, raw


@settings(max_examples=200, deadline=None)
@given(any_national, st.sampled_from(["+63", "0"]))
def test_the_canonical_spellings_are_read_as_phonenumbers_reads_them(number, prefix):
    assert parse_text(prefix + number) == phonenumbers.parse(prefix + number, "PH")


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["+63", "0", "(0", "(+63)", "+6 3", "-0"]),
    any_national,
    st.lists(st.sampled_from(["", " ", "-", ".", "(", ")", " - "]), min_size=11, max_size=11),
)
def test_spellings_with_separators_are_read_as_phonenumbers_reads_them(prefix, number, seps):
    spelled = "".join(sep + ch for sep, ch in zip(seps, prefix + number, strict=False))
    spelled += number[len(seps) - len(prefix) :]
    try:
        expected = phonenumbers.parse(spelled, "PH")
    except phonenumbers.NumberParseException:
        expected = None
    try:
        assert parse_text(spelled) == expected, spelled
    except phonenumbers.NumberParseException:
        assert expected is None, spelled


@settings(max_examples=200, deadline=None)
@given(any_national, separators)
def test_the_spelling_never_changes_whether_a_number_is_accepted(number, sep):
    outcomes = set()
    for raw in spellings(number, sep):
        try:
            outcomes.add(to_cast_local(raw))
        except InvalidPhoneNumber:
            outcomes.add(None)
    assert len(outcomes) == 1, outcomes


@settings(max_examples=200, deadline=None)
@given(st.one_of(national.map(lambda n: "+63" + n), st.text(max_size=20)))
def test_normalising_is_idempotent(raw):
    try:
        local = to_cast_local(raw)
    except InvalidPhoneNumber:
        return
    assert to_cast_local(local) == local
    assert to_e164(local) == to_e164(raw)
    assert to_cast_local(to_e164(raw)) == local


# The splitter ---------------------------------------------------------------------------
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyzé😀", min_size=1, max_size=12)
prose = st.lists(
    st.tuples(words, st.sampled_from([" ", " ", " ", "\n", "  ", " \n"])), max_size=200
).map(lambda pairs: "".join(w + s for w, s in pairs).strip())
limits = st.integers(min_value=1, max_value=500)


def _non_space(text: str) -> str:
    return "".join(text.split())


@settings(max_examples=300, deadline=None)
@given(st.one_of(prose, st.text(max_size=2000)), limits)
def test_parts_fit_the_limit_are_not_empty_and_lose_only_whitespace(text, limit):
    parts = split_text(text, limit)

    if len(text) <= limit:
        assert parts == [text]
        return
    assert all(0 < len(part) <= limit for part in parts)
    assert _non_space("".join(parts)) == _non_space(text)


@settings(max_examples=300, deadline=None)
@given(prose, st.integers(min_value=12, max_value=500))
def test_words_that_fit_are_never_cut(text, limit):
    parts = split_text(text, limit)

    assert [w for p in parts for w in re.split(r"[ \n]+", p) if w] == [
        w for w in re.split(r"[ \n]+", text) if w
    ]


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300), st.lists(st.text(max_size=60), max_size=4), limits)
def test_attachments_survive_composition_and_splitting(message, urls, limit):
    text = compose_text(message, urls)
    parts = split_text(text, limit)

    for url in urls:
        if url.strip():
            assert _non_space(url) in _non_space("".join(parts))
