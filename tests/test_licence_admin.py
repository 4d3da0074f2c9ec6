"""Licence administration through the command bus, against a directory projection seeded directly."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from ledger.executor import CommandRejected
from ledger.licence_admin import (AddRule, AdminAssign, AdminRevoke, CancelPool, CreatePool, DefineProduct,
                                  Reevaluate, RemoveRule, RenewPool, ResizePool)

NOW = datetime.now(timezone.utc)


async def add_users(pg_pool, tenant, users: dict[str, dict], groups: dict[str, list[str]] | None = None):
    from ledger.scim.schema import casefold_doc, default_user_schema
    async with pg_pool.acquire() as conn:
        for uid, doc in users.items():
            doc = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": uid, **doc}
            await conn.execute(
                "INSERT INTO scim_resources (tenant_id, id, type, doc, doc_ci, version, created, last_modified) "
                "VALUES ($1, $2, 'User', $3::jsonb, $4::jsonb, 1, now(), now()) ON CONFLICT (tenant_id, id) "
                "DO UPDATE SET doc = EXCLUDED.doc, doc_ci = EXCLUDED.doc_ci", tenant, uid,
                orjson.dumps(doc).decode(), orjson.dumps(casefold_doc(doc, default_user_schema())).decode())
        for gid, members in (groups or {}).items():
            for m in members:
                await conn.execute("INSERT INTO group_members VALUES ($1, $2, $3, 'User') ON CONFLICT DO NOTHING",
                                   tenant, gid, m)


async def seats(pg_pool, tenant, pool="p1"):
    async with pg_pool.acquire() as conn:
        rows = await conn.fetch("SELECT user_id, state, grants FROM licence_seats WHERE tenant_id = $1 AND pool_id = $2",
                                tenant, pool)
    return {r["user_id"]: r["state"] for r in rows}


async def setup_pool(bus, tenant, seats=2, **kw):
    await bus.execute(tenant, DefineProduct("design-pro", "Design Pro"))
    await bus.execute(tenant, CreatePool("p1", "design-pro", seats, NOW - timedelta(days=1),
                                         kw.pop("term_end", NOW + timedelta(days=365)), **kw))


async def test_all_active_rule_assigns_until_full_then_queues(bus, pg_pool, tenant):
    await add_users(pg_pool, tenant, {"a": {}, "b": {}, "c": {}})
    await setup_pool(bus, tenant, 2)
    await bus.execute(tenant, AddRule("p1", "everyone", 10, "all_active"))
    s = await seats(pg_pool, tenant)
    assert sorted(s.values()) == ["active", "active", "waiting"]


async def test_deactivation_frees_a_seat_for_the_next_waiting(bus, pg_pool, tenant):
    await add_users(pg_pool, tenant, {"a": {}, "b": {}, "c": {}})
    await setup_pool(bus, tenant, 2)
    await bus.execute(tenant, AddRule("p1", "everyone", 10, "all_active"))
    before = await seats(pg_pool, tenant)
    waiting = next(u for u, st in before.items() if st == "waiting")
    holder = next(u for u, st in before.items() if st == "active")
    await add_users(pg_pool, tenant, {holder: {"active": False}})
    await bus.execute(tenant, Reevaluate("p1"))
    after = await seats(pg_pool, tenant)
    assert holder not in after and after[waiting] == "active"


async def test_group_and_filter_rules_and_removal(bus, pg_pool, tenant):
    ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    await add_users(pg_pool, tenant, {"a": {ent: {"department": "Design"}}, "b": {}, "c": {}},
                    {"g1": ["b", "a"]})
    await setup_pool(bus, tenant, 10)
    await bus.execute(tenant, AddRule("p1", "designers", 20, "filter", filter=f'{ent}:department eq "design"'))
    assert await seats(pg_pool, tenant) == {"a": "active"}
    await bus.execute(tenant, AddRule("p1", "g1", 30, "group", group_id="g1"))
    assert await seats(pg_pool, tenant) == {"a": "active", "b": "active"}
    await bus.execute(tenant, RemoveRule("p1", "designers"))          # a keeps its seat through g1
    assert await seats(pg_pool, tenant) == {"a": "active", "b": "active"}
    await bus.execute(tenant, RemoveRule("p1", "g1"))
    assert await seats(pg_pool, tenant) == {}


async def test_admin_assign_and_revoke(bus, pg_pool, tenant):
    await add_users(pg_pool, tenant, {"a": {}})
    await setup_pool(bus, tenant, 1)
    await bus.execute(tenant, AdminAssign("p1", "a"))
    assert await seats(pg_pool, tenant) == {"a": "active"}
    with pytest.raises(CommandRejected):
        await bus.execute(tenant, AdminAssign("p1", "ghost"))
    await bus.execute(tenant, AdminRevoke("p1", "a"))
    assert await seats(pg_pool, tenant) == {}


async def test_downsize_ends_most_recent_seats(bus, pg_pool, tenant, store):
    await add_users(pg_pool, tenant, {"a": {}, "b": {}, "c": {}})
    await setup_pool(bus, tenant, 3)
    for u in "abc":
        await bus.execute(tenant, AdminAssign("p1", u))
    await bus.execute(tenant, ResizePool("p1", 1))
    assert await seats(pg_pool, tenant) == {"a": "active", "b": "waiting", "c": "waiting"}
    evs = [e for e in await store.read_stream(tenant, "pool-p1") if e.type == "SeatReleased"]
    assert [(e.data["user_id"], e.data["policy"]) for e in evs] == [("c", "lifo"), ("b", "lifo")]


async def test_future_resize_does_not_act_before_its_instant(bus, pg_pool, tenant):
    await add_users(pg_pool, tenant, {"a": {}, "b": {}})
    await setup_pool(bus, tenant, 2)
    await bus.execute(tenant, AddRule("p1", "all", 1, "all_active"))
    await bus.execute(tenant, ResizePool("p1", 1, effective_at=NOW + timedelta(days=30)))
    assert sorted((await seats(pg_pool, tenant)).values()) == ["active", "active"]


async def test_expiry_is_recorded_with_the_term_end_instant(bus, pg_pool, tenant, store):
    await add_users(pg_pool, tenant, {"a": {}})
    end = datetime.now(timezone.utc) + timedelta(seconds=1)
    await setup_pool(bus, tenant, 1, term_end=end)
    await bus.execute(tenant, AddRule("p1", "all", 1, "all_active"))
    assert await seats(pg_pool, tenant) == {"a": "active"}
    await asyncio.sleep(1.2)
    await bus.execute(tenant, Reevaluate("p1"))
    assert await seats(pg_pool, tenant) == {}
    exp = [e for e in await store.read_stream(tenant, "pool-p1") if e.type == "LicenceExpired"]
    assert len(exp) == 1 and exp[0].effective_at == end and exp[0].recorded_at > end
    # renewal after the end: the rules re-assign
    await bus.execute(tenant, RenewPool("p1", end + timedelta(days=365)))
    assert await seats(pg_pool, tenant) == {"a": "active"}


async def test_cancel_ends_every_seat(bus, pg_pool, tenant):
    await add_users(pg_pool, tenant, {"a": {}})
    await setup_pool(bus, tenant, 1)
    await bus.execute(tenant, AddRule("p1", "all", 1, "all_active"))
    await bus.execute(tenant, CancelPool("p1"))
    assert await seats(pg_pool, tenant) == {}


@pytest.mark.parametrize("kw,field", [
    ({"seats": -1}, "seats"), ({"overage_policy": "maybe"}, "overage_policy"), ({"currency": "euro"}, "currency"),
    ({"billing_mode": "x"}, "billing_mode"), ({"product_id": "nope"}, "product_id"), ({"pool_id": "bad id!"}, "pool_id"),
])
async def test_pool_validation_names_the_field(bus, tenant, kw, field):
    await bus.execute(tenant, DefineProduct("design-pro", "Design Pro"))
    args = dict(pool_id="p1", product_id="design-pro", seats=1, term_start=NOW, term_end=NOW + timedelta(days=1))
    args.update(kw)
    with pytest.raises(CommandRejected) as e:
        await bus.execute(tenant, CreatePool(**args))
    assert e.value.extra.get("field") == field


async def test_bad_rule_filter_is_rejected(bus, tenant):
    await setup_pool(bus, tenant, 1)
    with pytest.raises(CommandRejected) as e:
        await bus.execute(tenant, AddRule("p1", "r", 1, "filter", filter="userName eq"))
    assert e.value.code == "invalidFilter"
