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
transaction (projections/rebuild_compare.py: rows COPYed aside, an order-free digest per table,
every differing row reported by key, only those rows rewritten - nothing half-built is visible):
* licence and directory tables (written inline by the command bus): under the tenant lock
  (`lock_head`, appends wait), the events after H0 are folded first;
* temporal tables (a catch-up projection): under the temporal lock, the live tables are caught up to
  the head first and the rebuild is fed the same tail; the checkpoint is set to that head.
No write is lost: whatever commits after the swap is folded by the write path (inline tables) or by
the next catch-up (temporal tables).
"""
from __future__ import annotations

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
from projections.rebuild_compare import MAX_REPORTED, Table, TableReport, compare_swap  # noqa: F401
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


async def _temporal_group(conn, tenant: str, f: _Folds, after: int, check: bool,
                          phases: dict[str, float]) -> list[TableReport]:
    t0 = time.perf_counter()
    w = f.temporal
    await tp.lock(conn, tenant)
    if await tp._checkpoint(conn, tenant) >= after:
        head = await tp.catch_up_locked(conn, tenant)    # live up to the head first (just the tail)
    else:
        # the live tables are behind the rebuild (never projected, or far behind): compared as they
        # are, and replaced unless check; catching them up first would fold the ledger twice
        head = await conn.fetchval("SELECT seq FROM tenant_heads WHERE tenant_id = $1", tenant) or 0
    if after < head:
        await tp.feed(conn, w, await conn.fetch(tp._POOL_EVENTS, tenant, after, head))
    for us, s in f.marks.items():
        w.mark(s, from_micros(us))
    for s, at in await tp.marks_between(conn, tenant, after, head):
        w.mark(s, at)
    records = {"seat_intervals": w.inserts(), "temporal_pairs": w.pair_rows(), "temporal_pools": w.pools,
               "temporal_pool_changes": w.changes,
               "temporal_marks": [(tenant, s, at) for at, s in w.marks.items()]}
    phases["temporal_rows"] = time.perf_counter() - t0
    reports = [await compare_swap(conn, tenant, t, records[t.name], check=check) for t in TEMPORAL_TABLES]
    if not check:
        await tp.set_checkpoint(conn, tenant, head)
    phases["temporal_compare_swap"] = time.perf_counter() - t0 - phases["temporal_rows"]
    return reports


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
        async with conn.transaction():
            head = await lock_head(conn, tenant)
            tail = await read_page(conn, tenant, h0, head.seq)
            await _missing_keys(conn, tenant, f, tail)
            await _fold(conn, f, tail, temporal=False)
            tables = {**f.licences.records(tenant), **f.directory.tables()}
            report.phases["inline_rows"] = time.perf_counter() - t0 - report.phases["fold"]
            for t in (*rl.TABLES, *rd.TABLES):
                report.tables.append(await compare_swap(conn, tenant, t, tables[t.name], check=check))
            report.head = head.seq
        report.phases["inline_compare_swap"] = time.perf_counter() - t0 - sum(report.phases.values())
        async with conn.transaction():
            report.tables += await _temporal_group(conn, tenant, f, h0, check, report.phases)
    report.seconds = time.perf_counter() - t0
    report.swapped = not check and not report.ok
    return report


async def tenants(pool: asyncpg.Pool) -> list[str]:
    async with pool.acquire() as conn:
        return [r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM tenant_heads ORDER BY tenant_id")]
