"""The server-side verifier (ledger.verify.verify_tenant) against the Python reference
(verify_tenant_py): every tamper kind of tests/test_verify.py gives the same Break with both, across
chunk boundaries; rows the SQL filter refuses or cannot parse are decided by the reference."""
from __future__ import annotations

import pytest

from ledger import canonical
from ledger.verify import verify_tenant, verify_tenant_py
from test_verify import seed, tamper
from test_verify import test_each_tamper_kind_is_caught as _kinds

KINDS = [m.args for m in _kinds.pytestmark if m.name == "parametrize"][0][1]
VERIFIERS = {"sql": verify_tenant, "sql-chunk2": lambda c, t, **kw: verify_tenant(c, t, chunk=2, **kw),
             "python": verify_tenant_py}


@pytest.fixture(params=list(VERIFIERS))
def verifier(request):
    return VERIFIERS[request.param]


async def run(app_pool, verifier, tenant, **kw):
    async with app_pool.acquire() as conn:
        return await verifier(conn, tenant, **kw)


async def rehash(pg_pool, tenant, edit):
    """Rewrite canonical bytes through `edit(seq, bytes) -> bytes` and recompute the chain and head."""
    async with pg_pool.acquire() as conn:
        rows = await conn.fetch("SELECT seq, canonical FROM events WHERE tenant_id = $1 ORDER BY seq", tenant)
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            prev = canonical.GENESIS
            for r in rows:
                canon = edit(r["seq"], bytes(r["canonical"]))
                h = canonical.chain(prev, canon)
                await conn.execute("UPDATE events SET canonical = $3, prev_hash = $4, hash = $5 "
                                   "WHERE tenant_id = $1 AND seq = $2", tenant, r["seq"], canon, prev, h)
                prev = h
            await conn.execute("UPDATE tenant_heads SET hash = $2 WHERE tenant_id = $1", tenant, prev)


async def test_intact(store, app_pool, tenant, verifier):
    await seed(store, tenant, 7)
    rep = await run(app_pool, verifier, tenant)
    assert rep.ok and (rep.events, rep.head_seq) == (7, 7)
    assert rep.head_hash == (await store.head(tenant))[1].hex()
    assert (await run(app_pool, verifier, "t-none")).ok


@pytest.mark.parametrize("what,sql", KINDS)
async def test_same_break_for_each_tamper_kind(store, app_pool, pg_pool, tenant, verifier, what, sql):
    await seed(store, tenant, 7)
    await tamper(pg_pool, sql, tenant)
    rep = await run(app_pool, verifier, tenant)
    ref = await run(app_pool, verify_tenant_py, tenant)
    assert not rep.ok and rep.broken.seq == 3 and rep.broken.what == what, str(rep.broken)
    assert rep == ref


async def test_reordered_and_inserted(store, app_pool, pg_pool, tenant, verifier):
    await seed(store, tenant)
    await tamper(pg_pool, "UPDATE events SET seq = CASE seq WHEN 2 THEN 1004 ELSE 1002 END "
                          "WHERE tenant_id = $1 AND seq IN (2, 4)", tenant)
    await tamper(pg_pool, "UPDATE events SET seq = seq - 1000 WHERE tenant_id = $1 AND seq > 1000", tenant)
    rep = await run(app_pool, verifier, tenant)
    assert not rep.ok and rep.broken.seq == 2 and rep == await run(app_pool, verify_tenant_py, tenant)


async def test_recorded_head(store, app_pool, pg_pool, tenant, verifier):
    await seed(store, tenant, 7)
    async with app_pool.acquire() as conn:
        h3 = bytes(await conn.fetchval("SELECT hash FROM events WHERE tenant_id = $1 AND seq = 3", tenant)).hex()
    for seq in (1, 2, 3, 6, 7):
        async with app_pool.acquire() as conn:
            h = bytes(await conn.fetchval("SELECT hash FROM events WHERE tenant_id = $1 AND seq = $2", tenant, seq))
        assert (await run(app_pool, verifier, tenant, expect_head=(seq, h.hex().upper()))).ok
    rep = await run(app_pool, verifier, tenant, expect_head=(4, h3))
    assert not rep.ok and (rep.broken.seq, rep.broken.what, rep.events, rep.head_seq) == (4, "recorded head", 4, 4)
    assert rep == await run(app_pool, verify_tenant_py, tenant, expect_head=(4, h3))
    rep = await run(app_pool, verifier, tenant, expect_head=(9, h3))
    assert not rep.ok and rep.broken.found == "chain ends before it"
    # a forged, internally consistent chain: caught against the head, not otherwise
    await rehash(pg_pool, tenant, lambda s, b: b.replace(b'"e4"', b'"eX"'))
    await tamper(pg_pool, "UPDATE events SET data = jsonb_set(data, '{text}', '\"eX\"') WHERE tenant_id = $1 AND seq = 5",
                 tenant)
    assert (await run(app_pool, verifier, tenant)).ok
    rep = await run(app_pool, verifier, tenant, expect_head=(6, h3))
    assert not rep.ok and (rep.broken.seq, rep.broken.what) == (6, "recorded head")


async def test_bytes_the_server_cannot_parse_go_to_the_reference(store, app_pool, pg_pool, tenant, verifier):
    await seed(store, tenant, 7)
    await rehash(pg_pool, tenant, lambda s, b: b.replace(b'"e3"', b'"e\xff"') if s == 4 else b)
    rep = await run(app_pool, verifier, tenant)
    assert not rep.ok and (rep.broken.seq, rep.broken.what) == (4, "canonical bytes")
    assert rep == await run(app_pool, verify_tenant_py, tenant)


async def test_where_the_sql_filter_is_stricter_the_reference_decides(store, app_pool, pg_pool, tenant, verifier):
    """json.loads makes true == 1 (the reference accepts it); jsonb does not: the chunk is re-checked."""
    await seed(store, tenant, 7)
    await rehash(pg_pool, tenant, lambda s, b: b.replace(b'"n":1', b'"n":true') if s == 2 else b)
    rep = await run(app_pool, verifier, tenant)
    assert rep.ok and rep.events == 7 and rep == await run(app_pool, verify_tenant_py, tenant)


async def test_an_intact_chain_never_needs_the_reference(store, app_pool, tenant, monkeypatch):
    from ledger import verify
    await seed(store, tenant, 7)
    async with app_pool.acquire() as conn:
        h3 = bytes(await conn.fetchval("SELECT hash FROM events WHERE tenant_id = $1 AND seq = 3", tenant)).hex()

    def no(*a, **k):
        raise AssertionError("the reference was needed")
    monkeypatch.setattr(verify._Checker, "check", no)
    for chunk in (2, 3, 50_000):
        async with app_pool.acquire() as conn:
            assert (await verify_tenant(conn, tenant, chunk=chunk)).ok
            assert (await verify_tenant(conn, tenant, chunk=chunk, expect_head=(3, h3))).ok
