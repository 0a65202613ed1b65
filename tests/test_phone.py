import pytest

from app.phone import InvalidPhoneNumber, to_cast_local, to_e164


@pytest.mark.parametrize(
    "raw",
    [
        "+639171234567",
        "639171234567",
        "09171234567",
        "9171234567",
        "+63 917 123 4567",
        "(0917) 123-4567",
        "0917-123-4567",
        " +63-917-123-4567 ",
    ],
)
def test_every_ph_mobile_format_becomes_the_local_11_digit_form(raw):
    assert to_cast_local(raw) == "09171234567"


def test_local_form_becomes_e164_for_ghl():
    assert to_e164("09171234567") == "+639171234567"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("+14155550123", "not a Philippine number"),
        ("(02) 8555 1234", "landline"),
        ("0917123", "not a valid Philippine number"),
        ("", "no phone number"),
        ("hello", "not a phone number"),
    ],
)
def test_numbers_that_cannot_get_a_ph_sms_are_refused_with_a_reason(raw, reason):
    with pytest.raises(InvalidPhoneNumber, match=reason):
        to_cast_local(raw)
