"""Licence projections: pools (terms + change timeline), seats, rules, admin grants.

The write side loads pool state from here under the tenant lock, decides, evolves, and writes back
the difference in the same transaction (inline projection: a SCIM client reads its seat at once).
"""
from __future__ import annotations

from datetime import datetime

import orjson

from ledger.licence_rules import Rule
from ledger.licences import PoolState, Seat, Terms


def _ts(d: datetime) -> str:
    return d.isoformat()


def terms_to_json(t: Terms) -> str:
    return orjson.dumps({
        "pool_id": t.pool_id, "product_id": t.product_id, "seats": t.seats,
        "term_start": _ts(t.term_start), "term_end": _ts(t.term_end), "currency": t.currency,
        "price_minor": t.price_minor, "overage_price_minor": t.overage_price_minor,
        "billing_mode": t.billing_mode, "grace_seconds": t.grace_seconds,
        "overage_policy": t.overage_policy, "overage_cap": t.overage_cap,
        "changes": [[_ts(at), k, (_ts(v) if isinstance(v, datetime) else v)] for at, k, v in t.changes],
    }).decode()


def terms_from_json(d: dict | str) -> Terms:
    if isinstance(d, str):
        d = orjson.loads(d)
    dt = datetime.fromisoformat
    changes = []
    for at, k, v in d["changes"]:
        if k == "renew":
            v = dt(v)
        elif k == "reprice":
            v = tuple(v)
        changes.append((dt(at), k, v))
    return Terms(d["pool_id"], d["product_id"], d["seats"], dt(d["term_start"]), dt(d["term_end"]),
                 d["currency"], d["price_minor"], d["overage_price_minor"], d["billing_mode"],
                 d["grace_seconds"], d["overage_policy"], d["overage_cap"], changes)


_TERMS_CACHE: dict[str, Terms] = {}


def terms_cached(raw: str) -> Terms:
    """Parsed Terms for a stored terms document. Read paths (entitlement checks) parse the same
    few documents over and over; Terms are only read there, never mutated."""
    t = _TERMS_CACHE.get(raw)
    if t is None:
        if len(_TERMS_CACHE) > 4096:
            _TERMS_CACHE.clear()
        t = _TERMS_CACHE[raw] = terms_from_json(raw)
    return t


async def load_pools(conn, tenant: str, pool_ids: list[str] | None = None) -> dict[str, PoolState]:
    if pool_ids is None:
        prow = await conn.fetch("SELECT pool_id, terms, counter FROM licence_pools WHERE tenant_id = $1", tenant)
    else:
        prow = await conn.fetch("SELECT pool_id, terms, counter FROM licence_pools WHERE tenant_id = $1 "
                                "AND pool_id = ANY($2::text[])", tenant, pool_ids)
    pools = {r["pool_id"]: PoolState(terms_from_json(r["terms"]), {}, r["counter"]) for r in prow}
    if pools:
        for r in await conn.fetch(
                "SELECT pool_id, user_id, state, grants, priority, since, requested_at, overage, suspended_until, ord "
                "FROM licence_seats WHERE tenant_id = $1 AND pool_id = ANY($2::text[])", tenant, list(pools)):
            pools[r["pool_id"]].seats[r["user_id"]] = Seat(
                r["user_id"], r["state"], frozenset(r["grants"]), r["priority"], r["since"], r["requested_at"],
                r["overage"], r["suspended_until"], r["ord"])
    return pools


