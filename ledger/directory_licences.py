"""Where the directory meets the licences: a SCIM write's seat consequences, decided in the same
command as the write itself, so they are appended atomically with it (same transaction, same
tenant lock) - a client that creates a user can read the seat it got at once.

The directory handler calls, in this order:
    load:    await load_licences(conn, tenant, commands, reads, st)   (only if the tenant has pools)
    decide:  decision.changes += licence_changes(st, decision)
    evolve:  st.licences.apply(decision.changes)
    project: await st.licences.save(conn, tenant)
"""
from __future__ import annotations

from .executor import BATCH_NOW
from .licence_effects import LicenceEffects
from .store import StreamChange


# What a batch's seat decisions need, read in one round trip under the tenant lock (so exact: no
# cache to keep in step with licence admin commands or other processes): the tenant's pools and rules,
# the direct groups of the users ($3) whose groups the directory did not load, the admin grants of
# the batch's users ($2). Without pools the last two branches are skipped (a one-time filter), so a
# tenant without licences pays what the former EXISTS probe cost. Columns are shared by name: each
# row fills those of its row_kind, in the names the projection readers expect.
_LICENCE_INPUTS_SQL = """
SELECT 'pool' AS row_kind, pool_id, terms, counter, held, NULL::text AS rule_id, NULL::integer AS priority,
       NULL::text AS kind, NULL::text AS group_id, NULL::text AS filter, NULL::text AS member_id,
       NULL::text AS user_id
  FROM licence_pools WHERE tenant_id = $1
UNION ALL
SELECT 'rule', pool_id, NULL, NULL, NULL, rule_id, priority, kind, group_id, filter, NULL, NULL
  FROM licence_rules WHERE tenant_id = $1
UNION ALL
SELECT 'member', NULL, NULL, NULL, NULL, NULL, NULL, NULL, group_id, NULL, member_id, NULL
  FROM group_members WHERE tenant_id = $1 AND member_id = ANY($3::text[])
   AND EXISTS (SELECT 1 FROM licence_pools WHERE tenant_id = $1)
UNION ALL
SELECT 'grant', pool_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, user_id
  FROM licence_admin_grants WHERE tenant_id = $1 AND user_id = ANY($2::text[])
   AND EXISTS (SELECT 1 FROM licence_pools WHERE tenant_id = $1)
"""
_MEMBERS_AND_GRANTS_SQL = """
SELECT 'member' AS row_kind, group_id, member_id, NULL::text AS pool_id, NULL::text AS user_id
  FROM group_members WHERE tenant_id = $1 AND member_id = ANY($3::text[])
UNION ALL
SELECT 'grant', NULL, NULL, pool_id, user_id FROM licence_admin_grants WHERE tenant_id = $1 AND user_id = ANY($2::text[])
"""


def _batch_users(st, commands) -> set[str]:
    from .directory import CreateUser
    created = {c.id for c in commands if isinstance(c, CreateUser)}
    return {rid for rid, r in st.res.items() if r is not None and r.type == "User"} | created


def _missing_groups(st, users: set[str]) -> list[str]:
    """Users whose direct groups the directory did not load (they start empty, rows fill them)."""
    missing = sorted(u for u in users if u not in st.groups_of)
    for u in missing:
        st.groups_of[u] = set()
    return missing


def _fold(st, rows, admin: dict[str, set[str]]) -> None:
    for r in rows:
        if r["row_kind"] == "member":
            st.groups_of[r["member_id"]].add(r["group_id"])
        elif r["row_kind"] == "grant":
            admin.setdefault(r["user_id"], set()).add(r["pool_id"])


async def load_licences(conn, tenant: str, commands: list, reads, st) -> None:
    from projections.directory import load_state
    from projections.licences import rules_from_rows
    from .directory import DeleteGroup, Reads
    users = _batch_users(st, commands)
    missing = _missing_groups(st, users)
    rows = await conn.fetch(_LICENCE_INPUTS_SQL, tenant, sorted(users), missing)
    pool_rows = sorted((r for r in rows if r["row_kind"] == "pool"), key=lambda r: r["pool_id"])
    if not pool_rows:
        for u in missing:          # nothing was read for them: leave the directory's view as it was
            del st.groups_of[u]
        return
    rules = rules_from_rows([r for r in rows if r["row_kind"] == "rule"])
    admin: dict[str, set[str]] = {}
    _fold(st, rows, admin)
    # members of groups being deleted lose that group's grants: load who they are
    deleted_groups = [c.id for c in commands if isinstance(c, DeleteGroup)]
    if deleted_groups:
        await load_state(conn, tenant, Reads(full_groups=set(deleted_groups)), st)
    # a deleted group or a full member replacement (PUT, `replace members`) changes members whose
    # documents were not loaded: for groups that licence rules name, load them, so their seats follow
    rule_groups = {r.group_id for r in rules if r.kind == "group"}
    members = set()
    for gid in st.full & rule_groups:
        members |= st.members.get(gid, set())
    extra = Reads(ids=members - set(st.res))
    if extra.ids:
        await load_state(conn, tenant, extra, st)
    more = _batch_users(st, commands) - users        # users those loads brought in (rare)
    if more:
        users |= more
        _fold(st, await conn.fetch(_MEMBERS_AND_GRANTS_SQL, tenant, sorted(more), _missing_groups(st, more)), admin)
    st.licences = await LicenceEffects.load(conn, tenant, sorted(users), BATCH_NOW.get(), pool_rows=pool_rows,
                                            rules=rules, admin=admin)


def licence_changes(st, decision) -> list[StreamChange]:
    """Seat events for the users this decision changes: their documents and direct groups after it."""
    fx: LicenceEffects | None = st.licences
    if fx is None:
        return []
    docs: dict[str, dict | None] = {}
    groups: dict[str, set[str]] = {}

    def groups_of(uid: str) -> set[str]:
        if uid not in groups:
            groups[uid] = set(st.groups_of.get(uid, set()))
        return groups[uid]

    for eff in decision.effects:
        kind = eff[0]
        if kind == "put" and eff[2].type == "User":
            docs[eff[1]] = eff[2].doc
        elif kind == "delete":
            r = st.res.get(eff[1])
            if r is not None and r.type == "User":
                docs[eff[1]] = None
            elif r is not None and r.type == "Group":
                for mid in st.members.get(eff[1], set()):
                    m = st.res.get(mid)
                    if m is not None and m.type == "User" and not m.deleted:
                        groups_of(mid).discard(eff[1])
                        docs.setdefault(mid, m.doc)
        elif kind in ("add", "rem"):
            gid, mid = eff[1], eff[2]
            m = st.res.get(mid)
            if m is None or m.type != "User":
                continue
            (groups_of(mid).add if kind == "add" else groups_of(mid).discard)(gid)
            docs.setdefault(mid, None if m.deleted else m.doc)
    if not docs:
        return []
    return fx.for_users({uid: (doc, groups_of(uid)) for uid, doc in docs.items()})
