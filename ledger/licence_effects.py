"""Licences follow the directory, in the same transaction as the SCIM write that moves them.

The directory handler loads a LicenceEffects for its batch (under the tenant lock), calls
`for_user` with each changed user's resulting SCIM document (None once deleted) and direct groups,
appends the returned seat events to its own decision, and saves the pools in its `project`.

    fx = await LicenceEffects.load(conn, tenant, user_ids, now)   # in load
    changes += fx.for_user(user_id, doc_after, groups_after)      # in decide: pure, state untouched
    fx.apply(decision.changes)                                    # in evolve: fold the seat events
    await fx.save(conn, tenant)                                   # in project
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .events import NewEvent
from .licence_rules import Rule, demand_for_user
from .licences import PoolState, Seat, compact, decide_seats, evolve, to_new_events
from .store import StreamChange


@dataclass
class LicenceEffects:
    now: datetime
    pools: dict[str, PoolState]
    rules: list[Rule]
    admin: dict[str, set[str]]                       # user -> pools an admin granted
    before: dict[str, dict[str, Seat]] = field(default_factory=dict)
    extra_demand: dict[str, dict] = field(default_factory=dict)   # pool -> full demand to re-apply
    reapplied: dict[str, list] = field(default_factory=dict)      # pool -> late renewal instants
    touched: set[str] = field(default_factory=set)
    _bound: dict = field(default_factory=dict)

    @classmethod
    async def load(cls, conn, tenant: str, user_ids: list[str], now: datetime, *, pool_rows: list | None = None,
                   rules: list[Rule] | None = None, admin: dict[str, set[str]] | None = None) -> "LicenceEffects":
        """pool_rows, rules, admin: when the caller read them in the same transaction (fewer round trips)."""
        from projections.licences import load_pools_for, load_rules
        pools = await load_pools_for(conn, tenant, user_ids, now, pool_rows)
        if rules is None:
            rules = await load_rules(conn, tenant) if pools else []
        if admin is None and pools:
            admin = {}
            for r in await conn.fetch("SELECT pool_id, user_id FROM licence_admin_grants WHERE tenant_id = $1 "
                                      "AND user_id = ANY($2::text[])", tenant, user_ids):
                admin.setdefault(r["user_id"], set()).add(r["pool_id"])
        fx = cls(now, pools, rules, admin or {})
        fx.before = {pid: dict(p.seats) for pid, p in pools.items()}
        if any(r.kind == "filter" for r in rules):
            from .scim_extensions import tenant_user_schema
            await tenant_user_schema(conn, tenant)      # filters bind to the tenant's extensions
        for r in rules:
            if r.kind == "filter":
                fx._bound[(r.pool_id, r.rule_id)] = r.bound_filter(tenant)
        return fx

    def for_user(self, user_id: str, user: dict | None, groups: set[str]) -> list[StreamChange]:
        return self.for_users({user_id: (user, groups)})

    def for_users(self, users: dict[str, tuple[dict | None, set[str]]]) -> list[StreamChange]:
        """Seat events on every pool for these users' new states (and whatever time has made due),
        decided together so that one command's users compete fairly for the free seats. Pure."""
        out = []
        for pid, pool in self.pools.items():
            rules = [r for r in self.rules if r.pool_id == pid]
            bound = {r.rule_id: self._bound.get((pid, r.rule_id)) for r in rules if r.kind == "filter"}
            demand = dict(self.extra_demand.get(pid, {}))
            for uid, (user, groups) in users.items():
                d = demand_for_user(rules, self.admin.get(uid, set()), pid, pool.terms.product_id, user, groups, bound)
                if d.grants or uid in pool.seats:
                    demand[uid] = d
            if not demand and not self._time_due(pool):
                continue
            evs = compact(decide_seats(pool, demand, self.now))
            if evs:
                out.append(StreamChange(f"pool-{pid}", None, to_new_events(evs, self.now)))
        return out

    def _time_due(self, pool: PoolState) -> bool:
        """Does time alone call for seat events on this pool (expiry, grace end, a downsize)?"""
        t = pool.terms
        if self.now >= t.term_end_at(self.now) and (pool.held() or pool.waiting()):
            return True
        if pool.held_count() > t.capacity(self.now):
            return True
        if pool.waiting() and pool.held_count() < t.capacity(self.now):
            return True                      # an upsize or a renewal took effect
        return any(s.state == "suspended" and s.suspended_until and s.suspended_until <= self.now
                   for s in pool.seats.values())

    def apply(self, changes: list[StreamChange]) -> None:
        """Fold accepted seat events into the pools, so later commands of the batch see them."""
        for ch in changes:
            if not ch.stream.startswith("pool-"):
                continue
            pid = ch.stream[5:]
            pool = self.pools.get(pid)
            if pool is None:
                continue
            for ne in ch.events:
                evolve(pool, ne.event, ne.effective_at or self.now)
            self.touched.add(pid)

    async def save(self, conn, tenant: str) -> None:
        from projections.licences import save_pools
        if self.touched:
            await save_pools(conn, tenant, self.before, {pid: self.pools[pid] for pid in self.touched})


