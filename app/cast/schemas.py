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
