"""Hypothesis: the temporal projection and the replay engine give identical answers.

Random histories - pools created, resized and renewed (effective in the past or the future), seats
assigned, queued, re-granted, suspended, resumed, released, dequeued and expired at random effective
instants, so that many events are backdated corrections of what was recorded before - are appended
through the store; then both paths answer at random instants (event instants exactly, and between
them), with and without knownAt (a sequence or a recorded time).
"""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings, strategies as st

from ledger.events import NewEvent
from ledger.licences import (LicenceExpired, PoolCreated, PoolRenewed, PoolResized, SeatAssigned, SeatDequeued,
                             SeatGrantsChanged, SeatQueued, SeatReleased, SeatResumed, SeatSuspended)
from ledger.replay import licence_replay
from ledger.store import StreamChange
from projections import temporal as tp

try:   # the admin corrections of the licence engine (issue 4)
    from ledger.licences import SeatEndCorrected, SeatStartCorrected
    CORRECTIONS = True
except ImportError:   # pragma: no cover
    CORRECTIONS = False

D0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
POOLS = ("pa", "pb")
USERS = ("u1", "u2", "u3", "u4")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def at(hours: int) -> datetime:
    return D0 + timedelta(hours=hours)


op = st.tuples(
    st.sampled_from(["assign", "assign", "queue", "grants", "suspend", "resume", "release", "release", "dequeue",
                     "expire", "resize", "renew"] + (["end_corrected", "start_corrected"] if CORRECTIONS else [])),
    st.sampled_from(POOLS), st.sampled_from(USERS), st.integers(0, 60),
    st.sampled_from([("r1",), ("r2",), ("r1", "r2"), ("admin",)]))


def build(kind, pool, user, h, grants):
    if kind == "assign":
        return SeatAssigned(pool_id=pool, user_id=user, grants=list(grants), priority=len(grants),
                            overage=h % 7 == 0)
    if kind == "queue":
        return SeatQueued(pool_id=pool, user_id=user, grants=list(grants), priority=3)
    if kind == "grants":
        return SeatGrantsChanged(pool_id=pool, user_id=user, grants=list(grants), priority=h % 3)
    if kind == "suspend":
        return SeatSuspended(pool_id=pool, user_id=user, until=at(h + 5))
    if kind == "resume":
        return SeatResumed(pool_id=pool, user_id=user)
    if kind == "release":
        return SeatReleased(pool_id=pool, user_id=user, reason="admin")
    if kind == "dequeue":
        return SeatDequeued(pool_id=pool, user_id=user, reason="no_grant")
    if kind == "expire":
        return LicenceExpired(pool_id=pool, user_id=user, term_end=at(h))
    if kind == "end_corrected":
        return SeatEndCorrected(pool_id=pool, user_id=user, ended_at=at(h), previous_end=at(h + 3), reason="typo")
    if kind == "start_corrected":
        # refers to a holding that began a few hours later (when such an assignment exists)
        return SeatStartCorrected(pool_id=pool, user_id=user, started_at=at(h), previous_start=at(h + len(grants)))
    if kind == "resize":
        return PoolResized(pool_id=pool, seats=h % 5)
    return PoolRenewed(pool_id=pool, term_end=at(100 + h))


def _cmp(rows):
    return [(r["user_id"], r["pool_id"], r["state"], tuple(r["grants"]), r["priority"], r["overage"],
             r["suspended_until"]) for r in rows]


def _merged(intervals):
    runs = []
    for i in intervals:
        key = (i["state"], tuple(i["grants"]), i["priority"], i["overage"],
               datetime.fromisoformat(i["suspended_until"]) if i["suspended_until"] else None)
        f = datetime.fromisoformat(i["from"])
        to = datetime.fromisoformat(i["to"]) if i["to"] else None
        if runs and runs[-1][2] == key and runs[-1][1] == f:
            runs[-1][1] = to
        else:
            runs.append([f, to, key])
    return [(f, to, *k) for f, to, k in runs]


def _run(coro):
    return asyncio.get_event_loop().run_until_complete(coro)


@given(batches=st.lists(st.lists(op, min_size=1, max_size=4), min_size=1, max_size=12),
       probes=st.lists(st.tuples(st.integers(-2, 70), st.booleans(), st.integers(0, 3)), min_size=3, max_size=6),
       data=st.data())
@SETTINGS
def test_projection_and_replay_agree(store, app_pool, batches, probes, data):
    tenant = "h-" + uuid.uuid4().hex[:10]

    async def run():
        created = [NewEvent(PoolCreated(pool_id=p, product_id="prod", seats=2, term_start=at(0), term_end=at(48)),
                            at(0)) for p in POOLS]
        await store.append(tenant, [StreamChange(f"pool-{p}", None, [e]) for p, e in zip(POOLS, created)])
        # part of the history is projected before the rest is appended: catch-up meets stored rows
        split = data.draw(st.integers(0, len(batches)))
        for i, batch in enumerate(batches):
            if i == split:
                await tp.ensure_current(app_pool, tenant)
            by_pool: dict[str, list] = {}
            for kind, pool, user, h, grants in batch:
                by_pool.setdefault(pool, []).append(NewEvent(build(kind, pool, user, h, grants), at(h)))
            await store.append(tenant, [StreamChange(f"pool-{p}", None, evs) for p, evs in by_pool.items()])
        head = await tp.ensure_current(app_pool, tenant)
        events = await store.read_tenant(tenant, 0, 10_000)
        instants = sorted({e.effective_at for e in events})
        async with app_pool.acquire() as conn:
            for h, exact, kk in probes:
                t = instants[h % len(instants)] if exact else at(h) + timedelta(minutes=30)
                known = None if kk == 0 else data.draw(st.integers(0, head + 1)) if kk == 1 else \
                    events[data.draw(st.integers(0, len(events) - 1))].recorded_at - timedelta(microseconds=kk - 2)
                k = await tp.resolve_known(conn, tenant, known, head)
                rp = await licence_replay(conn, tenant, known)
                for pool in POOLS:
                    total, rows = await tp.holders(conn, tenant, [pool], t, k, 100)
                    want = rp.holders(t, [pool])
                    assert _cmp(rows) == _cmp(want) and total == len(want), (t, known, pool)
                total, rows = await tp.holders(conn, tenant, list(POOLS), t, k, 100)
                assert _cmp(rows) == _cmp(rp.holders(t, product_id="prod"))
                for u in USERS:
                    assert _cmp(await tp.licences(conn, tenant, u, t, k)) == _cmp(rp.licences(u, t)), (t, known, u)
                assert await tp.usage(conn, tenant, t, k) == rp.usage(t), (t, known)
                for pool in POOLS:
                    for u in USERS:
                        tl = [i for i in await tp.user_timeline(conn, tenant, u, k) if i["pool_id"] == pool]
                        assert _merged(tl) == rp.timeline(pool, u), (known, pool, u)
    _run(run())
