"""The CLI and the benchmarks run for real (benchmarks in --quick mode, so they never rot)."""
from __future__ import annotations

import json
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
