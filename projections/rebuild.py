"""`seatledger rebuild [--tenant T] [--check]`: projections rebuilt from the events, compared, swapped.

Rebuilt here (per tenant):
* the licence projections, current state: `licence_pools`, `licence_seats` (pool events folded in
  sequence order through `ledger.licences.evolve`, rows written with `projections.licences`'
  own `terms_to_json`), `licence_rules`, `licence_admin_grants`, `licence_products`;
* the temporal projection: `seat_intervals`, `temporal_pairs`, `temporal_pools`,
  `temporal_pool_changes`, `temporal_marks` (the same Writer as the catch-up, from nothing).
The directory (`scim_resources`, `group_members`) is not rebuilt yet: its documents are decided from
requests, and the events carry float attributes as strings, so a fold would not be byte-identical.

How: the events up to the head H0 (read once, in sequence pages, stored events trusted - no chain or
schema re-validation beyond decoding) are folded in memory with a progress bar. Then, per group:
* licence tables (written inline by the command bus): under the tenant lock (`lock_head`, appends
  wait), the events after H0 are folded too, each table is compared row by row with the live one
  (a digest per table, every differing row reported), and unless `check` the differing rows are
  replaced - a diff, so the swap is short and nothing half-built is ever visible (one transaction).
* temporal tables (a catch-up projection): under the temporal lock, the live tables are caught up
  to the head first, the rebuild is fed the same tail, the rows are COPYed into temporary tables,
  compared in SQL (digest per table, differing rows), and unless `check` swapped in one transaction.
No write is lost: whatever commits after the swap is folded by the write path (licence tables) or
by the next catch-up (temporal tables, whose checkpoint the swap sets to the head it reached).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import orjson

from ledger.events import decode
from ledger.licences import PoolState, SeatGrantsChanged, SeatResumed, SeatSuspended, evolve
from ledger.store import lock_head
from projections import temporal as tp
from projections.licences import terms_from_json, terms_to_json

PAGE = 50_000
MAX_REPORTED = 1000

_EVENTS = ("SELECT seq, stream, type, schema_version, data::text AS data, effective_at FROM events "
           "WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 AND (starts_with(stream, 'pool-') "
           "OR starts_with(stream, 'product-')) ORDER BY seq LIMIT $4")


@dataclass
class TableReport:
    table: str
    live_rows: int
    rebuilt_rows: int
    live_digest: str
    rebuilt_digest: str
    differences: list[dict] = field(default_factory=list)
    more: int = 0

    @property
    def ok(self) -> bool:
        return self.live_digest == self.rebuilt_digest


@dataclass
class Report:
    tenant: str
    events: int
    head: int
    seconds: float
    swapped: bool
    tables: list[TableReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


# ---- the licence fold (current state, as the write side folds: sequence order) -----------------------

class LicenceFold:
    def __init__(self):
        self.pools: dict[str, PoolState] = {}
        self.products: dict[str, str] = {}
        self.rules: dict[tuple[str, str], tuple] = {}
        self.admin: set[tuple[str, str]] = set()

    def apply(self, stream: str, typ: str, eff: datetime, ev) -> None:
        if typ == "ProductDefined":
            self.products[ev.product_id] = ev.name
        elif typ == "RuleAdded":
            self.rules[(ev.pool_id, ev.rule_id)] = (ev.priority, ev.kind, ev.group_id, ev.filter)
        elif typ == "RuleRemoved":
            self.rules.pop((ev.pool_id, ev.rule_id), None)
        elif typ == "AdminGranted":
            self.admin.add((ev.pool_id, ev.user_id))
        elif typ == "AdminRevoked":
            self.admin.discard((ev.pool_id, ev.user_id))
        elif stream.startswith("pool-") and hasattr(ev, "pool_id"):
            st = self.pools.get(ev.pool_id)
            if st is None and typ != "PoolCreated":
                return
            if isinstance(ev, (SeatGrantsChanged, SeatSuspended, SeatResumed)) and ev.user_id not in st.seats:
                return
            self.pools[ev.pool_id] = evolve(st, ev, eff)

    def tables(self) -> dict[str, dict[tuple, tuple]]:
        """table -> {key: normalized row} (times as instants, terms as Terms)."""
        pools, seats = {}, {}
        for pid, p in self.pools.items():
            pools[(pid,)] = (p.terms.product_id, terms_from_json(terms_to_json(p.terms)), p.counter, p.held_count())
            for uid, s in p.seats.items():
                seats[(pid, uid)] = (s.state, tuple(sorted(s.grants)), s.priority, s.since, s.requested_at,
                                     s.overage, s.suspended_until, s.order)
        return {"licence_pools": pools, "licence_seats": seats,
                "licence_products": {(k,): (v,) for k, v in self.products.items()},
                "licence_rules": {k: v for k, v in self.rules.items()},
                "licence_admin_grants": {k: () for k in self.admin}}


# name -> (key columns, value columns)
LICENCE_TABLES = {
    "licence_pools": (("pool_id",), ("product_id", "terms", "counter", "held")),
    "licence_seats": (("pool_id", "user_id"), ("state", "grants", "priority", "since", "requested_at", "overage",
                                               "suspended_until", "ord")),
    "licence_products": (("product_id",), ("name",)),
    "licence_rules": (("pool_id", "rule_id"), ("priority", "kind", "group_id", "filter")),
    "licence_admin_grants": (("pool_id", "user_id"), ()),
}


def _norm_live(table: str, r) -> tuple:
    vals = [r[c] for c in LICENCE_TABLES[table][1]]
    if table == "licence_pools":
        vals[1] = terms_from_json(vals[1])
    if table == "licence_seats":
        vals[1] = tuple(sorted(vals[1]))
    return tuple(vals)


def _digest(rows: dict[tuple, tuple]) -> str:
    h = hashlib.sha256()
    for k in sorted(rows):
        h.update(repr((k, rows[k])).encode())
    return h.hexdigest()[:16]


def _show(v):
    if isinstance(v, tuple):
        return [_show(x) for x in v]
    if isinstance(v, datetime):
        return v.isoformat()
    if hasattr(v, "__dataclass_fields__"):
        return terms_to_json(v)
    return v


async def _licence_group(conn, tenant: str, fold: LicenceFold, check: bool) -> list[TableReport]:
    reports = []
    want_all = fold.tables()
    for table, (keys, cols) in LICENCE_TABLES.items():
        live = {tuple(r[k] for k in keys): _norm_live(table, r) for r in await conn.fetch(
            f"SELECT * FROM {table} WHERE tenant_id = $1", tenant)}
        want = want_all[table]
        rep = TableReport(table, len(live), len(want), _digest(live), _digest(want))
        bad_keys = []
        for k in sorted(set(live) | set(want)):
            a, b = live.get(k), want.get(k)
            if a == b:
                continue
            bad_keys.append(k)
            if len(rep.differences) < MAX_REPORTED:
                rep.differences.append({"key": dict(zip(keys, k)), "live": None if a is None else _show(a),
                                        "rebuilt": None if b is None else _show(b)})
            else:
                rep.more += 1
        reports.append(rep)
        if check or not bad_keys:
            continue
        cond = " AND ".join(f"t.{k} = x.{k}" for k in keys)
        arrays = [[k[i] for k in bad_keys] for i in range(len(keys))]
        unn = ", ".join(f"${i + 2}::text[]" for i in range(len(keys)))
        await conn.execute(f"DELETE FROM {table} t USING unnest({unn}) AS x({', '.join(keys)}) "
                           f"WHERE t.tenant_id = $1 AND {cond}", tenant, *arrays)
        rows = []
        for k in bad_keys:
            v = want.get(k)
            if v is None:
                continue
            if table == "licence_pools":
                v = (v[0], terms_to_json(v[1]), v[2], v[3])
            elif table == "licence_seats":
                v = (v[0], list(v[1]), *v[2:])
            rows.append((tenant, *k, *v))
        if rows:
            await conn.copy_records_to_table(table, records=rows, columns=("tenant_id", *keys, *cols))
    return reports


# ---- the temporal group -----------------------------------------------------------------------------

TEMPORAL_TABLES = ("seat_intervals", "temporal_pairs", "temporal_pools", "temporal_pool_changes", "temporal_marks")


async def _sql_compare(conn, tenant: str, table: str) -> TableReport:
    live = f"(SELECT * FROM {table} WHERE tenant_id = $1)"
    side = f"rb_{table}"
    dig = ("SELECT count(*) AS n, coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))), '') AS d "
           "FROM {src} t")
    a = await conn.fetchrow(dig.format(src=live + " "), tenant)
    b = await conn.fetchrow(dig.format(src=side), )
    rep = TableReport(table, a["n"], b["n"], a["d"][:16], b["d"][:16])
    if rep.ok:
        return rep
    rows = await conn.fetch(
        f"(SELECT 'live' AS side, to_jsonb(t) AS row FROM (SELECT * FROM {table} WHERE tenant_id = $1 "
        f"EXCEPT ALL SELECT * FROM {side}) t) UNION ALL "
        f"(SELECT 'rebuilt', to_jsonb(t) FROM (SELECT * FROM {side} EXCEPT ALL "
        f"SELECT * FROM {table} WHERE tenant_id = $1) t) LIMIT {MAX_REPORTED + 1}", tenant)
    for r in rows[:MAX_REPORTED]:
        rep.differences.append({"only_in": r["side"], "row": orjson.loads(r["row"])})
    rep.more = max(0, len(rows) - MAX_REPORTED)
    return rep


async def _temporal_group(conn, tenant: str, w: tp.Writer, after: int, check: bool) -> tuple[list[TableReport], int]:
    await tp.lock(conn, tenant)
    if await tp._checkpoint(conn, tenant) >= after:
        head = await tp.catch_up_locked(conn, tenant)    # live up to the head first (just the tail)
    else:
        # the live tables are behind the rebuild (never projected, or far behind): compared as they
        # are, and replaced unless check; catching them up first would fold the ledger twice
        head = await conn.fetchval("SELECT seq FROM tenant_heads WHERE tenant_id = $1", tenant) or 0
    rows = []
    while after < head:
        page = await conn.fetch(tp._POOL_EVENTS, tenant, after, head)
        await tp.feed(conn, w, page)
        rows += page
        after = head
    for s, at in await tp.marks_between(conn, tenant, 0, head):
        w.mark(s, at)
    for t in TEMPORAL_TABLES:
        await conn.execute(f"CREATE TEMP TABLE rb_{t} (LIKE {t}) ON COMMIT DROP")
    await tp.write(conn, tenant, w, prefix="rb_")
    reports = [await _sql_compare(conn, tenant, t) for t in TEMPORAL_TABLES]
    if not check and not all(r.ok for r in reports):
        for t, r in zip(TEMPORAL_TABLES, reports):
            if not r.ok:
                await conn.execute(f"DELETE FROM {t} WHERE tenant_id = $1", tenant)
                await conn.execute(f"INSERT INTO {t} SELECT * FROM rb_{t}")
        await tp.set_checkpoint(conn, tenant, head)
    return reports, head


# ---- driver -----------------------------------------------------------------------------------------

async def rebuild_tenant(pool: asyncpg.Pool, tenant: str, *, check: bool = False, progress: bool = False,
                         console=None) -> Report:
    t0 = time.perf_counter()
    fold = LicenceFold()
    w = tp.Writer(tenant)
    async with pool.acquire() as conn:
        h0 = await conn.fetchval("SELECT seq FROM tenant_heads WHERE tenant_id = $1", tenant) or 0
        bar = None
        if progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
            bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                           TimeRemainingColumn(), console=console, transient=False)
            bar.start()
            task = bar.add_task(f"rebuild {tenant}", total=h0)
        after, n = 0, 0
        try:
            while after < h0:
                rows = await conn.fetch(_EVENTS, tenant, after, h0, PAGE)
                if not rows:
                    break
                pool_rows = []
                for r in rows:
                    ev = decode(r["type"], r["schema_version"], orjson.loads(r["data"]))
                    fold.apply(r["stream"], r["type"], r["effective_at"], ev)
                    if r["stream"].startswith("pool-"):
                        pool_rows.append((r, ev))
                await tp.feed(conn, w, pool_rows, decoded=True)
                n += len(rows)
                # pages are by matching rows; the bar follows the sequence
                done = rows[-1]["seq"] if len(rows) == PAGE else h0
                if bar:
                    bar.update(task, completed=done)
                after = done
        finally:
            if bar:
                bar.stop()
        report = Report(tenant, n, h0, 0.0, swapped=False)
        async with conn.transaction():
            head = await lock_head(conn, tenant)
            tail = await conn.fetch(_EVENTS, tenant, h0, head.seq, 1 << 62)
            for r in tail:
                fold.apply(r["stream"], r["type"], r["effective_at"],
                           decode(r["type"], r["schema_version"], orjson.loads(r["data"])))
            report.tables += await _licence_group(conn, tenant, fold, check)
            report.head = head.seq
        async with conn.transaction():
            reps, _ = await _temporal_group(conn, tenant, w, h0, check)
            report.tables += reps
    report.seconds = time.perf_counter() - t0
    report.swapped = not check and not report.ok
    return report


async def tenants(pool: asyncpg.Pool) -> list[str]:
    async with pool.acquire() as conn:
        return [r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM tenant_heads ORDER BY tenant_id")]
