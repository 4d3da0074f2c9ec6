"""Reading SCIM requests: bodies (content type, size, UTF-8, JSON, NUL) and query parameters.

Decisions:
* Content types `application/scim+json` (RFC 7644 §3.1) and `application/json` are accepted, with
  any parameters (charset). A request without a Content-Type header is read as JSON (some
  clients omit it). Any other type is 415 with a SCIM error body (no scimType fits).
* Body over the app's client_max_size (1 MiB) → 413; empty, malformed JSON or invalid UTF-8 →
  400 invalidSyntax; a NUL character anywhere (`\\u0000`) → 400 invalidValue.
"""
from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ledger.scim.resource import ScimError

JSON_TYPES = frozenset({"application/scim+json", "application/json"})
DEFAULT_COUNT = 100
MAX_COUNT = 1000


def _has_nul(v: Any) -> bool:
    if isinstance(v, str):
        return "\x00" in v
    if isinstance(v, dict):
        return any(_has_nul(k) or _has_nul(x) for k, x in v.items())
    if isinstance(v, list):
        return any(_has_nul(x) for x in v)
    return False


async def read_json(request: web.Request) -> Any:
    if "Content-Type" in request.headers and request.content_type not in JSON_TYPES:
        raise ScimError(415, None, f"unsupported content type {request.content_type!r}; "
                                   "send application/scim+json")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ScimError(413, None, "the request body is too large") from None
    if not raw.strip():
        raise ScimError(400, "invalidSyntax", "the request body is empty")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        detail = "the request body is not valid UTF-8" if "utf-8" in str(e).lower() else "malformed JSON"
        raise ScimError(400, "invalidSyntax", f"{detail}: {e}") from None
    if b"\\u0000" in raw and _has_nul(body):
        raise ScimError(400, "invalidValue", "NUL characters are not allowed")
    return body


def _int(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ScimError(400, "invalidValue", f"{name} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ScimError(400, "invalidValue", f"{name} must be an integer, got {value!r}") from None


def _names(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [x.strip() for x in value.split(",") if x.strip()]
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return [x.strip() for x in value if x.strip()]
    raise ScimError(400, "invalidValue", f"{name} must be a comma-separated string or a list of strings")


class Query:
    """List/search parameters (RFC 7644 §3.4.2), from a query string or a SearchRequest body."""

    def __init__(self, get):
        f = get("filter")
        if f is not None and not isinstance(f, str):
            raise ScimError(400, "invalidFilter", "filter must be a string")
        self.filter: str | None = f if f and f.strip() else None
        sb = get("sortBy")
        if sb is not None and not isinstance(sb, str):
            raise ScimError(400, "invalidValue", "sortBy must be a string")
        self.sort_by: str | None = sb or None
        so = get("sortOrder")
        if so in (None, ""):
            self.descending = False
        elif isinstance(so, str) and so.lower() in ("ascending", "descending"):
            self.descending = so.lower() == "descending"
        else:
            raise ScimError(400, "invalidValue", "sortOrder must be ascending or descending")
        start = _int(get("startIndex"), "startIndex")
        self.start = max(1, start if start is not None else 1)    # < 1 means 1 (§3.4.2.4)
        count = _int(get("count"), "count")
        self.count = min(MAX_COUNT, max(0, count if count is not None else DEFAULT_COUNT))
        self.attributes = _names(get("attributes"), "attributes")
        self.excluded = _names(get("excludedAttributes"), "excludedAttributes")

    @classmethod
    def from_request(cls, request: web.Request) -> "Query":
        return cls(request.query.get)

    @classmethod
    def from_body(cls, body: Any) -> "Query":
        if not isinstance(body, dict):
            raise ScimError(400, "invalidSyntax", "a SearchRequest must be a JSON object")
        low = {k.lower(): v for k, v in body.items() if isinstance(k, str)}
        return cls(lambda name: low.get(name.lower()))


def attribute_params(request: web.Request) -> tuple[list[str], list[str]]:
    return (_names(request.query.get("attributes"), "attributes"),
            _names(request.query.get("excludedAttributes"), "excludedAttributes"))
