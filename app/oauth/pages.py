"""The HTML pages the installing user sees after GHL's redirect. Plain, accessible, no tokens."""

from html import escape

from app.oauth.schemas import InstallResult

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title} - Cast SMS</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto;
       padding: 0 1rem; line-height: 1.5; color: #1a1a1a; background: #fff; }}
h1 {{ font-size: 1.5rem; }}
.ok {{ border-left: 4px solid #137333; padding-left: 1rem; }}
.problem {{ border-left: 4px solid #b3261e; padding-left: 1rem; }}
code {{ background: #f1f3f4; padding: 0 .25rem; }}
</style>
</head>
<body>
<main class="{kind}">
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"""

_NEXT_STEPS = """<h2>What to do next</h2>
<ol>
<li>Open the sub-account in GoHighLevel.</li>
<li>Go to
<strong>Settings → Phone Numbers → Advanced Settings → SMS Provider</strong>.</li>
<li>Choose <strong>Cast SMS</strong> and save.</li>
<li>Send a test SMS from Conversations: it is delivered through Cast.ph.</li>
</ol>"""


def _render(kind: str, title: str, body: str) -> str:
    return _PAGE.format(kind=kind, title=escape(title), body=body)


def _ids(values: list[str]) -> str:
    return ", ".join(f"<code>{escape(value)}</code>" for value in values)


def _locations(ids: list[str], names: dict[str, str]) -> str:
    """Sub-accounts by GHL's name, the id beside it (by id alone where GHL gave no name)."""
    return ", ".join(
        f"{escape(names[i])} (<code>{escape(i)}</code>)"
        if names.get(i)
        else f"<code>{escape(i)}</code>"
        for i in ids
    )


def connected_page(result: InstallResult) -> str:
    parts: list[str] = []
    if result.kind == "location":
        parts.append(
            '<p role="status">Cast SMS is connected to the sub-account (location) '
            f"<code>{escape(result.location_id or '')}</code>.</p>"
        )
    else:
        parts.append(
            '<p role="status">Cast SMS is connected to the agency (company) '
            f"<code>{escape(result.company_id or '')}</code>.</p>"
        )
        if result.locations:
            ready = _locations(result.locations, result.names)
            parts.append(f"<p>Sub-accounts ready: {ready}.</p>")
        else:
            parts.append(
                "<p>No sub-account is ready yet. Each sub-account where the app is installed "
                "is connected automatically when GHL reports it.</p>"
            )
        if result.failed_locations:
            parts.append(
                "<p>These sub-accounts could not be connected yet and will be retried "
                f"automatically: {_locations(result.failed_locations, result.names)}.</p>"
            )
    if result.missing_scopes:
        parts.append(
            '<div role="alert"><p><strong>Some permissions were not granted:</strong> '
            f"{_ids(result.missing_scopes)}. Messages may fail until the app is installed "
            "again with all the permissions it asks for.</p></div>"
        )
    parts.append(_NEXT_STEPS)
    return _render("ok", "Cast SMS is connected", "\n".join(parts))


def error_page(title: str, message: str) -> str:
    body = (
        f'<p role="alert">{escape(message)}</p>\n'
        "<p>If this keeps happening, contact Cast support and mention the time of this attempt.</p>"
    )
    return _render("problem", title, body)
