"""Tamper evidence: verify catches every kind of change, erasure keeps the chain valid."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from ledger import canonical
from ledger.erasure import erase
from ledger.events import NewEvent
from ledger.store import StreamChange
from ledger.verify import verify_tenant
from toy_domain import Noted, PersonNamed


async def seed(store, tenant, n=6):
    for i in range(n):
        await store.append(tenant, [StreamChange(f"s{i % 2}", None, [NewEvent(Noted(text=f"e{i}", n=i))])],
                           {"actor": "alice", "source": "admin"})


async def verify(app_pool, tenant, **kw):
    async with app_pool.acquire() as conn:
        return await verify_tenant(conn, tenant, **kw)


async def tamper(pg_pool, sql, *args):
    """As an attacker with superuser access would: triggers off, then edit."""
    async with pg_pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(sql, *args)


async def test_intact_chain_verifies(store, app_pool, tenant):
    await seed(store, tenant)
    rep = await verify(app_pool, tenant)
    assert rep.ok and rep.events == 6 and rep.head_seq == 6
    assert rep.head_hash == (await store.head(tenant))[1].hex()


@pytest.mark.parametrize("what,sql", [
    ("column data", "UPDATE events SET data = jsonb_set(data, '{text}', '\"x\"') WHERE tenant_id = $1 AND seq = 3"),
    ("column metadata", "UPDATE events SET metadata = jsonb_set(metadata, '{actor}', '\"mallory\"') WHERE tenant_id = $1 AND seq = 3"),
    ("column effective_us", "UPDATE events SET effective_at = effective_at - interval '1 day' WHERE tenant_id = $1 AND seq = 3"),
    ("column recorded_us", "UPDATE events SET recorded_at = recorded_at + interval '1 microsecond' WHERE tenant_id = $1 AND seq = 3"),
    ("column type", "UPDATE events SET type = 'ToySlotTaken' WHERE tenant_id = $1 AND seq = 3"),
    ("column stream", "UPDATE events SET stream = 's9' WHERE tenant_id = $1 AND seq = 3"),
    ("column stream_version", "UPDATE events SET stream_version = 9 WHERE tenant_id = $1 AND seq = 3"),
    ("column schema_version", "UPDATE events SET schema_version = 2 WHERE tenant_id = $1 AND seq = 3"),
    ("column idempotency_key", "UPDATE events SET idempotency_key = 'k' WHERE tenant_id = $1 AND seq = 3"),
    ("column metadata", "UPDATE events SET metadata = metadata || '{\"via\": \"x\"}' WHERE tenant_id = $1 AND seq = 3"),
    ("column data", "UPDATE events SET data = jsonb_set(data, '{n}', '20') WHERE tenant_id = $1 AND seq = 3"),
    ("column data", "UPDATE events SET data = data - 'n' WHERE tenant_id = $1 AND seq = 3"),
    ("encoding", "UPDATE events SET encoding = 2 WHERE tenant_id = $1 AND seq = 3"),
    ("prev_hash", "UPDATE events SET prev_hash = sha256(prev_hash) WHERE tenant_id = $1 AND seq = 3"),
    ("hash", "UPDATE events SET hash = sha256(hash) WHERE tenant_id = $1 AND seq = 3"),
    ("hash", "UPDATE events SET canonical = convert_to(replace(convert_from(canonical, 'UTF8'), 'e2', 'e7'), 'UTF8') WHERE tenant_id = $1 AND seq = 3"),
    ("sequence", "DELETE FROM events WHERE tenant_id = $1 AND seq = 3"),
])
async def test_each_tamper_kind_is_caught(store, app_pool, pg_pool, tenant, what, sql):
    await seed(store, tenant)
    await tamper(pg_pool, sql, tenant)
    rep = await verify(app_pool, tenant)
    assert not rep.ok
    assert rep.broken.seq == 3 and rep.broken.what == what, str(rep.broken)


async def test_reordered_rows_are_caught(store, app_pool, pg_pool, tenant):
    await seed(store, tenant)
    await tamper(pg_pool, """UPDATE events SET seq = CASE seq WHEN 2 THEN 1004 ELSE 1002 END
                             WHERE tenant_id = $1 AND seq IN (2, 4)""", tenant)
    await tamper(pg_pool, "UPDATE events SET seq = seq - 1000 WHERE tenant_id = $1 AND seq > 1000", tenant)
    rep = await verify(app_pool, tenant)
    assert not rep.ok and rep.broken.seq == 2


async def test_inserted_row_is_caught(store, app_pool, pg_pool, tenant):
    await seed(store, tenant)
    await tamper(pg_pool, """INSERT INTO events (tenant_id, seq, stream, stream_version, type, schema_version, data,
                 metadata, effective_at, recorded_at, encoding, canonical, prev_hash, hash)
                 SELECT tenant_id, 7, stream, 99, type, schema_version, data, metadata, effective_at, recorded_at,
                        encoding, canonical, prev_hash, hash FROM events WHERE tenant_id = $1 AND seq = 6""", tenant)
    rep = await verify(app_pool, tenant)
    assert not rep.ok and rep.broken.seq == 7


async def test_forged_rehashed_chain_caught_against_recorded_head(store, app_pool, pg_pool, tenant):
    await seed(store, tenant)
    seq, h = await store.head(tenant)
    recorded_head = (seq, h.hex())
    # the forger rewrites event 2 and recomputes every hash after it, and the head row too
    async with pg_pool.acquire() as conn:
        rows = await conn.fetch("SELECT seq, canonical FROM events WHERE tenant_id = $1 ORDER BY seq", tenant)
    prev = canonical.GENESIS
    async with pg_pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            for r in rows:
                canon = bytes(r["canonical"])
                if r["seq"] == 2:
                    canon = canon.replace(b'"e1"', b'"eX"')
                    await conn.execute("UPDATE events SET data = jsonb_set(data, '{text}', '\"eX\"') "
                                       "WHERE tenant_id = $1 AND seq = 2", tenant)
                h2 = canonical.chain(prev, canon)
                await conn.execute("UPDATE events SET canonical = $3, prev_hash = $4, hash = $5 "
                                   "WHERE tenant_id = $1 AND seq = $2", tenant, r["seq"], canon, prev, h2)
                prev = h2
            await conn.execute("UPDATE tenant_heads SET hash = $2 WHERE tenant_id = $1", tenant, prev)
    assert (await verify(app_pool, tenant)).ok, "internally consistent forgery"
    rep = await verify(app_pool, tenant, expect_head=recorded_head)
    assert not rep.ok and rep.broken.what == "recorded head" and rep.broken.seq == 6


async def test_head_beyond_chain_is_reported(store, app_pool, tenant):
    await seed(store, tenant, 2)
    rep = await verify(app_pool, tenant, expect_head=(5, "00" * 32))
    assert not rep.ok and "before" in rep.broken.found


async def test_erasure_keeps_chain_valid_and_hides_personal_data(store, app_pool, tenant):
    ev = PersonNamed(person="u9", email="grace@example.com", display="Grace")
    await store.append(tenant, [StreamChange("user-u9", 0, [NewEvent(ev)])])
    await seed(store, tenant, 2)
    assert (await store.read_stream(tenant, "user-u9"))[0].data["email"] == "grace@example.com"
    assert await erase(store, tenant, "u9") is True
    got = (await store.read_stream(tenant, "user-u9"))[0]
    assert got.erased and "email" not in got.data and got.data["person"] == "u9"
    assert got.decoded().email is None
    rep = await verify(app_pool, tenant)
    assert rep.ok and rep.events == 4      # + the SubjectErased event
    types = [e.type for e in await store.read_tenant(tenant)]
    assert types[-1] == "SubjectErased"


async def test_erased_subject_cannot_get_new_personal_data(store, tenant):
    from ledger.pii import ErasedSubject
    await store.append(tenant, [StreamChange("user-z", 0, [NewEvent(PersonNamed(person="z", email="z@x"))])])
    await erase(store, tenant, "z")
    with pytest.raises(ErasedSubject):
        await store.append(tenant, [StreamChange("user-z", None, [NewEvent(PersonNamed(person="z", email="z@y"))])])
