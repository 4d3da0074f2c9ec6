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
Each table is compared with the live one in SQL and the differing rows swapped in one transaction
(projections/rebuild_compare.py: an order-free digest per table, every differing row reported by
key, only those rows rewritten - nothing half-built is visible). Two groups, on two connections:
* temporal tables (a catch-up projection; projections/rebuild_temporal.py) from the start, beside
  the fold: PostgreSQL derives the rows of the pairs whose events came in order
  (projections/temporal_sql.py) while Python folds, and the fold's lazy Writer makes only the rows of
  the pairs a backdated event or a correction refolds; the tail after H0 is folded by the catch-up's
  own code, under the temporal lock;
* licence and directory tables (written inline by the command bus), after the fold: their rows as of
  H0 are COPYed aside without any lock; then, under the tenant lock (`lock_head`, appends wait), the
  events after H0 are folded and only the rows of the pools and resources they touch are restaged
  (all of the directory after an extension or an erasure), and each table is compared and swapped.
  On a first build (an empty live table) the lock comes first and the rows go straight in.
No write is lost: whatever commits after the swap is folded by the write path (inline tables) or by
the next catch-up (temporal tables).
Given the owner's DSN (`seatledger rebuild`, the benchmark), each group's transaction runs on an owner
connection, and a first build into tables no tenant has a row in loads them bare and builds their
indexes after the rows (projections/rebuild_bulk.py).
"""
from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass, field

import asyncpg

from ledger.canonical import from_micros
from ledger.events import decode
from ledger.pii import ENVELOPE_KEY
from ledger.store import lock_head
from projections import rebuild_bulk as bulk
from projections import temporal as tp
from projections import rebuild_directory as rd
from projections import rebuild_licences as rl
from projections import rebuild_temporal as rt
from projections.rebuild_compare import (MAX_REPORTED, TableReport, compare_staged,  # noqa: F401
                                         compare_swap, empty_tables, restage, stage)
from projections.rebuild_temporal import CATCH_UP_LAG, TEMPORAL_TABLES  # noqa: F401  (tests read them here)
from projections.rebuild_licences import LicenceFold  # noqa: F401  (the lean fold's test imports it here)
from projections.rebuild_read import Event, pages, read_page

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
    marks: dict[int, int] = field(default_factory=dict)   # recorded time (µs) -> last sequence (temporal_marks)


async def _fold(conn, f: _Folds, events: list[Event], *, temporal: bool = True) -> None:
    """Fold events (sequence order). Seat events in effective order are folded
    from their raw data; the rest of the pool events - terms, rules, corrections, a backdated event
    that refolds its pair - are decoded as usual. `temporal=False`: the tail the temporal group feeds
    itself."""
    lean_ok, apply_raw, fold_raw, directory = tp.lean_ok, f.temporal.apply_raw, f.licences.apply_raw, f.directory
    marks = f.marks
    for e in events:
        stream = e.stream
        if temporal:
            marks[e.recorded_us] = e.seq      # in sequence order: the last is the greatest
        if stream.startswith("pool-"):
            typ, sv, d, seq = e.type, e.schema_version, e.data, e.seq
            us = e.effective_us
            if lean_ok(typ, sv) and d.get("pool_id") == stream[5:]:
                fold_raw(typ, us, d)
                if not temporal or apply_raw(seq, stream[5:], typ, us, d):
                    continue
                eff = from_micros(us)
                ev = decode(typ, sv, d)
            else:
                eff = from_micros(us)
                if typ in tp.LEAN_TYPES and not lean_ok(typ, sv):
                    f.temporal.unsafe = True        # SQL reads seat events at their current version only
                ev = decode(typ, sv, d)
                f.licences.apply(stream, typ, eff, ev)
            if temporal:
                await tp.feed(conn, f.temporal, [({"seq": seq, "stream": stream, "type": typ, "effective_at": eff},
                                                  ev)], decoded=True)
            continue
        if stream.startswith("product-"):
            f.licences.apply(stream, e.type, from_micros(e.effective_us), decode(e.type, e.schema_version, e.data))
        elif stream.startswith(_DIRECTORY_STREAMS):
            directory.apply(e, from_micros(e.recorded_us))


# ---- driver -----------------------------------------------------------------------------------------

async def rebuild_tenant(pool: asyncpg.Pool, tenant: str, *, check: bool = False, progress: bool = False,
                         console=None, owner: str | None = None) -> Report:
    """`owner`: the DSN of the tables' owner (the migrations' role), which lets a first build into
    tables no tenant has a row in build their indexes after the load (projections/rebuild_bulk.py)."""
    # millions of small objects that live until the end: the cyclic collector would rescan them over
    # and over (they hold no cycles); it runs again when the rebuild is done
    gc_was = gc.isenabled()
    gc.disable()
    try:
        try:
            return await _rebuild_tenant(pool, tenant, check=check, progress=progress, console=console, owner=owner)
        except _Eager:
            # a ledger SQL cannot read as the lean fold does (an older seat event version, a seat event
            # before its pool, a pool created twice): the temporal rows all from the Python fold
            return await _rebuild_tenant(pool, tenant, check=check, progress=progress, console=console,
                                         owner=owner, lazy=False)
    finally:
        if gc_was:
            gc.enable()


async def _missing_keys(conn, tenant: str, f: _Folds, events: list[Event]) -> None:
    """Keys of subjects first seen in `events` (created after the fold loaded the tenant's keys)."""
    want = {env["subject"] for e in events if isinstance(e.data, dict)
            and isinstance(env := e.data.get(ENVELOPE_KEY), dict)} - set(f.directory.keys)
    if want:
        for r in await conn.fetch("SELECT subject, key FROM subject_keys WHERE tenant_id = $1 "
                                  "AND subject = ANY($2::text[])", tenant, list(want)):
            f.directory.keys[r["subject"]] = bytes(r["key"])


class _Eager(Exception):
    """The lazy fold met events SQL would not read as it does (`Writer.unsafe`): fold again eagerly."""


async def _rebuild_tenant(pool: asyncpg.Pool, tenant: str, *, check: bool, progress: bool, console,
                          owner: str | None = None, lazy: bool = True) -> Report:
    """`lazy`: SQL makes the temporal rows of the pairs whose events came in order (the fold checks
    that SQL reads every seat event as it does, else it starts again with `lazy` False)."""
    if pool.get_max_size() < 2:
        raise ValueError("a rebuild needs a pool of two connections or more (the temporal group has its own)")
    t0 = time.perf_counter()
    async with pool.acquire() as conn:
        h0 = await conn.fetchval("SELECT seq FROM tenant_heads WHERE tenant_id = $1", tenant) or 0
        # every key of an event up to h0 exists by now (keys commit with their events)
        f = _Folds(LicenceFold(), tp.Writer(tenant, lazy=lazy),
                   rd.DirectoryFold(tenant, await rd.subject_keys(conn, tenant)))
        report = Report(tenant, 0, h0, 0.0, swapped=False)
        # the temporal group on its own connection from the start: PostgreSQL derives rows while Python
        # folds (with a pool too small for it and the readers, it runs after the fold)
        folded = asyncio.Event()
        beside = pool.get_max_size() >= 3
        temporal = asyncio.ensure_future(rt.temporal_group(pool, tenant, f.temporal, f.marks, h0, check, folded,
                                                           report.phases, owner)) if beside else None
        try:
            report.events = await _fold_all(pool, conn, tenant, f, h0, progress, console,
                                            readers=pool.get_max_size() - (2 if beside else 1), beside=temporal)
            report.phases["fold"] = time.perf_counter() - t0
            if f.temporal.lazy and f.temporal.unsafe:
                raise _Eager()
            folded.set()
            if temporal is None:
                temporal = asyncio.ensure_future(rt.temporal_group(pool, tenant, f.temporal, f.marks, h0, check,
                                                                   folded, report.phases, owner))
            # the inline group beside the temporal group's tail and compare
            t1 = time.perf_counter()
            async with bulk.owner_connection(owner, conn) as ic, ic.transaction():
                report.tables, report.head = await _inline(ic, tenant, f, h0, check, report.phases,
                                                           bulk_load=owner is not None)
            report.phases["inline"] = time.perf_counter() - t1
            tables, head = await temporal
            report.tables += tables
            report.head = max(report.head, head)       # the head each group brought its tables to
        except BaseException:
            if temporal is not None and not temporal.done():
                temporal.cancel()
                await asyncio.gather(temporal, return_exceptions=True)
            raise
    report.seconds = time.perf_counter() - t0
    report.swapped = not check and not report.ok
    return report


async def _fold_all(pool, conn, tenant: str, f: _Folds, h0: int, progress: bool, console, readers: int,
                    beside: asyncio.Future | None = None) -> int:
    """The events up to h0 folded, with a progress bar; the number folded. `beside`: the temporal
    group, whose failure stops the fold at once (it only ends early by failing)."""
    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
        bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn(), console=console, transient=False)
        bar.start()
        task = bar.add_task(f"rebuild {tenant}", total=h0)
    n = 0
    try:
        async for end, events in pages(pool, conn, tenant, 0, h0, readers=readers):
            if beside is not None and beside.done():
                beside.result()
            await _fold(conn, f, events)
            n += len(events)
            if bar:
                bar.update(task, completed=end)
    finally:
        if bar:
            bar.stop()
    return n


