"""RFC 7644 §3.12 error bodies."""
from __future__ import annotations

import orjson
from aiohttp import web

ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"
SCIM_CONTENT_TYPE = "application/scim+json"


def scim_error(status: int, detail: str, scim_type: str | None = None, headers=None) -> web.Response:
    body = {"schemas": [ERROR_URN], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return web.Response(status=status, body=orjson.dumps(body), content_type=SCIM_CONTENT_TYPE, headers=headers)
