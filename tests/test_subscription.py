"""Readers never skip an event that commits late."""
from __future__ import annotations

import asyncio

from ledger.events import NewEvent
from ledger.store import StreamChange, lock_head, plan_rows, stream_versions
from ledger.subscription import AllTenantsSubscription, TenantSubscription, Wakeups
from toy_domain import Noted


async def test_all_tenant_reader_waits_for_uncommitted_lower_position(store, app_pool, tenant):
    a, b = tenant + "-a", tenant + "-b"
    got: list = []

    async def handler(evs):
        got.extend((e.tenant, e.position) for e in evs)

    sub = AllTenantsSubscription(store, "test-horizon-" + tenant, handler)
    while await sub.poll():        # drain whatever other tests wrote
        pass
    got.clear()

    conn = await app_pool.acquire()
    tx = conn.transaction()
    await tx.start()
    try:
        # tenant A: takes a position, not committed yet
        head = await lock_head(conn, a)
        ch = StreamChange("s", None, [NewEvent(Noted(text="a"))])
        rows = plan_rows([ch], await stream_versions(conn, a, ["s"]), {})
        pos_a = (await store.write(conn, a, head, rows)).recorded[0].position
        # tenant B: a higher position, committed
        rec_b = await store.append(b, [StreamChange("s", None, [NewEvent(Noted(text="b"))])])
        assert rec_b[0].position > pos_a
        await sub.poll()
        assert (b, rec_b[0].position) not in got, "B must wait for the lower, uncommitted A"
        await tx.commit()
    finally:
        await app_pool.release(conn)
    while await sub.poll():
        pass
    mine = [g for g in got if g[0] in (a, b)]
    assert mine == [(a, pos_a), (b, rec_b[0].position)]


async def test_all_tenant_reader_pages_and_resumes(store, tenant):
    got: list = []

    async def handler(evs):
        got.extend(e.seq for e in evs if e.tenant == tenant)

    name = "test-pages-" + tenant
    sub = AllTenantsSubscription(store, name, handler, batch=3)
    while await sub.poll():
        pass
    got.clear()
    for i in range(8):
        await store.append(tenant, [StreamChange("s", None, [NewEvent(Noted(text=str(i)))])])
    await sub.poll()
    # a new subscriber object with the same name resumes from the stored checkpoint
    sub2 = AllTenantsSubscription(store, name, handler, batch=3)
    while await sub2.poll():
        pass
    assert got == list(range(1, 9))


async def test_tenant_subscription_follows_sequence(store, tenant):
    got: list = []

    async def handler(evs):
        got.extend(e.seq for e in evs)

    sub = TenantSubscription(store, "tsub", tenant, handler, batch=2)
    for i in range(5):
        await store.append(tenant, [StreamChange("s", None, [NewEvent(Noted(text=str(i)))])])
    while await sub.poll():
        pass
    assert got == [1, 2, 3, 4, 5]


async def test_notify_wakes_a_waiting_subscriber(store, dsns, tenant):
    w = Wakeups(dsns.app)
    await w.start()
    got: list = []

    async def handler(evs):
        got.extend(evs)

    sub = TenantSubscription(store, "wake", tenant, handler)
    task = asyncio.create_task(sub.run(w, poll_interval=30))
    try:
        await asyncio.sleep(0.1)
        await store.append(tenant, [StreamChange("s", None, [NewEvent(Noted(text="ping"))])])
        for _ in range(50):
            if got:
                break
            await asyncio.sleep(0.05)
        assert [e.data["text"] for e in got] == ["ping"], "woken by NOTIFY well before the 30 s poll"
    finally:
        task.cancel()
        await w.close()
