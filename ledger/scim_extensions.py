"""Custom SCIM schema extensions per tenant ("field mapping"): an admin registers an RFC 7643 §7
schema document (e.g. `urn:ietf:params:scim:schemas:extension:acme:2.0:User` with `costCenter`,
`licenceTier`) as an extension of User or Group; from then on the tenant's resource types include
it: advertised in /Schemas and /ResourceTypes, validated and stored on resources (under the URN
key), filterable and sortable (the SQL compiler handles URN-keyed attributes) and usable in
licence rule filters.

* Registering is a ledger event, `ScimExtensionRegistered`, on a stream of its own per
  (tenant, URN) (`scim-extension-<hash>`, expected version 0: two racing registrations of one
  URN cannot both land). Extensions are only ever added; existing documents need no migration.
* The projection `scim_extensions` is written in the append transaction.
* `tenant_schemas(db, tenant)` gives {"User": ResourceSchema, "Group": ResourceSchema} for a
  tenant, from an in-process cache refreshed at most every `MAX_AGE` seconds (one small indexed
  query) and at once after a registration by this process. The cached ResourceSchema objects
  keep their identity while unchanged (the normaliser's compiled-schema cache is keyed by it).
  `cached_schemas(tenant)` / `cached_user_schema(tenant)` are the synchronous reads for code that
  cannot await (deciders, licence rules); they return the built-in schemas for a tenant not
  loaded yet, so async loaders call `tenant_schemas` / `tenant_user_schema` first.

Validation beyond `Schema.from_json` (400 naming the problem): the id is a `urn:` of letters,
digits and `.:_-` (usable verbatim in filters, paths and JSON keys), not in the reserved
`urn:ietf:params:scim:schemas:core:` / `urn:ietf:params:scim:api:` namespaces, not a prefix of
(nor prefixed by) another of the resource type's schema URNs; 1-100 attributes; no top-level
attribute called `schemas`, `id` or `meta`; `uniqueness` must be `none` (extension attributes are
not uniqueness-checked, so advertising `server` would be false). A URN that already exists for the
tenant (built-in or registered, case-insensitively) is 409.
"""
from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any

from .events import Event, NewEvent, event
from .executor import Command, CommandRejected, Decision, Handler
from .scim.schema import ResourceSchema, Schema, default_group_schema, default_user_schema
from .store import StreamChange

RESOURCE_TYPES = ("User", "Group")
MAX_EXTENSIONS = 20            # per tenant
MAX_ATTRIBUTES = 100           # per extension
MAX_AGE = 2.0                  # seconds a cached tenant schema is trusted without a look
URN_RE = re.compile(r"^urn:[A-Za-z0-9][A-Za-z0-9._-]*(?::[A-Za-z0-9._-]+)+$")
RESERVED_PREFIXES = ("urn:ietf:params:scim:schemas:core:", "urn:ietf:params:scim:api:")
RESERVED_NAMES = frozenset({"schemas", "id", "meta"})


@event("ScimExtensionRegistered")
class ScimExtensionRegistered(Event):
    schema_id: str
    resource_type: str            # "User" | "Group"
    required: bool = False        # RFC 7643 §6 schemaExtensions.required
    definition: dict[str, Any]    # the normalised RFC 7643 §7 schema document (no meta)


def extension_stream(schema_id: str) -> str:
    return "scim-extension-" + hashlib.sha256(schema_id.lower().encode()).hexdigest()[:32]


# ---- validation -------------------------------------------------------------------------------

def _check_attr(a, where: str) -> None:
    if a.uniqueness != "none":
        raise ValueError(f"{where} {a.name!r}: uniqueness must be 'none' (extension attributes are "
                         f"not uniqueness-checked), got {a.uniqueness!r}")
    for s in a.sub_attributes:
        _check_attr(s, f"{where} {a.name!r} sub-attribute")