class LicenceClockHandler:
    """Time-driven seat events for a whole tenant: expiries at the term end, grace periods that ran
    out, scheduled resizes, seats freed by a renewal or an upsize going to the waiting. Exclusive:
    its pool state must not be decided on beside another handler's copy of the same pools."""
    exclusive = True

    def streams(self, cmd):
        return ()

    async def load(self, conn, tenant, commands):
        from projections.licences import full_demand
        from .executor import BATCH_NOW
        fx = await LicenceEffects.load(conn, tenant, [], BATCH_NOW.get())
        # A pool back in term (a renewal that took effect after its end) holds and queues nobody:
        # every seat expired and nobody waits for an ended pool. Its rules must be applied again,
        # which needs the directory - only for such pools, so a tick stays cheap.
        # Only pools that something grants (a rule, or an admin grant) can have demand to apply.
        granting = {r.pool_id for r in fx.rules} | {r["pool_id"] for r in await conn.fetch(
            "SELECT DISTINCT pool_id FROM licence_admin_grants WHERE tenant_id = $1", tenant)}
        for pid, pool in fx.pools.items():
            late = pool.terms.late_renewals_due(fx.now) if pool.terms.in_term(fx.now) else []
            if late:
                fx.reapplied[pid] = late
            if late or (pid in granting and pool.terms.in_term(fx.now) and pool.held_count() == 0
                        and not pool.waiting()):
                # the full demand meets every seat of the pool: load them all (a partial state
                # would take a holder it did not load for a new request and count it twice)
                from projections.licences import load_pools
                pool = fx.pools[pid] = (await load_pools(conn, tenant, [pid]))[pid]
                fx.before[pid] = dict(pool.seats)
                admin = {r["user_id"] for r in await conn.fetch(
                    "SELECT user_id FROM licence_admin_grants WHERE tenant_id = $1 AND pool_id = $2", tenant, pid)}
                fx.extra_demand[pid] = await full_demand(conn, tenant, pool, fx.rules, admin)
        return fx

    def decide(self, fx: LicenceEffects, cmd):
        from .events import NewEvent
        from .executor import Decision
        from .licences import RulesReapplied
        changes = fx.for_users({})
        for pid, instants in sorted(fx.reapplied.items()):
            marks = [NewEvent(RulesReapplied(pool_id=pid, renewal_at=at), None, f"reapplied:{pid}:{at.isoformat()}")
                     for at in instants]
            ch = next((c for c in changes if c.stream == f"pool-{pid}"), None)
            if ch is None:
                changes.append(StreamChange(f"pool-{pid}", None, marks))
            else:
                ch.events[:0] = marks
        return Decision(changes, result={"events": sum(len(c.events) for c in changes)})

    def evolve(self, fx: LicenceEffects, cmd, decision) -> None:
        fx.apply(decision.changes)

    async def project(self, conn, tenant, fx: LicenceEffects, recorded) -> None:
        await fx.save(conn, tenant)


LICENCE_CLOCK = LicenceClockHandler()


@dataclass
class TickLicences:
    """Record whatever time has made due in a tenant's pools (the scheduler's command)."""
    handler = LICENCE_CLOCK
