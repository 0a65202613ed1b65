"""Ids pasted into upstream URL paths (GHL, Cast) stay one path segment, whatever they hold."""

from urllib.parse import quote


def path_segment(value: str) -> str:
    """`value` percent-encoded as one segment: '/', '?', '#', '%' and a bare '.' or '..' cannot
    leave it ('../../contacts/abc?x=' -> '..%2F..%2Fcontacts%2Fabc%3Fx%3D')."""
    encoded = quote(value, safe="")
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded
