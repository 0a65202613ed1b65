from app.logs import mask_phone, mask_phones_in


def test_a_phone_keeps_only_its_last_four_digits():
    assert mask_phone("+63 917 123 4567") == "********4567"


def test_phones_in_free_text_are_masked_but_identifiers_are_not():
    text = "Cannot send to +63 917 123 4567 (part of CAST00000001)"
    assert mask_phones_in(text) == "Cannot send to ********4567 (part of CAST00000001)"


def test_empty_text_stays_empty():
    assert mask_phones_in(None) is None and mask_phones_in("") == ""
