from pydantic import BaseModel, ConfigDict


class SendRequest(BaseModel):
    to: str
    message: str
    sender_id: str | None = None


class SendResult(BaseModel):
    model_config = ConfigDict(extra="ignore")

    success: bool
    message_id: str | None = None
    parts: int = 1
    replayed: bool = False


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    success: bool = False
    error: str | None = None
    error_code: str | None = None


class StatusResult(BaseModel):
    """`GET /api/v1/sms/status/{message_id}`."""

    model_config = ConfigDict(extra="ignore")

    success: bool = True
    message_id: str | None = None
    status: str = "unknown"
    dlr_status: str | None = None
    error_message: str | None = None
    sent_at: str | None = None
    delivered_at: str | None = None


class Unsubscribed(BaseModel):
    """One entry of `GET /api/v1/account/unsubscribed`."""

    model_config = ConfigDict(extra="ignore")

    phone: str
    sender_id: str | None = None
    unsubscribed_at: str | None = None


class UnsubscribedList(BaseModel):
    model_config = ConfigDict(extra="ignore")

    success: bool = True
    data: list[Unsubscribed] = []