async def load_pools_for(conn, tenant: str, user_ids: list[str], now: datetime,
                         pool_rows: list | None = None) -> dict[str, PoolState]:
    """Every pool of the tenant, with only the seats a decision about `user_ids` at `now` can touch:
    theirs, the waiting queues, suspensions whose grace ran out, all seats of a pool past its term
    end, and the most recent seats of a pool over capacity. The rest is counted, not loaded.
    `pool_rows` (pool_id, terms, counter, held), when the caller read them in the same transaction."""
    prow = pool_rows if pool_rows is not None else await conn.fetch(
        "SELECT pool_id, terms, counter, held FROM licence_pools WHERE tenant_id = $1", tenant)
    pools: dict[str, PoolState] = {}
    held_total: dict[str, int] = {}
    everything, most_recent = [], []
    for r in prow:
        terms = terms_from_json(r["terms"])
        pools[r["pool_id"]] = PoolState(terms, {}, r["counter"])
        held_total[r["pool_id"]] = r["held"]
        if now >= terms.term_end_at(now):
            everything.append(r["pool_id"])
        elif r["held"] > terms.capacity(now):
            most_recent.append((r["pool_id"], r["held"] - terms.capacity(now)))
    if not pools:
        return pools
    rows = await conn.fetch(
        "SELECT pool_id, user_id, state, grants, priority, since, requested_at, overage, suspended_until, ord "
        "FROM licence_seats WHERE tenant_id = $1 AND (user_id = ANY($2::text[]) OR state = 'waiting' "
        "OR (state = 'suspended' AND suspended_until <= $3) OR pool_id = ANY($4::text[]))",
        tenant, user_ids, now, everything)
    for pid, n in most_recent:
        rows += await conn.fetch(
            "SELECT pool_id, user_id, state, grants, priority, since, requested_at, overage, suspended_until, ord "
            "FROM licence_seats WHERE tenant_id = $1 AND pool_id = $2 AND state <> 'waiting' "
            "ORDER BY ord DESC LIMIT $3", tenant, pid, n)
    for r in rows:
        pools[r["pool_id"]].seats[r["user_id"]] = Seat(
            r["user_id"], r["state"], frozenset(r["grants"]), r["priority"], r["since"], r["requested_at"],
            r["overage"], r["suspended_until"], r["ord"])
    for pid, p in pools.items():
        p.unloaded_held = held_total[pid] - len(p.held())
    return pools


async def load_rules(conn, tenant: str) -> list[Rule]:
    return rules_from_rows(await conn.fetch("SELECT pool_id, rule_id, priority, kind, group_id, filter FROM licence_rules "
                                            "WHERE tenant_id = $1 ORDER BY pool_id, priority, rule_id", tenant))


def rules_from_rows(rows) -> list[Rule]:
    """Rules from licence_rules rows, in the order they are applied (pool, priority, rule id)."""
    return [Rule(r["pool_id"], r["rule_id"], r["priority"], r["kind"], r["group_id"], r["filter"])
            for r in sorted(rows, key=lambda r: (r["pool_id"], r["priority"], r["rule_id"]))]


# The whole save as one statement (one round trip in the append transaction): pool rows upserted,
# seats that ended deleted, changed seats upserted. The deleted and the upserted seats are disjoint
# (a seat is either gone from the pool or in it), as PostgreSQL requires of one statement's writes.
# A seat's grants travel as a JSON array (arrays of arrays cannot be unnested row by row).
_SAVE = """
WITH p AS (
  INSERT INTO licence_pools (tenant_id, pool_id, product_id, terms, counter, held)
  SELECT $1, t.pool_id, t.product_id, t.terms::jsonb, t.counter, t.held
  FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::int[]) AS t(pool_id, product_id, terms, counter, held)
  ON CONFLICT (tenant_id, pool_id) DO UPDATE SET
    terms = EXCLUDED.terms, counter = EXCLUDED.counter, held = EXCLUDED.held
), gone AS (
  DELETE FROM licence_seats s USING unnest($7::text[], $8::text[]) AS g(pool_id, user_id)
  WHERE s.tenant_id = $1 AND s.pool_id = g.pool_id AND s.user_id = g.user_id
)
INSERT INTO licence_seats (tenant_id, pool_id, user_id, state, grants, priority, since, requested_at, overage,
                           suspended_until, ord)
SELECT $1, u.pool_id, u.user_id, u.state, ARRAY(SELECT jsonb_array_elements_text(u.grants::jsonb)), u.priority,
       u.since, u.requested_at, u.overage, u.suspended_until, u.ord
FROM unnest($9::text[], $10::text[], $11::text[], $12::text[], $13::int[], $14::timestamptz[], $15::timestamptz[],
            $16::bool[], $17::timestamptz[], $18::bigint[])
     AS u(pool_id, user_id, state, grants, priority, since, requested_at, overage, suspended_until, ord)
ON CONFLICT (tenant_id, pool_id, user_id) DO UPDATE SET state = EXCLUDED.state, grants = EXCLUDED.grants,
  priority = EXCLUDED.priority, since = EXCLUDED.since, requested_at = EXCLUDED.requested_at,
  overage = EXCLUDED.overage, suspended_until = EXCLUDED.suspended_until, ord = EXCLUDED.ord
"""


