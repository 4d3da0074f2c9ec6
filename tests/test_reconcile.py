"""Reconciliation: each drift kind injected, reported, fixed by compensating events; then clean."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from ledger.licence_admin import AddRule, CreatePool, DefineProduct
from ledger.reconcile import reconcile
from test_licence_admin import add_users, seats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


async def setup(bus, pg_pool, tenant, n_seats=3, end=None):
    await add_users(pg_pool, tenant, {"a": {}, "b": {}})
    now = datetime.now(timezone.utc)
    await bus.execute(tenant, DefineProduct("x", "X"))
    await bus.execute(tenant, CreatePool("p1", "x", n_seats, now - timedelta(days=1), end or now + timedelta(days=30)))
    await bus.execute(tenant, AddRule("p1", "all", 1, "all_active"))
    assert await seats(pg_pool, tenant) == {"a": "active", "b": "active"}


@pytest.mark.parametrize("kind,inject,after", [
    ("held_by_inactive_user",
     "UPDATE scim_resources SET doc = doc || '{\"active\": false}' WHERE tenant_id = $1 AND id = 'a'", {"b": "active"}),
    ("held_by_deleted_user", "DELETE FROM scim_resources WHERE tenant_id = $1 AND id = 'a'", {"b": "active"}),
    ("held_without_grant", "DELETE FROM licence_rules WHERE tenant_id = $1", {}),
    ("eligible_without_seat", "DELETE FROM licence_seats WHERE tenant_id = $1 AND user_id = 'a'",
     {"a": "active", "b": "active"}),
])
async def test_drift_is_reported_fixed_and_gone(bus, pg_pool, app_pool, tenant, store, kind, inject, after):
    await setup(bus, pg_pool, tenant)
    await pg_pool.execute(inject, tenant)
    drift, _ = await reconcile(bus, app_pool, tenant, fix=False)
    assert kind in {d.kind for d in drift}, drift
    drift, appended = await reconcile(bus, app_pool, tenant, fix=True)
    assert appended >= 1
    assert await seats(pg_pool, tenant) == after
    assert (await reconcile(bus, app_pool, tenant, fix=False))[0] == []
    last = (await store.read_stream(tenant, "pool-p1"))[-1]
    assert last.metadata["source"] == "reconciler" and kind in last.metadata["reason"]


async def test_over_allocation_and_missed_expiry(bus, pg_pool, app_pool, tenant):
    await setup(bus, pg_pool, tenant, n_seats=2, end=datetime.now(timezone.utc) + timedelta(milliseconds=500))
    await pg_pool.execute("UPDATE licence_pools SET terms = jsonb_set(terms, '{seats}', '1') WHERE tenant_id = $1",
                          tenant)
    drift, _ = await reconcile(bus, app_pool, tenant, fix=False)
    assert "over_allocated" in {d.kind for d in drift}
    await asyncio.sleep(0.6)                       # the term ends; no scheduler ran
    drift, _ = await reconcile(bus, app_pool, tenant, fix=True)
    assert "held_past_term_end" in {d.kind for d in drift}
    assert await seats(pg_pool, tenant) == {}
    assert (await reconcile(bus, app_pool, tenant, fix=False))[0] == []


def test_cli_reconcile_json(dsns, tmp_path):
    from urllib.parse import urlsplit
    env = {**os.environ}
    if dsns.embedded:
        env["SEATLEDGER_DATABASE"] = urlsplit(dsns.migrate).path.lstrip("/")
    else:
        env["SEATLEDGER_DATABASE_URL"] = dsns.migrate
    p = subprocess.run([sys.executable, "-m", "api.cli", "reconcile", "--tenant", "nobody-here", "--json"],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["drift"] == []