def parse_extension(document: Any, base: ResourceSchema) -> Schema:
    """The Schema of an extension document to add to `base`; ValueError names the problem."""
    if not isinstance(document, dict):
        raise ValueError("the extension must be a JSON object (an RFC 7643 §7 schema document)")
    sid = document.get("id")
    if not isinstance(sid, str) or not URN_RE.match(sid):
        raise ValueError(f"id: an extension id is a URN ('urn:' then letters, digits and '.:_-'), "
                         f"e.g. urn:ietf:params:scim:schemas:extension:acme:2.0:User; got {sid!r}")
    low = sid.lower()
    if any(low.startswith(p) for p in RESERVED_PREFIXES):
        raise ValueError(f"id: {sid} is in a namespace reserved by RFC 7643/7644")
    schema = Schema.from_json(document)
    if not schema.attributes:
        raise ValueError(f"schema {sid}: attributes must not be empty")
    if len(schema.attributes) > MAX_ATTRIBUTES:
        raise ValueError(f"schema {sid}: at most {MAX_ATTRIBUTES} attributes")
    for a in schema.attributes:
        if a.name.lower() in RESERVED_NAMES:
            raise ValueError(f"schema {sid}: attribute name {a.name!r} is reserved")
        _check_attr(a, f"schema {sid}: attribute")
    if not schema.name:
        schema = Schema(id=schema.id, name=schema.id.rsplit(":", 1)[-1], description=schema.description,
                        attributes=schema.attributes)
    for urn in base.schema_urns:
        u = urn.lower()
        if u != low and (low.startswith(u + ":") or u.startswith(low + ":")):
            raise ValueError(f"id: {sid} and {urn} would make attribute paths ambiguous")
    return schema


# ---- command and handler --------------------------------------------------------------------

@dataclass
class ExtState:
    registered: dict[str, str]          # lower-case URN -> resource type
    count: int


@dataclass
class RegisterScimExtension(Command):
    document: Any
    resource_type: str = "User"
    required: bool = False


class ScimExtensionHandler(Handler):
    async def load(self, conn, tenant: str, commands: list) -> ExtState:
        rows = await conn.fetch("SELECT schema_id, resource_type FROM scim_extensions WHERE tenant_id = $1",
                                tenant)
        return ExtState({r["schema_id"].lower(): r["resource_type"] for r in rows}, len(rows))

    def decide(self, st: ExtState, cmd: RegisterScimExtension) -> Decision:
        if cmd.resource_type not in RESOURCE_TYPES:
            raise CommandRejected("invalidValue", f"resourceType must be one of {', '.join(RESOURCE_TYPES)}",
                                  field="resourceType")
        if not isinstance(cmd.required, bool):
            raise CommandRejected("invalidValue", "required must be a boolean", field="required")
        # built-in schemas of every resource type, then this tenant's registrations
        builtin = {u.lower() for rs in (default_user_schema(), default_group_schema()) for u in rs.schema_urns}
        sid = cmd.document.get("id") if isinstance(cmd.document, dict) else None
        if isinstance(sid, str) and (sid.lower() in builtin or sid.lower() in st.registered):
            raise CommandRejected("uniqueness", f"schema {sid} already exists for this tenant", status=409,
                                  field="id")
        base = default_user_schema() if cmd.resource_type == "User" else default_group_schema()
        for urn, rt in st.registered.items():
            if rt == cmd.resource_type:
                base = base.with_extension(Schema(id=urn, name=urn))
        try:
            schema = parse_extension(cmd.document, base)
        except ValueError as exc:
            raise CommandRejected("invalidValue", str(exc), field="schema") from None
        if st.count >= MAX_EXTENSIONS:
            raise CommandRejected("invalidValue", f"a tenant has at most {MAX_EXTENSIONS} extensions")
        ev = ScimExtensionRegistered(schema_id=schema.id, resource_type=cmd.resource_type,
                                     required=cmd.required, definition=schema.to_json())
        return Decision([StreamChange(extension_stream(schema.id), 0, [NewEvent(ev)])],
                        result={"id": schema.id, "resourceType": cmd.resource_type, "required": cmd.required})

    def evolve(self, st: ExtState, cmd, decision: Decision) -> None:
        st.registered[decision.result["id"].lower()] = decision.result["resourceType"]
        st.count += 1

    async def project(self, conn, tenant: str, state, recorded) -> None:
        for _, events in recorded:
            for e in events:
                if e.type == "ScimExtensionRegistered":
                    await conn.execute(
                        "INSERT INTO scim_extensions (tenant_id, schema_id, resource_type, required, definition, "
                        "registered_at, seq) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)",
                        tenant, e.data["schema_id"], e.data["resource_type"], e.data.get("required", False),
                        _dumps(e.data["definition"]), e.recorded_at, e.seq)


