import pytest

from app.cast.schemas import SmsLog, StatusResult
from app.outbound.receipts import (
    Receipt,
    classify,
    failure_code,
    failure_reason,
    next_poll_delay,
    status_of_log,
)


@pytest.mark.parametrize(
    ("status", "dlr", "expected"),
    [
        ("delivered", "DELIVRD", Receipt.DELIVERED),
        ("undelivered", "REJECTD", Receipt.FAILED),
        ("undelivered", "UNDELIV", Receipt.FAILED),
        ("failed", None, Receipt.FAILED),
        ("sent", None, Receipt.UNKNOWN),
        ("pending", "ACCEPTD", Receipt.UNKNOWN),
        ("something-new", None, Receipt.UNKNOWN),
    ],
)
def test_cast_statuses_map_to_final_or_not_yet_known(status, dlr, expected):
    assert classify(StatusResult(status=status, dlr_status=dlr)) is expected


def test_a_carrier_rejection_is_explained_in_words_with_the_code():
    reason = failure_reason(StatusResult(status="undelivered", dlr_status="REJECTD"))
    assert reason == "Rejected by the carrier (REJECTD) — is the sender ID approved?"


def test_an_smpp_failure_carries_casts_error_message():
    reason = failure_reason(StatusResult(status="failed", error_message="bind failed"))
    assert reason == "Cast could not hand the SMS to the carrier: bind failed"


def test_polls_back_off_from_the_first_delay_up_to_the_cap():
    delays = [next_poll_delay(n, first=15, cap=120) for n in range(6)]
    assert delays == [15, 30, 60, 120, 120, 120]


@pytest.mark.parametrize(
    ("status", "dlr", "expected"),
    [
        ("sent", "DELIVRD", Receipt.DELIVERED),
        ("sent", "REJECTD", Receipt.FAILED),
        ("sent", "UNDELIV", Receipt.FAILED),
        ("sent", "EXPIRED", Receipt.FAILED),
        ("failed", None, Receipt.FAILED),
        ("sent", "ACCEPTD", Receipt.UNKNOWN),
        ("sent", None, Receipt.UNKNOWN),
        ("sent", "SOMETHING", Receipt.UNKNOWN),
    ],
)
def test_a_logs_entry_is_judged_by_its_carrier_receipt(status, dlr, expected):
    entry = SmsLog(id="CAST1", status=status, dlr_status=dlr)

    assert classify(status_of_log(entry)) is expected


def test_a_rejection_in_the_logs_keeps_the_carriers_code():
    result = status_of_log(SmsLog(id="CAST1", status="sent", dlr_status="rejectd"))

    assert failure_code(result) == "REJECTD"
