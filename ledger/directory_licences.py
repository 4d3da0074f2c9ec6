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


async def load_licences(conn, tenant: str, commands: list, reads, st) -> None:
    from projections.directory import load_state
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM licence_pools WHERE tenant_id = $1)", tenant):
        return
    from .directory import CreateUser, DeleteGroup, Reads
    # members of groups being deleted lose that group's grants: load who they are
    deleted_groups = [c.id for c in commands if isinstance(c, DeleteGroup)]
    if deleted_groups:
        await load_state(conn, tenant, Reads(full_groups=set(deleted_groups)), st)
    # a deleted group or a full member replacement (PUT, `replace members`) changes members whose
    # documents were not loaded: for groups that licence rules name, load them, so their seats follow
    rule_groups = {r["group_id"] for r in await conn.fetch(
        "SELECT DISTINCT group_id FROM licence_rules WHERE tenant_id = $1 AND kind = 'group'", tenant)}
    members = set()
    for gid in st.full & rule_groups:
        members |= st.members.get(gid, set())
    extra = Reads(ids=members - set(st.res))
    if extra.ids:
        await load_state(conn, tenant, extra, st)
    created = {c.id for c in commands if isinstance(c, CreateUser)}
    users = {rid for rid, r in st.res.items() if r is not None and r.type == "User"} | created
    missing = [u for u in users if u not in st.groups_of]
    if missing:
        for u in missing:
            st.groups_of[u] = set()
        for r in await conn.fetch("SELECT group_id, member_id FROM group_members WHERE tenant_id = $1 "
                                  "AND member_id = ANY($2::text[])", tenant, missing):
            st.groups_of[r["member_id"]].add(r["group_id"])
    st.licences = await LicenceEffects.load(conn, tenant, sorted(users), BATCH_NOW.get())


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
