"""SCIM discovery documents (RFC 7644 §4, RFC 7643 §5)."""
from __future__ import annotations

# Bulk (api/scim_bulk.py): a whole onboarding (10,000 users) fits in one request.
BULK_MAX_OPERATIONS = 10_000
BULK_MAX_PAYLOAD = 16 * 1024 * 1024
FILTER_MAX_RESULTS = 1000


def service_provider_config(location: str) -> dict:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": True},
        "bulk": {"supported": True, "maxOperations": BULK_MAX_OPERATIONS, "maxPayloadSize": BULK_MAX_PAYLOAD},
        "filter": {"supported": True, "maxResults": FILTER_MAX_RESULTS},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "authenticationSchemes": [{
            "type": "oauthbearertoken", "name": "Bearer token", "primary": True,
            "description": "A long-lived bearer token bound to one tenant and the scope `scim`.",
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": location},
    }


# ---- /Schemas and /ResourceTypes (RFC 7644 §4) ----------------------------------------------

LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


def _list(resources: list) -> dict:
    return {"schemas": [LIST_URN], "totalResults": len(resources), "startIndex": 1,
            "itemsPerPage": len(resources), "Resources": resources}


def setup(app, schemas_for) -> None:
    """Routes for the tenant's schema and resource-type documents (`schemas_for(tenant)` gives
    {"User": ResourceSchema, "Group": ResourceSchema}, custom extensions included)."""
    import orjson
    from aiohttp import web

    from .scim_errors import SCIM_CONTENT_TYPE, scim_error

    def base(request) -> str:
        return f"{request.url.origin()}/scim/v2/{request.match_info['tenant']}"

    def schemas(request) -> list:
        seen, out = set(), []
        for rs in schemas_for(request.match_info["tenant"]).values():
            for s in [rs.schema] + [e for e, _ in rs.extensions]:
                if s.id not in seen:
                    seen.add(s.id)
                    out.append(s.to_json(f"{base(request)}/Schemas/{s.id}"))
        return out

    def types(request) -> list:
        return [rs.to_json(f"{base(request)}/ResourceTypes/{rs.name}")
                for rs in schemas_for(request.match_info["tenant"]).values()]

    def ok(body) -> web.Response:
        return web.Response(body=orjson.dumps(body), content_type=SCIM_CONTENT_TYPE)

    async def list_schemas(request):
        return ok(_list(schemas(request)))

    async def one_schema(request):
        want = request.match_info["id"].lower()
        for s in schemas(request):
            if s["id"].lower() == want:
                return ok(s)
        return scim_error(404, f"schema {request.match_info['id']} not found")

    async def list_types(request):
        return ok(_list(types(request)))

    async def one_type(request):
        want = request.match_info["name"].lower()
        for t in types(request):
            if t["id"].lower() == want:
                return ok(t)
        return scim_error(404, f"resource type {request.match_info['name']} not found")

    r = app.router
    r.add_get("/scim/v2/{tenant}/Schemas", list_schemas)
    r.add_get("/scim/v2/{tenant}/Schemas/{id}", one_schema)
    r.add_get("/scim/v2/{tenant}/ResourceTypes", list_types)
    r.add_get("/scim/v2/{tenant}/ResourceTypes/{name}", one_type)
