"""`seatledger rebuild [--tenant T] [--check]`: projections rebuilt from the events, compared, swapped.

Rebuilt here (per tenant):
* the licence projections, current state (projections/rebuild_licences.py): `licence_pools`,
  `licence_seats`, `licence_rules`, `licence_admin_grants`, `licence_products`;
* the directory (projections/rebuild_directory.py, which says how each part of a row is folded and
  where older events cannot reproduce one): `scim_resources`, `group_members`, `scim_extensions`;
* the temporal projection: `seat_intervals`, `temporal_pairs`, `temporal_pools`,
  `temporal_pool_changes`, `temporal_marks` (the same Writer as the catch-up, from nothing).

How: the events up to the head H0 are read in sequence pages of canonical bytes, several in flight
(projections/rebuild_read.py; stored events are trusted - no chain or model validation: seat events
are folded from their raw data, directory events as stored) and folded in memory, with a progress bar.
Then each table is compared with the live one in SQL and the differing rows swapped in one
transaction (projections/rebuild_compare.py: rows COPYed aside in key order, an order-free digest per
table, every differing row reported by key, only those rows rewritten - nothing half-built is visible).
The two groups run at once on two connections (PostgreSQL's COPY and index work for one overlaps the
Python building the other's rows):
* licence and directory tables (written inline by the command bus): their rows as of H0 are COPYed
  aside without any lock; then, under the tenant lock (`lock_head`, appends wait), the events after
  H0 are folded and only the rows of the pools and resources they touch are restaged (all of the
  directory after an extension or an erasure), and each table is compared and swapped. Appends wait
  for that tail and the compare, not for the fold or the COPY - except on a first build (the live
  tables empty), whose swap is a bulk load anyway and runs beside the temporal group;
* temporal tables (a catch-up projection): their rows as of H0 are COPYed aside without a lock; then,
  under the temporal lock, the live tables are caught up to the head first (unless never projected
  or far behind), the rebuild is fed the same tail and the pairs it touches are restaged, and the
  checkpoint is set to that head.
No write is lost: whatever commits after the swap is folded by the write path (inline tables) or by
the next catch-up (temporal tables).
"""
from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass, field

import asyncpg

from ledger.events import decode
from ledger.pii import ENVELOPE_KEY
from ledger.store import lock_head
from projections import temporal as tp
from projections import rebuild_directory as rd
from projections import rebuild_licences as rl
from projections.rebuild_compare import (MAX_REPORTED, Table, TableReport, compare_staged,  # noqa: F401
                                         compare_swap, restage, stage)
from projections.rebuild_licences import LicenceFold  # noqa: F401  (the lean fold's test imports it here)
from projections.rebuild_read import from_micros, pages, read_page

_DIRECTORY_STREAMS = ("user-", "group-", "scim-extension-", "erasure-")


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


@dataclass
class _Folds:
    licences: LicenceFold
    temporal: tp.Writer
    directory: rd.DirectoryFold
    marks: dict[int, int] = field(default_factory=dict)         # recorded time (µs) -> last sequence


async def _fold(conn, f: _Folds, events: list[dict], *, temporal: bool = True) -> None:
    """Fold canonical event documents (sequence order). Seat events in effective order are folded
    from their raw data; the rest of the pool events - terms, rules, corrections, a backdated event
    that refolds its pair - are decoded as usual. `temporal=False`: the tail the temporal group feeds
    itself."""
    lean_ok, apply_raw, fold_raw, directory = tp.lean_ok, f.temporal.apply_raw, f.licences.apply_raw, f.directory
    marks = f.marks
    for e in events:
        stream = e["stream"]
        if stream.startswith("pool-"):
            typ, sv, d, seq = e["type"], e["schema_version"], e["data"], e["seq"]
            eff = from_micros(e["effective_us"])
            if temporal:
                marks[e["recorded_us"]] = seq
            if lean_ok(typ, sv) and d.get("pool_id") == stream[5:]:
                fold_raw(typ, eff, d)
                if not temporal or apply_raw(seq, stream[5:], typ, eff, d):
                    continue
                ev = decode(typ, sv, d)
            else:
                ev = decode(typ, sv, d)
                f.licences.apply(stream, typ, eff, ev)
            if temporal:
                await tp.feed(conn, f.temporal, [({"seq": seq, "stream": stream, "type": typ, "effective_at": eff},
                                                  ev)], decoded=True)
            continue
        if temporal:
            marks[e["recorded_us"]] = e["seq"]
        if stream.startswith("product-"):
            f.licences.apply(stream, e["type"], from_micros(e["effective_us"]),
                             decode(e["type"], e["schema_version"], e["data"]))
        elif stream.startswith(_DIRECTORY_STREAMS):
            directory.apply(e, from_micros(e["recorded_us"]))