# ---- the inline group (licence and directory tables) ---------------------------------------------------

_INLINE = {t.name: t for t in (*rl.TABLES, *rd.TABLES)}
BULK_LOAD = 10_000      # rows into an empty live table: a swap long anyway, overlapped with the temporal group


async def _inline(conn, tenant: str, f: _Folds, h0: int, check: bool, phases: dict[str, float],
                  bulk_load: bool = False) -> tuple[list[TableReport], int]:
    """The inline tables rebuilt, compared and swapped (in the caller's transaction); the head. Their
    rows as of H0 are staged without a lock (appends go on) and only the tail is folded under the
    tenant lock - except on a first build (BULK_LOAD rows or more for an empty live table), where the
    lock comes first and each empty table takes its rows by one COPY in key order straight in: that
    swap is a bulk load whose index work is long anyway, and staging it too would double it."""
    empty = await empty_tables(conn, tenant, _INLINE.values())
    sizes = {"licence_seats": sum(len(p.seats) for p in f.licences.pools.values()),
             "scim_resources": len(f.directory.res)}
    if not check and any(sizes.get(t, 0) >= BULK_LOAD for t in empty):
        head = (await lock_head(conn, tenant)).seq
        t0 = time.perf_counter()
        await _fold_tail(conn, tenant, f, h0, head)
        rows = f.licences.records(tenant)
        phases["inline_rows"] = time.perf_counter() - t0
        # `bulk_load` (an owner connection): the big tables no tenant has a row in take their indexes after
        # the rows (the directory's sizes from the fold: its rows are made below)
        sizes = {**{t: len(r) for t, r in rows.items()}, "scim_resources": len(f.directory.res),
                 "group_members": sum(len(m) for m in f.directory.members.values())}
        deferred = await bulk.defer(conn, [t for t in _INLINE if t in empty and sizes.get(t, 0) >= bulk.BULK_ROWS]) \
            if bulk_load else None
        bare = set(deferred.tables) if deferred is not None else set()
        reports = {}
        for name in (t.name for t in rl.TABLES):
            reports[name] = await compare_swap(conn, tenant, _INLINE[name], rows[name], check=check,
                                               ordered=name not in bare)
        t1 = time.perf_counter()
        # PostgreSQL builds the licence tables' indexes while Python makes the directory's rows and
        # lets the licence rows go (a second or two of each side's work, overlapped)
        building = asyncio.ensure_future(deferred.build(conn, [t.name for t in rl.TABLES])) \
            if deferred is not None else None
        await asyncio.sleep(0)          # its statements are sent before Python gets busy
        rows.clear()
        try:
            t2 = time.perf_counter()
            rows = f.directory.tables()
            phases["inline_rows"] += time.perf_counter() - t2
        finally:
            if building is not None:
                await building          # failed or not: the connection is free again before anything else
        for name in (t.name for t in rd.TABLES):
            reports[name] = await compare_swap(conn, tenant, _INLINE[name], rows[name], check=check,
                                               ordered=name not in bare)
        if deferred is not None:
            await deferred.build(conn)
            # from the licence indexes' start to the last index built: the directory's rows and COPY,
            # overlapped with the first, are inside it
            phases["inline_indexes"] = time.perf_counter() - t1
        return [reports[name] for name in _INLINE], head
    await _stage_inline(conn, tenant, f, phases)
    head = (await lock_head(conn, tenant)).seq
    return await _swap_inline(conn, tenant, f, h0, head, check), head


