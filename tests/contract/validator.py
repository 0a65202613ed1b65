"""Validates a request the bridge sent to GHL (and the fake's answer) against the operation's
facts in ghl_operations.json: path, method, the `Version` header, the bearer token, required and
known query parameters, and the body, against the subset of OpenAPI 3 / JSON Schema GHL's
definitions use (type, properties, required, enum, items, allOf/anyOf/oneOf, nullable).

A request body may carry no property the definition does not name (the strictest plausible
reading of GHL's NestJS validation); an answer may carry more."""

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx

CONTRACT = Path(__file__).with_name("ghl_operations.json")
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class KnownException:
    """Where GHL's own definition is wrong and its docs say otherwise."""

    types: dict[str, dict[str, Any]] = field(default_factory=dict)  # property -> schema used
    optional: frozenset[str] = frozenset()  # required by the definition, exempted by the docs
    why: str = ""


KNOWN_EXCEPTIONS = {
    ("POST", "/conversations/messages/inbound"): KnownException(
        # GHL's slip: `direction` is typed `object`, but its docs send the string "inbound".
        types={"direction": {"type": "string", "enum": ["inbound", "outbound"]}},
        # docs/ConversationProviders.md: a default SMS provider needs no conversationProviderId.
        optional=frozenset({"conversationProviderId"}),
        why="direction typed object (docs: the string); conversationProviderId documented as "
        "not needed for a default SMS provider",
    )
}


@cache
def contract() -> dict[str, Any]:
    return json.loads(CONTRACT.read_text(encoding="utf-8"))


def _pattern(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "$")


def operation(method: str, path: str, facts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The operation a request is for; a literal path wins over a templated one."""
    ops = (facts or contract())["operations"]
    matching = [op for op in ops if op["method"] == method and _pattern(op["path"]).match(path)]
    if not matching:
        raise LookupError(f"{method} {path} is no operation the contract lists")
    return min(matching, key=lambda op: op["path"].count("{"))


def request_errors(recorded: dict[str, Any], facts: dict[str, Any] | None = None) -> list[str]:
    """What is wrong with a recorded request (the fake GHL's `requests` shape)."""
    method, path = recorded["method"], recorded["path"]
    try:
        op = operation(method, path, facts)
    except LookupError as exc:
        return [str(exc)]
    where = f"{method} {path}"
    headers = {k.lower(): v for k, v in recorded["headers"].items()}
    errors = []
    if op["version"] is not None and headers.get("version") != op["version"]:
        errors.append(f"{where}: Version header {headers.get('version')!r}, not {op['version']}")
    if op["scopes"] and not headers.get("authorization", "").startswith("Bearer "):
        errors.append(f"{where}: no bearer token")
    query = recorded["query"]
    errors += [
        f"{where}: query parameter {n} missing" for n in op["query"]["required"] if not query.get(n)
    ]
    errors += [
        f"{where}: query parameter {n} unknown" for n in query if n not in op["query"]["allowed"]
    ]
    errors += _body_errors(op, recorded, where)
    return errors


def _body_errors(op: dict[str, Any], recorded: dict[str, Any], where: str) -> list[str]:
    body = op["body"]
    if body is None:
        return [] if recorded["body"] is None else [f"{where}: a body the operation takes none of"]
    if not recorded["content_type"].startswith(body["content_type"]):
        return [f"{where}: content type {recorded['content_type']!r}, not {body['content_type']}"]
    schema = _with_exceptions(body["schema"], KNOWN_EXCEPTIONS.get((op["method"], op["path"])))
    form = body["content_type"] == FORM
    return schema_errors(schema, recorded["body"], where, strict=True, form=form)


def answer_errors(recorded: dict[str, Any], facts: dict[str, Any] | None = None) -> list[str]:
    """What is wrong with the fake's successful answer to a recorded request."""
    op = operation(recorded["method"], recorded["path"], facts)
    response = op["response"]
    if not 200 <= recorded["status"] < 300 or response is None or response["schema"] is None:
        return []
    where = f"answer to {recorded['method']} {recorded['path']}"
    return schema_errors(response["schema"], recorded["answer"], where, strict=False)


def _with_exceptions(schema: dict[str, Any], known: KnownException | None) -> dict[str, Any]:
    if known is None:
        return schema
    return {
        **schema,
        "properties": {**schema.get("properties", {}), **known.types},
        "required": [n for n in schema.get("required", []) if n not in known.optional],
    }


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "number": (int, float),
    "integer": (int,),
}


def _is(kind: str, value: Any) -> bool:
    if kind in ("number", "integer") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[kind])


def schema_errors(
    schema: dict[str, Any], value: Any, where: str, *, strict: bool, form: bool = False
) -> list[str]:
    """JSON-schema errors of `value`; `strict`: no unknown property; `form`: a form's values
    are strings whatever their declared type."""
    if value is None:
        return [] if schema.get("nullable") else [f"{where}: null"]
    for part in schema.get("allOf", []):
        if errors := schema_errors(part, value, where, strict=strict, form=form):
            return errors
    for alternatives in ("anyOf", "oneOf"):
        if alternatives in schema and all(
            schema_errors(s, value, where, strict=strict, form=form) for s in schema[alternatives]
        ):
            return [f"{where}: matches none of {alternatives}"]
    kind = schema.get("type")
    if kind is not None and not (form and isinstance(value, str)) and not _is(kind, value):
        return [f"{where}: {type(value).__name__}, not {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {schema['enum']}"]
    if isinstance(value, list) and "items" in schema:
        return [
            e
            for i, item in enumerate(value)
            for e in schema_errors(schema["items"], item, f"{where}[{i}]", strict=strict, form=form)
        ]
    if isinstance(value, dict) and (kind == "object" or "properties" in schema):
        return _object_errors(schema, value, where, strict=strict, form=form)
    return []


def _object_errors(
    schema: dict[str, Any], value: dict[str, Any], where: str, *, strict: bool, form: bool
) -> list[str]:
    properties = schema.get("properties", {})
    errors = [f"{where}: {n} missing" for n in schema.get("required", []) if n not in value]
    for name, item in value.items():
        if name in properties:
            errors += schema_errors(
                properties[name], item, f"{where}.{name}", strict=strict, form=form
            )
        elif strict and properties:
            errors.append(f"{where}: {name} is no property of the definition")
    return errors


def recorded_from(request: httpx.Request) -> dict[str, Any]:
    """An httpx request (respx) in the fake GHL's `requests` shape."""
    content_type = request.headers.get("content-type", "")
    raw = request.content.decode()
    body: Any = None
    if raw and content_type.startswith(FORM):
        body = {k: v[0] for k, v in _pairs(httpx.QueryParams(raw)).items()}
    elif raw:
        body = json.loads(raw)
    return {
        "method": request.method,
        "path": request.url.path,
        "query": _pairs(request.url.params),
        "headers": dict(request.headers),
        "content_type": content_type,
        "body": body,
    }


def _pairs(params: httpx.QueryParams) -> dict[str, list[str]]:
    pairs: dict[str, list[str]] = {}
    for key, value in params.multi_items():
        pairs.setdefault(key, []).append(value)
    return pairs
