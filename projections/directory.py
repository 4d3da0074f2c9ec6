"""The directory's inline projection (`scim_resources`, `group_members`) and its read queries.

Written in the append transaction from the decided state (`ledger.directory.DirState`): one
statement per kind of change per batch, never a statement per resource. Group members live in
`group_members` only, so a membership change costs O(change) whatever the group's size; Group
`members` and User `groups` are assembled at read time.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import asyncpg
import orjson

from ledger.erasure import register_eraser
from ledger.scim.schema import ENTERPRISE_USER_URN, casefold_doc

_HIDDEN = ("id", "meta")


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _dumps(v: Any) -> str:
    return orjson.dumps(v).decode()


# ---- loading decider state (under the tenant lock) -------------------------------------------

async def load_state(conn: asyncpg.Connection, tenant: str, reads, st):
    from ledger.directory import Res, _fold_name
    if reads.memberships_of:
        for mid in reads.memberships_of:
            st.groups_of.setdefault(mid, set())
        for r in await conn.fetch(
                "SELECT group_id, member_id FROM group_members WHERE tenant_id = $1 "
                "AND member_id = ANY($2::text[])", tenant, list(reads.memberships_of)):
            st.groups_of[r["member_id"]].add(r["group_id"])
            st.members.setdefault(r["group_id"], set()).add(r["member_id"])
            reads.ids.add(r["group_id"])
    if reads.probes:
        gs, ms = zip(*reads.probes)
        for r in await conn.fetch(
                "SELECT gm.group_id, gm.member_id FROM group_members gm "
                "JOIN unnest($2::text[], $3::text[]) AS p(g, m) ON gm.group_id = p.g AND gm.member_id = p.m "
                "WHERE gm.tenant_id = $1", tenant, list(gs), list(ms)):
            st.members.setdefault(r["group_id"], set()).add(r["member_id"])
    if reads.full_groups:
        for g in reads.full_groups:
            st.members.setdefault(g, set())
        for r in await conn.fetch(
                "SELECT group_id, member_id FROM group_members WHERE tenant_id = $1 "
                "AND group_id = ANY($2::text[])", tenant, list(reads.full_groups)):
            st.members[r["group_id"]].add(r["member_id"])
        st.full.update(reads.full_groups)
    if reads.ids:
        ids = [i for i in reads.ids if isinstance(i, str)]
        for i in ids:
            st.res[i] = None
        for r in await conn.fetch(
                "SELECT r.id, r.type, r.doc, r.version, r.created, EXISTS (SELECT 1 FROM erasures e "
                "WHERE e.tenant_id = r.tenant_id AND e.subject = r.id) AS erased "
                "FROM scim_resources r WHERE r.tenant_id = $1 AND r.id = ANY($2::text[])", tenant, ids):
            doc = orjson.loads(r["doc"])
            for k in _HIDDEN:
                doc.pop(k, None)
            res = Res(r["type"], doc, r["version"], iso(r["created"]), erased=r["erased"])
            st.res[r["id"]] = res
            if res.type == "User":
                n = _fold_name(doc)
                if n is not None:
                    st.names[n] = r["id"]
    if reads.names:
        for r in await conn.fetch(
                "SELECT id, doc_ci->>'userName' AS n FROM scim_resources WHERE tenant_id = $1 "
                "AND type = 'User' AND (doc_ci->>'userName') = ANY($2::text[])", tenant, list(reads.names)):
            st.names[r["n"]] = r["id"]
    return st


# ---- writing the projection -----------------------------------------------------------------

def stored_doc(rid: str, res, created: str, now: str) -> dict:
    doc = dict(res.doc)
    doc["id"] = rid
    doc["meta"] = {"resourceType": res.type, "created": created, "lastModified": now}
    return doc


async def write_state(conn: asyncpg.Connection, tenant: str, st, now: datetime) -> None:
    from ledger.scim_extensions import tenant_schemas
    rss = await tenant_schemas(conn, tenant)    # doc_ci folds the tenant's extension attributes too
    now_s = iso(now)
    deletes: list[str] = []
    ins: list[tuple] = []
    upd: list[tuple] = []
    for rid in st.touched:
        r = st.res[rid]
        if r.deleted:
            if not r.created:
                deletes.append(rid)
            continue
        doc = stored_doc(rid, r, r.created_at or now_s, now_s)
        row = (rid, r.type, _dumps(doc), _dumps(casefold_doc(doc, rss[r.type])), r.version)
        (ins if r.created else upd).append(row)
    # deletes, then updates, then inserts: a userName freed in this batch can be taken again
    if deletes:
        await conn.execute("DELETE FROM scim_resources WHERE tenant_id = $1 AND id = ANY($2::text[])",
                           tenant, deletes)
    if upd:
        await conn.execute(
            "UPDATE scim_resources r SET doc = t.doc::jsonb, doc_ci = t.ci::jsonb, version = t.v, "
            "last_modified = $2 FROM unnest($3::text[], $4::text[], $5::text[], $6::int[]) "
            "AS t(id, doc, ci, v) WHERE r.tenant_id = $1 AND r.id = t.id",
            tenant, now, [u[0] for u in upd], [u[2] for u in upd], [u[3] for u in upd], [u[4] for u in upd])
    if ins:
        await conn.execute(
            "INSERT INTO scim_resources (tenant_id, id, type, doc, doc_ci, version, created, last_modified) "
            "SELECT $1, t.id, t.type, t.doc::jsonb, t.ci::jsonb, t.v, $2, $2 "
            "FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::int[]) AS t(id, type, doc, ci, v)",
            tenant, now, [u[0] for u in ins], [u[1] for u in ins], [u[2] for u in ins],
            [u[3] for u in ins], [u[4] for u in ins])
    adds = [(g, m, t) for (g, m), t in st.mchanges.items() if t is not None]
    rems = [(g, m) for (g, m), t in st.mchanges.items() if t is None]
    if adds:
        await conn.execute(
            "INSERT INTO group_members (tenant_id, group_id, member_id, member_type) "
            "SELECT $1, g, m, t FROM unnest($2::text[], $3::text[], $4::text[]) AS x(g, m, t) "
            "ON CONFLICT DO NOTHING", tenant, [a[0] for a in adds], [a[1] for a in adds], [a[2] for a in adds])
    if rems:
        await conn.execute(
            "DELETE FROM group_members gm USING unnest($2::text[], $3::text[]) AS x(g, m) "
            "WHERE gm.tenant_id = $1 AND gm.group_id = x.g AND gm.member_id = x.m",
            tenant, [r[0] for r in rems], [r[1] for r in rems])
    gone = [rid for rid in st.touched if st.res[rid].deleted]
    if gone:
        await conn.execute(
            "DELETE FROM group_members WHERE tenant_id = $1 AND (group_id = ANY($2::text[]) "
            "OR member_id = ANY($2::text[]))", tenant, gone)
    for result in st.stamps:
        result["created"] = result["lastModified"] = now_s


# ---- erasure ----------------------------------------------------------------------------------

def erased_doc(doc: dict) -> dict:
    """A user document without its personal attributes. An extension object left empty goes too,
    with its URN in `schemas`, as normalize and PATCH never keep an empty one: the erased document
    is then exactly the one folded from the events whose personal part is unreadable (the rebuild,
    projections/rebuild_directory.py, applies this same function)."""
    from ledger.directory import PERSONAL_EXT_ATTRS, PERSONAL_USER_ATTRS
    out = {k: v for k, v in doc.items() if k not in PERSONAL_USER_ATTRS}
    for urn, names in PERSONAL_EXT_ATTRS.items():
        ext = out.get(urn)
        if isinstance(ext, dict):
            ext = {a: v for a, v in ext.items() if a not in names}
            if ext:
                out[urn] = ext
                continue
            del out[urn]
        if isinstance(out.get("schemas"), list) and urn in out["schemas"]:
            out["schemas"] = [s for s in out["schemas"] if s != urn]
    return out


@register_eraser
async def erase_directory_subject(conn: asyncpg.Connection, tenant: str, subject: str) -> None:
    """Clear an erased user's personal attributes from the projection (the events keep only
    ciphertext, whose key is gone)."""
    from ledger.scim_extensions import tenant_schemas
    doc = await conn.fetchval("SELECT doc FROM scim_resources WHERE tenant_id = $1 AND id = $2 AND type = 'User'",
                              tenant, subject)
    if doc is None:
        return
    new = erased_doc(orjson.loads(doc))
    rs = (await tenant_schemas(conn, tenant))["User"]
    await conn.execute("UPDATE scim_resources SET doc = $3::jsonb, doc_ci = $4::jsonb "
                       "WHERE tenant_id = $1 AND id = $2", tenant, subject, _dumps(new),
                       _dumps(casefold_doc(new, rs)))


# ---- reads --------------------------------------------------------------------------------------

_SELECT = ("SELECT id, type, doc, version FROM scim_resources ")


async def get_resource(conn, tenant: str, type_: str, rid: str):
    return await conn.fetchrow(_SELECT + "WHERE tenant_id = $1 AND id = $2 AND type = $3", tenant, rid, type_)


async def list_resources(conn, where: str | None, args: list, order: str | None, offset: int,
                         limit: int):
    """(totalResults, rows) of one page. args[0] is the tenant, args[1] the type (None: both),
    then the compiled filter's parameters; `where` is that filter over r.doc/r.doc_ci; `order`
    an ORDER BY item or None. Pages are ordered by (order, id): stable between requests."""
    type_ = args[1]
    if type_ is None:
        conds = ["r.tenant_id = $1", "$2::text IS NULL"]
    else:
        # the literal as well as $2: a generic plan can still use the partial (type = 'User')
        # unique index on userName
        assert type_ in ("User", "Group")
        conds = ["r.tenant_id = $1", f"r.type = '{type_}'", "r.type = $2"]
    if where:
        # not wrapped in COALESCE: a NULL is "no match" in WHERE anyway, and the bare expression
        # keeps the shapes the expression indexes match
        conds.append(where)
    cond = " AND ".join(conds)
    order_by = (order + ", " if order else "") + "r.id"
    n = len(args)
    rows = []
    if limit > 0:
        rows = await conn.fetch(
            f"SELECT r.id, r.type, r.doc, r.version, count(*) OVER () AS total FROM scim_resources r "
            f"WHERE {cond} ORDER BY {order_by} LIMIT ${n + 1} OFFSET ${n + 2}", *args, limit, offset)
    if rows:
        return rows[0]["total"], rows
    total = await conn.fetchval(f"SELECT count(*) FROM scim_resources r WHERE {cond}", *args)
    return total, []


async def members_of(conn, tenant: str, group_ids: list[str]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {g: [] for g in group_ids}
    if not group_ids:
        return out
    for r in await conn.fetch(
            "SELECT gm.group_id, gm.member_id, gm.member_type, m.doc->>'displayName' AS display "
            "FROM group_members gm LEFT JOIN scim_resources m ON m.tenant_id = gm.tenant_id "
            "AND m.id = gm.member_id WHERE gm.tenant_id = $1 AND gm.group_id = ANY($2::text[]) "
            "ORDER BY gm.group_id, gm.member_id", tenant, group_ids):
        m = {"value": r["member_id"], "type": r["member_type"]}
        if r["display"] is not None:
            m["display"] = r["display"]
        out[r["group_id"]].append(m)
    return out


async def groups_of(conn, tenant: str, member_ids: list[str]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {m: [] for m in member_ids}
    if not member_ids:
        return out
    for r in await conn.fetch(
            "SELECT gm.member_id, gm.group_id, g.doc->>'displayName' AS display "
            "FROM group_members gm JOIN scim_resources g ON g.tenant_id = gm.tenant_id "
            "AND g.id = gm.group_id WHERE gm.tenant_id = $1 AND gm.member_id = ANY($2::text[]) "
            "ORDER BY gm.member_id, gm.group_id", tenant, member_ids):
        g = {"value": r["group_id"], "type": "direct"}
        if r["display"] is not None:
            g["display"] = r["display"]
        out[r["member_id"]].append(g)
    return out



def _with_members(col: str, type_expr: str) -> str:
    return (f"({col} || jsonb_build_object('members', COALESCE((SELECT jsonb_agg(jsonb_build_object("
            f"'value', gm.member_id, 'type', {type_expr})) FROM group_members gm "
            "WHERE gm.tenant_id = r.tenant_id AND gm.group_id = r.id), '[]'::jsonb)))")


# Filters on Group `members` (rare; IdPs don't send them) see the members assembled per row:
# correct, O(group size) per candidate group.
MEMBERS_DOC = _with_members("r.doc", "gm.member_type")
MEMBERS_DOC_CI = _with_members("r.doc_ci", "lower(gm.member_type)")
