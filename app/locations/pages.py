"""Server-rendered HTML for the settings page (Jinja2, autoescaped; no build step)."""

import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from app.timestamps import ph_time, utc_iso

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
STATIC_FILES = {"settings.js": "text/javascript", "settings.css": "text/css"}

# GHL's own app domains: the only pages that may frame the settings page (CSP frame-ancestors)
# and whose answer to REQUEST_USER_DATA settings.js accepts. White-label agencies' domains are
# added with SETTINGS_FRAME_ORIGINS. Everything else is locked to this origin, with no inline
# script or style.
GHL_FRAME_ORIGINS = (
    "https://app.gohighlevel.com",
    "https://*.gohighlevel.com",
    "https://app.leadconnectorhq.com",
    "https://*.leadconnectorhq.com",
)
_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'none'; form-action 'self'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def frame_origins(extra: Sequence[str] = ()) -> tuple[str, ...]:
    """GHL's app domains, then the operator's (SETTINGS_FRAME_ORIGINS), each once."""
    return tuple(dict.fromkeys([*GHL_FRAME_ORIGINS, *extra]))


def security_headers(origins: Sequence[str]) -> dict[str, str]:
    policy = f"{_POLICY}; frame-ancestors {' '.join(origins)}"
    return {"Content-Security-Policy": policy, **SECURITY_HEADERS}


_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _ph(at: float | None) -> str:
    return "" if at is None else ph_time(at)


def _iso(at: float | None) -> str:
    return "" if at is None else utc_iso(at)


_env.filters["ph"] = _ph  # what people read: Philippine time
_env.filters["iso"] = _iso  # <time datetime=...>


def render(template: str, status_code: int, origins: Sequence[str], **context: Any) -> HTMLResponse:
    """A page that only `origins` may frame (they are also given to settings.js)."""
    html = _env.get_template(template).render(frame_origins=" ".join(origins), **context)
    return HTMLResponse(html, status_code=status_code, headers=security_headers(origins))


def new_nonce() -> str:
    return secrets.token_urlsafe(12)