# ---- the temporal group -----------------------------------------------------------------------------

TEMPORAL_TABLES = (
    Table("seat_intervals", ("pool_id", "user_id", "valid", "known"),
          ("product_id", "state", "grants", "priority", "overage", "suspended_until", "opened_seq", "opened_type",
           "closed_seq", "closed_type", "closed_reason"),
          # in the order of the reading indexes: their pages fill in turn, and a pool's rows sit together
          order="pool_id, user_id", column_order=tp.INTERVAL_COLUMNS),
    Table("temporal_pairs", ("pool_id", "user_id"), ("seqs", "last_eff"), order="pool_id, user_id"),
    Table("temporal_pools", ("pool_id",), ("product_id", "seats", "created_seq")),
    Table("temporal_pool_changes", ("pool_id", "seq"), ("kind", "effective_at", "value")),
    Table("temporal_marks", ("seq",), ("recorded_at",)),
)


CATCH_UP_LAG = 100_000      # events the live temporal tables may lag and be caught up before the compare


async def _temporal_tx(pool: asyncpg.Pool, tenant: str, f: _Folds, after: int, check: bool,
                      phases: dict[str, float]) -> list[TableReport]:
    """The temporal group: its rows as of H0 put aside without a lock, then under the temporal lock
    the live tables caught up, the tail fed, the pairs it touches restaged, and each table compared
    and swapped (catch-up and the queries that wait for it are held for that part only). On a first
    build (no live row) the rows go straight into the live tables under the lock instead: nothing
    to compare, and one bulk load in key order rather than two."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            t0 = time.perf_counter()
            w = f.temporal
            for us, s in f.marks.items():
                w.mark(s, from_micros(us))
            if not check and not await conn.fetchval(_TEMPORAL_FILLED, tenant):
                await tp.lock(conn, tenant)
                t1 = time.perf_counter()
                head = await _catch_up_live(conn, tenant, w, after)
                reports = [await compare_swap(conn, tenant, t, rows, check=check)
                           for t, rows in zip(TEMPORAL_TABLES, _temporal_records(tenant, w))]
            else:
                for t, rows in zip(TEMPORAL_TABLES, _temporal_records(tenant, w)):
                    await stage(conn, t, rows)
                t1 = time.perf_counter()
                await tp.lock(conn, tenant)
                head = await _restage_tail(conn, tenant, w, after)
                reports = [await compare_staged(conn, tenant, t, check=check) for t in TEMPORAL_TABLES]
            if not check:
                await tp.set_checkpoint(conn, tenant, head)
            phases["temporal_rows_stage"] = t1 - t0
        phases["temporal_locked"] = time.perf_counter() - t1       # until the commit
    return reports


_TEMPORAL_FILLED = "SELECT EXISTS (SELECT 1 FROM seat_intervals WHERE tenant_id = $1)"


def _temporal_records(tenant: str, w: tp.Writer):
    """The rows of TEMPORAL_TABLES, in that order (one table's at a time: they are not all kept)."""
    yield w.inserts()
    yield w.pair_rows()
    yield w.pools
    yield w.changes
    yield [(tenant, s, at) for at, s in w.marks.items()]


async def _catch_up_live(conn, tenant: str, w: tp.Writer, after: int) -> int:
    """Holding the temporal lock: the live tables caught up, the rebuild fed the tail; the head."""
    cp = await tp._checkpoint(conn, tenant)
    if cp >= after or (cp > 0 and after - cp <= CATCH_UP_LAG):
        # live up to the head first (the tail, or a lag of the background catch-up: behind is not wrong)
        head = await tp.catch_up_locked(conn, tenant)
    else:
        # the live tables are far behind the rebuild (or never projected): compared as they are, and
        # replaced unless check; catching them up first would fold the ledger twice
        head = await conn.fetchval("SELECT seq FROM tenant_heads WHERE tenant_id = $1", tenant) or 0
    if after < head:
        await tp.feed(conn, w, await conn.fetch(tp._POOL_EVENTS, tenant, after, head))
        for s, at in await tp.marks_between(conn, tenant, after, head):
            w.mark(s, at)
    return head


async def _restage_tail(conn, tenant: str, w: tp.Writer, after: int) -> int:
    """`_catch_up_live`, then the staged rows the tail changed replaced: rows that stop being believed
    join `finished` (append-only), the touched pairs' believed rows (known still open) and pair rows
    are replaced, new pools / changes appended, the marks of the tail's recorded times replaced."""
    finished, n_pools, n_changes, n_marks = len(w.finished), len(w.pools), len(w.changes), dict(w.marks)
    w.touched = {}
    head = await _catch_up_live(conn, tenant, w, after)
    if not w.touched and len(w.pools) == n_pools and len(w.changes) == n_changes and w.marks == n_marks:
        return head
    t = {x.name: x for x in TEMPORAL_TABLES}
    ps, us = [p.pool_id for p in w.touched.values()], [p.user_id for p in w.touched.values()]
    pairs = "unnest($1::text[], $2::text[]) AS k(p, u) WHERE s.pool_id = k.p AND s.user_id = k.u"
    await conn.execute(f"DELETE FROM rb_seat_intervals s USING {pairs} AND upper_inf(s.known)", ps, us)
    await restage(conn, t["seat_intervals"], None, [], w.finished[finished:] + w.believed())
    await conn.execute(f"DELETE FROM rb_temporal_pairs s USING {pairs}", ps, us)
    await restage(conn, t["temporal_pairs"], None, [], w.pair_rows())
    times = [at for at, s in w.marks.items() if n_marks.get(at) != s]
    await restage(conn, t["temporal_marks"], "recorded_at = ANY($1::timestamptz[])", [times],
                  [(tenant, w.marks[at], at) for at in times])
    await restage(conn, t["temporal_pools"], None, [], w.pools[n_pools:])
    await restage(conn, t["temporal_pool_changes"], None, [], w.changes[n_changes:])
    return head


# ---- driver -----------------------------------------------------------------------------------------

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


async def _missing_keys(conn, tenant: str, f: _Folds, events: list[dict]) -> None:
    """Keys of subjects first seen in `events` (created after the fold loaded the tenant's keys)."""
    want = {env["subject"] for e in events if isinstance(e["data"], dict)
            and isinstance(env := e["data"].get(ENVELOPE_KEY), dict)} - set(f.directory.keys)
    if want:
        for r in await conn.fetch("SELECT subject, key FROM subject_keys WHERE tenant_id = $1 "
                                  "AND subject = ANY($2::text[])", tenant, list(want)):
            f.directory.keys[r["subject"]] = bytes(r["key"])


async def _rebuild_tenant(pool: asyncpg.Pool, tenant: str, *, check: bool, progress: bool, console) -> Report:
    t0 = time.perf_counter()
    async with pool.acquire() as conn:
        h0 = await conn.fetchval("SELECT seq FROM tenant_heads WHERE tenant_id = $1", tenant) or 0
        # every key of an event up to h0 exists by now (keys commit with their events)
        f = _Folds(LicenceFold(), tp.Writer(tenant), rd.DirectoryFold(tenant, await rd.subject_keys(conn, tenant)))
        bar = None
        if progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
            bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                           TimeRemainingColumn(), console=console, transient=False)
            bar.start()
            task = bar.add_task(f"rebuild {tenant}", total=h0)
        n = 0
        try:
            async for end, events in pages(pool, conn, tenant, 0, h0):
                await _fold(conn, f, events)
                n += len(events)
                if bar:
                    bar.update(task, completed=end)
        finally:
            if bar:
                bar.stop()
    report = Report(tenant, n, h0, 0.0, swapped=False)
    report.phases["fold"] = time.perf_counter() - t0
    # the two groups on two connections: one's COPYs and index work in PostgreSQL overlap the other's
    # rows being built in Python. The tenant lock is taken once nothing else is in flight (appends
    # wait only for the tail and the compare), except on a first build (BULK_LOAD rows or more for
    # an empty live table): that swap is a bulk load whose index work is long anyway, and it
    # overlaps the temporal group.
    concurrent = pool.get_max_size() > 1
    temporal = [] if concurrent else await _temporal_tx(pool, tenant, f, h0, check, report.phases)
    async with pool.acquire() as conn:
        empty = {r["t"] for r in await conn.fetch(_EMPTY_TABLES, tenant)}

        async def inline(overlap: bool):
            staged = await _stage_inline(conn, tenant, f, report.phases)
            if overlap and any(staged[t] >= BULK_LOAD for t in empty):
                await locked()

        locked_at: list[float] = []

        async def locked():
            locked_at.append(time.perf_counter())
            head = await lock_head(conn, tenant)
            report.tables = await _swap_inline(conn, tenant, f, h0, head.seq, check)
            report.head = head.seq

        async with conn.transaction():
            if concurrent:
                _, temporal = await asyncio.gather(inline(not check),
                                                   _temporal_tx(pool, tenant, f, h0, check, report.phases))
            else:
                await inline(False)
            if not locked_at:
                await locked()
        report.phases["inline_locked"] = time.perf_counter() - locked_at[0]      # until the commit
    report.tables += temporal
    report.seconds = time.perf_counter() - t0
    report.swapped = not check and not report.ok
    return report


