"""Thin GoHighLevel (LeadConnector) API client.

Every call made for a location (`location_id=`) is paced by `GHLPacer` (GHL's per-location
limits, for the whole cluster), and a 429 is waited out and retried here, up to
`RATE_LIMIT_RETRIES` times, before the caller sees it (then as a retryable error that must never
become a failure). Other retrying is the caller's job."""

from typing import Any

import httpx
from pydantic import ValidationError

from app.ghl.pacing import LocationPacer
from app.ghl.schemas import InboundMessage, StatusUpdate, TokenResponse
from app.kit.upstream import Unanswered, timed_request
from app.kit.urls import path_segment
from app.metrics import RequestObserver

CONVERSATIONS_VERSION = "2021-04-15"
CONTACTS_VERSION = "2021-07-28"

RETRYABLE_STATUSES = {403, 408, 425, 429, 500, 502, 503, 504}
RATE_LIMIT_RETRIES = 3


class GHLError(Exception):
    def __init__(self, message: str, *, status: int | None, body: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body[:300]

    @property
    def unauthorized(self) -> bool:
        return self.status == 401

    @property
    def rate_limited(self) -> bool:
        """GHL's 429: wait and retry, never give up on it."""
        return self.status == 429

    @property
    def retryable(self) -> bool:
        """403 'not downstreamed' right after the webhook, rate limits, 5xx and network errors."""
        return self.status is None or self.status in RETRYABLE_STATUSES


def retry_verdict(exc: Exception) -> tuple[bool, bool]:
    """Whether a job's failed GHL call may pass on a retry, and whether GHL rate-limited it (a
    limit is waited out, never fatal). A 403 is a missing scope or a location mismatch, not a
    passing state; a 401 after the job's one token refresh may pass (a re-install). Anything
    but a GHLError (no token for the location) does not pass."""
    if not isinstance(exc, GHLError):
        return False, False
    return (exc.retryable and exc.status != 403) or exc.unauthorized, exc.rate_limited


def _bearer(token: str, version: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Version": version, "Accept": "application/json"}


class GHLClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        observer: RequestObserver,
        pacer: LocationPacer,
    ) -> None:
        self._http = http
        self._observe = observer  # latency and status of every request (metrics)
        self._pacer = pacer  # per-location pacing

    async def _send(
        self, method: str, url: str, operation: str, location_id: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One request; for a location, paced and retried on 429 (see the module docstring)."""
        if location_id is None:
            return self._checked(await self._request(method, url, operation, **kwargs))
        for _ in range(RATE_LIMIT_RETRIES):
            await self._pacer.before_call(location_id)
            response = await self._request(method, url, operation, **kwargs)
            await self._pacer.after_response(location_id, response.status_code, response.headers)
            if response.status_code != 429:
                break
        return self._checked(response)

    async def _request(
        self, method: str, url: str, operation: str, **kwargs: Any
    ) -> httpx.Response:
        try:
            return await timed_request(self._http, self._observe, operation, method, url, **kwargs)
        except Unanswered as exc:
            reason = (
                f"GHL did not answer {url} in time"
                if exc.timed_out
                else f"could not reach GHL ({exc.kind})"
            )
            raise GHLError(reason, status=None) from exc

    @staticmethod
    def _checked(response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            request = response.request
            raise GHLError(
                f"GHL answered {response.status_code} to {request.method} {request.url.path}",
                status=response.status_code,
                body=response.text,
            )
        return response

    async def update_message_status(
        self, token: str, message_id: str, update: StatusUpdate, *, location_id: str
    ) -> None:
        await self._send(
            "PUT",
            f"/conversations/messages/{path_segment(message_id)}/status",
            "message_status",
            location_id,
            json=update.model_dump(exclude_none=True),
            headers=_bearer(token, CONVERSATIONS_VERSION),
        )

    async def add_inbound_message(
        self, token: str, message: InboundMessage, *, location_id: str
    ) -> dict[str, Any]:
        response = await self._send(
            "POST",
            "/conversations/messages/inbound",
            "add_inbound_message",
            location_id,
            json=message.model_dump(by_alias=True, exclude_none=True),
            headers=_bearer(token, CONVERSATIONS_VERSION),
        )
        return response.json()

    async def search_conversations(
        self, token: str, location_id: str, contact_id: str
    ) -> list[dict[str, Any]]:
        """`GET /conversations/search`: the location's conversations with this contact."""
        response = await self._send(
            "GET",
            "/conversations/search",
            "search_conversations",
            location_id,
            params={"locationId": location_id, "contactId": contact_id},
            headers=_bearer(token, CONVERSATIONS_VERSION),
        )
        return response.json().get("conversations") or []

    async def create_conversation(
        self, token: str, location_id: str, contact_id: str
    ) -> dict[str, Any]:
        """`POST /conversations/`: a new conversation with the contact."""
        response = await self._send(
            "POST",
            "/conversations/",
            "create_conversation",
            location_id,
            json={"locationId": location_id, "contactId": contact_id},
            headers=_bearer(token, CONVERSATIONS_VERSION),
        )
        return response.json().get("conversation") or {}

    async def find_contact_by_phone(
        self, token: str, location_id: str, phone_e164: str
    ) -> dict[str, Any] | None:
        response = await self._send(
            "GET",
            "/contacts/search/duplicate",
            "find_contact",
            location_id,
            params={"locationId": location_id, "number": phone_e164},
            headers=_bearer(token, CONTACTS_VERSION),
        )
        return response.json().get("contact")

    async def upsert_contact(self, token: str, location_id: str, phone_e164: str) -> dict[str, Any]:
        response = await self._send(
            "POST",
            "/contacts/upsert",
            "upsert_contact",
            location_id,
            json={"locationId": location_id, "phone": phone_e164},
            headers=_bearer(token, CONTACTS_VERSION),
        )
        return response.json()["contact"]

    async def get_contact(self, token: str, contact_id: str, *, location_id: str) -> dict[str, Any]:
        """`GET /contacts/{id}`: the contact, with `dnd` and `dndSettings`."""
        response = await self._send(
            "GET",
            f"/contacts/{path_segment(contact_id)}",
            "get_contact",
            location_id,
            headers=_bearer(token, CONTACTS_VERSION),
        )
        return response.json().get("contact") or {}

    async def update_contact(
        self, token: str, contact_id: str, fields: dict[str, Any], *, location_id: str
    ) -> None:
        """`PUT /contacts/{id}`: a partial update (here: `dndSettings`)."""
        await self._send(
            "PUT",
            f"/contacts/{path_segment(contact_id)}",
            "update_contact",
            location_id,
            json=fields,
            headers=_bearer(token, CONTACTS_VERSION),
        )

    async def exchange_token(self, form: dict[str, str]) -> TokenResponse:
        """`POST /oauth/token` (authorization_code or refresh_token grant)."""
        response = await self._send(
            "POST", "/oauth/token", "token", data=form, headers={"Accept": "application/json"}
        )
        return _token_response(response)

    async def location_token(
        self, company_token: str, company_id: str, location_id: str
    ) -> TokenResponse:
        """`POST /oauth/locationToken`: a location token from an agency (Company) token."""
        response = await self._send(
            "POST",
            "/oauth/locationToken",
            "location_token",
            data={"companyId": company_id, "locationId": location_id},
            headers=_bearer(company_token, CONTACTS_VERSION),
        )
        return _token_response(response)

    async def installed_locations(
        self, company_token: str, company_id: str, app_id: str, *, page_size: int = 100
    ) -> list[str]:
        """`GET /oauth/installedLocations`: ids of the company's locations that have the app."""
        found = await self.installed_location_names(
            company_token, company_id, app_id, page_size=page_size
        )
        return list(found)

    async def installed_location_names(
        self, company_token: str, company_id: str, app_id: str, *, page_size: int = 100
    ) -> dict[str, str]:
        """`GET /oauth/installedLocations`: the company's locations that have the app, id to
        name (GHL's `name`; "" when it gives none), in GHL's order."""
        found: dict[str, str] = {}
        for page in range(50):  # at most 5,000 locations per company
            response = await self._send(
                "GET",
                "/oauth/installedLocations",
                "installed_locations",
                params={
                    "companyId": company_id,
                    "appId": app_id,
                    "isInstalled": "true",
                    "skip": str(page * page_size),
                    "limit": str(page_size),
                },
                headers=_bearer(company_token, CONTACTS_VERSION),
            )
            locations = response.json().get("locations") or []
            for loc in locations:
                location_id = loc.get("_id") or loc.get("id")
                if location_id and loc.get("isInstalled", True):
                    found[str(location_id)] = str(loc.get("name") or "")
            if len(locations) < page_size:
                break
        return found


def _token_response(response: httpx.Response) -> TokenResponse:
    try:
        return TokenResponse.model_validate_json(response.content)
    except ValidationError as exc:
        raise GHLError(
            "GHL token answer is missing access_token", status=response.status_code
        ) from exc
