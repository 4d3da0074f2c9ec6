"""The server-side verifier (ledger.verify.verify_tenant) against the Python reference
(verify_tenant_py): every tamper kind of tests/test_verify.py gives the same Break with both, across
range boundaries and with ranges checked on several connections at once; rows the SQL filter refuses
or cannot parse are decided by the reference; on random tamperings both agree (hypothesis)."""
from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ledger import canonical
from ledger.verify import verify_tenant, verify_tenant_py
from test_verify import seed, tamper
from test_verify import test_each_tamper_kind_is_caught as _kinds

KINDS = [m.args for m in _kinds.pytestmark if m.name == "parametrize"][0][1]
VERIFIERS = {"sql": lambda c, t, pool, **kw: verify_tenant(c, t, **kw),
             "sql-chunk2": lambda c, t, pool, **kw: verify_tenant(c, t, chunk=2, **kw),
             "sql-chunk2-parallel": lambda c, t, pool, **kw: verify_tenant(c, t, chunk=2, pool=pool, workers=3, **kw),
             "python": lambda c, t, pool, **kw: verify_tenant_py(c, t, **kw)}


@pytest.fixture(params=list(VERIFIERS))
def verifier(request):
    return VERIFIERS[request.param]


async def run(app_pool, verifier, tenant, **kw):
    async with app_pool.acquire() as conn:
        return await verifier(conn, tenant, app_pool, **kw)


async def reference(app_pool, tenant, **kw):
    async with app_pool.acquire() as conn:
        return await verify_tenant_py(conn, tenant, **kw)


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
    ref = await reference(app_pool, tenant)
    assert not rep.ok and rep.broken.seq == 3 and rep.broken.what == what, str(rep.broken)
    assert rep == ref


async def test_reordered_and_inserted(store, app_pool, pg_pool, tenant, verifier):
    await seed(store, tenant)
    await tamper(pg_pool, "UPDATE events SET seq = CASE seq WHEN 2 THEN 1004 ELSE 1002 END "
                          "WHERE tenant_id = $1 AND seq IN (2, 4)", tenant)
    await tamper(pg_pool, "UPDATE events SET seq = seq - 1000 WHERE tenant_id = $1 AND seq > 1000", tenant)
    rep = await run(app_pool, verifier, tenant)
    assert not rep.ok and rep.broken.seq == 2 and rep == await reference(app_pool, tenant)


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
    assert rep == await reference(app_pool, tenant, expect_head=(4, h3))
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
    assert rep == await reference(app_pool, tenant)


async def test_where_the_sql_filter_is_stricter_the_reference_decides(store, app_pool, pg_pool, tenant, verifier):
    """json.loads makes true == 1 (the reference accepts it); jsonb does not: the chunk is re-checked."""
    await seed(store, tenant, 7)
    await rehash(pg_pool, tenant, lambda s, b: b.replace(b'"n":1', b'"n":true') if s == 2 else b)
    rep = await run(app_pool, verifier, tenant)
    assert rep.ok and rep.events == 7 and rep == await reference(app_pool, tenant)


async def test_an_intact_chain_never_needs_the_reference(store, app_pool, tenant, monkeypatch):
    from ledger import verify
    await seed(store, tenant, 7)
    async with app_pool.acquire() as conn:
        h3 = bytes(await conn.fetchval("SELECT hash FROM events WHERE tenant_id = $1 AND seq = 3", tenant)).hex()

    def no(*a, **k):
        raise AssertionError("the reference was needed")
    monkeypatch.setattr(verify._Checker, "check", no)
    for chunk in (2, 3, 50_000):
        for pool in (None, app_pool):
            async with app_pool.acquire() as conn:
                assert (await verify_tenant(conn, tenant, chunk=chunk, pool=pool)).ok
                assert (await verify_tenant(conn, tenant, chunk=chunk, pool=pool, expect_head=(3, h3))).ok


async def forge(pg_pool, tenant, seq, edit):
    """Rewrite event `seq` consistently: `edit(doc)` changes its decoded document, the canonical bytes
    and the data and metadata columns follow, and the chain is recomputed (a forger's rewrite)."""
    async with pg_pool.acquire() as conn:
        doc = __import__("json").loads(bytes(await conn.fetchval(
            "SELECT canonical FROM events WHERE tenant_id = $1 AND seq = $2", tenant, seq)))
    edit(doc)
    canon = canonical.dumps(doc)
    await rehash(pg_pool, tenant, lambda s, b: canon if s == seq else b)
    await tamper(pg_pool, "UPDATE events SET data = $3::jsonb, metadata = $4::jsonb WHERE tenant_id = $1 AND seq = $2",
                 tenant, seq, canonical.dumps(doc["data"]).decode(), canonical.dumps(doc["metadata"]).decode())


async def test_a_lookalike_of_the_scalars_inside_data_goes_to_the_reference(store, app_pool, pg_pool, tenant, verifier):
    """The filter splits the bytes where the scalars after `data` first occur; data that contains the
    same bytes (a nested object with those keys and values) makes it split too early: the server cannot
    parse the piece and the reference decides - the chain is intact."""
    await seed(store, tenant, 7)

    def lookalike(doc):
        doc["data"]["x"] = {"a": 1, "effective_us": doc["effective_us"], "idempotency_key": None, "metadata": {}}
    await forge(pg_pool, tenant, 4, lookalike)
    rep = await run(app_pool, verifier, tenant)
    assert rep.ok and rep.events == 7 and rep == await reference(app_pool, tenant)
    await tamper(pg_pool, "UPDATE events SET data = jsonb_set(data, '{x,a}', '2') WHERE tenant_id = $1 AND seq = 4",
                 tenant)
    rep = await run(app_pool, verifier, tenant)
    assert (rep.broken.seq, rep.broken.what) == (4, "column data") and rep == await reference(app_pool, tenant)


