"""The CLI and the benchmarks run for real (benchmarks in --quick mode, so they never rot)."""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_bench_append_quick():
    p = run("scripts/bench_append.py", "--quick")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    for k in ("events_per_s", "append_p99_ms", "baseline_per_s", "ratio"):
        assert res[k] > 0
    assert res["pg_settings"]["synchronous_commit"] == "on"


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory, dsns):
    # the CLI runs as its own process against the test database
    if dsns.embedded:
        from urllib.parse import urlsplit
        return {"SEATLEDGER_DATABASE": urlsplit(dsns.migrate).path.lstrip("/")}
    return {"SEATLEDGER_DATABASE_URL": dsns.migrate}


def test_cli_tenant_create_and_verify(cli_env):
    p = run("-m", "api.cli", "tenant", "create", "cli-tenant", "--timezone", "Europe/Paris", "--json", env=cli_env)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["tenant"] == "cli-tenant" and out["scim_url"].endswith("/scim/v2/cli-tenant")
    assert out["token"].startswith("slt_") and len(out["token"]) > 43
    p = run("-m", "api.cli", "token", "create", "cli-tenant", "--scope", "auditor", "--json", env=cli_env)
    assert p.returncode == 0, p.stderr
    tid = json.loads(p.stdout)["token_id"]
    p = run("-m", "api.cli", "token", "revoke", "cli-tenant", tid, env=cli_env)
    assert p.returncode == 0 and "revoked" in p.stdout
    p = run("-m", "api.cli", "token", "create", "no-such-tenant", "--scope", "scim", env=cli_env)
    assert p.returncode == 2 and "no such tenant" in p.stderr
    p = run("-m", "api.cli", "tenant", "create", "Bad Name!", env=cli_env)
    assert p.returncode == 2 and "tenant ids" in p.stderr
    p = run("-m", "api.cli", "verify", "--tenant", "cli-tenant", env=cli_env)
    assert p.returncode == 0, p.stderr
    assert "chain intact through sequence 4" in p.stdout
    p = run("-m", "api.cli", "verify", "--tenant", "cli-tenant", "--expect-head", "1:" + "ab" * 32, env=cli_env)
    assert p.returncode == 1 and "recorded head" in p.stdout


async def test_migrations_are_safe_twice_and_concurrently(dsns):
    import asyncio
    import uuid as _uuid
    import asyncpg
    from ledger import db
    from ledger.migrate import migrate
    name = "sl_mig_" + _uuid.uuid4().hex[:8]
    await db.ensure_database(dsns.migrate, name)
    target = db.with_database(dsns.migrate, name)
    try:
        first, second = await asyncio.gather(migrate(target), migrate(target))
        assert sorted(first + second) == sorted(set(first + second)), "each file applied once"
        assert len(first + second) >= 9
        assert await migrate(target) == []
    finally:
        admin = await asyncpg.connect(db.with_database(dsns.migrate, "postgres"))
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def test_demo_serves_and_prints_how_to_reach_it(cli_env, tmp_path):
    import socket
    import time
    import urllib.request
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    proc = subprocess.Popen([sys.executable, "-m", "api.cli", "demo", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **cli_env})
    printed: list[str] = []
    checked: set[str] = set()
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    assert json.loads(r.read())["status"] == "ok"
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError("demo did not come up")
        # the printed history queries answer, before and after the correction
        while not any("# the SCIM User as it was then" in line for line in printed):
            line = proc.stdout.readline()
            assert line, "the demo stopped printing before its history queries"
            printed.append(line)
        for line in printed:
            for marker, key in (("# before the correction", "holders"),
                                ("# the same instant, after the correction", "holders"),
                                ("# the SCIM User as it was then", "userName")):
                if marker not in line:
                    continue
                token = re.search(r"Bearer (slt_[^']+)'", line).group(1)
                url = re.search(r"'(http://[^']+)'", line).group(1)
                req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
                with urllib.request.urlopen(req, timeout=10) as r:
                    assert r.status == 200 and key in json.loads(r.read()), line
                checked.add(marker)
        assert len(checked) == 3, checked
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    out = "".join(printed) + out
    assert proc.returncode == 0, err
    assert "/scim/v2/demo" in out and "auditor token:" in out and "slt_" in out
    assert "seeded just now through the HTTP API" in out, out


def test_bench_licences_quick():
    p = run("scripts/bench_licences.py", "--quick", timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    for k in ("creates_per_s", "creates_rules_per_s", "checks_per_s", "check_p99_ms", "baseline_per_s"):
        assert res[k] > 0
    assert res["rule_holders"] > 0, "the three rules assigned seats"


def test_bench_scim_quick():
    p = run("scripts/bench_scim.py", "--quick", timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    for k in ("creates_per_s", "create_p99_ms", "baseline_per_s", "ratio", "eq_p99_ms", "sw_p99_ms", "co_p99_ms",
              "or_p99_ms", "bulk_10k_s", "member_patch_ratio", "server_cpu_s", "postgres_cpu_s", "loadgen_cpu_s"):
        assert res[k] > 0, k
    assert "target" in p.stdout


def test_bench_validation_quick():
    p = run("scripts/bench_validation.py", "--quick")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["ours_us"] > 0 and res["scim2_models_us"] > 0