def _dumps(v: Any) -> str:
    import orjson
    return orjson.dumps(v).decode()


SCIM_EXTENSIONS = ScimExtensionHandler()
RegisterScimExtension.handler = SCIM_EXTENSIONS


# ---- the tenant's resource types (cached) ----------------------------------------------------

@dataclass
class _Entry:
    at: float                                   # time.monotonic() of the last look
    key: tuple                                  # ((schema_id, seq), ...) in seq order
    schemas: dict[str, ResourceSchema]


_CACHE: dict[str, _Entry] = {}


def _defaults() -> dict[str, ResourceSchema]:
    from .directory import GROUP_RS, USER_RS      # the shared built-in objects (one compiled form)
    return {"User": USER_RS, "Group": GROUP_RS}


def _build(rows) -> dict[str, ResourceSchema]:
    import orjson
    out = dict(_defaults())
    for r in rows:
        d = r["definition"]
        schema = Schema.from_json(orjson.loads(d) if isinstance(d, (str, bytes)) else d)
        out[r["resource_type"]] = out[r["resource_type"]].with_extension(schema, r["required"])
    return out


def cached_schemas(tenant: str | None) -> dict[str, ResourceSchema]:
    """The tenant's resource types as last loaded in this process (built-ins if never loaded)."""
    e = _CACHE.get(tenant) if tenant is not None else None
    return e.schemas if e is not None else _defaults()


def cached_user_schema(tenant: str | None) -> ResourceSchema:
    return cached_schemas(tenant)["User"]


async def tenant_schemas(db, tenant: str, max_age: float = MAX_AGE) -> dict[str, ResourceSchema]:
    """{"User": ..., "Group": ...} for `tenant`; `db` is a pool or a connection."""
    e = _CACHE.get(tenant)
    now = time.monotonic()
    if e is not None and now - e.at < max_age:
        return e.schemas
    rows = await db.fetch("SELECT schema_id, resource_type, required, definition, seq FROM scim_extensions "
                          "WHERE tenant_id = $1 ORDER BY seq", tenant)
    key = tuple((r["schema_id"], r["seq"]) for r in rows)
    e = _CACHE.get(tenant)       # another coroutine may have refreshed it meanwhile
    if e is not None and (e.key == key or _last(e.key) > _last(key)):
        # unchanged (keep the objects), or a newer view landed first (extensions are only added)
        e.at = max(e.at, now) if e.key == key else e.at
        return e.schemas
    schemas = _build(rows) if rows else _defaults()
    _CACHE[tenant] = _Entry(now, key, schemas)
    return schemas


def _last(key: tuple) -> int:
    return key[-1][1] if key else 0


async def tenant_user_schema(db, tenant: str) -> ResourceSchema:
    """The tenant's User resource type (core + Enterprise + registered User extensions)."""
    return (await tenant_schemas(db, tenant))["User"]


async def list_extensions(db, tenant: str) -> list[dict]:
    import orjson
    rows = await db.fetch("SELECT schema_id, resource_type, required, definition, registered_at FROM "
                          "scim_extensions WHERE tenant_id = $1 ORDER BY seq", tenant)
    out = []
    for r in rows:
        d = r["definition"]
        out.append({"id": r["schema_id"], "resourceType": r["resource_type"], "required": r["required"],
                     "registered_at": r["registered_at"].isoformat(),
                     "schema": orjson.loads(d) if isinstance(d, (str, bytes)) else d})
    return out
