"""A fake GoHighLevel API over real HTTP: OAuth token endpoints, the conversations API and
contacts (search by number, upsert, `GET`/`PUT /contacts/{id}` with `dndSettings`).

Refresh tokens are single-use like GHL's: a second use answers 400 invalid_grant. A contact PUT
is strict: a `dndSettings` in the body replaces the contact's whole `dndSettings` (a client
that sends only `SMS` loses the other channels), and a status other than active / inactive /
permanent is a 422.

`location_limit=(100, 10.0)` turns on GHL's per-location rate limit, modelled strictly: at most
100 requests of one location (known by its access token) in ANY 10-s interval (a sliding log),
else 429 without Retry-After (GHL's is UNCONFIRMED); every answer then carries
X-RateLimit-Max / -Remaining / -Interval-Milliseconds and the daily pair (200,000 a day). Off by
default: most tests push hundreds of messages through one location and test other things.

Every request is recorded in `requests` (method, path, query, headers, body, and the answer's
status and body) for the contract test (tests/contract/), which validates each against GHL's
API definitions. A token-bearing call is refused, as GHL does, when the token's grant lacks the
operation's scope (`OPERATION_SCOPES`, the definitions' `security`): a location's token carries
`granted_scopes` without the agency-only ones, an agency's token all of them. Conversations are
one per contact (`GET /conversations/search`, `POST /conversations/`), and an inbound message
must name its contact's conversation.
"""

import asyncio
import itertools
import json
import re
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from app.devkit.fake_cast import SlidingLog, max_in_any_window

DAILY_LIMIT = 200_000

# (method, path pattern, scope): the `security` of each operation the fake serves.
OPERATION_SCOPES: tuple[tuple[str, str, str], ...] = (
    ("PUT", "/conversations/messages/{messageId}/status", "conversations/message.write"),
    ("POST", "/conversations/messages/inbound", "conversations/message.write"),
    ("GET", "/conversations/search", "conversations.readonly"),
    ("POST", "/conversations/", "conversations.write"),
    ("GET", "/contacts/search/duplicate", "contacts.readonly"),
    ("POST", "/contacts/upsert", "contacts.write"),
    ("GET", "/contacts/{contactId}", "contacts.readonly"),
    ("PUT", "/contacts/{contactId}", "contacts.write"),
    ("GET", "/oauth/installedLocations", "oauth.readonly"),
    ("POST", "/oauth/locationToken", "oauth.write"),
)
AGENCY_ONLY_SCOPES = frozenset({"oauth.readonly", "oauth.write"})
ALL_SCOPES = (
    "conversations/message.write conversations/message.readonly conversations.write "
    "conversations.readonly contacts.readonly contacts.write oauth.readonly oauth.write"
)
_SCOPE_PATTERNS = [
    (method, re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "$"), scope)
    for method, path, scope in OPERATION_SCOPES
]


def scope_needed(method: str, path: str) -> str | None:
    return next((s for m, p, s in _SCOPE_PATTERNS if m == method and p.match(path)), None)