async def _fold_tail(conn, tenant: str, f: _Folds, h0: int, head: int) -> list[Event]:
    """Holding the tenant lock: the events after H0 folded into the inline folds; those events."""
    tail = await read_page(conn, tenant, h0, head)
    if tail:
        await _missing_keys(conn, tenant, f, tail)
        await _fold(conn, f, tail, temporal=False)
    return tail


async def _stage_inline(conn, tenant: str, f: _Folds, phases: dict[str, float]) -> None:
    """The inline tables as of H0 put aside (no lock: appends go on meanwhile)."""
    t0 = time.perf_counter()
    rows = {**f.licences.records(tenant), **f.directory.tables()}
    phases["inline_rows"] = time.perf_counter() - t0
    for name, t in _INLINE.items():
        await stage(conn, t, rows.pop(name))
    phases["inline_stage"] = time.perf_counter() - t0 - phases["inline_rows"]


async def _swap_inline(conn, tenant: str, f: _Folds, h0: int, head: int, check: bool) -> list[TableReport]:
    """Under the tenant lock: the events after H0 folded and their rows restaged (only the pools and
    resources they touch), then each table compared and swapped."""
    tail = await _fold_tail(conn, tenant, f, h0, head)
    if tail:
        pools, ids, whole = set(), set(), False
        for e in tail:
            s, d = e.stream, e.data
            if s.startswith("pool-"):
                pools.add(s[5:])
            elif s.startswith(("user-", "group-")):
                ids.add(s.split("-", 1)[1])
                ids.update(v for k in ("user_id", "group_id") if isinstance(v := d.get(k), str))
            elif s.startswith(("scim-extension-", "erasure-")):
                whole = True            # schemas or erased documents: every resource may change
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
