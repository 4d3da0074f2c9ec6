"""Hypothesis: what goes in comes out, and concurrent appends interleave into one valid history."""
from __future__ import annotations

import asyncio
import uuid

from hypothesis import HealthCheck, given, settings, strategies as st

from ledger import canonical
from ledger.events import Event, NewEvent, decode, event, upcaster
from ledger.store import ConcurrencyError, StreamChange
from toy_domain import Noted

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


@given(batches=st.lists(st.lists(st.tuples(st.sampled_from("abc"), text, st.integers(-2**53, 2**53)),
                                 min_size=1, max_size=4), min_size=1, max_size=5))
@SETTINGS
def test_round_trip(store, batches):
    tenant = "p-" + uuid.uuid4().hex[:8]

    async def run():
        sent = []
        for batch in batches:
            changes: dict[str, list] = {}
            for stream, t, n in batch:
                changes.setdefault(stream, []).append(NewEvent(Noted(text=t, n=n)))
                sent.append((stream, t, n))
            await store.append(tenant, [StreamChange(s, None, evs) for s, evs in changes.items()])
        got = await store.read_tenant(tenant, limit=1000)
        # order within a batch is by stream grouping; compare as multisets per stream, in order
        for s in "abc":
            assert [(e.data["text"], e.data["n"]) for e in got if e.stream == s] == \
                   [(t, n) for st_, t, n in sent if st_ == s]
        assert [e.seq for e in got] == list(range(1, len(sent) + 1))
        prev = canonical.GENESIS
        for e in got:
            assert e.prev_hash == prev
            prev = e.hash
    _run(run())


def _run(coro):
    # Hypothesis drives a sync test; the store's pool lives on pytest-asyncio's session loop,
    # which is idle between tests, so run the example's coroutine on it.
    return asyncio.get_event_loop().run_until_complete(coro)


@given(writers=st.lists(st.lists(st.sampled_from(["x", "y"]), min_size=1, max_size=4), min_size=2, max_size=6))
@SETTINGS
def test_random_concurrent_interleavings(store, writers):
    tenant = "i-" + uuid.uuid4().hex[:8]

    async def writer(streams):
        ok = 0
        for s in streams:
            for _ in range(5):  # optimistic retry loop, as a client would
                cur = await store.read_stream(tenant, s)
                try:
                    await store.append(tenant, [StreamChange(s, len(cur), [NewEvent(Noted(text=s))])])
                    ok += 1
                    break
                except ConcurrencyError:
                    await asyncio.sleep(0)
        return ok

    async def run():
        oks = await asyncio.gather(*[writer(w) for w in writers])
        got = await store.read_tenant(tenant, limit=1000)
        assert len(got) == sum(oks)
        assert [e.seq for e in got] == list(range(1, len(got) + 1))
        for s in "xy":
            assert [e.stream_version for e in got if e.stream == s] == list(range(1, sum(e.stream == s for e in got) + 1))
    _run(run())


@event("ToyRenamed", version=1)
class RenamedV1(Event):
    name: str


@event("ToyRenamed", version=2)
class RenamedV2(Event):
    given: str
    family: str


@upcaster("ToyRenamed", from_version=1)
def _split(data: dict) -> dict:
    g, _, f = data["name"].partition(" ")
    return {"given": g, "family": f}


async def test_old_versions_are_upcast_on_read(store, tenant):
    await store.append(tenant, [StreamChange("r", None, [NewEvent(RenamedV1(name="Ada Lovelace"))])])
    e = (await store.read_stream(tenant, "r"))[0]
    assert e.schema_version == 1
    assert e.decoded() == RenamedV2(given="Ada", family="Lovelace")
    assert decode("ToyRenamed", 2, {"given": "a", "family": "b"}) == RenamedV2(given="a", family="b")


_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), st.text())
_value = st.recursive(_leaf, lambda c: st.one_of(
    st.lists(c, max_size=4), st.dictionaries(st.text(st.characters(max_codepoint=127), max_size=5), c, max_size=4)),
    max_leaves=15)


@given(_value)
@settings(max_examples=300, deadline=None)
def test_canonical_bytes_are_the_stdlib_encoding(v):
    """An auditor can re-derive the bytes with the standard library alone."""
    import json
    std = json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert canonical.dumps({"data": v}) == b'{"data":' + std + b"}"
    assert json.loads(canonical.dumps({"data": v})) == {"data": v}


def test_floats_are_refused():
    import pytest
    with pytest.raises(ValueError):
        canonical.dumps({"data": {"x": 1.5}})
    with pytest.raises(TypeError):
        @event("ToyFloaty")
        class Floaty(Event):
            amount: float