@pytest.mark.parametrize("column,ok", [("100000000000000000000000", True), ("99999999999999991611392", False)])
async def test_numbers_compare_exactly(store, app_pool, pg_pool, tenant, verifier, column, ok):
    """Bytes saying 1e23 match a column saying 10**23 and nothing else (as floats, 1e23 would also
    equal 99999999999999991611392); the filter (numeric) and the reference (Decimal) agree."""
    await seed(store, tenant, 7)
    await rehash(pg_pool, tenant, lambda s, b: b.replace(b'"n":2', b'"n":1e23') if s == 3 else b)
    await tamper(pg_pool, f"UPDATE events SET data = jsonb_set(data, '{{n}}', '{column}') WHERE tenant_id = $1 AND seq = 3",
                 tenant)
    rep = await run(app_pool, verifier, tenant)
    assert rep.ok is ok and rep == await reference(app_pool, tenant)
    if not ok:
        assert (rep.broken.seq, rep.broken.what) == (3, "column data")


# -- random tamperings: the fast path (any range size, one or several connections) reports exactly
# what the reference reports

_EDITS = {
    "data": "UPDATE events SET data = jsonb_set(data, '{text}', to_jsonb($3::text)) WHERE tenant_id = $1 AND seq = $2",
    "actor": "UPDATE events SET metadata = jsonb_set(metadata, '{actor}', to_jsonb($3::text)) "
             "WHERE tenant_id = $1 AND seq = $2",
    "effective_at": "UPDATE events SET effective_at = effective_at + interval '1 microsecond' * length($3) "
                    "WHERE tenant_id = $1 AND seq = $2",
    "recorded_at": "UPDATE events SET recorded_at = recorded_at - interval '1 second' * length($3) "
                   "WHERE tenant_id = $1 AND seq = $2",
    "type": "UPDATE events SET type = $3 WHERE tenant_id = $1 AND seq = $2",
    "stream": "UPDATE events SET stream = $3 || $2::text WHERE tenant_id = $1 AND seq = $2",   # unique
    "idempotency_key": "UPDATE events SET idempotency_key = $3 || $2::text WHERE tenant_id = $1 AND seq = $2",   # unique
    "encoding": "UPDATE events SET encoding = 2 + length($3) WHERE tenant_id = $1 AND seq = $2",
    "prev_hash": "UPDATE events SET prev_hash = sha256(convert_to($3, 'UTF8')) WHERE tenant_id = $1 AND seq = $2",
    "canonical": "UPDATE events SET canonical = overlay(canonical PLACING convert_to($3, 'UTF8') "
                 "FROM 1 + length($3) * 7 % octet_length(canonical)) WHERE tenant_id = $1 AND seq = $2",
    "delete": "DELETE FROM events WHERE tenant_id = $1 AND seq = $2 AND $3::text IS NOT NULL",
    "swap": "UPDATE events SET seq = CASE WHEN seq = $2::bigint THEN $2::bigint + 1001 ELSE $2::bigint + 1000 END "
            "WHERE tenant_id = $1 AND seq IN ($2::bigint, $2::bigint + 1) AND $3::text IS NOT NULL",
    "copy": "INSERT INTO events (tenant_id, seq, stream, stream_version, type, schema_version, data, metadata, "
            "effective_at, recorded_at, encoding, canonical, prev_hash, hash) "
            "SELECT tenant_id, 100 + length($3), stream, 100 + length($3), type, schema_version, data, metadata, "
            "effective_at, recorded_at, encoding, canonical, prev_hash, hash FROM events "
            "WHERE tenant_id = $1 AND seq = $2 ON CONFLICT DO NOTHING",
}
_tampering = st.lists(st.tuples(st.sampled_from(sorted(_EDITS)), st.integers(1, 9),
                                st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=6)),
                      min_size=0, max_size=3)


@given(edits=_tampering, forge_chain=st.booleans(), recorded=st.sampled_from([None, 3, 9]),
       chunk=st.sampled_from([1, 2, 3, 100]), workers=st.sampled_from([1, 3]))
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_fast_and_reference_agree_on_random_tamperings(store, app_pool, pg_pool, edits, forge_chain, recorded,
                                                        chunk, workers):
    tenant = "r-" + uuid.uuid4().hex[:8]

    async def scenario():
        await seed(store, tenant, 9)
        head = None
        if recorded is not None:
            async with app_pool.acquire() as conn:
                h = await conn.fetchval("SELECT hash FROM events WHERE tenant_id = $1 AND seq = $2", tenant, recorded)
            head = (recorded, bytes(h).hex())
        for kind, seq, value in edits:
            try:
                await tamper(pg_pool, _EDITS[kind], tenant, seq, value)
                if kind == "swap":
                    await tamper(pg_pool, "UPDATE events SET seq = seq - 1000 WHERE tenant_id = $1 AND seq > 1000",
                                 tenant)
            except asyncpg.UniqueViolationError:     # an edit the remaining constraints refuse: not made
                pass
        if forge_chain:       # recompute every hash over the edited bytes, and the head row
            await rehash(pg_pool, tenant, lambda s, b: b)
        ref = await reference(app_pool, tenant, expect_head=head)
        async with app_pool.acquire() as conn:
            fast = await verify_tenant(conn, tenant, expect_head=head, chunk=chunk, pool=app_pool, workers=workers)
        assert fast == ref
        if not edits and not forge_chain:
            assert ref.ok
    asyncio.get_event_loop().run_until_complete(scenario())
