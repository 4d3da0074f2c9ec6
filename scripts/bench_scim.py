#!/usr/bin/env python3
"""SCIM service benchmark (issue 3): creates/s, filter latency, /Bulk onboarding, member-PATCH cost.

    python scripts/bench_scim.py [--creates 10000] [--users 100000] [--bulk 10000] [--quick]

Server, PostgreSQL and load generator on one machine; a fresh database per run; no licence rules.
The service runs as its own process (`python -m api.cli serve`), the load generator here.

* POST /Users from 32 concurrent clients (`--creates`): req/s, p50/p99, and the CPU seconds of the
  server process, of PostgreSQL (the backends of this run's database: the processes whose command
  line names it) and of the load generator — beside a baseline measured in the same run under the
  same load (same bodies, same 32 clients): a bare aiohttp handler, its own process, that inserts
  the JSON body into one table with asyncpg (one INSERT and commit per request). The two are
  interleaved in two halves to even out a noisy machine.
* One `/Bulk` onboarding of `--bulk` users: seconds.
* `GET /Users?filter=` at `--users` users (seeded for real through /Bulk, 5,000 operations per
  request) for `userName eq`, `userName sw`, `emails.value co` and an `or` of two: p50/p99 each,
  from `--filter-clients` (1) client — the latency targets — then again from 4 for information; each
  query with another value (`count=10`).

The creates and the timed /Bulk run on a fresh table, without planner statistics (as on a fresh
database); statistics are then refreshed (ANALYZE) before the seeding and before the filters, as
autovacuum would have by then (see `analyze`); `--no-analyze` skips that.
* Member PATCH: the time to add `--add` members to a group of `--big` members vs to a group of
  `--small` (one PATCH each; median of `--reps` rounds, the members removed again between rounds
  so the groups keep their size): the ratio.

Reads SEATLEDGER_DATABASE_URL (embedded PostgreSQL when unset). Last line: one JSON object.
Targets (2 cores): >= 1,000 creates/s with p99 <= 100 ms; eq p99 <= 10 ms; sw/co/or p99 <= 30 ms;
10,000-user bulk <= 10 s; member-PATCH ratio <= 1.5.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import asyncpg  # noqa: E402
import psutil  # noqa: E402
from aiohttp import ClientSession, ClientTimeout, TCPConnector  # noqa: E402

from ledger import db  # noqa: E402
from ledger.migrate import migrate  # noqa: E402

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
SCIM_JSON = "application/scim+json"
BULK_CHUNK = 5000
CLIENTS = 32

# The baseline: a bare aiohttp handler that inserts the JSON body into one table with asyncpg.
BASELINE_SERVER = r'''
import asyncio, sys, uuid
import asyncpg
from aiohttp import web

async def main(dsn, port):
    pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)

    async def create(request):
        body = await request.text()
        rid = str(uuid.uuid4())
        await pool.execute("INSERT INTO bare_users (id, doc) VALUES ($1, $2::jsonb)", rid, body)
        return web.Response(status=201, body=body.encode(), content_type="application/scim+json",
                            headers={"Location": f"/Users/{rid}"})

    async def health(request):
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/Users", create)
    app.router.add_get("/healthz", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
'''


from benchkit import free_port, load, pct  # noqa: E402


# ---- CPU accounting -------------------------------------------------------------------------

def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def pg_backends_cpu(dbname: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving `dbname` (its process title names
    the database). Backends that exit during a phase are lost, so the pools are kept open."""
    out = {}
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or ())
            if cmd.startswith("postgres:") and f" {dbname} " in f"{cmd} ":
                out[p.pid] = _cpu(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


class CpuMeter:
    """CPU seconds of the server process, the database's backends and this process over a phase
    (accumulated over several start/stop spans)."""

    def __init__(self, server_pid: int, dbname: str):
        self.server = psutil.Process(server_pid)
        self.me = psutil.Process()
        self.dbname = dbname
        self.server_s = self.pg_s = self.me_s = 0.0

    def start(self):
        self._s, self._m, self._pg = _cpu(self.server), _cpu(self.me), pg_backends_cpu(self.dbname)

    def stop(self):
        self.server_s += _cpu(self.server) - self._s
        self.me_s += _cpu(self.me) - self._m
        after = pg_backends_cpu(self.dbname)
        self.pg_s += sum(v - self._pg.get(pid, 0.0) for pid, v in after.items())


# ---- the data -------------------------------------------------------------------------------

GIVEN = ["ada", "alan", "grace", "edsger", "barbara", "donald", "frances", "ken", "margaret", "niklaus"]
FAMILY = ["lovelace", "turing", "hopper", "dijkstra", "liskov", "knuth", "allen", "thompson", "hamilton",
          "wirth"]


def token(i: int) -> str:
    return f"{(i * 2654435761 + 0x9E3779B9) & 0xFFFFFFFF:08x}"


def user_name(i: int) -> str:
    return f"u{i:06d}.{token(i)}@bench.example"


def user_doc(i: int) -> dict:
    g, f = GIVEN[i % 10], FAMILY[(i // 10) % 10]
    return {"schemas": [USER], "userName": user_name(i), "externalId": f"ext-{i}", "active": True,
            "displayName": f"{g.title()} {f.title()} {i}",
            "name": {"givenName": g.title(), "familyName": f.title()},
            "emails": [{"value": f"{g}.{f}.{token(i)}@corp{i % 7}.example", "type": "work", "primary": True}]}


async def wait_up(s: ClientSession, url: str, proc: subprocess.Popen) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited: {proc.stderr.read().decode()[-3000:]}")
        try:
            async with s.get(url) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def setup_tenant(rt, tenant: str) -> str:
    from ledger.tenancy import CreateTenant
    from ledger.tokens import IssueToken
    await rt.bus.execute(tenant, CreateTenant(tenant, tenant))
    cmd = IssueToken("scim")
    await rt.bus.execute(tenant, cmd)
    return cmd.token


async def _runtime_for(d):
    from api.runtime import Runtime
    from ledger.executor import CommandBus
    from ledger.store import EventStore
    pool = await db.create_pool(d.app, min_size=2, max_size=4)
    store = EventStore(pool)
    return Runtime(d, pool, store, CommandBus(store))


async def analyze(d) -> None:
    """Planner statistics, as autovacuum keeps them (it analyses a table once 50 rows + 10% of it
    changed, within autovacuum_naptime). A fresh database, or a server with autovacuum off, has
    none: PostgreSQL then guesses that `tenant_id = $1 AND type = 'User'` matches a handful of rows
    and walks the whole tenant through a (tenant_id, type, ...) index for every userName lookup,
    so each write batch and each filter costs O(tenant size) (see --no-analyze). ANALYZE needs the
    table owner: the migrator."""
    owner = await asyncpg.connect(d.migrate)
    try:
        await owner.execute("ANALYZE scim_resources; ANALYZE events; ANALYZE subject_keys; ANALYZE group_members")
    finally:
        await owner.close()


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


async def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--creates", type=int, default=10_000, help="POST /Users under the 32-client load")
    ap.add_argument("--users", type=int, default=100_000, help="users behind the filter queries")
    ap.add_argument("--bulk", type=int, default=10_000, help="users in the timed /Bulk onboarding")
    ap.add_argument("--queries", type=int, default=2000, help="queries per filter")
    ap.add_argument("--filter-clients", type=int, default=1, help="clients for the filter latencies")
    ap.add_argument("--filter-clients-loaded", type=int, default=4,
                    help="a second pass at this many clients, for information (0: skip)")
    ap.add_argument("--big", type=int, default=50_000)
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--add", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="a small run that proves the script works")
    ap.add_argument("--no-analyze", action="store_true",
                    help="never refresh planner statistics (a server with autovacuum off, a fresh database)")
    ap.add_argument("--keep-db", action="store_true", help="leave the database (e.g. to EXPLAIN the filters)")
    args = ap.parse_args()
    if args.quick:
        args.creates, args.users, args.bulk, args.queries = 500, 2000, 500, 200
        args.big, args.small, args.add, args.reps = 5000, 500, 100, 3
    warm = 200 if not args.quick else 64
    # users needed in the tenant: the filter population, and the groups' members plus additions
    args.users = max(args.users, warm + args.creates + args.bulk, args.big + args.small + 2 * args.add)

    dbname = f"seatledger_bench_{uuid.uuid4().hex[:8]}"
    d = await db.resolve(database=dbname)
    await migrate(d.migrate)
    admin = await asyncpg.connect(d.migrate)
    await admin.execute("CREATE TABLE bare_users (id text PRIMARY KEY, doc jsonb NOT NULL)")
    pg_version = await admin.fetchval("SHOW server_version")
    await admin.close()
    env = {**os.environ}
    if d.embedded:
        env["SEATLEDGER_DATABASE"] = dbname
    else:
        env["SEATLEDGER_DATABASE_URL"] = d.migrate
    env["SEATLEDGER_SCHEDULER_SECONDS"] = "3600"
    env["SEATLEDGER_RATE_PER_S"] = env["SEATLEDGER_RATE_BURST"] = "1000000"   # measure, not throttle
    port, bport = free_port(), free_port()
    server = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port)], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    baseline = subprocess.Popen([sys.executable, "-c", BASELINE_SERVER, d.migrate, str(bport)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    from api.runtime import Runtime
    rt = None
    res: dict = {}
    try:
        rt = await Runtime.start(dbname, run_migrations=False, pool_size=4) if d.embedded \
            else await _runtime_for(d)
        base = f"http://127.0.0.1:{port}"
        bbase = f"http://127.0.0.1:{bport}"
        async with ClientSession(connector=TCPConnector(limit=64), timeout=ClientTimeout(total=600)) as s:
            await wait_up(s, base + "/healthz", server)
            await wait_up(s, bbase + "/healthz", baseline)
            tok = await setup_tenant(rt, "bench")
            h = {"Authorization": f"Bearer {tok}", "Content-Type": SCIM_JSON}
            scim = f"{base}/scim/v2/bench"
            ids: dict[int, str] = {}       # user index -> id
            next_i = 0

            # ---- 1. POST /Users, 32 clients, beside the bare baseline ------------------------
            bodies = [json.dumps(user_doc(i)) for i in range(warm + args.creates)]

            def creator(url: str, headers: dict, offset: int, record: bool):
                async def create(k):
                    i = offset + k
                    async with s.post(url, data=bodies[i], headers=headers) as r:
                        body = await r.read()
                        assert r.status == 201, (r.status, body[:300])
                        if record:
                            ids[i] = json.loads(body)["id"]
                return create

            await load(warm, CLIENTS, creator(scim + "/Users", h, 0, True))
            await load(warm, CLIENTS, creator(bbase + "/Users", {"Content-Type": SCIM_JSON}, 0, False))
            svc_cpu, base_cpu = CpuMeter(server.pid, dbname), CpuMeter(baseline.pid, dbname)
            svc_runs, base_runs = [], []
            half = args.creates // 2
            for k, off in enumerate((warm, warm + half)):
                n = half if k == 0 else args.creates - half
                svc_cpu.start()
                svc_runs.append(await load(n, CLIENTS, creator(scim + "/Users", h, off, True)))
                svc_cpu.stop()
                base_cpu.start()
                base_runs.append(await load(n, CLIENTS, creator(bbase + "/Users", {"Content-Type": SCIM_JSON},
                                                                 off, False)))
                base_cpu.stop()
            next_i = warm + args.creates
            svc_s, base_s = sum(r[0] for r in svc_runs), sum(r[0] for r in base_runs)
            svc_lat = [x for r in svc_runs for x in r[1]]
            base_lat = [x for r in base_runs for x in r[1]]

            # ---- 2. one /Bulk onboarding, then the rest of the population in 5,000s ------------
            async def bulk(start: int, n: int) -> float:
                ops = [{"method": "POST", "path": "/Users", "bulkId": f"b{i}", "data": user_doc(i)}
                       for i in range(start, start + n)]
                payload = json.dumps({"schemas": [BULK], "Operations": ops})
                t = time.perf_counter()
                async with s.post(scim + "/Bulk", data=payload, headers=h) as r:
                    out = await r.json(content_type=None)
                    assert r.status == 200, (r.status, str(out)[:300])
                took = time.perf_counter() - t
                for op in out["Operations"]:
                    assert op["status"] == "201", op
                    ids[int(op["bulkId"][1:])] = op["location"].rsplit("/", 1)[1]
                return took

            bulk_s = await bulk(next_i, args.bulk)
            next_i += args.bulk
            if not args.no_analyze:
                await analyze(d)
            t0 = time.perf_counter()
            seeded, chunk_rates = 0, []
            while next_i < args.users:
                n = min(BULK_CHUNK, args.users - next_i)
                chunk_rates.append(round(n / await bulk(next_i, n)))
                next_i += n
                seeded += n
            seed_s = time.perf_counter() - t0
            assert len(ids) == args.users, (len(ids), args.users)
            async with rt.pool.acquire() as conn:
                stored = await conn.fetchval("SELECT count(*) FROM scim_resources WHERE tenant_id = 'bench' "
                                             "AND type = 'User'")
            if not args.no_analyze:
                await analyze(d)
            assert stored == args.users, (stored, args.users)

            # ---- 3. GET /Users?filter= ---------------------------------------------------------
            rnd = random.Random(7)
            nu = args.users

            def q_eq():
                i = rnd.randrange(nu)
                return f'userName eq "{user_name(i).upper()}"', 1

            def q_sw():
                j = rnd.randrange(nu // 10)
                return f'userName sw "u{j:05d}"', None

            def q_co():
                i = rnd.randrange(nu)
                return f'emails.value co "{token(i)[1:7]}"', None

            def q_or():
                i, k = rnd.randrange(nu), rnd.randrange(nu)
                return f'userName eq "{user_name(i)}" or emails.value co "{token(k)[1:7]}"', None

            filters = {}
            for name, gen in (("eq", q_eq), ("sw", q_sw), ("co", q_co), ("or", q_or)):
                qs = [gen() for _ in range(args.queries + 20)]

                def getter(qs=qs):
                    async def get(k):
                        f, expect = qs[k]
                        async with s.get(scim + "/Users", params={"filter": f, "count": "10"},
                                         headers=h) as r:
                            body = await r.json(content_type=None)
                            assert r.status == 200, (r.status, body)
                            assert body["totalResults"] >= 1, (f, body)
                            assert expect is None or body["totalResults"] == expect, (f, body)
                    return get

                get = getter()
                await load(20, args.filter_clients, get)            # warm the plans
                tq, lat = await load(args.queries, args.filter_clients, lambda k: get(k + 20))
                filters[name] = {"per_s": round(args.queries / tq), "p50": pct(lat, 0.5), "p99": pct(lat, 0.99),
                                 "example": qs[0][0]}
                if args.filter_clients_loaded:
                    tq, lat = await load(args.queries, args.filter_clients_loaded,
                                         lambda k: get((k + 20 + args.queries // 2) % len(qs)))
                    filters[name].update(loaded_per_s=round(args.queries / tq), loaded_p50=pct(lat, 0.5),
                                         loaded_p99=pct(lat, 0.99))

            # ---- 4. member PATCH: add N members to a big group vs to a small one ---------------
            async def new_group(name: str) -> str:
                async with s.post(scim + "/Groups", data=json.dumps({"schemas": [GROUP], "displayName": name}),
                                  headers=h) as r:
                    body = await r.json(content_type=None)
                    assert r.status == 201, body
                    return body["id"]

            async def patch_members(gid: str, op: str, members: list[str]) -> float:
                body = json.dumps({"schemas": [PATCH], "Operations": [
                    {"op": op, "path": "members", "value": [{"value": m} for m in members]}]})
                t = time.perf_counter()
                async with s.patch(f"{scim}/Groups/{gid}", data=body, headers=h) as r:
                    out = await r.read()
                    assert r.status == 204, (r.status, out[:300])
                return time.perf_counter() - t

            big, small = await new_group("bench big"), await new_group("bench small")
            order = [ids[i] for i in range(args.users)]
            big_m, small_m = order[:args.big], order[args.big:args.big + args.small]
            extra = order[args.big + args.small:args.big + args.small + 2 * args.add]
            add_big, add_small = extra[:args.add], extra[args.add:]
            for k in range(0, args.big, BULK_CHUNK):
                await patch_members(big, "add", big_m[k:k + BULK_CHUNK])
            await patch_members(small, "add", small_m)
            t_big, t_small = [], []
            for rep in range(args.reps + 1):          # round 0 warms up
                pair = [(big, add_big, t_big), (small, add_small, t_small)]
                if rep % 2:
                    pair.reverse()
                for gid, members, out in pair:
                    took = await patch_members(gid, "add", members)
                    if rep:
                        out.append(took)
                    await patch_members(gid, "remove", members)
            async with rt.pool.acquire() as conn:
                sizes = dict(await conn.fetch(
                    "SELECT group_id, count(*) FROM group_members WHERE tenant_id = 'bench' "
                    "AND group_id = ANY($1::text[]) GROUP BY group_id", [big, small]))
            assert sizes == {big: args.big, small: args.small}, sizes
    finally:
        stop(server)
        stop(baseline)
        if rt is not None:
            await rt.close()
        if args.keep_db:
            print(f"kept database {dbname}", file=sys.stderr)
        else:
            admin = await asyncpg.connect(db.with_database(d.migrate, "postgres"))
            await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            await admin.close()

    big_med, small_med = statistics.median(t_big), statistics.median(t_small)
    res = {
        "creates": args.creates, "clients": CLIENTS,
        "creates_per_s": round(args.creates / svc_s), "create_p50_ms": pct(svc_lat, 0.5),
        "create_p99_ms": pct(svc_lat, 0.99),
        "baseline_per_s": round(args.creates / base_s), "baseline_p50_ms": pct(base_lat, 0.5),
        "baseline_p99_ms": pct(base_lat, 0.99),
        "ratio": round((args.creates / svc_s) / (args.creates / base_s), 2),
        "server_cpu_s": round(svc_cpu.server_s, 2), "postgres_cpu_s": round(svc_cpu.pg_s, 2),
        "loadgen_cpu_s": round(svc_cpu.me_s, 2),
        "baseline_server_cpu_s": round(base_cpu.server_s, 2), "baseline_postgres_cpu_s": round(base_cpu.pg_s, 2),
        "baseline_loadgen_cpu_s": round(base_cpu.me_s, 2),
        "server_cpu_ms_per_create": round(svc_cpu.server_s / args.creates * 1000, 3),
        "baseline_server_cpu_ms_per_create": round(base_cpu.server_s / args.creates * 1000, 3),
        "users": args.users, "filter_clients": args.filter_clients, "queries_per_filter": args.queries,
        **{f"{k}_p50_ms": v["p50"] for k, v in filters.items()},
        **{f"{k}_p99_ms": v["p99"] for k, v in filters.items()},
        **{f"{k}_per_s": v["per_s"] for k, v in filters.items()},
        "filter_clients_loaded": args.filter_clients_loaded,
        **{f"{k}_p99_ms_at_{args.filter_clients_loaded}_clients": v.get("loaded_p99") for k, v in filters.items()},
        **{f"{k}_per_s_at_{args.filter_clients_loaded}_clients": v.get("loaded_per_s") for k, v in filters.items()},
        "bulk_users": args.bulk, "bulk_10k_s": round(bulk_s * 10_000 / args.bulk, 2) if args.quick
        else round(bulk_s, 2), "bulk_s": round(bulk_s, 2),
        "seed_users_per_s": round(seeded / seed_s) if seeded else None, "seed_chunk_users_per_s": chunk_rates,
        "member_add": args.add, "big_group": args.big, "small_group": args.small,
        "add_to_big_ms": round(big_med * 1000, 1), "add_to_small_ms": round(small_med * 1000, 1),
        "member_patch_ratio": round(big_med / small_med, 2),
        "analyzed": not args.no_analyze, "embedded": d.embedded, "pg_version": pg_version, "loadavg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }

    def line(label, value, target):
        print(f"  {label:<44} {value!s:>10}   target {target}")

    print(f"SCIM benchmark ({'quick' if args.quick else 'full'}; {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.2f}; PostgreSQL {pg_version}{' embedded' if d.embedded else ''})")
    line(f"POST /Users, {CLIENTS} clients, {args.creates} users: req/s", res["creates_per_s"], ">= 1000")
    line("  p50 ms", res["create_p50_ms"], "-")
    line("  p99 ms", res["create_p99_ms"], "<= 100")
    line("  baseline (bare aiohttp + asyncpg INSERT): req/s", res["baseline_per_s"], "(same run, same load)")
    line("  baseline p50 / p99 ms", f"{res['baseline_p50_ms']}/{res['baseline_p99_ms']}", "-")
    line("  ratio to baseline", res["ratio"], "-")
    line("  CPU s server / PostgreSQL / load generator",
         f"{res['server_cpu_s']}/{res['postgres_cpu_s']}/{res['loadgen_cpu_s']}", "-")
    line("  baseline CPU s server / PostgreSQL / loadgen",
         f"{res['baseline_server_cpu_s']}/{res['baseline_postgres_cpu_s']}/{res['baseline_loadgen_cpu_s']}", "-")
    for k, target in (("eq", "<= 10"), ("sw", "<= 30"), ("co", "<= 30"), ("or", "<= 30")):
        line(f"GET /Users?filter= {k}, {args.users} users, {args.filter_clients} client(s): p50 ms"[:44],
             res[f"{k}_p50_ms"], "-")
        line(f"  p99 ms  ({filters[k]['example']})"[:44], res[f"{k}_p99_ms"], target)
        if args.filter_clients_loaded:
            f = filters[k]
            line(f"  at {args.filter_clients_loaded} clients: req/s, p50/p99 ms",
                 f"{f['loaded_per_s']} {f['loaded_p50']}/{f['loaded_p99']}", "(information)")
    line(f"/Bulk onboarding of {args.bulk} users: s", res["bulk_s"], f"<= {10 * args.bulk / 10_000:g}")
    if seeded:
        line(f"seeding {seeded} more through /Bulk ({BULK_CHUNK}/request): users/s", res["seed_users_per_s"],
             f"(information; per request {chunk_rates[0]} .. {chunk_rates[-1]})")
    line(f"member PATCH +{args.add} into {args.big} vs {args.small}: ms",
         f"{res['add_to_big_ms']}/{res['add_to_small_ms']}", "-")
    line("  member_patch_ratio", res["member_patch_ratio"], "<= 1.5")
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    asyncio.run(main())
