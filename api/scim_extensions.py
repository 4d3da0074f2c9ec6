"""Custom SCIM schema extensions, administered per tenant (scope admin):

    POST /v1/{tenant}/scim/extensions   register one (201; 400 naming the problem; 409 if the URN exists)
    GET  /v1/{tenant}/scim/extensions   list them, in registration order

The POST body is either the RFC 7643 §7 schema document itself (an extension of User), or
`{"schema": <document>, "resourceType": "User"|"Group", "required": false}`. The extension is a
ledger event (`ledger.scim_extensions`); the tenant's /Schemas, /ResourceTypes and SCIM
validation see it as soon as the request answers.
"""
from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ledger.executor import CommandRejected
from ledger.scim_extensions import RegisterScimExtension, list_extensions, tenant_schemas
from ledger.store import ConcurrencyError

from .json_api import json_error, json_response

_WRAPPER_KEYS = frozenset({"schema", "resourcetype", "required"})


def _command(body: Any) -> RegisterScimExtension | web.Response:
    if not isinstance(body, dict):
        return json_error(400, "the body must be a JSON object (an RFC 7643 schema document)", code="invalidSyntax")
    low = {k.lower(): v for k, v in body.items() if isinstance(k, str)}
    if "schema" in low and isinstance(low["schema"], dict):
        extra = sorted(k for k in body if not isinstance(k, str) or k.lower() not in _WRAPPER_KEYS)
        if extra:
            return json_error(400, f"unknown field {extra[0]!r} (expected schema, resourceType, required)",
                              field=str(extra[0]), code="invalidValue")
        rt = low.get("resourcetype", "User")
        required = low.get("required", False)
        if not isinstance(rt, str):
            return json_error(400, "resourceType must be a string", field="resourceType", code="invalidValue")
        if not isinstance(required, bool):
            return json_error(400, "required must be a boolean", field="required", code="invalidValue")
        return RegisterScimExtension(low["schema"], rt, required)
    return RegisterScimExtension(body)


async def register(request: web.Request) -> web.Response:
    from .app import PRINCIPAL, RUNTIME
    rt = request.app[RUNTIME]
    tenant = request.match_info["tenant"]
    try:
        raw = await request.read()
        body = orjson.loads(raw) if raw.strip() else None
    except web.HTTPRequestEntityTooLarge:
        return json_error(413, "the request body is too large")
    except orjson.JSONDecodeError as exc:
        return json_error(400, f"malformed JSON: {exc}", code="invalidSyntax")
    cmd = _command(body)
    if isinstance(cmd, web.Response):
        return cmd
    principal = request[PRINCIPAL]
    try:
        result = await rt.bus.execute(tenant, cmd, metadata={
            "actor": principal.actor, "source": "admin", "request_id": request.get("request_id")})
    except CommandRejected as exc:
        return json_error(exc.status, exc.detail, exc.extra.get("field"), exc.code or None)
    except ConcurrencyError:
        return json_error(409, f"schema {cmd.document.get('id')} already exists for this tenant", field="id",
                          code="uniqueness")
    # committed: refresh this process's view of the tenant's schemas at once
    await tenant_schemas(rt.pool, tenant, max_age=0)
    return json_response(result, 201)


async def list_all(request: web.Request) -> web.Response:
    from .app import RUNTIME
    return json_response({"extensions": await list_extensions(request.app[RUNTIME].pool, request.match_info["tenant"])})


register.scopes = ("admin",)
list_all.scopes = ("admin", "auditor")


def setup(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/{tenant}/scim/extensions", register)
    r.add_get("/v1/{tenant}/scim/extensions", list_all)