# ---- the inline group (licence and directory tables) ---------------------------------------------------

_INLINE = {t.name: t for t in (*rl.TABLES, *rd.TABLES)}
# the inline tables with no live row for the tenant
_EMPTY_TABLES = " UNION ALL ".join(f"SELECT '{t}' AS t WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE tenant_id = $1)"
                                   for t in _INLINE)
BULK_LOAD = 10_000      # rows into an empty live table: a swap long anyway, overlapped with the temporal group


async def _stage_inline(conn, tenant: str, f: _Folds, phases: dict[str, float]) -> dict[str, int]:
    """The inline tables as of H0 put aside (no lock: appends go on meanwhile); rows per table."""
    t0 = time.perf_counter()
    rows = {**f.licences.records(tenant), **f.directory.tables()}
    phases["inline_rows"] = time.perf_counter() - t0
    staged = {}
    for name, t in _INLINE.items():
        staged[name] = len(rows[name])
        await stage(conn, t, rows.pop(name))
    phases["inline_stage"] = time.perf_counter() - t0 - phases["inline_rows"]
    return staged


async def _swap_inline(conn, tenant: str, f: _Folds, h0: int, head: int, check: bool) -> list[TableReport]:
    """Under the tenant lock: the events after H0 folded and their rows restaged (only the pools and
    resources they touch), then each table compared and swapped."""
    tail = await read_page(conn, tenant, h0, head)
    if tail:
        pools, ids, whole = set(), set(), False
        for e in tail:
            s, d = e["stream"], e["data"]
            if s.startswith("pool-"):
                pools.add(s[5:])
            elif s.startswith(("user-", "group-")):
                ids.add(s.split("-", 1)[1])
                ids.update(v for k in ("user_id", "group_id") if isinstance(v := d.get(k), str))
            elif s.startswith(("scim-extension-", "erasure-")):
                whole = True            # schemas or erased documents: every resource may change
        await _missing_keys(conn, tenant, f, tail)
        await _fold(conn, f, tail, temporal=False)
        lic = f.licences.records(tenant, pools)
        await restage(conn, _INLINE["licence_pools"], "pool_id = ANY($1::text[])", [list(pools)], lic["licence_pools"])
        await restage(conn, _INLINE["licence_seats"], "pool_id = ANY($1::text[])", [list(pools)], lic["licence_seats"])
        for name in ("licence_products", "licence_rules", "licence_admin_grants"):     # small tables
            await stage(conn, _INLINE[name], lic[name])
        if whole:
            for name, rows in f.directory.tables().items():
                await stage(conn, _INLINE[name], rows)
        else:
            d = f.directory.tables(ids)
            await restage(conn, _INLINE["scim_resources"], "id = ANY($1::text[])", [list(ids)], d["scim_resources"])
            await restage(conn, _INLINE["group_members"], "group_id = ANY($1::text[]) OR member_id = ANY($1::text[])",
                          [list(ids)], d["group_members"])
            await stage(conn, _INLINE["scim_extensions"], d["scim_extensions"])
    return [await compare_staged(conn, tenant, t, check=check) for t in _INLINE.values()]


async def tenants(pool: asyncpg.Pool) -> list[str]:
    async with pool.acquire() as conn:
        return [r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM tenant_heads ORDER BY tenant_id")]