async def save_pools(conn, tenant: str, before: dict[str, dict[str, Seat]], pools: dict[str, PoolState],
                     new_pools: set[str] = frozenset()) -> None:
    """Write the difference between the seats loaded (`before`) and the evolved `pools`."""
    if not pools:
        return
    prows = [(pid, p.terms.product_id, terms_to_json(p.terms), p.counter, p.held_count()) for pid, p in pools.items()]
    gone, upserts = [], []
    for pid, p in pools.items():
        old = before.get(pid, {})
        for uid in old.keys() - p.seats.keys():
            gone.append((pid, uid))
        for uid, s in p.seats.items():
            if old.get(uid) != s:
                upserts.append((pid, uid, s.state, orjson.dumps(sorted(s.grants)).decode(), s.priority, s.since,
                                s.requested_at, s.overage, s.suspended_until, s.order))
    pcols = [list(c) for c in zip(*prows)]
    gcols = [list(c) for c in zip(*gone)] if gone else [[], []]
    ucols = [list(c) for c in zip(*upserts)] if upserts else [[] for _ in range(10)]
    await conn.execute(_SAVE, tenant, *pcols, *gcols, *ucols)


async def users_granted(conn, tenant: str, rule: Rule, product_id: str) -> dict[str, bool]:
    """user id -> active, for every existing user the rule grants (set-based SQL, no Python scan)."""
    base = ("SELECT r.id, COALESCE((r.doc->>'active')::boolean, true) AS active FROM scim_resources r "
            "WHERE r.tenant_id = $1 AND r.type = 'User'")
    args: list = [tenant]
    if rule.kind == "all_active":
        sql = base
    elif rule.kind == "group":
        sql = base + (" AND EXISTS (SELECT 1 FROM group_members m WHERE m.tenant_id = $1 AND m.group_id = $2 "
                      "AND m.member_id = r.id)")
        args.append(rule.group_id)
    elif rule.kind == "entitlement":
        sql = base + " AND r.doc->'entitlements' @> jsonb_build_array(jsonb_build_object('value', $2::text))"
        args.append(product_id)
    elif rule.kind == "filter":
        from ledger.scim_extensions import tenant_user_schema
        from projections.scim_filter_sql import compile_filter
        await tenant_user_schema(conn, tenant)          # filters bind to the tenant's extensions
        where = compile_filter(rule.bound_filter(tenant), args, doc="r.doc", doc_ci="r.doc_ci")
        sql = base + f" AND ({where})"
    else:
        return {}
    return {r["id"]: r["active"] for r in await conn.fetch(sql, *args)}


async def full_demand(conn, tenant: str, pool: PoolState, rules: list[Rule], admin_users: set[str]):
    """Every user's Demand on `pool` from its rules and admin grants, plus NO_DEMAND for holders and
    waiters that nothing grants any more (or that were deleted)."""
    from ledger.licence_rules import ADMIN_GRANT, ADMIN_PRIORITY
    from ledger.licences import NO_DEMAND, Demand
    pid, product = pool.terms.pool_id, pool.terms.product_id
    grants: dict[str, set[str]] = {}
    prio: dict[str, int] = {}
    active: dict[str, bool] = {}
    for r in rules:
        if r.pool_id != pid:
            continue
        for uid, act in (await users_granted(conn, tenant, r, product)).items():
            grants.setdefault(uid, set()).add(r.rule_id)
            prio[uid] = min(prio.get(uid, r.priority), r.priority)
            active[uid] = act
    if admin_users:
        rows = await conn.fetch(
            "SELECT id, COALESCE((doc->>'active')::boolean, true) AS active FROM scim_resources "
            "WHERE tenant_id = $1 AND type = 'User' AND id = ANY($2::text[])", tenant, list(admin_users))
        for r in rows:
            grants.setdefault(r["id"], set()).add(ADMIN_GRANT)
            prio[r["id"]] = ADMIN_PRIORITY
            active[r["id"]] = r["active"]
    out = {u: Demand(frozenset(g), prio[u], active[u]) for u, g in grants.items()}
    for uid in pool.seats:
        out.setdefault(uid, NO_DEMAND)
    return out
