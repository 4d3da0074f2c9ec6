"""A rebuild's temporal group: `seat_intervals`, `temporal_pairs`, `temporal_pools`,
`temporal_pool_changes`, `temporal_marks` rebuilt up to H0, then caught up to the head and swapped.

It runs on its own connection and transaction from the start of the rebuild, beside the Python fold
(projections/rebuild.py), so that PostgreSQL works while Python folds:
1. the rows up to H0 that SQL can derive (projections/temporal_sql.py: the simple pairs' intervals,
   every pair's sequences) go straight into their target while the fold runs;
2. once the fold is done, the rows Python makes (the refolded pairs' intervals, pools, term changes,
   the marks; everything when SQL cannot read the ledger) are COPYed in, in key order;
3. the target is brought from H0 to the head by the catch-up's own code (`temporal.catch_up_run`),
   so the tail is folded exactly as live events are.
The target is the live tables on a first build (no row for the tenant: nothing to compare, one bulk
load under the temporal lock, held from the start so no catch-up writes beside it); otherwise side
tables, compared with the live ones and swapped under the temporal lock (catch-up and the queries
that wait for it are held for that part only).
"""
from __future__ import annotations

import asyncio
import time

import asyncpg

from projections import rebuild_bulk as bulk
from projections import temporal as tp
from projections import temporal_sql as tsql
from projections.rebuild_compare import (Table, TableReport, compare_staged, copy_in_key_order, empty_tables,
                                         filled_report, stage)
from ledger.canonical import from_micros

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



async def temporal_group(pool: asyncpg.Pool, tenant: str, w: tp.Writer, marks: dict[int, int], h0: int,
                         check: bool, folded: asyncio.Event, phases: dict[str, float],
                         owner: str | None = None) -> tuple[list[TableReport], int]:
    """`w`: the fold's Writer (lazy when SQL makes the simple pairs' rows) and `marks` (recorded time in
    µs -> the last sequence recorded then), complete once `folded` is set. `owner`: the tables' owner's
    DSN (a first build into tables no tenant has a row in then builds their indexes after the load,
    projections/rebuild_bulk.py). The reports and the head the tables were brought to."""
    async with bulk.owner_connection(owner, pool) as conn:
        async with conn.transaction():
            # the derivation sorts the seat events a few times: in memory, not in temporary files;
            # it is one long statement of sorts and inserts, which JIT compiling (a second or more) cannot speed
            await conn.execute("SET LOCAL work_mem = '256MB'; SET LOCAL jit = off")
            t0 = time.perf_counter()
            first = False
            if not check and await _none_filled(conn, tenant):
                await tp.lock(conn, tenant)
                # a catch-up that committed rows before the lock makes this a compare after all
                first = await _none_filled(conn, tenant)
            prefix = "" if first else "rb_"
            deferred = None
            if first and owner is not None and h0 >= bulk.BULK_ROWS:
                deferred = await bulk.defer(conn, [t.name for t in TEMPORAL_TABLES])
            if not first:
                for t in TEMPORAL_TABLES:
                    await stage(conn, t, [])
            if w.lazy:
                await tsql.write(conn, tenant, h0, prefix)
            t1 = time.perf_counter()
            phases["temporal_sql"] = t1 - t0
            await folded.wait()
            t2 = time.perf_counter()
            if w.lazy:          # the pairs Python refolded: its rows replace those SQL made
                refolded = [k for k, p in w.pairs.items() if p.folded]
                if refolded:
                    await conn.execute(f"DELETE FROM {prefix}seat_intervals s USING unnest($2::text[], $3::text[]) "
                                       "AS k(p, u) WHERE s.tenant_id = $1 AND s.pool_id = k.p AND s.user_id = k.u",
                                       tenant, [k[0] for k in refolded], [k[1] for k in refolded])
            python_rows = {"seat_intervals": w.inserts(), "temporal_pools": w.pools, "temporal_pool_changes": w.changes,
                           "temporal_marks": [(tenant, s, from_micros(us)) for us, s in marks.items()]}
            if not w.lazy:
                python_rows["temporal_pairs"] = w.pair_rows()
            for t in TEMPORAL_TABLES:
                await copy_in_key_order(conn, prefix + t.name, t, python_rows.get(t.name, []))
            if deferred is not None:        # before the tail: the catch-up looks rows up by them
                t3 = time.perf_counter()
                await deferred.build(conn)
                phases["temporal_indexes"] = time.perf_counter() - t3
            if first:
                await tp.set_checkpoint(conn, tenant, h0)
                head = await tp.catch_up_locked(conn, tenant)          # the tail, as the catch-up folds it
                reports = [await filled_report(conn, tenant, t) for t in TEMPORAL_TABLES]
            else:
                await tp.lock(conn, tenant)
                head = await _catch_up_live(conn, tenant, h0)
                if h0 < head:
                    await tp.catch_up_run(conn, tenant, h0, head, prefix="rb_")
                reports = [await compare_staged(conn, tenant, t, check=check) for t in TEMPORAL_TABLES]
                if not check:
                    await tp.set_checkpoint(conn, tenant, head)
            phases["temporal_after_fold"] = time.perf_counter() - t2
    return reports, head


async def _none_filled(conn, tenant: str) -> bool:
    """No temporal table holds a row of the tenant: a first build."""
    return len(await empty_tables(conn, tenant, TEMPORAL_TABLES)) == len(TEMPORAL_TABLES)


async def _catch_up_live(conn, tenant: str, after: int) -> int:
    """Holding the temporal lock: the live tables caught up to the head; the head. Far behind the
    rebuild (or never projected), they are compared as they are and replaced unless check: catching
    them up first would fold the ledger twice."""
    cp = await tp._checkpoint(conn, tenant)
    if cp >= after or (cp > 0 and after - cp <= CATCH_UP_LAG):
        return await tp.catch_up_locked(conn, tenant)
    return await conn.fetchval("SELECT seq FROM tenant_heads WHERE tenant_id = $1", tenant) or 0
