"""Reconciliation: compare what the rules demand with what is held, report drift by kind, fix it.

Rule edits, resizes and corrections re-evaluate in their own transaction, so drift comes only from a
missed scheduler run or a projection changed outside the write path. `--fix` appends compensating
events through the normal write path (source "reconciler"): each pool is re-evaluated against the
full demand, which releases, assigns or queues as the rules say; a second run reports nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

DRIFT_KINDS = ("held_by_deleted_user", "held_by_inactive_user", "held_without_grant",
               "eligible_without_seat", "over_allocated", "held_past_term_end")


@dataclass
class Drift:
    kind: str
    pool_id: str
    user_id: str | None
    detail: str

    def as_dict(self) -> dict:
        return {"kind": self.kind, "pool_id": self.pool_id, "user_id": self.user_id, "detail": self.detail}


async def find_drift(conn, tenant: str, now: datetime) -> list[Drift]:
    from projections.licences import full_demand, load_pools, load_rules
    pools = await load_pools(conn, tenant)
    rules = await load_rules(conn, tenant)
    admin: dict[str, set[str]] = {}
    for r in await conn.fetch("SELECT pool_id, user_id FROM licence_admin_grants WHERE tenant_id = $1", tenant):
        admin.setdefault(r["pool_id"], set()).add(r["user_id"])
    existing = {r["id"]: r["active"] for r in await conn.fetch(
        "SELECT id, COALESCE((doc->>'active')::boolean, true) AS active FROM scim_resources "
        "WHERE tenant_id = $1 AND type = 'User'", tenant)}
    out: list[Drift] = []
    for pid, pool in sorted(pools.items()):
        t = pool.terms
        demand = await full_demand(conn, tenant, pool, rules, admin.get(pid, set()))
        held = pool.held()
        for s in sorted(held, key=lambda s: s.user_id):
            if s.user_id not in existing:
                out.append(Drift("held_by_deleted_user", pid, s.user_id, "the user no longer exists"))
            elif not existing[s.user_id] and s.state == "active":
                out.append(Drift("held_by_inactive_user", pid, s.user_id, "the user is deactivated"))
            elif not demand.get(s.user_id) or not demand[s.user_id].grants:
                out.append(Drift("held_without_grant", pid, s.user_id, "no rule or admin grant gives it"))
        if now >= t.term_end_at(now) and held:
            out.append(Drift("held_past_term_end", pid, None, f"{len(held)} seats held after the term end "
                             f"{t.term_end_at(now).isoformat()}"))
        elif pool.held_count() > t.capacity(now):
            out.append(Drift("over_allocated", pid, None, f"{pool.held_count()} holders for {t.capacity(now)} seats"))
        free = t.capacity(now) - pool.held_count()
        if t.in_term(now):
            for uid, d in sorted(demand.items()):
                if d.grants and d.active and not d.deleted and uid not in pool.seats:
                    out.append(Drift("eligible_without_seat", pid, uid,
                                     "granted but neither holding nor waiting" + (" while seats are free" if free > 0 else "")))
    return out


async def reconcile(bus, pool, tenant: str, *, fix: bool) -> tuple[list[Drift], int]:
    """(drift found, events appended by the fix)."""
    from datetime import timezone
    from .licence_admin import Reevaluate
    async with pool.acquire() as conn:
        drift = await find_drift(conn, tenant, datetime.now(timezone.utc))
    appended = 0
    if fix and drift:
        for pid in sorted({d.pool_id for d in drift}):
            res = await bus.execute(tenant, Reevaluate(pid), metadata={
                "actor": "reconciler", "source": "reconciler",
                "reason": ", ".join(sorted({d.kind for d in drift if d.pool_id == pid}))})
            appended += res.get("events", 0)
    return drift, appended
