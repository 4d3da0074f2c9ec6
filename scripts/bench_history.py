#!/usr/bin/env python3
"""History benchmark: a synthetic ledger (default 1,000,000 events, 100,000 users, 20 pools, two years
of churn with backdated corrections) written with the real write path's bytes and hashes
(`EventStore.write` in large batches, recorded times set along the two years), checked by
`ledger.verify.verify_tenant`, projections built by `rebuild` (in a process of its own, as
`seatledger rebuild` runs), then:

* first page (1,000) of a pool's holders at T with the total count, p50/p99 (target p50 <= 20 ms)
* a user's licences at T, p50 (target <= 5 ms)
* rebuild throughput (target >= 50,000 events/s), verify throughput (>= 200,000 events/s),
  audit export throughput (JSON Lines)
* the naive baseline in the same run: the replay engine folding all events from the start for one
  holders query.

    python scripts/bench_history.py [--events N --users U --pools P] [--quick] [--verify-only]

Reads SEATLEDGER_DATABASE_URL (embedded PostgreSQL when unset). The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import asyncpg  # noqa: E402

from ledger import db  # noqa: E402
from ledger.directory import UserCreated  # noqa: E402
from ledger.events import NewEvent  # noqa: E402
from ledger.licences import (LicenceExpired, PoolCreated, PoolRenewed, PoolResized, ProductDefined,  # noqa: E402
                             SeatAssigned, SeatGrantsChanged, SeatReleased, SeatResumed, SeatSuspended)
from ledger.migrate import migrate  # noqa: E402
from ledger.store import EventStore, Head, StreamChange, lock_head, plan_rows  # noqa: E402
from benchkit import pct  # noqa: E402  (latency percentiles in ms, as every benchmark)

START = datetime(2023, 1, 1, tzinfo=timezone.utc)
SPAN = timedelta(days=730)
TENANT = "bench"


def synthesize(n_events: int, n_users: int, n_pools: int, seed: int = 7):
    """Yields (stream, NewEvent, instant) in time order; the instant is the batch clock."""
    rnd = random.Random(seed)
    yield "product-suite", NewEvent(ProductDefined(product_id="suite", name="Suite")), START
    for p in range(n_pools):
        pid = f"pool{p:02d}"
        ev = PoolCreated(pool_id=pid, product_id="suite" if p < n_pools // 2 else f"prod{p % 5}",
                         seats=n_users // 4, term_start=START, term_end=START + timedelta(days=365),
                         grace_seconds=7 * 86400)
        yield f"pool-{pid}", NewEvent(ev, START), START
    step = SPAN / n_events
    t = START
    for u in range(n_users):
        t += step
        yield f"user-u{u:06d}", NewEvent(UserCreated(user_id=f"u{u:06d}", attributes={"active": True},
                                                     personal_attributes={"userName": f"user{u}@example.com"}), t), t
    held: dict[tuple[int, int], str] = {}      # (pool, user) -> state
    renewed = set()
    produced = n_users + n_pools + 1
    while produced < n_events:
        t += step
        p = rnd.randrange(n_pools)
        pid = f"pool{p:02d}"
        if t > START + timedelta(days=300) and p not in renewed:
            renewed.add(p)
            yield f"pool-{pid}", NewEvent(PoolRenewed(pool_id=pid, term_end=START + SPAN + timedelta(days=30)), t), t
            yield f"pool-{pid}", NewEvent(PoolResized(pool_id=pid, seats=n_users // 3),
                                          t + timedelta(days=30)), t        # scheduled, in the future
            produced += 2
            continue
        u = rnd.randrange(n_users)
        uid = f"u{u:06d}"
        st = held.get((p, u))
        r = rnd.random()
        if st is None:
            ev = SeatAssigned(pool_id=pid, user_id=uid, grants=[f"rule{p % 3}"], priority=10)
            held[(p, u)] = "active"
        elif st == "suspended":
            if r < 0.5:
                ev = SeatResumed(pool_id=pid, user_id=uid)
                held[(p, u)] = "active"
            else:
                ev = SeatReleased(pool_id=pid, user_id=uid, reason="grace_ended")
                del held[(p, u)]
        elif r < 0.3:
            ev = SeatGrantsChanged(pool_id=pid, user_id=uid, grants=[f"rule{p % 3}", "admin"], priority=0)
        elif r < 0.45:
            ev = SeatSuspended(pool_id=pid, user_id=uid, until=t + timedelta(days=7))
            held[(p, u)] = "suspended"
        elif r < 0.5:
            # a backdated correction: the seat really ended a few hours ago
            yield f"pool-{pid}", NewEvent(SeatReleased(pool_id=pid, user_id=uid, reason="correction"),
                                          t - step * rnd.randrange(1, 50)), t
            del held[(p, u)]
            produced += 1
            continue
        else:
            ev = SeatReleased(pool_id=pid, user_id=uid, reason="no_grant")
            del held[(p, u)]
        yield f"pool-{pid}", NewEvent(ev, t), t
        produced += 1


async def write_ledger(store: EventStore, n_events, n_users, n_pools, batch=5000) -> int:
    versions: dict[str, int] = {}
    meta = {"actor": "bench", "source": "admin"}
    pending: list[tuple[str, NewEvent]] = []
    last_t = START

    async def flush():
        nonlocal pending
        if not pending:
            return
        async with store.pool.acquire() as conn:
            async with conn.transaction():
                head = await lock_head(conn, TENANT)
                head = Head(head.seq, head.hash, last_t)        # the batch's recorded time
                changes = [StreamChange(s, None, [ne]) for s, ne in pending]
                await store.write(conn, TENANT, head, plan_rows(changes, versions, meta))
        pending = []

    n = 0
    for stream, ne, t in synthesize(n_events, n_users, n_pools):
        pending.append((stream, ne))
        last_t = max(last_t, t, ne.effective_at or t)
        n += 1
        if len(pending) >= batch:
            await flush()
    await flush()
    return n


async def rebuild_child() -> None:
    """`--rebuild-child`: the bench tenant rebuilt once in this process (DSNs from the environment), its
    report printed as JSON - the rebuild measured as `seatledger rebuild` runs, in a process of its own."""
    from projections.rebuild import rebuild_tenant
    pool = await db.create_pool(os.environ["BENCH_APP_DSN"], min_size=2, max_size=8)
    try:
        rb = await rebuild_tenant(pool, TENANT, owner=os.environ["BENCH_OWNER_DSN"])
    finally:
        await pool.close()
    print(json.dumps({"seconds": rb.seconds, "events": rb.events, "phases": rb.phases}))


async def rebuild_apart(d) -> dict:
    """The rebuild in a process of its own, as the CLI runs it: this one has written a million events and
    run two verifiers over them, and a rebuild measured in it took about a tenth longer (its fold's
    millions of small objects land in a heap that work left behind)."""
    env = {**os.environ, "BENCH_APP_DSN": d.app, "BENCH_OWNER_DSN": d.migrate}
    proc = await asyncio.create_subprocess_exec(sys.executable, os.path.abspath(__file__), "--rebuild-child",
                                                env=env, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"the rebuild failed (exit {proc.returncode})")
    return json.loads(out.decode().strip().splitlines()[-1])


async def main() -> dict:
    if sys.argv[1:] == ["--rebuild-child"]:
        await rebuild_child()
        return {}
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--pools", type=int, default=20)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="a small run that proves the script works")
    ap.add_argument("--verify-only", action="store_true", help="stop after the ledger is written and verified")
    args = ap.parse_args()
    if args.quick:
        args.events, args.users, args.reps = 20_000, 2_000, 30
    from ledger.verify import verify_tenant, verify_tenant_py
    from ledger.replay import licence_replay
    from projections import temporal as tp
    from api.audit_export import export_chunks, snapshot

    dbname = f"seatledger_bench_{uuid.uuid4().hex[:8]}"
    d = await db.resolve(database=dbname)
    await migrate(d.migrate)
    res: dict = {"events": args.events, "users": args.users, "pools": args.pools, "embedded": d.embedded}
    try:
        pool = await db.create_pool(d.app, min_size=2, max_size=8)
        store = EventStore(pool)
        t0 = time.perf_counter()
        n = await write_ledger(store, args.events, args.users, args.pools)
        res["write_events_per_s"] = round(n / (time.perf_counter() - t0))
        print(f"ledger   {n} events written in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        # a ledger is read long after it was written: its autovacuum (statistics, hint bits, visibility
        # map) and the checkpoint that writes it out have run by then. Here they would run during the
        # measurements, on the same two cores, so the set-up finishes them first.
        t0 = time.perf_counter()
        admin = await asyncpg.connect(d.migrate)
        await admin.execute("VACUUM (ANALYZE) events")
        try:
            await admin.execute("CHECKPOINT")
        except asyncpg.InsufficientPrivilegeError:        # not a superuser nor pg_checkpoint: it runs on its own
            pass
        await admin.close()
        print(f"ledger   vacuumed and checkpointed in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

        async with pool.acquire() as conn:
            t0 = time.perf_counter()
            rep = await verify_tenant(conn, TENANT, pool=pool)      # ranges on 2 connections, as the CLI
            vs = time.perf_counter() - t0
            # its baseline: the Python reference verifier, every row decoded and compared in Python
            t0 = time.perf_counter()
            ref = await verify_tenant_py(conn, TENANT)
            rs = time.perf_counter() - t0
        assert rep.ok and rep == ref, str(rep.broken)
        res["verify_events_per_s"] = round(rep.events / vs)
        res["verify_reference_events_per_s"] = round(ref.events / rs)
        print(f"verify   {res['verify_events_per_s']:>9} events/s   target >= 200,000   (reference verifier "
              f"{res['verify_reference_events_per_s']} events/s)", file=sys.stderr)
        if args.verify_only:
            await pool.close()
            print(json.dumps(res))
            return res

        rb = await rebuild_apart(d)        # as `seatledger rebuild` runs it: its own process, the owner's DSN
        res["rebuild_s"] = round(rb["seconds"], 2)
        res["rebuild_events_per_s"] = round(n / rb["seconds"])            # the whole ledger, per second
        res["rebuild_pool_events_per_s"] = round(rb["events"] / rb["seconds"])   # the events it folds
        res["rebuild_phases_s"] = {k: round(v, 2) for k, v in rb["phases"].items()}
        head = await tp.ensure_current(pool, TENANT)
        # planner statistics and the visibility map after the bulk load, as autovacuum's insert-triggered
        # run would leave them (the reads are index-only scans); the app role may not VACUUM
        admin = await asyncpg.connect(d.migrate)
        await admin.execute("VACUUM ANALYZE seat_intervals, temporal_pools, temporal_pool_changes, temporal_marks")
        await admin.close()
        async with pool.acquire() as conn:
            intervals = await conn.fetchval("SELECT count(*) FROM seat_intervals WHERE tenant_id = $1", TENANT)
        res["seat_intervals_rows"] = intervals

        rnd = random.Random(3)
        instants = [START + SPAN * rnd.random() for _ in range(args.reps)]
        lat, totals = [], []
        for i, at in enumerate(instants):
            pid = f"pool{rnd.randrange(args.pools):02d}"
            known = None if i % 2 else rnd.randrange(1, head)
            q0 = time.perf_counter()
            h = await tp.ensure_current(pool, TENANT)
            async with pool.acquire() as conn:
                k = await tp.resolve_known(conn, TENANT, known, h)
                total, rows = await tp.holders(conn, TENANT, [pid], at, k, 1000)
            lat.append(time.perf_counter() - q0)
            totals.append(total)
        res["holders_page_p50_ms"] = round(pct(lat, 0.5), 2)
        res["holders_page_p99_ms"] = round(pct(lat, 0.99), 2)
        res["holders_total_median"] = sorted(totals)[len(totals) // 2]
        ulat = []
        for at in instants:
            uid = f"u{rnd.randrange(args.users):06d}"
            q0 = time.perf_counter()
            h = await tp.ensure_current(pool, TENANT)
            async with pool.acquire() as conn:
                await tp.licences(conn, TENANT, uid, at, h)
            ulat.append(time.perf_counter() - q0)
        res["user_licences_p50_ms"] = round(pct(ulat, 0.5), 2)
        res["user_licences_p99_ms"] = round(pct(ulat, 0.99), 2)

        async with pool.acquire() as conn:
            t0 = time.perf_counter()
            size = 0
            async with snapshot(conn):
                async for chunk in export_chunks(conn, TENANT, "jsonl", 1, None):
                    size += len(chunk)
            es = time.perf_counter() - t0
        res["export_events_per_s"] = round(n / es)
        res["export_mb_per_s"] = round(size / es / 1e6, 1)

        # the naive baseline: fold every event from the start for one holders query
        async with pool.acquire() as conn:
            t0 = time.perf_counter()
            rp = await licence_replay(conn, TENANT, None)
            want = rp.holders(instants[0], ["pool00"])
            bs = time.perf_counter() - t0
            total, rows = await tp.holders(conn, TENANT, ["pool00"], instants[0], head, 1000)
        assert total == len(want) and [r["user_id"] for r in rows] == [w["user_id"] for w in want[:1000]]
        res["baseline_replay_holders_ms"] = round(bs * 1000, 1)
        res["speedup_vs_baseline"] = round(bs / (pct(lat, 0.5) / 1000), 1)
        await pool.close()
    finally:
        admin = await asyncpg.connect(db.with_database(d.migrate, "postgres"))
        await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await admin.close()
    print(f"holders first page (1,000) + count  p50 {res['holders_page_p50_ms']} ms  p99 {res['holders_page_p99_ms']} ms"
          f"  (median total {res['holders_total_median']})   target p50 <= 20 ms")
    print(f"user licences at T                  p50 {res['user_licences_p50_ms']} ms   target <= 5 ms")
    print(f"rebuild  {res['rebuild_events_per_s']:>9} events/s  ({res['rebuild_pool_events_per_s']} pool events/s folded)"
          f"   target >= 50,000")
    print(f"verify   {res['verify_events_per_s']:>9} events/s   target >= 200,000")
    print(f"export   {res['export_events_per_s']:>9} events/s  {res['export_mb_per_s']} MB/s")
    print(f"baseline {res['baseline_replay_holders_ms']} ms for one holders query by replaying every event "
          f"({res['speedup_vs_baseline']}x slower than the projection's p50)")
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    asyncio.run(main())
