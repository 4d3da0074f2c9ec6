#!/usr/bin/env python3
"""Append throughput through the real write path (CommandBus.execute -> group commit), beside a naive
baseline measured in the same run: one plain INSERT per transaction from 32 asyncpg connections.

    python scripts/bench_append.py [--events 20000] [--callers 32] [--rounds 3] [--quick]

The two are measured in alternating rounds (baseline, store, baseline, store, ...), each round
appending --events, and each side's figure is the median round: a burst of noise from the rest of
the machine then hits one round of one side, not the comparison.

Reads SEATLEDGER_DATABASE_URL (embedded PostgreSQL when unset). The last line is one JSON object.
Target (2 cores): >= 8,000 events/s, >= 1.0x the baseline, p99 <= 50 ms.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import asyncpg  # noqa: E402

from ledger import db  # noqa: E402
from ledger.events import Event, NewEvent, event  # noqa: E402
from ledger.executor import Command, CommandBus, Decision, Handler  # noqa: E402
from ledger.migrate import migrate  # noqa: E402
from ledger.store import EventStore, StreamChange  # noqa: E402
from benchkit import pct  # noqa: E402  (latency percentiles in ms, as every benchmark)


@event("BenchNoted")
class BenchNoted(Event):
    caller: int
    i: int
    text: str


class NoteHandler(Handler):
    def streams(self, cmd):
        # the stream is known without deciding: the executor fetches its version without a dry run
        return [f"bench-{cmd.caller}"]

    def decide(self, state, cmd):
        return Decision([StreamChange(f"bench-{cmd.caller}", None,
                                      [NewEvent(BenchNoted(caller=cmd.caller, i=cmd.i, text="x" * 64))])])


@dataclass
class Note(Command):
    caller: int
    i: int
    handler = NoteHandler()


async def run_callers(callers: int, per: int, fn):
    lat: list[float] = []

    async def caller(c):
        for i in range(per):
            t = time.perf_counter()
            await fn(c, i)
            lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*[caller(c) for c in range(callers)])
    return time.perf_counter() - t0, lat


async def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--callers", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a small run that proves the script works")
    args = ap.parse_args()
    if args.quick:
        args.events, args.rounds = 640, 1
    per = max(1, args.events // args.callers)
    n = per * args.callers

    dbname = f"seatledger_bench_{uuid.uuid4().hex[:8]}"
    d = await db.resolve(database=dbname)
    await migrate(d.migrate)
    try:
        # ---- baseline: one INSERT per transaction, 32 connections -----------------------------
        admin = await asyncpg.connect(d.migrate)
        await admin.execute("CREATE TABLE naive (id bigserial PRIMARY KEY, tenant text, stream text, data jsonb)")
        await admin.execute("GRANT SELECT, INSERT ON naive TO seatledger_app; "
                            "GRANT USAGE ON SEQUENCE naive_id_seq TO seatledger_app")
        settings = {r["name"]: r["setting"] for r in await admin.fetch(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('synchronous_commit', 'fsync', 'wal_sync_method', 'server_version', 'commit_delay')")}
        await admin.close()
        conns = [await asyncpg.connect(d.app) for _ in range(args.callers)]
        for c in conns:
            await db.init_connection(c)
        payload = json.dumps({"text": "x" * 64})

        async def naive(c, i):
            await conns[c].execute("INSERT INTO naive (tenant, stream, data) VALUES ('bench', $1, $2::jsonb)",
                                   f"bench-{c}", payload)

        # ---- the store: CommandBus.execute, group commit ---------------------------------------
        pool = await db.create_pool(d.app, min_size=2, max_size=4)
        bus = CommandBus(EventStore(pool))
        offset = 0

        async def store_one(c, i):
            await bus.execute("bench", Note(c, offset + i), metadata={"actor": "bench", "source": "admin"})

        base_runs, store_runs, base_lat, store_lat = [], [], [], []
        for _ in range(args.rounds):
            s, lat = await run_callers(args.callers, per, naive)
            base_runs.append(n / s)
            base_lat += lat
            s, lat = await run_callers(args.callers, per, store_one)
            store_runs.append(n / s)
            store_lat += lat
            offset += per
        batches = bus.batches
        await bus.close()
        for c in conns:
            await c.close()
        async with pool.acquire() as conn:
            stored = await conn.fetchval("SELECT count(*) FROM events WHERE tenant_id = 'bench'")
        await pool.close()
        assert stored == n * args.rounds, (stored, n * args.rounds)
    finally:
        admin = await asyncpg.connect(db.with_database(d.migrate, "postgres"))
        await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await admin.close()

    res = {
        "events": n, "callers": args.callers,
        "events_per_s": round(statistics.median(store_runs)), "append_p50_ms": round(pct(store_lat, 0.5), 2),
        "append_p99_ms": round(pct(store_lat, 0.99), 2), "mean_batch": round(n * args.rounds / batches, 1),
        "baseline_per_s": round(statistics.median(base_runs)), "baseline_p50_ms": round(pct(base_lat, 0.5), 2),
        "baseline_p99_ms": round(pct(base_lat, 0.99), 2),
        "ratio": round(statistics.median(store_runs) / statistics.median(base_runs), 2),
        "rounds": args.rounds, "store_rounds_per_s": [round(x) for x in store_runs],
        "baseline_rounds_per_s": [round(x) for x in base_runs],
        "embedded": d.embedded, "pg_settings": settings,
    }
    print(f"store    {res['events_per_s']:>8} events/s  p50 {res['append_p50_ms']} ms  p99 {res['append_p99_ms']} ms"
          f"  (mean batch {res['mean_batch']})")
    print(f"baseline {res['baseline_per_s']:>8} events/s  p50 {res['baseline_p50_ms']} ms  p99 {res['baseline_p99_ms']} ms"
          f"  (one INSERT per transaction, {args.callers} connections)")
    print(f"ratio    {res['ratio']}x   targets: >= 8000 events/s, >= 1.0x, p99 <= 50 ms")
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    asyncio.run(main())
