"""Philippine mobile numbers: any user format in, Cast's local `09XXXXXXXXX` or E.164 out."""

import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberType

REGION = "PH"
# '+639171234567' and '09171234567', the spellings GHL and most CRMs send, once the separators
# people write in a number ('+63 917-123-4567', '(0917) 123.4567') are dropped, as phonenumbers
# drops them.
_CANONICAL = re.compile(r"(?:\+63|0)(9[0-9]{9})")
_SEPARATORS = str.maketrans("", "", " -.()")


class InvalidPhoneNumber(ValueError):
    """The number is not a valid Philippine mobile number; the message says why."""


def _parse_ph_mobile(raw: str) -> phonenumbers.PhoneNumber:
    text = (raw or "").strip()
    if not text:
        raise InvalidPhoneNumber("no phone number given")
    digits = "".join(ch for ch in text if ch.isdigit())
    # '9171234567' (10 digits starting with 9) and '639171234567' lack the + or trunk 0.
    if not text.startswith("+"):
        if len(digits) == 10 and digits.startswith("9"):
            text = "0" + digits
        elif len(digits) == 12 and digits.startswith("63"):
            text = "+" + digits
    try:
        number = parse_text(text)
    except NumberParseException as exc:
        raise InvalidPhoneNumber("not a phone number") from exc  # never echo the input
    if number.country_code != 63:
        raise InvalidPhoneNumber(
            f"+{number.country_code} is not a Philippine number; Cast SMS sends to PH mobiles only"
        )
    # For +63 (one region), "valid" is "of a known type": one look-up answers both questions.
    kind = phonenumbers.number_type(number)
    if kind == PhoneNumberType.UNKNOWN:
        raise InvalidPhoneNumber("not a valid Philippine number (wrong length or prefix)")
    if kind not in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE):
        raise InvalidPhoneNumber("a Philippine landline, not a mobile number: it cannot get SMS")
    return number


def parse_text(text: str) -> PhoneNumber:
    """`phonenumbers.parse(text, "PH")`, with the two canonical spellings read directly, with
    or without separators (the general parser costs ~12-30 µs, on every webhook's
    acknowledgement path)."""
    if match := _CANONICAL.fullmatch(text.translate(_SEPARATORS)):
        return PhoneNumber(country_code=63, national_number=int(match[1]))
    return phonenumbers.parse(text, REGION)


def to_cast_local(raw: str) -> str:
    """'+63 917 123 4567' / '639171234567' / '09171234567' / '9171234567' -> '09171234567'."""
    number = _parse_ph_mobile(raw)
    return "0" + str(number.national_number)


def to_e164(raw: str) -> str:
    """Any PH mobile format -> '+639171234567' (GHL's format)."""
    return phonenumbers.format_number(_parse_ph_mobile(raw), phonenumbers.PhoneNumberFormat.E164)
