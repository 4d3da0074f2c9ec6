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

import asyncio
import gc
import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import orjson

from ledger.events import decode
from ledger.licences import PoolState, Seat, SeatGrantsChanged, SeatResumed, SeatSuspended, evolve
from ledger.store import lock_head
from projections import temporal as tp
from projections.licences import terms_from_json, terms_to_json

PAGE = 50_000
READERS = 2           # connections reading pages ahead of the fold
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
    phases: dict[str, float] = field(default_factory=dict)      # seconds per phase

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

    def apply_raw(self, typ: str, eff: datetime, d: dict) -> None:
        """`apply` for a lean seat event (`tp.lean_ok`) from its raw data: `evolve` on one seat."""
        st = self.pools.get(d["pool_id"])
        if st is None:
            return
        uid = d["user_id"]
        seats = st.seats
        if typ == "SeatAssigned":
            st.counter += 1
            prev = seats.get(uid)
            seats[uid] = Seat(uid, "active", frozenset(d["grants"]), d["priority"], eff,
                              prev.requested_at if prev else eff, d.get("overage", False), order=st.counter)
        elif typ == "SeatQueued":
            seats[uid] = Seat(uid, "waiting", frozenset(d["grants"]), d["priority"], eff, eff)
        elif typ in ("SeatReleased", "SeatDequeued", "LicenceExpired"):
            seats.pop(uid, None)
        else:
            s = seats.get(uid)
            if s is None:
                return
            if typ == "SeatGrantsChanged":
                seats[uid] = Seat(uid, s.state, frozenset(d["grants"]), d["priority"], s.since, s.requested_at,
                                  s.overage, s.suspended_until, s.order)
            elif typ == "SeatSuspended":
                seats[uid] = Seat(uid, "suspended", s.grants, s.priority, s.since, s.requested_at, s.overage,
                                  tp.parse_time(d["until"]), s.order)
            elif typ == "SeatResumed":
                seats[uid] = Seat(uid, "active", s.grants, s.priority, s.since, s.requested_at, s.overage,
                                  None, s.order)

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
        if not live:                      # never projected: every rebuilt row is a difference
            bad_keys = sorted(want)
            rep.differences = [{"key": dict(zip(keys, k)), "live": None, "rebuilt": _show(want[k])}
                               for k in bad_keys[:MAX_REPORTED]]
            rep.more = max(0, len(bad_keys) - MAX_REPORTED)
        for k in () if not live else sorted(set(live) | set(want)):
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
        if live:
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
    # an order-free digest: the sum of each row's md5 (first 64 bits) with the count - no sort
    dig = ("SELECT count(*) AS n, coalesce(md5(count(*)::text || ':' || "
           "sum(('x' || left(md5(t::text), 16))::bit(64)::bigint)::text), '') AS d FROM {src} t")
    a = await conn.fetchrow(dig.format(src=live + " "), tenant)
    b = await conn.fetchrow(dig.format(src=side), )
    rep = TableReport(table, a["n"], b["n"], a["d"][:16], b["d"][:16])
    if rep.ok:
        return rep
    if a["n"] == 0 or b["n"] == 0:        # one side empty: every row of the other differs
        src, name, args = (side, "rebuilt", ()) if a["n"] == 0 else (live, "live", (tenant,))
        rows = await conn.fetch(f"SELECT to_jsonb(t) AS row FROM {src} t LIMIT {MAX_REPORTED}", *args)
        rep.differences = [{"only_in": name, "row": orjson.loads(r["row"])} for r in rows]
        rep.more = max(0, (b["n"] or a["n"]) - MAX_REPORTED)
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


async def _stored_columns(conn, table: str) -> list[str]:
    return [r["attname"] for r in await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped "
        "AND attgenerated = '' ORDER BY attnum", table)]


async def _temporal_group(conn, tenant: str, w: tp.Writer, after: int, check: bool,
                          phases: dict[str, float] | None = None) -> tuple[list[TableReport], int]:
    phases = {} if phases is None else phases
    t0 = time.perf_counter()
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
        await conn.execute(f"CREATE TEMP TABLE rb_{t} (LIKE {t} INCLUDING GENERATED) ON COMMIT DROP")
    await tp.write(conn, tenant, w, prefix="rb_")
    phases["temporal_write"] = time.perf_counter() - t0
    reports = [await _sql_compare(conn, tenant, t) for t in TEMPORAL_TABLES]
    phases["temporal_compare"] = time.perf_counter() - t0 - phases["temporal_write"]
    if not check and not all(r.ok for r in reports):
        for t, r in zip(TEMPORAL_TABLES, reports):
            if not r.ok:
                await conn.execute(f"DELETE FROM {t} WHERE tenant_id = $1", tenant)
                cols = ", ".join(await _stored_columns(conn, t))       # generated columns compute themselves
                # in the order of the reading indexes: their pages fill in turn, and a pool's rows sit together
                order = " ORDER BY pool_id, user_id" if t in ("seat_intervals", "temporal_pairs") else ""
                await conn.execute(f"INSERT INTO {t} ({cols}) SELECT {cols} FROM rb_{t}{order}")
        await tp.set_checkpoint(conn, tenant, head)
    phases["temporal_swap"] = time.perf_counter() - t0 - phases["temporal_write"] - phases["temporal_compare"]
    return reports, head


