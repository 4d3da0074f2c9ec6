"""Licence administration commands: products, pools and their changes, rules, admin grants, and the
scheduler's re-evaluation. Every command re-evaluates the pools it touches in its own transaction,
so seats never drift from what the rules demand.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from .events import NewEvent
from .executor import BATCH_NOW, Command, CommandRejected, Decision, Handler
from .licence_rules import KINDS, AdminGranted, AdminRevoked, Rule, RuleAdded, RuleRemoved
from .licences import (PoolCancelled, PoolContract, PoolCreated, PoolRenewed, PoolRepriced, PoolResized,
                       PoolState, ProductDefined, compact, decide_seats, evolve, to_new_events)
from .store import StreamChange

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _check_id(what: str, value: str) -> None:
    if not isinstance(value, str) or not ID_RE.match(value):
        raise CommandRejected("invalidValue", f"{what}: 1-100 of letters, digits, '.', '_' and '-'", field=what)


@dataclass
class LicenceState:
    now: datetime
    products: set[str]
    pools: dict[str, PoolState]
    before: dict[str, dict]                       # seats as loaded, for the projection diff
    rules: list[Rule]
    admin: dict[str, set[str]]                    # pool -> users granted by an admin
    demand: dict[str, dict]                       # pool -> full demand (loaded for re-evaluation)
    created: set[str] = field(default_factory=set)
    history: dict[str, list] = field(default_factory=dict)   # pool -> [(event, effective_at, seq)]
    users: dict[str, tuple] = field(default_factory=dict)    # user -> (doc or None, groups)
    tenant: str | None = None     # filter rules bind to this tenant's User schema (custom extensions)


class LicenceAdminHandler(Handler):
    # Rule edits and pool changes read the directory in `load`; a SCIM write decided in the same
    # batch would not be visible there yet (projections are written after all decisions), so these
    # rare commands get a batch of their own.
    exclusive = True

    def streams(self, cmd):
        return [f"pool-{cmd.pool_id}"] if hasattr(cmd, "pool_id") else [f"product-{cmd.product_id}"]

    async def load(self, conn, tenant, commands):
        from projections.licences import full_demand, load_pools, load_rules
        from .scim_extensions import tenant_user_schema
        await tenant_user_schema(conn, tenant)      # filter rules bind to the tenant's extensions
        now = BATCH_NOW.get()
        pool_ids = sorted({c.pool_id for c in commands if hasattr(c, "pool_id")})
        pools = await load_pools(conn, tenant, pool_ids)
        products = {r["product_id"] for r in await conn.fetch(
            "SELECT product_id FROM licence_products WHERE tenant_id = $1", tenant)}
        rules = await load_rules(conn, tenant)
        admin: dict[str, set[str]] = {}
        for r in await conn.fetch("SELECT pool_id, user_id FROM licence_admin_grants WHERE tenant_id = $1 "
                                  "AND pool_id = ANY($2::text[])", tenant, pool_ids):
            admin.setdefault(r["pool_id"], set()).add(r["user_id"])
        demand = {}
        for c in commands:
            if isinstance(c, (AddRule, RemoveRule, RenewPool, AdminAssign, AdminRevoke, Reevaluate)) \
                    and c.pool_id in pools and c.pool_id not in demand:
                # the rules as they will be after this command are applied in decide; load the
                # directory side (who exists, who is active, who matches what) here
                demand[c.pool_id] = await full_demand(conn, tenant, pools[c.pool_id], rules + _pending_rules(commands, tenant),
                                                      admin.get(c.pool_id, set()) | _pending_admin(commands, c.pool_id))
        before = {pid: dict(p.seats) for pid, p in pools.items()}
        st = LicenceState(now, products, pools, before, rules, admin, demand, tenant=tenant)
        corrections = [c for c in commands if isinstance(c, (CorrectSeatEnd, CorrectSeatStart))]
        if corrections:
            from .events import decode
            for pid in {c.pool_id for c in corrections} & set(pools):
                rows = await conn.fetch("SELECT type, schema_version, data, effective_at, seq FROM events "
                                        "WHERE tenant_id = $1 AND stream = $2 ORDER BY seq", tenant, f"pool-{pid}")
                st.history[pid] = [(decode(r["type"], r["schema_version"], orjson.loads(r["data"])),
                                    r["effective_at"], r["seq"]) for r in rows]
            uids = [c.user_id for c in corrections]
            docs = {r["id"]: orjson.loads(r["doc"]) for r in await conn.fetch(
                "SELECT id, doc FROM scim_resources WHERE tenant_id = $1 AND type = 'User' AND id = ANY($2::text[])",
                tenant, uids)}
            groups: dict[str, set] = {u: set() for u in uids}
            for r in await conn.fetch("SELECT group_id, member_id FROM group_members WHERE tenant_id = $1 "
                                      "AND member_id = ANY($2::text[])", tenant, uids):
                groups[r["member_id"]].add(r["group_id"])
            st.users = {u: (docs.get(u), groups[u]) for u in uids}
        return st

    def decide(self, st: LicenceState, cmd) -> Decision:
        return cmd.decide(st)

    def evolve(self, st: LicenceState, cmd, decision: Decision) -> None:
        for ch in decision.changes:
            for ne in ch.events:
                ev = ne.event
                at = ne.effective_at or st.now
                if isinstance(ev, ProductDefined):
                    st.products.add(ev.product_id)
                elif isinstance(ev, RuleAdded):
                    st.rules.append(Rule(ev.pool_id, ev.rule_id, ev.priority, ev.kind, ev.group_id, ev.filter))
                elif isinstance(ev, RuleRemoved):
                    st.rules = [r for r in st.rules if not (r.pool_id == ev.pool_id and r.rule_id == ev.rule_id)]
                elif isinstance(ev, AdminGranted):
                    st.admin.setdefault(ev.pool_id, set()).add(ev.user_id)
                elif isinstance(ev, AdminRevoked):
                    st.admin.get(ev.pool_id, set()).discard(ev.user_id)
                elif hasattr(ev, "pool_id"):
                    if ev.pool_id in st.history:
                        st.history[ev.pool_id].append((ev, at, None))
                    if isinstance(ev, PoolCreated):
                        st.created.add(ev.pool_id)
                        st.before.setdefault(ev.pool_id, {})
                    st.pools[ev.pool_id] = evolve(st.pools.get(ev.pool_id), ev, at)

    async def project(self, conn, tenant, st: LicenceState, recorded):
        from projections.licences import save_pools
        touched = {}
        for _, events in recorded:
            for e in events:
                if e.type == "ProductDefined":
                    await conn.execute("INSERT INTO licence_products (tenant_id, product_id, name) VALUES ($1, $2, $3) "
                                       "ON CONFLICT (tenant_id, product_id) DO UPDATE SET name = EXCLUDED.name",
                                       tenant, e.data["product_id"], e.data["name"])
                elif e.type == "RuleAdded":
                    d = e.data
                    await conn.execute("INSERT INTO licence_rules (tenant_id, pool_id, rule_id, priority, kind, group_id, "
                                       "filter) VALUES ($1, $2, $3, $4, $5, $6, $7)", tenant, d["pool_id"],
                                       d["rule_id"], d["priority"], d["kind"], d.get("group_id"), d.get("filter"))
                elif e.type == "RuleRemoved":
                    await conn.execute("DELETE FROM licence_rules WHERE tenant_id = $1 AND pool_id = $2 AND rule_id = $3",
                                       tenant, e.data["pool_id"], e.data["rule_id"])
                elif e.type == "AdminGranted":
                    await conn.execute("INSERT INTO licence_admin_grants VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                                       tenant, e.data["pool_id"], e.data["user_id"])
                elif e.type == "AdminRevoked":
                    await conn.execute("DELETE FROM licence_admin_grants WHERE tenant_id = $1 AND pool_id = $2 "
                                       "AND user_id = $3", tenant, e.data["pool_id"], e.data["user_id"])
                if "pool_id" in e.data and e.data["pool_id"] in st.pools:
                    touched[e.data["pool_id"]] = st.pools[e.data["pool_id"]]
        await save_pools(conn, tenant, st.before, touched)


LICENCE_ADMIN = LicenceAdminHandler()


def _pending_rules(commands, tenant: str | None = None) -> list[Rule]:
    """Rules the batch is about to add, so `load` fetches who they grant. An invalid one is left
    out here and rejected by its own `decide`."""
    from .scim.filter import FilterError
    out = []
    for c in commands:
        if isinstance(c, AddRule) and c.kind in KINDS:
            r = Rule(c.pool_id, c.rule_id, c.priority, c.kind, c.group_id, c.filter)
            if r.kind == "filter":
                try:
                    r.bound_filter(tenant)
                except (FilterError, TypeError):
                    continue
            out.append(r)
    return out


def _pending_admin(commands, pool_id) -> set[str]:
    return {c.user_id for c in commands if isinstance(c, AdminAssign) and c.pool_id == pool_id}


def _pool(st: LicenceState, pool_id: str) -> PoolState:
    p = st.pools.get(pool_id)
    if p is None:
        raise CommandRejected("notFound", f"no pool {pool_id}", status=404, field="pool_id")
    return p


def _seat_changes(st: LicenceState, pool_id: str, demand: dict, extra: list[NewEvent] | None = None,
                  at: datetime | None = None) -> list[StreamChange]:
    """Pool-level events (extra) followed by the seat events they cause, on the pool stream."""
    pool = st.pools[pool_id]
    work = PoolState(pool.terms.__class__(**{**pool.terms.__dict__, "changes": list(pool.terms.changes)}),
                     dict(pool.seats), pool.counter, pool.unloaded_held)
    for ne in extra or []:
        evolve(work, ne.event, ne.effective_at or st.now)
    seat = to_new_events(compact(decide_seats(work, demand, st.now)), st.now)
    return [StreamChange(f"pool-{pool_id}", None, list(extra or []) + seat)]


def _demand_after(st: LicenceState, pool_id: str, *, drop_rule: str | None = None,
                  drop_admin: str | None = None, add_rule: tuple[str, int] | None = None) -> dict:
    """Full demand loaded in `load` (which already evaluated rules the batch adds), adjusted for
    what this command removes (`drop_*`) or adds (`add_rule` = (rule id, priority))."""
    from .licence_rules import ADMIN_GRANT
    from .licences import Demand
    full = dict(st.demand.get(pool_id, {}))
    rules = {r.rule_id: r.priority for r in st.rules if r.pool_id == pool_id and r.rule_id != drop_rule}
    if add_rule is not None:
        rules[add_rule[0]] = add_rule[1]
    for uid, d in list(full.items()):
        g = set(d.grants)
        if drop_rule:
            g.discard(drop_rule)
        if drop_admin == uid:
            g.discard(ADMIN_GRANT)
        g = {x for x in g if x in rules or (x == ADMIN_GRANT and uid in st.admin.get(pool_id, set()) and uid != drop_admin)}
        prio = min([rules[x] for x in g if x in rules] + ([0] if ADMIN_GRANT in g else []), default=100)
        full[uid] = Demand(frozenset(g), prio, d.active, d.deleted)
    return full


def _on_pool(st: LicenceState, pool_id: str, event: NewEvent, demand: dict | None = None,
             result: dict | None = None) -> Decision:
    """The shape of most pool commands: one pool event, then the seat events it causes. `demand`
    is what the rules now ask for (None: nobody's demand moved, seats only follow the pool's new
    limit or term)."""
    return Decision(_seat_changes(st, pool_id, demand or {}, [event]), result=result or {"pool_id": pool_id})


# ---- commands ----------------------------------------------------------------------------------

@dataclass
class DefineProduct(Command):
    product_id: str
    name: str
    handler = LICENCE_ADMIN

    def decide(self, st):
        _check_id("product_id", self.product_id)
        return Decision([StreamChange(f"product-{self.product_id}", None,
                                      [NewEvent(ProductDefined(product_id=self.product_id, name=self.name))])],
                        result={"product_id": self.product_id})


@dataclass
class CreatePool(PoolContract, Command):
    handler = LICENCE_ADMIN

    def decide(self, st):
        _check_id("pool_id", self.pool_id)
        if self.pool_id in st.pools:
            raise CommandRejected("uniqueness", f"pool {self.pool_id} exists", status=409, field="pool_id")
        if self.product_id not in st.products:
            raise CommandRejected("invalidValue", f"unknown product {self.product_id}", field="product_id")
        if self.seats < 0:
            raise CommandRejected("invalidValue", "seats must be >= 0", field="seats")
        if self.term_end <= self.term_start:
            raise CommandRejected("invalidValue", "term_end must be after term_start", field="term_end")
        if self.overage_policy not in ("reject", "allow", "cap"):
            raise CommandRejected("invalidValue", "overage_policy is reject, allow or cap", field="overage_policy")
        if self.billing_mode not in ("usage", "committed"):
            raise CommandRejected("invalidValue", "billing_mode is usage or committed", field="billing_mode")
        if not re.match(r"^[A-Z]{3}$", self.currency):
            raise CommandRejected("invalidValue", "currency is an ISO 4217 code", field="currency")
        ev = PoolCreated(**{k: getattr(self, k) for k in PoolCreated.model_fields})
        return Decision([StreamChange(f"pool-{self.pool_id}", 0, [NewEvent(ev)])], result={"pool_id": self.pool_id})


@dataclass
class ResizePool(Command):
    pool_id: str
    seats: int
    effective_at: datetime | None = None
    handler = LICENCE_ADMIN

    def decide(self, st):
        _pool(st, self.pool_id)
        if self.seats < 0:
            raise CommandRejected("invalidValue", "seats must be >= 0", field="seats")
        return _on_pool(st, self.pool_id, NewEvent(PoolResized(pool_id=self.pool_id, seats=self.seats),
                                                   self.effective_at))


@dataclass
class RepricePool(Command):
    pool_id: str
    price_minor: int
    overage_price_minor: int | None = None
    effective_at: datetime | None = None
    handler = LICENCE_ADMIN

    def decide(self, st):
        _pool(st, self.pool_id)
        if self.price_minor < 0:
            raise CommandRejected("invalidValue", "price_minor must be >= 0", field="price_minor")
        ne = NewEvent(PoolRepriced(pool_id=self.pool_id, price_minor=self.price_minor,
                                   overage_price_minor=self.overage_price_minor), self.effective_at)
        return Decision([StreamChange(f"pool-{self.pool_id}", None, [ne])], result={"pool_id": self.pool_id})


@dataclass
class RenewPool(Command):
    pool_id: str
    term_end: datetime
    effective_at: datetime | None = None
    handler = LICENCE_ADMIN

    def decide(self, st):
        p = _pool(st, self.pool_id)
        if self.term_end <= p.terms.term_start:
            raise CommandRejected("invalidValue", "term_end must be after the term start", field="term_end")
        # after the end, the rules re-assign: the full demand is re-applied
        return _on_pool(st, self.pool_id, NewEvent(PoolRenewed(pool_id=self.pool_id, term_end=self.term_end),
                                                   self.effective_at), _demand_after(st, self.pool_id))


@dataclass
class CancelPool(Command):
    pool_id: str
    effective_at: datetime | None = None
    handler = LICENCE_ADMIN

    def decide(self, st):
        _pool(st, self.pool_id)
        return _on_pool(st, self.pool_id, NewEvent(PoolCancelled(pool_id=self.pool_id), self.effective_at))


@dataclass
class AddRule(Command):
    pool_id: str
    rule_id: str
    priority: int
    kind: str
    group_id: str | None = None
    filter: str | None = None
    handler = LICENCE_ADMIN

    def decide(self, st):
        _pool(st, self.pool_id)
        _check_id("rule_id", self.rule_id)
        if self.kind not in KINDS:
            raise CommandRejected("invalidValue", f"kind is one of {', '.join(KINDS)}", field="kind")
        if any(r.pool_id == self.pool_id and r.rule_id == self.rule_id for r in st.rules):
            raise CommandRejected("uniqueness", f"rule {self.rule_id} exists", status=409, field="rule_id")
        if self.kind == "group" and not self.group_id:
            raise CommandRejected("invalidValue", "a group rule names group_id", field="group_id")
        if self.kind == "filter":
            from .scim.filter import FilterError
            try:
                Rule(self.pool_id, self.rule_id, self.priority, self.kind, None, self.filter or "").bound_filter(st.tenant)
            except FilterError as exc:
                raise CommandRejected("invalidFilter", str(exc), field="filter") from None
        ev = RuleAdded(pool_id=self.pool_id, rule_id=self.rule_id, priority=self.priority, kind=self.kind,
                       group_id=self.group_id, filter=self.filter)
        return _on_pool(st, self.pool_id, NewEvent(ev),
                        _demand_after(st, self.pool_id, add_rule=(self.rule_id, self.priority)),
                        result={"rule_id": self.rule_id})


@dataclass
class RemoveRule(Command):
    pool_id: str
    rule_id: str
    handler = LICENCE_ADMIN

    def decide(self, st):
        _pool(st, self.pool_id)
        if not any(r.pool_id == self.pool_id and r.rule_id == self.rule_id for r in st.rules):
            raise CommandRejected("notFound", f"no rule {self.rule_id}", status=404, field="rule_id")
        return _on_pool(st, self.pool_id, NewEvent(RuleRemoved(pool_id=self.pool_id, rule_id=self.rule_id)),
                        _demand_after(st, self.pool_id, drop_rule=self.rule_id), result={"rule_id": self.rule_id})


@dataclass
class AdminAssign(Command):
    pool_id: str
    user_id: str
    handler = LICENCE_ADMIN

    def decide(self, st):
        _pool(st, self.pool_id)
        d = st.demand.get(self.pool_id, {}).get(self.user_id)
        if d is None or d.deleted:
            raise CommandRejected("notFound", f"no user {self.user_id}", status=404, field="user_id")
        ne = NewEvent(AdminGranted(pool_id=self.pool_id, user_id=self.user_id))
        demand = _demand_after(st, self.pool_id)
        if self.user_id in demand:
            from .licence_rules import ADMIN_GRANT
            from .licences import Demand
            x = demand[self.user_id]
            demand[self.user_id] = Demand(x.grants | {ADMIN_GRANT}, 0, x.active)
        return _on_pool(st, self.pool_id, ne, demand, result={"pool_id": self.pool_id, "user_id": self.user_id})


@dataclass
class AdminRevoke(Command):
    pool_id: str
    user_id: str
    handler = LICENCE_ADMIN

    def decide(self, st):
        _pool(st, self.pool_id)
        if self.user_id not in st.admin.get(self.pool_id, set()):
            raise CommandRejected("notFound", f"user {self.user_id} has no admin grant on {self.pool_id}", status=404)
        return _on_pool(st, self.pool_id, NewEvent(AdminRevoked(pool_id=self.pool_id, user_id=self.user_id)),
                        _demand_after(st, self.pool_id, drop_admin=self.user_id),
                        result={"pool_id": self.pool_id, "user_id": self.user_id})


@dataclass
class Reevaluate(Command):
    """The scheduler's (and reconciler's) tick: expiries, grace ends, scheduled changes, and the
    full demand re-applied."""
    pool_id: str
    handler = LICENCE_ADMIN

    def decide(self, st):
        _pool(st, self.pool_id)
        ch = _seat_changes(st, self.pool_id, _demand_after(st, self.pool_id))
        if not ch[0].events:
            return Decision([], result={"pool_id": self.pool_id, "events": 0})
        return Decision(ch, result={"pool_id": self.pool_id, "events": len(ch[0].events)})


# ---- corrections -------------------------------------------------------------------------------
# Rules, decided here:
# * A correction rewrites a user's history from its effective time; it never rewrites anyone
#   else's. A seat it frees goes to the waiting from the moment the correction is recorded, not
#   retroactively (nobody can have used a seat in the past that they were not given then).
# * Ending a seat earlier: if the seat is still held, it is released now with the corrected
#   (past) effective time - refused while the rules still grant it to an active user (change the
#   directory first, or the seat would be handed straight back); if it already ended, its end moves
#   back (SeatEndCorrected). The new end must lie within the holding.
# * Starting a seat earlier is accepted only if the pool had a free seat for that whole span;
#   otherwise 409 naming the first instant it was full.

def _history(st: LicenceState, pool_id: str, user_id: str) -> list[list]:
    from .licences import holding_intervals
    return holding_intervals(st.history.get(pool_id, [])).get(user_id, [])


@dataclass
class CorrectSeatEnd(Command):
    pool_id: str
    user_id: str
    ended_at: datetime
    reason: str | None = None
    handler = LICENCE_ADMIN

    def decide(self, st):
        from .licence_rules import demand_for_user
        from .licences import SeatEndCorrected, SeatReleased
        p = _pool(st, self.pool_id)
        if self.ended_at > st.now:
            raise CommandRejected("invalidValue", "ended_at lies in the future: a correction is about the past",
                                  field="ended_at")
        ivs = _history(st, self.pool_id, self.user_id)
        if not ivs:
            raise CommandRejected("notFound", f"user {self.user_id} never held {self.pool_id}", status=404,
                                  field="user_id")
        start, end, _ = ivs[-1]
        if self.ended_at < start:
            raise CommandRejected("invalidValue", f"ended_at is before the holding started ({start.isoformat()})",
                                  field="ended_at")
        seat = p.seats.get(self.user_id)
        if end is None and seat is not None and seat.state != "waiting":
            doc, groups = st.users.get(self.user_id, (None, set()))
            pool_rules = [r for r in st.rules if r.pool_id == self.pool_id]
            d = demand_for_user(pool_rules,
                                {self.pool_id} if self.user_id in st.admin.get(self.pool_id, set()) else set(),
                                self.pool_id, p.terms.product_id, doc, groups,
                                {r.rule_id: r.bound_filter(st.tenant) for r in pool_rules if r.kind == "filter"})
            if d.grants and d.active and not d.deleted:
                raise CommandRejected("conflict", f"the rules still grant {self.pool_id} to {self.user_id} "
                                      f"({', '.join(sorted(d.grants))}): deprovision first", status=409)
            rel = NewEvent(SeatReleased(pool_id=self.pool_id, user_id=self.user_id, reason="correction"),
                           self.ended_at)
            return _on_pool(st, self.pool_id, rel, result={"pool_id": self.pool_id, "user_id": self.user_id,
                                                            "ended_at": self.ended_at.isoformat()})
        if end is None:
            raise CommandRejected("conflict", f"{self.user_id} has no ended holding of {self.pool_id}", status=409)
        if self.ended_at >= end:
            raise CommandRejected("invalidValue", f"the holding already ended at {end.isoformat()}; a correction "
                                  "may only move the end earlier", field="ended_at")
        ev = SeatEndCorrected(pool_id=self.pool_id, user_id=self.user_id, ended_at=self.ended_at,
                              previous_end=end, reason=self.reason)
        return Decision([StreamChange(f"pool-{self.pool_id}", None, [NewEvent(ev, self.ended_at)])],
                        result={"pool_id": self.pool_id, "user_id": self.user_id, "ended_at": self.ended_at.isoformat()})


@dataclass
class CorrectSeatStart(Command):
    pool_id: str
    user_id: str
    started_at: datetime
    reason: str | None = None
    handler = LICENCE_ADMIN

    def decide(self, st):
        from .licences import SeatStartCorrected, first_full_instant, holding_intervals
        p = _pool(st, self.pool_id)
        ivs = _history(st, self.pool_id, self.user_id)
        if not ivs or ivs[-1][1] is not None or self.user_id not in p.seats:
            raise CommandRejected("conflict", f"{self.user_id} does not hold {self.pool_id}", status=409)
        start = ivs[-1][0]
        if self.started_at >= start:
            raise CommandRejected("invalidValue", "started_at must be earlier than the current start "
                                  f"({start.isoformat()})", field="started_at")
        if self.started_at < p.terms.term_start:
            raise CommandRejected("invalidValue", "started_at is before the pool's term", field="started_at")
        prev_end = ivs[-2][1] if len(ivs) > 1 else None
        if prev_end is not None and self.started_at < prev_end:
            raise CommandRejected("invalidValue", "started_at overlaps the user's previous holding",
                                  field="started_at")
        full = first_full_instant(p.terms, holding_intervals(st.history.get(self.pool_id, [])), self.user_id,
                                  self.started_at, start)
        if full is not None:
            raise CommandRejected("conflict", f"the pool had no free seat at {full.isoformat()}", status=409,
                                  instant=full.isoformat())
        ev = SeatStartCorrected(pool_id=self.pool_id, user_id=self.user_id, started_at=self.started_at,
                                previous_start=start, reason=self.reason)
        return Decision([StreamChange(f"pool-{self.pool_id}", None, [NewEvent(ev, self.started_at)])],
                        result={"pool_id": self.pool_id, "user_id": self.user_id,
                                "started_at": self.started_at.isoformat()})