class FakeGHL:
    def __init__(
        self,
        client_id: str = "test-client-id",
        client_secret: str = "test-secret",
        *,
        location_limit: tuple[int, float] | None = None,
    ):
        self.client_id, self.client_secret = client_id, client_secret
        self.location_limit = location_limit  # (requests, seconds) per location, or None
        self.token_locations: dict[str, str] = {}  # access token -> location id
        self.location_calls: dict[str, list[float]] = {}  # accepted requests, arrival times
        self.rate_limited = 0  # 429s answered
        self._location_logs: dict[str, SlidingLog] = {}
        self.valid_tokens: set[str] = set()
        self.refresh_tokens: dict[str, dict[str, Any]] = {}  # refresh token -> grant info
        self.used_refresh_tokens: set[str] = set()
        self.codes: dict[str, dict[str, Any]] = {}
        self.token_requests: list[dict[str, str]] = []
        self.location_token_requests: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []  # accepted status updates
        self.status_requests: list[dict[str, Any]] = []
        self.status_script: deque[int] = deque()
        self.token_script: deque[int] = deque()
        self.contacts: dict[tuple[str, str], dict[str, Any]] = {}
        self.inbound: list[dict[str, Any]] = []
        self.inbound_script: deque[int] = deque()
        self.inbound_requests: list[dict[str, Any]] = []  # every attempt, refused ones too
        self.inbound_stalls: deque[float] = deque()  # stall, then 504 without adding
        self.contact_upserts: list[dict[str, Any]] = []
        self.contact_updates: list[dict[str, Any]] = []  # accepted PUT /contacts/{id}
        self.expires_in = 86399
        self.token_delay = 0.0  # seconds each /oauth/token answer takes (widens race windows)
        self.installed: dict[str, list[str]] = {}  # companyId -> locations with the app
        self.installed_requests: list[dict[str, Any]] = []
        self.location_token_script: deque[int] = deque()
        self.requests: list[dict[str, Any]] = []  # every request and its answer (contract test)
        self.granted_scopes = ALL_SCOPES  # what an install grants (location: not agency-only)
        self.token_scopes: dict[str, set[str]] = {}  # access token -> its grant
        self.conversations: dict[str, dict[str, Any]] = {}  # id -> ConversationSchema
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.app = self._build_app()

    # Helpers for tests --------------------------------------------------------------------
    def issue_pair(
        self, location_id: str | None, company_id: str | None = None, user_type: str = "Location"
    ) -> dict[str, Any]:
        n = next(self._ids)
        access, refresh = f"access-{n}", f"refresh-{n}"
        self.valid_tokens.add(access)
        scopes = self._grant(user_type)
        self.token_scopes[access] = set(scopes.split())
        if location_id is not None:
            self.token_locations[access] = location_id
        grant = {"location_id": location_id, "company_id": company_id, "user_type": user_type}
        self.refresh_tokens[refresh] = grant
        pair = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": refresh,
            "scope": scopes,
            "userType": user_type,
            "locationId": location_id,
            "companyId": company_id or "company-1",
            "userId": "user-1",
        }
        return {k: v for k, v in pair.items() if v is not None}  # GHL omits what it lacks

    def _grant(self, user_type: str) -> str:
        """The scopes a token gets: an agency's all granted, a location's no agency-only one."""
        granted = self.granted_scopes.split()
        if user_type != "Company":
            granted = [scope for scope in granted if scope not in AGENCY_ONLY_SCOPES]
        return " ".join(granted)

    def add_conversation(self, location_id: str, contact_id: str) -> dict[str, Any]:
        """The contact's conversation, as `GET /conversations/search` lists it."""
        conversation = {
            "id": f"conv-{next(self._ids)}",
            "contactId": contact_id,
            "locationId": location_id,
            "lastMessageBody": "",
            "lastMessageType": "TYPE_SMS",
            "type": "TYPE_PHONE",
            "unreadCount": 0,
            "fullName": "",
            "contactName": "",
            "email": "",
            "phone": "",
        }
        self.conversations[conversation["id"]] = conversation
        return conversation

    def _conversation_of(self, location_id: str, contact_id: str) -> dict[str, Any] | None:
        return next(
            (
                c
                for c in self.conversations.values()
                if (c["locationId"], c["contactId"]) == (location_id, contact_id)
            ),
            None,
        )

    def calls_to(self, method: str, path: str) -> list[dict[str, Any]]:
        """The recorded requests of one operation (`path` as sent)."""
        return [r for r in self.requests if (r["method"], r["path"]) == (method, path)]

    def _scope_refused(self, request: Request) -> JSONResponse | None:
        """GHL's 401 for a token whose grant lacks the operation's scope."""
        scope = scope_needed(request.method, request.url.path)
        header = request.headers.get("authorization", "")
        granted = self.token_scopes.get(header[7:]) if header.startswith("Bearer ") else None
        if scope is None or granted is None or scope in granted:
            return None
        return JSONResponse(
            {"statusCode": 401, "message": "The token is not authorized for this scope."},
            status_code=401,
        )

    async def _recorded(self, request: Request, call_next: Any) -> Response:
        """Answer, and record the request and the answer."""
        raw = await request.body()
        response = self._scope_refused(request) or await call_next(request)
        if isinstance(response, JSONResponse):  # answered here, not by a route
            answer = bytes(response.body)
        else:  # a route's answer, streamed through the middleware
            answer = b"".join([chunk async for chunk in response.body_iterator])  # type: ignore[attr-defined]
        self.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": parse_qs(request.url.query, keep_blank_values=True),
                "headers": dict(request.headers),
                "content_type": request.headers.get("content-type", ""),
                "body": _decoded(raw, request.headers.get("content-type", "")),
                "status": response.status_code,
                "answer": _decoded(answer, response.headers.get("content-type", "")),
            }
        )
        return Response(
            answer,
            status_code=response.status_code,
            headers=dict(response.headers),
            media_type=response.media_type,
        )

    def add_code(self, code: str, location_id: str | None, **extra: Any) -> None:
        self.codes[code] = {"location_id": location_id, **extra}

    def revoke(self, token: str) -> None:
        self.valid_tokens.discard(token)

    def refresh_calls(self) -> list[dict[str, str]]:
        return [r for r in self.token_requests if r.get("grant_type") == "refresh_token"]

    def code_calls(self) -> list[dict[str, str]]:
        return [r for r in self.token_requests if r.get("grant_type") == "authorization_code"]

    def add_contact(self, location_id: str, phone: str, **fields: Any) -> dict[str, Any]:
        contact = {"id": f"contact-{next(self._ids)}", "phone": phone, "locationId": location_id}
        self.contacts[(location_id, phone)] = {**contact, **fields}
        return self.contacts[(location_id, phone)]

    def contact(self, location_id: str, phone: str) -> dict[str, Any] | None:
        return self.contacts.get((location_id, phone))

    def sms_dnd(self, location_id: str, phone: str) -> str | None:
        """The contact's `dndSettings.SMS.status`, or None."""
        contact = self.contacts.get((location_id, phone)) or {}
        return (contact.get("dndSettings") or {}).get("SMS", {}).get("status")

    def _contact_by_id(self, contact_id: str) -> dict[str, Any] | None:
        return next((c for c in self.contacts.values() if c["id"] == contact_id), None)

    def spend_refresh_token(self, refresh: str) -> None:
        """As if someone else had used it: the next use answers invalid_grant."""
        self.used_refresh_tokens.add(refresh)

    # The HTTP app ------------------------------------------------------------------------
    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        return header.startswith("Bearer ") and header[7:] in self.valid_tokens

    def max_calls_in_any_window(self, location_id: str) -> int:
        assert self.location_limit is not None
        return max_in_any_window(self.location_calls.get(location_id, []), self.location_limit[1])

    def _limit(self, request: Request) -> tuple[bool, dict[str, str]]:
        """Whether a location's request is within its limit, and the rate-limit headers."""
        header = request.headers.get("authorization", "")
        location = self.token_locations.get(header[7:]) if header.startswith("Bearer ") else None
        if self.location_limit is None or location is None:
            return True, {}
        limit, window = self.location_limit
        with self._lock:
            log = self._location_logs.setdefault(location, SlidingLog(limit, window))
            now = time.monotonic()
            allowed = log.take(now)
            calls = self.location_calls.setdefault(location, [])
            if allowed:
                calls.append(now)
            else:
                self.rate_limited += 1
            recent = sum(1 for at in log.times if now - at < window)
        headers = {
            "X-RateLimit-Max": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - recent)),
            "X-RateLimit-Interval-Milliseconds": str(int(window * 1000)),
            "X-RateLimit-Limit-Daily": str(DAILY_LIMIT),
            "X-RateLimit-Daily-Remaining": str(max(0, DAILY_LIMIT - len(calls))),
        }
        return allowed, headers

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def rate_limit(request: Request, call_next: Any) -> Response:
            allowed, headers = self._limit(request)

            async def answer(request: Request) -> Response:
                if not allowed:
                    return JSONResponse(
                        {"statusCode": 429, "message": "Too many requests"}, status_code=429
                    )
                return await call_next(request)

            response = await self._recorded(request, answer)
            response.headers.update(headers)
            return response

        @app.post("/oauth/token")
        async def token(request: Request) -> JSONResponse:
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
            with self._lock:
                self.token_requests.append(form)
                if self.token_script:
                    return JSONResponse(
                        {"error": "scripted"}, status_code=self.token_script.popleft()
                    )
                if (
                    form.get("client_id") != self.client_id
                    or form.get("client_secret") != self.client_secret
                ):
                    return JSONResponse({"error": "invalid_client"}, status_code=401)
                if form.get("grant_type") == "authorization_code":
                    info = self.codes.pop(form.get("code", ""), None)
                    if info is None:
                        return _invalid_grant("invalid code")
                    pair = self.issue_pair(
                        info["location_id"],
                        info.get("company_id"),
                        info.get("user_type", "Location"),
                    )
                    pair.update({k: v for k, v in info.items() if k not in ("location_id",)})
                    return JSONResponse(pair)
                if form.get("grant_type") == "refresh_token":
                    refresh = form.get("refresh_token", "")
                    grant = self.refresh_tokens.get(refresh)
                    if grant is None or refresh in self.used_refresh_tokens:
                        return _invalid_grant("refresh token already used or unknown")
                    self.used_refresh_tokens.add(refresh)
                    return JSONResponse(
                        self.issue_pair(
                            grant["location_id"], grant["company_id"], grant["user_type"]
                        )
                    )
                return _invalid_grant("unsupported grant_type")

        @app.post("/oauth/locationToken")
        async def location_token(request: Request) -> JSONResponse:
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            self.location_token_requests.append(
                {**form, "token": request.headers.get("authorization", "")[7:]}
            )
            if not self._authorized(request):
                return JSONResponse({"message": "Invalid JWT", "statusCode": 401}, status_code=401)
            if self.location_token_script:
                code = self.location_token_script.popleft()
                return JSONResponse({"message": "scripted", "statusCode": code}, status_code=code)
            return JSONResponse(self.issue_pair(form["locationId"], form.get("companyId")))

        @app.get("/oauth/installedLocations")
        async def installed_locations(request: Request) -> JSONResponse:
            params = dict(request.query_params)
            self.installed_requests.append(params)
            if not self._authorized(request):
                return JSONResponse({"message": "Invalid JWT", "statusCode": 401}, status_code=401)
            ids = self.installed.get(params.get("companyId", ""), [])
            skip, limit = int(params.get("skip", 0)), int(params.get("limit", 20))
            page = ids[skip : skip + limit]
            return JSONResponse(
                {
                    "locations": [
                        {"_id": loc, "name": f"Location {loc}", "address": "", "isInstalled": True}
                        for loc in page
                    ],
                    "count": len(ids),
                    "installToFutureLocations": False,
                }
            )

        @app.put("/conversations/messages/{message_id}/status")
        async def status(message_id: str, request: Request) -> JSONResponse:
            body = await request.json()
            entry = {
                "message_id": message_id,
                "body": body,
                "at": time.monotonic(),
                "version": request.headers.get("version"),
                "token": request.headers.get("authorization", "")[7:],
            }
            self.status_requests.append(entry)
            if not self._authorized(request):
                return JSONResponse({"message": "Invalid JWT", "statusCode": 401}, status_code=401)
            if self.status_script:
                code = self.status_script.popleft()
                return JSONResponse(
                    {"message": "not downstreamed", "statusCode": code}, status_code=code
                )
            self.statuses.append(entry)
            return JSONResponse(
                {"conversationId": "", "messageId": message_id, "status": body.get("status")}
            )

        @app.get("/contacts/search/duplicate")
        async def find_contact(request: Request, locationId: str, number: str) -> JSONResponse:
            if not self._authorized(request):
                return JSONResponse({"message": "Invalid JWT"}, status_code=401)
            return JSONResponse({"contact": self.contacts.get((locationId, number))})

        @app.post("/contacts/upsert")
        async def upsert_contact(request: Request) -> JSONResponse:
            if not self._authorized(request):
                return JSONResponse({"message": "Invalid JWT"}, status_code=401)
            body = await request.json()
            self.contact_upserts.append(body)
            key = (body["locationId"], body["phone"])
            new = key not in self.contacts
            if new:
                self.contacts[key] = {
                    "id": f"contact-{next(self._ids)}",
                    "phone": body["phone"],
                    "locationId": body["locationId"],
                }
            return JSONResponse({"new": new, "contact": self.contacts[key]})

        @app.get("/contacts/{contact_id}")
        async def get_contact(contact_id: str, request: Request) -> JSONResponse:
            if not self._authorized(request):
                return JSONResponse({"message": "Invalid JWT"}, status_code=401)
            contact = self._contact_by_id(contact_id)
            if contact is None:
                return JSONResponse({"message": "Contact not found"}, status_code=404)
            return JSONResponse({"contact": {"dnd": False, **contact}})

        @app.put("/contacts/{contact_id}")
        async def update_contact(contact_id: str, request: Request) -> JSONResponse:
            if not self._authorized(request):
                return JSONResponse({"message": "Invalid JWT"}, status_code=401)
            if request.headers.get("version") != "2021-07-28":
                return JSONResponse({"message": "Version header required"}, status_code=400)
            contact = self._contact_by_id(contact_id)
            if contact is None:
                return JSONResponse({"message": "Contact not found"}, status_code=404)
            body = await request.json()
            settings = body.get("dndSettings")
            if settings is not None:
                statuses = {"active", "inactive", "permanent"}
                if not isinstance(settings, dict) or any(
                    not isinstance(v, dict) or v.get("status") not in statuses
                    for v in settings.values()
                ):
                    return JSONResponse({"message": "invalid dndSettings"}, status_code=422)
                contact["dndSettings"] = settings  # replaces every channel
            self.contact_updates.append({"contact_id": contact_id, "body": body})
            return JSONResponse({"succeded": True, "contact": contact})

        @app.post("/conversations/messages/inbound")
        async def inbound(request: Request) -> JSONResponse:
            body = await request.json()
            token = request.headers.get("authorization", "")[7:]
            self.inbound_requests.append({"body": body, "token": token, "at": time.monotonic()})
            if not self._authorized(request):
                return JSONResponse({"message": "Invalid JWT"}, status_code=401)
            if self.inbound_stalls:
                await asyncio.sleep(self.inbound_stalls.popleft())
                return JSONResponse({"message": "stalled"}, status_code=504)
            if self.inbound_script:
                code = self.inbound_script.popleft()
                return JSONResponse(
                    {"message": "scripted"}, status_code=code, headers=_limited(code)
                )
            conversation = self.conversations.get(body.get("conversationId") or "")
            if conversation is None or conversation["contactId"] != body.get("contactId"):
                return JSONResponse(
                    {"statusCode": 400, "message": "Conversation not found for this contact"},
                    status_code=400,
                )
            self.inbound.append({"body": body, "token": request.headers["authorization"][7:]})
            n = next(self._ids)
            return JSONResponse(
                {
                    "success": True,
                    "conversationId": conversation["id"],
                    "messageId": f"msg-{n}",
                    "message": "Message added",
                }
            )

        @app.get("/conversations/search")
        async def search_conversations(request: Request) -> JSONResponse:
            if not self._authorized(request):
                return JSONResponse({"message": "Invalid JWT"}, status_code=401)
            location, contact = (request.query_params.get(k) for k in ("locationId", "contactId"))
            found = [
                c
                for c in self.conversations.values()
                if c["locationId"] == location and contact in (None, c["contactId"])
            ]
            return JSONResponse({"conversations": found, "total": len(found)})

        @app.post("/conversations/")
        async def create_conversation(request: Request) -> JSONResponse:
            if not self._authorized(request):
                return JSONResponse({"message": "Invalid JWT"}, status_code=401)
            body = await request.json()
            location, contact = body.get("locationId"), body.get("contactId")
            if not location or not contact:
                return JSONResponse({"message": "locationId and contactId"}, status_code=422)
            if self._conversation_of(location, contact) is not None:
                return JSONResponse(
                    {"statusCode": 400, "message": "Conversation already exists"},
                    status_code=400,
                )
            created = self.add_conversation(location, contact)
            return JSONResponse(
                {
                    "success": True,
                    "conversation": {
                        "id": created["id"],
                        "dateUpdated": "2026-01-01T00:00:00Z",
                        "dateAdded": "2026-01-01T00:00:00Z",
                        "deleted": False,
                        "contactId": contact,
                        "locationId": location,
                        "lastMessageDate": "2026-01-01T00:00:00Z",
                    },
                },
                status_code=201,
            )

        return app


def _decoded(raw: bytes, content_type: str) -> Any:
    """A recorded body: JSON or a form as a dict, else the text (None when empty)."""
    if not raw:
        return None
    text = raw.decode(errors="replace")
    if content_type.startswith("application/x-www-form-urlencoded"):
        return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}
    try:
        return json.loads(text)
    except ValueError:
        return text


def _limited(code: int) -> dict[str, str] | None:
    """A scripted 429 says, like GHL's, when to try again: the interval is 1 s here."""
    if code != 429:
        return None
    return {"X-RateLimit-Remaining": "0", "X-RateLimit-Interval-Milliseconds": "1000"}


def _invalid_grant(description: str) -> JSONResponse:
    return JSONResponse(
        {"error": "invalid_grant", "error_description": description}, status_code=400
    )
