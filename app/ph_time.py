"""Philippine time (UTC+8, no daylight saving): where the recipients, the gateway's SIMs and the
GHL users are. Shared by the inbound records and the opt-out notes."""

from datetime import timedelta, timezone

PH_TIME = timezone(timedelta(hours=8), "PHT")
