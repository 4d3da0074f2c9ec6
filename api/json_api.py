"""Responses of the JSON API (admin, licences, history, billing, SCIM extensions): the body as JSON,
and one error shape for all of it, `{"error": detail, "status": status[, "field": f][, "code": c]}`.
The SCIM endpoints answer errors per RFC 7644 §3.12 instead (api/scim_errors.py)."""
from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


def json_response(data: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=headers)


def json_error(status: int, detail: str, field: str | None = None, code: str | None = None,
               **extra: Any) -> web.Response:
    """`field`: the request field at fault; `code`: a stable machine-readable reason; `extra`: more
    members for the body (e.g. what a conflict is about)."""
    body: dict[str, Any] = {"error": detail, "status": status, **extra}
    if field:
        body["field"] = field
    if code:
        body["code"] = code
    return json_response(body, status)


class Refused(Exception):
    """A request refused before any work is done: the handler answers with `response`."""

    def __init__(self, response: web.Response):
        super().__init__(response.status)
        self.response = response


async def json_object(request: web.Request) -> dict:
    """The request body as a JSON object (an empty body: {}); Refused with a 400 `invalidSyntax`
    for anything else."""
    try:
        raw = await request.read()
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise Refused(json_error(400, f"malformed JSON: {exc}", code="invalidSyntax")) from None
    if not isinstance(data, dict):
        raise Refused(json_error(400, "the body must be a JSON object", code="invalidSyntax"))
    return data
