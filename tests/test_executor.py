"""The command path: group commit, in-batch decisions, failures alone, idempotency."""
from __future__ import annotations

import asyncio

import pytest

from ledger.executor import CommandBus, CommandRejected
from toy_domain import Boom, ClaimName, Note, TakeSlot


async def gather(bus, tenant, cmds, **kw):
    return await asyncio.gather(*[bus.execute(tenant, c, **kw) for c in cmds], return_exceptions=True)


async def test_two_claims_of_one_name_in_one_batch(bus, tenant):
    res = await gather(bus, tenant, [ClaimName("ada"), ClaimName("ada"), ClaimName("bob")])
    assert bus.batches == 1, "the three commands were decided in one batch"
    assert res[0] == {"name": "ada"} and res[2] == {"name": "bob"}
    assert isinstance(res[1], CommandRejected) and res[1].code == "uniqueness"
    # and a later batch sees the committed projection
    with pytest.raises(CommandRejected):
        await bus.execute(tenant, ClaimName("bob"))


async def test_eleven_claims_on_ten_slots(bus, store, tenant):
    res = await gather(bus, tenant, [TakeSlot(f"u{i}") for i in range(11)])
    assert bus.batches == 1
    ok = [r for r in res if not isinstance(r, Exception)]
    assert sorted(ok) == list(range(1, 11))
    assert sum(isinstance(r, CommandRejected) for r in res) == 1
    assert len(await store.read_stream(tenant, "slots")) == 10


async def test_slots_hold_across_two_buses(store, tenant):
    """Two writers (as two service processes would) on one database: the head lock serializes."""
    a, b = CommandBus(store), CommandBus(store)
    try:
        res = await asyncio.gather(*[(a if i % 2 else b).execute(tenant, TakeSlot(f"u{i}")) for i in range(30)],
                                   return_exceptions=True)
    finally:
        await a.close(); await b.close()
    assert sum(not isinstance(r, Exception) for r in res) == 10
    evs = await store.read_tenant(tenant)
    assert [e.seq for e in evs] == list(range(1, 11))


async def test_database_error_fails_alone(bus, store, tenant):
    res = await gather(bus, tenant, [Note("n", "a"), Boom(), Note("n", "b")])
    assert res[0] == "a" and res[2] == "b"
    assert isinstance(res[1], Exception)
    evs = await store.read_tenant(tenant)
    assert [e.data["text"] for e in evs] == ["a", "b"]
    assert [e.seq for e in evs] == [1, 2]


async def test_idempotent_retry_returns_original_result(bus, store, tenant):
    r1 = await bus.execute(tenant, ClaimName("cy"), idempotency_key="req-1")
    r2 = await bus.execute(tenant, ClaimName("cy"), idempotency_key="req-1")
    assert r1 == r2 == {"name": "cy"}
    assert len(await store.read_tenant(tenant)) == 1


async def test_same_key_twice_in_one_batch_executes_once(bus, store, tenant):
    res = await gather(bus, tenant, [Note("k", "once"), Note("k", "twice")], idempotency_key="same")
    assert res == ["once", "once"]
    evs = await store.read_tenant(tenant)
    assert len(evs) == 1 and evs[0].idempotency_key == "cmd:same"


async def test_metadata_is_recorded(bus, store, tenant):
    meta = {"actor": "token:1", "source": "scim", "request_id": "r1", "correlation_id": "c", "causation_id": None}
    await bus.execute(tenant, Note("m", "x"), metadata=meta)
    assert (await store.read_tenant(tenant))[0].metadata == meta


async def test_tenants_are_independent(bus, store, tenant):
    other = tenant + "-b"
    await gather(bus, tenant, [ClaimName("same")])
    res = await gather(bus, other, [ClaimName("same")])
    assert res == [{"name": "same"}]
    assert (await store.read_tenant(other))[0].seq == 1


async def test_stale_expectation_from_another_process_is_a_conflict(store, tenant):
    """Bus A caches stream versions; bus B (another process) appends; A's cache must not be trusted."""
    from ledger.store import ConcurrencyError
    from toy_domain import Expect
    a, b = CommandBus(store), CommandBus(store)
    try:
        assert await a.execute(tenant, Expect("s", 0, "a1")) == "a1"
        assert await b.execute(tenant, Expect("s", 1, "b2")) == "b2"
        with pytest.raises(ConcurrencyError):
            await a.execute(tenant, Expect("s", 1, "a2"))      # stale: the stream is at 2
        res = await gather(a, tenant, [Expect("s", 2, "a3"), Expect("s", 2, "a3-dup"), Expect("new", 0, "n")])
        assert res[0] == "a3" and isinstance(res[1], ConcurrencyError) and res[2] == "n"
    finally:
        await a.close(); await b.close()
    assert [e.data["text"] for e in await store.read_stream(tenant, "s")] == ["a1", "b2", "a3"]


async def test_erased_subject_fails_alone(bus, store, tenant):
    from dataclasses import dataclass
    from ledger.erasure import erase
    from ledger.events import NewEvent
    from ledger.executor import Command, Decision, Handler
    from ledger.store import StreamChange
    from toy_domain import PersonNamed

    class NameHandler(Handler):
        def decide(self, state, cmd):
            return Decision([StreamChange(f"user-{cmd.who}", None, [NewEvent(PersonNamed(person=cmd.who, email="x@y"))])],
                            result=cmd.who)

    @dataclass
    class Name(Command):
        who: str
        handler = NameHandler()

    await bus.execute(tenant, Name("gone"))
    await erase(store, tenant, "gone")
    res = await gather(bus, tenant, [Name("ok1"), Name("gone"), Name("ok2")])
    assert res[0] == "ok1" and res[2] == "ok2"
    assert isinstance(res[1], CommandRejected) and res[1].status == 409
