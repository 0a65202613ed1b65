"""Philippine mobile numbers: any user format in, Cast's local `09XXXXXXXXX` or E.164 out."""

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

REGION = "PH"


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
        number = phonenumbers.parse(text, REGION)
    except NumberParseException as exc:
        raise InvalidPhoneNumber("not a phone number") from exc  # never echo the input
    if number.country_code != 63:
        raise InvalidPhoneNumber(
            f"+{number.country_code} is not a Philippine number; Cast SMS sends to PH mobiles only"
        )
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber("not a valid Philippine number (wrong length or prefix)")
    if phonenumbers.number_type(number) not in (
        PhoneNumberType.MOBILE,
        PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        raise InvalidPhoneNumber("a Philippine landline, not a mobile number: it cannot get SMS")
    return number


def to_cast_local(raw: str) -> str:
    """'+63 917 123 4567' / '639171234567' / '09171234567' / '9171234567' -> '09171234567'."""
    number = _parse_ph_mobile(raw)
    return "0" + str(number.national_number)


def to_e164(raw: str) -> str:
    """Any PH mobile format -> '+639171234567' (GHL's format)."""
    return phonenumbers.format_number(_parse_ph_mobile(raw), phonenumbers.PhoneNumberFormat.E164)
