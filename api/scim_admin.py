"""SCIM administration for the tenant's admin (scope admin): the failed-request log.

    GET /v1/{tenant}/scim/failures?limit=100&before=<id>

Newest first: {"failures": [{"id", "time", "method", "path", "status", "scimType", "detail",
"requestId"}], "next": <id to pass as `before` for the next page, or null>}. See
api/failed_requests.py for what is kept (no bodies, no personal values).
"""
from __future__ import annotations

from aiohttp import web

from .failed_requests import FAILURES
from .json_api import json_error, json_response

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        v = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None
    if v < 1:
        raise ValueError(f"{name} must be at least 1")
    return v


async def list_failures(request: web.Request) -> web.Response:
    try:
        limit = _int_param(request, "limit") or DEFAULT_LIMIT
        before = _int_param(request, "before")
    except ValueError as e:
        return json_error(400, str(e), field=str(e).split()[0])
    limit = min(limit, MAX_LIMIT)
    rows = await request.app[FAILURES].list(request.match_info["tenant"], limit, before)
    nxt = rows[-1]["id"] if len(rows) == limit else None
    return json_response({"failures": rows, "next": nxt})


list_failures.scopes = ("admin",)


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/{tenant}/scim/failures", list_failures)
