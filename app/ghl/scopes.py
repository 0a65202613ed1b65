"""Which OAuth scope each GHL operation the bridge uses needs (the `security` of the operation in
GHL's API definitions, `apps/*.json`), and for which feature.

`DEFAULT_SCOPES` (the default of `GHL_SCOPES`) is made of this table; `cast-ghl check-config`
names a feature whose scope the configured `GHL_SCOPES` lacks. tests/contract/ checks the table
against the definitions."""

from collections.abc import Iterable
from dataclasses import dataclass

OUTBOUND, INBOUND, DND, AGENCY = "outbound SMS", "inbound SMS", "DND sync", "agency installs"


@dataclass(frozen=True, slots=True)
class ScopedOperation:
    method: str
    path: str
    scope: str
    feature: str
    why: str


OPERATIONS: tuple[ScopedOperation, ...] = (
    ScopedOperation(
        "PUT",
        "/conversations/messages/{messageId}/status",
        "conversations/message.write",
        OUTBOUND,
        "receive ProviderOutboundMessage and report each SMS delivered or failed",
    ),
    ScopedOperation(
        "POST",
        "/conversations/messages/inbound",
        "conversations/message.write",
        INBOUND,
        "add a reply to the contact's conversation",
    ),
    ScopedOperation(
        "GET",
        "/conversations/search",
        "conversations.readonly",
        INBOUND,
        "find the contact's conversation (its id goes with the reply)",
    ),
    ScopedOperation(
        "POST",
        "/conversations/",
        "conversations.write",
        INBOUND,
        "open a conversation for a contact who has none",
    ),
    ScopedOperation(
        "GET",
        "/contacts/search/duplicate",
        "contacts.readonly",
        INBOUND,
        "find the contact a reply comes from, by number",
    ),
    ScopedOperation(
        "POST", "/contacts/upsert", "contacts.write", INBOUND, "create a contact for a new number"
    ),
    ScopedOperation(
        "GET",
        "/contacts/{contactId}",
        "contacts.readonly",
        DND,
        "read the contact's DND settings before changing SMS DND",
    ),
    ScopedOperation(
        "PUT",
        "/contacts/{contactId}",
        "contacts.write",
        DND,
        "set or clear the contact's SMS DND (STOP/START, opt-out lifts)",
    ),
    ScopedOperation(
        "GET",
        "/oauth/installedLocations",
        "oauth.readonly",
        AGENCY,
        "list an agency's locations that have the app (bulk installs)",
    ),
    ScopedOperation(
        "POST",
        "/oauth/locationToken",
        "oauth.write",
        AGENCY,
        "get a location's token from the agency's token",
    ),
)

# Optional per GHL's ConversationProviders.md (the OutboundMessage webhook events); no call of
# the bridge needs it, so check-config does not ask for it.
OPTIONAL_SCOPES = ("conversations/message.readonly",)
# Granted to agency (Company) tokens only: a location's own token never carries them.
AGENCY_ONLY_SCOPES = frozenset({"oauth.readonly", "oauth.write"})


def needed_scopes() -> list[str]:
    """Every scope an operation needs, in the table's order."""
    return list(dict.fromkeys(op.scope for op in OPERATIONS))


DEFAULT_SCOPES = " ".join([*needed_scopes(), *OPTIONAL_SCOPES])


def missing_by_feature(configured: Iterable[str], features: Iterable[str]) -> dict[str, list[str]]:
    """For each of `features`, the scopes its operations need that `configured` lacks."""
    have = set(configured)
    missing: dict[str, list[str]] = {}
    for feature in features:
        lacking = [op.scope for op in OPERATIONS if op.feature == feature and op.scope not in have]
        if lacking:
            missing[feature] = list(dict.fromkeys(lacking))
    return missing


def missing_from_grant(granted: Iterable[str], wanted: Iterable[str], *, agency: bool) -> list[str]:
    """The wanted scopes a token's grant lacks; a location's token needs no agency-only one."""
    have = set(granted)
    return [
        scope
        for scope in wanted
        if scope not in have and (agency or scope not in AGENCY_ONLY_SCOPES)
    ]
