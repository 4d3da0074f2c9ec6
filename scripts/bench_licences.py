#!/usr/bin/env python3
"""Licence engine benchmark: SCIM creates/s with three active licence rules vs none (same run), and
entitlement checks/s with p50/p99 at 16 connections, beside the same load on /healthz (aiohttp + one
SELECT: the framework's ceiling) measured in the same run.

    python scripts/bench_licences.py [--users 100000] [--creates 3000] [--checks 50000] [--quick]
                                     [--creates-only] [--server-profile FILE]

With wrk the checks and /healthz run in alternate turns (rates averaged, the worst turn's
percentiles), so that load from elsewhere on the machine weighs on both alike.

The service runs as its own process (`seatledger serve`), the load generator here. Reads
SEATLEDGER_DATABASE_URL (embedded PostgreSQL when unset). Last line: one JSON object.
Targets (2 cores): rules_overhead <= 0.3; >= 5,000 checks/s with p99 <= 5 ms at 100,000 users.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import asyncpg  # noqa: E402
from aiohttp import ClientSession, TCPConnector  # noqa: E402

from ledger import db  # noqa: E402
from ledger.migrate import migrate  # noqa: E402

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


from benchkit import free_port, load, pct  # noqa: E402


async def setup_tenant(rt, tenant: str, rules: bool, seats: int) -> dict:
    from ledger.licence_admin import AddRule, CreatePool, DefineProduct
    from ledger.tenancy import CreateTenant
    from ledger.tokens import IssueToken
    from datetime import datetime, timedelta, timezone
    await rt.bus.execute(tenant, CreateTenant(tenant, tenant))
    toks = {}
    for scope in ("scim", "admin", "entitlement"):
        cmd = IssueToken(scope)
        await rt.bus.execute(tenant, cmd)
        toks[scope] = cmd.token
    if rules:
        now = datetime.now(timezone.utc)
        await rt.bus.execute(tenant, DefineProduct("design-pro", "Design Pro"))
        await rt.bus.execute(tenant, CreatePool("p1", "design-pro", seats, now - timedelta(days=1), now + timedelta(days=365)))
        await rt.bus.execute(tenant, AddRule("p1", "all", 30, "all_active"))
        await rt.bus.execute(tenant, AddRule("p1", "design", 10, "filter", filter=f'{ENT}:department eq "Design"'))
        await rt.bus.execute(tenant, AddRule("p1", "admins", 20, "group", group_id="g-admins"))
    return toks


async def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100_000, help="users behind the entitlement checks")
    ap.add_argument("--creates", type=int, default=3000, help="SCIM creates per variant")
    ap.add_argument("--checks", type=int, default=50_000)
    ap.add_argument("--seconds", type=int, default=15, help="wrk duration per phase")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--server-profile", metavar="FILE", help="run the service under cProfile, stats to FILE")
    ap.add_argument("--creates-only", action="store_true", help="skip the entitlement phase")
    args = ap.parse_args()
    if args.quick:
        args.users, args.creates, args.checks = 500, 300, 1000

    dbname = f"seatledger_bench_{uuid.uuid4().hex[:8]}"
    d = await db.resolve(database=dbname)
    await migrate(d.migrate)
    env = {**os.environ}
    if d.embedded:
        env["SEATLEDGER_DATABASE"] = dbname
    else:
        env["SEATLEDGER_DATABASE_URL"] = d.migrate
    env["SEATLEDGER_SCHEDULER_SECONDS"] = "3600"
    # measure the service's capacity, not the per-tenant rate limiter (default 2,000/s)
    env["SEATLEDGER_RATE_PER_S"] = env["SEATLEDGER_RATE_BURST"] = "1000000"
    port = free_port()
    profile = ["-m", "cProfile", "-o", os.path.abspath(args.server_profile)] if args.server_profile else []
    server = subprocess.Popen([sys.executable, *profile, "-m", "api.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    from api.runtime import Runtime
    rt = None
    try:
        rt = await Runtime.start(dbname if d.embedded else None, run_migrations=False, pool_size=8) \
            if d.embedded else await _runtime_for(d)
        base = f"http://127.0.0.1:{port}"
        async with ClientSession(connector=TCPConnector(limit=64)) as s:
            for _ in range(200):
                try:
                    async with s.get(base + "/healthz") as r:
                        if r.status == 200:
                            break
                except OSError:
                    await asyncio.sleep(0.1)
            plain = await setup_tenant(rt, "bench-norules", False, 0)
            ruled = await setup_tenant(rt, "bench-rules", True, args.creates * 2)

            async def creator(tenant, tok, prefix):
                h = {"Authorization": f"Bearer {tok}", "Content-Type": "application/scim+json"}

                async def create(i):
                    body = {"schemas": [USER, ENT], "userName": f"{prefix}{i}@bench.example",
                            "name": {"givenName": "B", "familyName": str(i)}, "active": True,
                            "emails": [{"value": f"{prefix}{i}@bench.example", "type": "work", "primary": True}],
                            ENT: {"department": "Design" if i % 3 == 0 else "Sales"}}
                    async with s.post(f"{base}/scim/v2/{tenant}/Users", data=json.dumps(body), headers=h) as r:
                        await r.read()
                        assert r.status == 201, r.status
                return create

            # warm-up, then the two variants interleaved twice to even out noise
            await load(50, 8, await creator("bench-norules", plain["scim"], "w"))
            await load(50, 8, await creator("bench-rules", ruled["scim"], "w"))
            res_plain, res_rules = [], []
            for half in ("a", "b"):
                n = args.creates // 2
                res_plain.append(await load(n, 32, await creator("bench-norules", plain["scim"], half)))
                res_rules.append(await load(n, 32, await creator("bench-rules", ruled["scim"], half)))
            plain_s = sum(r[0] for r in res_plain)
            rules_s = sum(r[0] for r in res_rules)
            n_each = (args.creates // 2) * 2
            creates_plain = n_each / plain_s
            creates_rules = n_each / rules_s
            lat_rules = [x for r in res_rules for x in r[1]]
            async with rt.pool.acquire() as conn:
                held = await conn.fetchval("SELECT count(*) FROM licence_seats WHERE tenant_id = 'bench-rules' "
                                           "AND state = 'active'")

            checks_per_s = check_p50 = check_p99 = base_per_s = base_p99 = gen = None
            if not args.creates_only:
                checks_per_s, check_p50, check_p99, base_per_s, base_p99, gen = await entitlement_phase(
                    rt, d, s, base, args)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        if rt is not None:
            await rt.close()
        admin = await asyncpg.connect(db.with_database(d.migrate, "postgres"))
        await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await admin.close()

    res = {
        "creates_per_s": round(creates_plain), "creates_rules_per_s": round(creates_rules),
        "rules_overhead": round(1 - creates_rules / creates_plain, 3), "create_p50_ms": pct(lat_rules, 0.5),
        "create_p99_ms": pct(lat_rules, 0.99), "rule_holders": held,
        "users": args.users, "checks_per_s": checks_per_s and round(checks_per_s),
        "check_p50_ms": check_p50, "check_p99_ms": check_p99,
        "baseline_per_s": base_per_s and round(base_per_s), "baseline_p99_ms": base_p99,
        "ratio": checks_per_s and round(checks_per_s / base_per_s, 2), "load_generator": gen,
        "embedded": d.embedded,
    }
    print(f"SCIM creates: {res['creates_per_s']}/s without rules, {res['creates_rules_per_s']}/s with 3 rules "
          f"(overhead {res['rules_overhead']}, target <= 0.3); p99 {res['create_p99_ms']} ms")
    if checks_per_s is not None:
        print(f"entitlement checks ({args.users} users): {res['checks_per_s']}/s p50 {res['check_p50_ms']} ms "
              f"p99 {res['check_p99_ms']} ms (target >= 5000/s, p99 <= 5 ms)")
        print(f"baseline /healthz same load: {res['baseline_per_s']}/s p99 {res['baseline_p99_ms']} ms")
    print(json.dumps(res))
    return res


async def entitlement_phase(rt, d, s, base: str, args):
    """Checks/s and p50/p99 for a tenant of `args.users` users each holding a seat, beside /healthz
    under the same load: (checks/s, p50, p99, baseline/s, baseline p99, load generator)."""
    ent = await setup_tenant(rt, "bench-ent", True, args.users + 10)
    await seed_users(rt, "bench-ent", args.users)
    # what autovacuum does in production (the CI/dev PostgreSQL 15 here runs without it)
    a = await asyncpg.connect(d.migrate)
    await a.execute("ANALYZE")
    await a.close()
    hent = {"Authorization": f"Bearer {ent['entitlement']}"}
    rnd = random.Random(7)
    names = [f"e{rnd.randrange(args.users)}@bench.example" for _ in range(args.checks)]

    async def check(i):
        async with s.get(f"{base}/v1/bench-ent/entitlements/{names[i % len(names)]}?product=design-pro",
                         headers=hent) as r:
            body = await r.read()
            assert r.status == 200 and b'"allowed":true' in body, body

    async def health(i):
        async with s.get(f"{base}/healthz") as r:
            await r.read()

    # correctness, and a warm-up through aiohttp long enough for the service's caches (connections,
    # prepared statements, the tenant's in-memory entitlement table) to be in place, as in production
    await load(3000, 16, check)
    if shutil.which("wrk") and not args.quick:
        gen = "wrk, 16 connections, 2 threads"
        lua = (f'local h = {{["Authorization"] = "Bearer {ent["entitlement"]}"}}\n'
               f'request = function()\n'
               f'  return wrk.format("GET", "/v1/bench-ent/entitlements/e" .. math.random(0, {args.users - 1}) '
               f'.. "@bench.example?product=design-pro", h)\nend\n')
        # alternated, so that noise from elsewhere on the machine hits both alike
        checks_per_s, check_p50, check_p99, base_per_s, base_p99 = alternate_wrk(
            base, lua, 'request = function() return wrk.format("GET", "/healthz") end\n', args.seconds)
    else:
        gen = "aiohttp, 16 connections"
        check_s, check_lat = await load(args.checks, 16, check)
        base_s, base_lat = await load(args.checks, 16, health)
        checks_per_s, check_p50, check_p99 = args.checks / check_s, pct(check_lat, 0.5), pct(check_lat, 0.99)
        base_per_s, base_p99 = args.checks / base_s, pct(base_lat, 0.99)
    return checks_per_s, check_p50, check_p99, base_per_s, base_p99, gen


def alternate_wrk(base: str, lua: str, baseline_lua: str, seconds: int, rounds: int = 2):
    """wrk on the checks and on the baseline in turns, `rounds` times each, seconds/rounds per turn:
    (checks/s, p50 ms, p99 ms, baseline/s, baseline p99 ms) - rates averaged, percentiles the worst turn."""
    turn = max(1, seconds // rounds)
    checks, baseline = [], []
    for _ in range(rounds):
        checks.append(wrk_run(base, lua, turn))
        baseline.append(wrk_run(base, baseline_lua, turn))
    return (sum(c[0] for c in checks) / rounds, max(c[1] for c in checks), max(c[2] for c in checks),
            sum(b[0] for b in baseline) / rounds, max(b[2] for b in baseline))


def wrk_run(base: str, lua: str, seconds: int) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) from wrk with a Lua request script."""
    import re
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "-s", f.name, base + "/"],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    os.unlink(f.name)

    def ms(label):
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return round(v / 1000 if unit == "us" else v * 1000 if unit == "s" else v, 2)

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    if "Non-2xx" in out:
        raise RuntimeError("wrk saw non-2xx answers:\n" + out)
    return rps, ms("50"), ms("99")


async def _runtime_for(d):
    from api.runtime import Runtime
    from ledger.executor import CommandBus
    from ledger.store import EventStore
    pool = await db.create_pool(d.app, min_size=2, max_size=8)
    store = EventStore(pool)
    return Runtime(d, pool, store, CommandBus(store))


async def seed_users(rt, tenant: str, n: int) -> None:
    """Users through the real write path (directory commands: events, seats), 256 at a time."""
    from ledger.directory import CreateUser
    from ledger.scim.resource import normalize
    from ledger.scim.schema import default_user_schema
    rs = default_user_schema()

    async def one(i):
        doc = normalize({"schemas": [USER], "userName": f"e{i}@bench.example", "active": True}, rs)
        await rt.bus.execute(tenant, CreateUser(str(uuid.uuid4()), doc))

    for start in range(0, n, 512):
        await asyncio.gather(*[one(i) for i in range(start, min(n, start + 512))])


if __name__ == "__main__":
    asyncio.run(main())