# ---- driver -----------------------------------------------------------------------------------------

async def _fold_page(conn, fold: LicenceFold, w: tp.Writer, rows) -> None:
    """Fold a page of events (sequence order) into both folds. Seat events in effective order are
    folded from their raw data (no model validation: stored events are trusted); the rest - pool
    terms, rules, corrections, a backdated event that refolds its pair - are decoded as usual."""
    lean_ok, loads, apply_raw, fold_raw = tp.lean_ok, orjson.loads, w.apply_raw, fold.apply_raw
    for r in rows:
        typ, stream, eff = r["type"], r["stream"], r["effective_at"]
        d = loads(r["data"])
        pool = stream.startswith("pool-")
        if pool and lean_ok(typ, r["schema_version"]) and d.get("pool_id") == stream[5:]:
            fold_raw(typ, eff, d)
            if apply_raw(r["seq"], stream[5:], typ, eff, d):
                continue
            ev = decode(typ, r["schema_version"], d)
        else:
            ev = decode(typ, r["schema_version"], d)
            fold.apply(stream, typ, eff, ev)
        if pool:
            await tp.feed(conn, w, [(r, ev)], decoded=True)


async def rebuild_tenant(pool: asyncpg.Pool, tenant: str, *, check: bool = False, progress: bool = False,
                         console=None) -> Report:
    # millions of small objects that live until the end: the cyclic collector would rescan them over
    # and over (they hold no cycles); it runs again when the rebuild is done
    gc_was = gc.isenabled()
    gc.disable()
    try:
        return await _rebuild_tenant(pool, tenant, check=check, progress=progress, console=console)
    finally:
        if gc_was:
            gc.enable()


async def _rebuild_tenant(pool: asyncpg.Pool, tenant: str, *, check: bool, progress: bool, console) -> Report:
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
        n = 0
        try:
            # pages by sequence range, read ahead on other connections while this one folds
            bounds = [(a, min(h0, a + PAGE)) for a in range(0, h0, PAGE)]
            readers: asyncio.Queue = asyncio.Queue()
            ahead = max(0, min(READERS, pool.get_max_size() - 1, len(bounds)))
            acquired = [await pool.acquire() for _ in range(ahead)]
            for c in acquired or [conn]:        # no spare connection: read on this one, no read-ahead
                readers.put_nowait(c)

            async def read(a: int, b: int):
                c = await readers.get()
                try:
                    return await c.fetch(_EVENTS, tenant, a, b, 1 << 62)
                finally:
                    readers.put_nowait(c)

            pending = [asyncio.ensure_future(read(a, b)) for a, b in bounds[:max(1, ahead)]]
            nxt = len(pending)
            try:
                for a, b in bounds:
                    if not pending:
                        pending.append(asyncio.ensure_future(read(*bounds[nxt])))
                        nxt += 1
                    rows = await pending.pop(0)
                    if ahead and nxt < len(bounds):
                        pending.append(asyncio.ensure_future(read(*bounds[nxt])))
                        nxt += 1
                    await _fold_page(conn, fold, w, rows)
                    n += len(rows)
                    if bar:
                        bar.update(task, completed=b)
            finally:
                for f in pending:
                    f.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                for c in acquired:
                    await pool.release(c)
        finally:
            if bar:
                bar.stop()
        report = Report(tenant, n, h0, 0.0, swapped=False)
        report.phases["fold"] = time.perf_counter() - t0
        async with conn.transaction():
            head = await lock_head(conn, tenant)
            tail = await conn.fetch(_EVENTS, tenant, h0, head.seq, 1 << 62)
            for r in tail:
                fold.apply(r["stream"], r["type"], r["effective_at"],
                           decode(r["type"], r["schema_version"], orjson.loads(r["data"])))
            report.tables += await _licence_group(conn, tenant, fold, check)
            report.head = head.seq
        report.phases["licence_tables"] = time.perf_counter() - t0 - sum(report.phases.values())
        async with conn.transaction():
            reps, _ = await _temporal_group(conn, tenant, w, h0, check, report.phases)
            report.tables += reps
    report.seconds = time.perf_counter() - t0
    report.swapped = not check and not report.ok
    return report


async def tenants(pool: asyncpg.Pool) -> list[str]:
    async with pool.acquire() as conn:
        return [r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM tenant_heads ORDER BY tenant_id")]
