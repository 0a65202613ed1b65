"""Writes tests/contract/ghl_operations.json: what GHL's API definitions say about each operation
the bridge calls (path, method, `Version`, scopes, query parameters, request body and success
answer, every `$ref` resolved), extracted from the official files (OpenAPI 3, CC0) so the suite
carries the facts it checks against. Run from the repository root:

    .venv/bin/python -m scripts.extract_ghl_contract           # rewrite the JSON
    .venv/bin/python -m scripts.extract_ghl_contract --check   # exit 1 when it differs

`--definitions` points at another copy (default: ../shared/reference/ghl-official).
tests/contract/test_contract_source.py fails when the committed JSON differs from what this
writes from the full copy (skipped where the copy is absent).
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.ghl.scopes import OPERATIONS

ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = ROOT.parent / "shared" / "reference" / "ghl-official"
CONTRACT = ROOT / "tests" / "contract" / "ghl_operations.json"
# The bridge's calls: every scoped operation, and the token endpoint (no scope, no Version).
CALLS = [(op.method, op.path) for op in OPERATIONS] + [("POST", "/oauth/token")]
APPS = ("conversations.json", "contacts.json", "oauth.json")
KEPT = {"type", "properties", "required", "enum", "items", "allOf", "anyOf", "oneOf"}
KEPT |= {"nullable", "format", "additionalProperties"}


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


class Resolver:
    """Inlines `$ref`s (local, or to a file beside the definitions) and keeps only the
    keywords a validator reads (no descriptions or examples)."""

    def __init__(self, definitions: Path) -> None:
        self._apps = definitions / "apps"
        self._files: dict[Path, dict[str, Any]] = {}

    def _document(self, path: Path) -> dict[str, Any]:
        path = path.resolve()
        if path not in self._files:
            self._files[path] = _load(path)
        return self._files[path]

    def schema(self, node: Any, document: Path, depth: int = 0) -> Any:
        if depth > 30:
            raise ValueError(f"$ref nesting too deep in {document.name}")
        if isinstance(node, list):
            return [self.schema(item, document, depth + 1) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target, pointer = self._target(node["$ref"], document)
            return self.schema(pointer, target, depth + 1)
        kept: dict[str, Any] = {}
        for key, value in node.items():
            if key == "properties":
                kept[key] = {n: self.schema(s, document, depth + 1) for n, s in value.items()}
            elif key in KEPT:
                kept[key] = self.schema(value, document, depth + 1)
        return kept

    def _target(self, ref: str, document: Path) -> tuple[Path, Any]:
        file, _, pointer = ref.partition("#")
        target = (document.parent / file) if file else document
        node: Any = self._document(target)
        for part in pointer.strip("/").split("/"):
            node = node[part]
        return target, node


def _operation(resolver: Resolver, definitions: Path, method: str, path: str) -> dict[str, Any]:
    for name in APPS:
        document = definitions / "apps" / name
        op = _load(document)["paths"].get(path, {}).get(method.lower())
        if op is not None:
            return _facts(resolver, document, name, method, path, op)
    raise KeyError(f"{method} {path} is in none of GHL's definitions {APPS}")


def _facts(
    resolver: Resolver, document: Path, name: str, method: str, path: str, op: dict[str, Any]
) -> dict[str, Any]:
    params = op.get("parameters", [])
    version = next((p for p in params if p.get("in") == "header" and p["name"] == "Version"), None)
    query = [p for p in params if p.get("in") == "query"]
    body = next(iter(op.get("requestBody", {}).get("content", {}).items()), None)
    success = next(((s, r) for s, r in op.get("responses", {}).items() if s.startswith("2")), None)
    answer = (success[1].get("content") or {}).get("application/json") if success else None
    return {
        "method": method,
        "path": path,
        "file": f"apps/{name}",
        "operationId": op.get("operationId"),
        "version": version["schema"]["enum"][0] if version and version.get("required") else None,
        "scopes": sorted({s for sec in op.get("security") or [] for v in sec.values() for s in v}),
        "query": {
            "required": sorted(p["name"] for p in query if p.get("required")),
            "allowed": sorted(p["name"] for p in query),
        },
        "body": None
        if body is None
        else {"content_type": body[0], "schema": resolver.schema(body[1]["schema"], document)},
        "response": None
        if success is None
        else {
            "status": success[0],
            "schema": resolver.schema(answer["schema"], document) if answer else None,
        },
    }


def build_contract(definitions: Path = DEFINITIONS) -> dict[str, Any]:
    resolver = Resolver(definitions)
    return {
        "about": "Extracted by scripts/extract_ghl_contract.py from GHL's API definitions "
        "(OpenAPI 3, CC0); do not edit by hand.",
        "operations": [_operation(resolver, definitions, m, p) for m, p in CALLS],
    }


def render(contract: dict[str, Any]) -> str:
    return json.dumps(contract, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--definitions", type=Path, default=DEFINITIONS)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = render(build_contract(args.definitions))
    if args.check:
        if CONTRACT.read_text(encoding="utf-8") != text:
            print(f"{CONTRACT} differs from GHL's definitions: regenerate it", file=sys.stderr)
            return 1
        return 0
    CONTRACT.write_text(text, encoding="utf-8")
    print(f"wrote {CONTRACT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
