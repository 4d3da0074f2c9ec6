"""Billing's source (issue 6): seat intervals from raw pool-stream events as known at a sequence,
corrections, the period pruning (proved equal to the full walk), the CLI and the benchmark."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ledger.events import NewEvent
from ledger.licence_admin import CreatePool, DefineProduct, ResizePool
from ledger.licences import (LicenceExpired, PoolCreated, PoolRepriced, PoolResized, SeatAssigned, SeatReleased,
                             SeatResumed, SeatSuspended, Terms)
from ledger.store import StreamChange
from projections.billing import bill_pool, build_invoice, canonical_bytes, invoice_document, month_period, to_csv
from projections.billing_source import head_seq, invoice_at, invoice_by_replay, load_source, seat_intervals

UTC = timezone.utc
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEP = month_period(2026, 9, "UTC")


def u(m, d, h=0):
    return datetime(2026, m, d, h, tzinfo=UTC)


# ---- the walk ------------------------------------------------------------------------------------

def test_walk_suspension_is_held_and_a_correction_clips():
    evs = [(u(9, 1), 1, 0, None), (u(9, 5), 2, 1, None), (u(9, 8), 3, 2, None), (u(9, 20), 4, 3, "deleted"),
           (u(9, 12), 9, 3, "deleted")]          # recorded last, effective earlier: the correction
    ivs = seat_intervals("a", evs)
    assert [(iv.start.day, iv.end.day, iv.state, iv.seq) for iv in ivs] == [
        (1, 5, "active", 1), (5, 8, "suspended", 1), (8, 12, "active", 1)]
    assert ivs[-1].reason == "resumed; released: deleted"


def test_walk_ignores_what_finds_nothing_and_reassignment_is_a_new_holding():
    evs = [(u(9, 2), 5, 3, "x"), (u(9, 3), 6, 1, None), (u(9, 4), 7, 0, None), (u(9, 6), 8, 0, None),
           (u(9, 10), 9, 4, None), (u(9, 15), 10, 0, None)]
    ivs = seat_intervals("a", evs)
    assert [(iv.start.day, iv.end.day if iv.end else None, iv.seq) for iv in ivs] == [(4, 10, 7), (15, None, 10)]
    assert ivs[0].reason == "assigned; expired"


def test_same_instant_orders_by_seq():
    t = u(9, 10)
    ivs = seat_intervals("a", [(t, 3, 0, None), (t, 2, 3, "x"), (u(9, 1), 1, 0, None)])
    # seq 1 assigns, seq 2 releases at t, seq 3 assigns again at t
    assert [(iv.start, iv.end, iv.seq) for iv in ivs] == [(u(9, 1), t, 1), (t, None, 3)]


kinds = st.sampled_from([0, 0, 1, 2, 3, 4])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 100), kinds), max_size=40),
       st.sampled_from(["usage", "committed"]), st.integers(0, 3))
def test_period_pruning_bills_exactly_like_the_full_walk(raw, mode, seats):
    """The source skips a user's events before their last release preceding the period and leaves out
    pieces ending before it; the bill (overage ranks included) is the full walk's."""
    per_user: dict[str, list] = {}
    for i, (user, day, k) in enumerate(raw):
        per_user.setdefault(f"u{user}", []).append(
            (datetime(2026, 8, 1, tzinfo=UTC) + timedelta(hours=12 * day), i + 1, k, "r"))
    full, pruned = [], []
    for uid, evs in per_user.items():
        full += seat_intervals(uid, evs)
        # what the SQL keeps: events after the last release effective before the period start
        evs = sorted(evs, key=lambda e: (e[0], e[1]))
        last = max((i for i, e in enumerate(evs) if e[2] >= 3 and e[0] < SEP.start), default=-1)
        pruned += seat_intervals(uid, evs[last + 1:], SEP.start)
    terms = Terms("p", "x", seats, u(1, 1), u(12, 1), "EUR", 3000, 4500, mode)
    a, b = bill_pool(terms, full, SEP), bill_pool(terms, pruned, SEP)
    assert a.lines == b.lines and a.peak_seats == b.peak_seats and a.daily_high_water == b.daily_high_water


# ---- the source against the ledger ---------------------------------------------------------------

async def seat(store, tenant, ev, at):
    return (await store.append(tenant, [StreamChange(f"pool-{ev.pool_id}", None, [NewEvent(ev, at)])]))[0].seq


async def test_source_as_known_at_each_sequence(bus, store, tenant, app_pool):
    await bus.execute(tenant, DefineProduct("x", "X"))
    await bus.execute(tenant, CreatePool("p1", "x", 5, u(1, 1), u(12, 31), "EUR", 3000))
    await bus.execute(tenant, ResizePool("p1", 3, effective_at=u(9, 15)))
    s1 = await seat(store, tenant, SeatAssigned(pool_id="p1", user_id="a", grants=["g"], priority=1), u(9, 1))
    s2 = await seat(store, tenant, SeatSuspended(pool_id="p1", user_id="a", until=u(10, 1)), u(9, 10))
    s3 = await seat(store, tenant, SeatResumed(pool_id="p1", user_id="a"), u(9, 12))
    s4 = await seat(store, tenant, SeatReleased(pool_id="p1", user_id="a", reason="deleted"), u(9, 4))
    async with app_pool.acquire() as conn:
        src = await load_source(conn, tenant, s1)
        assert src.known_at == s1 and src.timezone == "UTC"
        p = src.pools["p1"]
        assert p.terms.seats_at(u(9, 20)) == 3 and p.terms.seats_at(u(9, 1)) == 5
        assert [(iv.start, iv.end, iv.seq) for iv in p.intervals] == [(u(9, 1), None, s1)]
        src = await load_source(conn, tenant, s3)
        assert [(iv.start.day, iv.end and iv.end.day, iv.state) for iv in src.pools["p1"].intervals] == [
            (1, 10, "active"), (10, 12, "suspended"), (12, None, "active")]
        src = await load_source(conn, tenant)           # the head: the correction ends it on the 4th
        assert [(iv.start.day, iv.end.day) for iv in src.pools["p1"].intervals] == [(1, 4)]
        assert src.events_read == 4
        # an invoice at an earlier sequence is a pure function of it: the same bytes every time
        a = canonical_bytes(invoice_document(await invoice_at(conn, tenant, "2026-09", s2)))
        b = canonical_bytes(invoice_document(await invoice_at(conn, tenant, "2026-09", s2)))
        assert a == b
        with pytest.raises(ValueError):
            await invoice_at(conn, tenant, "2026-09", 10 ** 9)
        # the narrow copy holds exactly the pool streams' seat events
        n_events = await conn.fetchval(
            "SELECT count(*) FROM events WHERE tenant_id = $1 AND stream LIKE 'pool-%' AND type LIKE 'Seat%'", tenant)
        n_copy = await conn.fetchval("SELECT count(*) FROM billing_seat_events WHERE tenant_id = $1", tenant)
        assert n_events == n_copy == 4
    full = build_invoice(tenant, SEP, [(p.terms, p.intervals)], known_at=1)
    assert full.totals[0][1] > 0


# ---- the fast path against the naive replay, on random ledgers --------------------------------------

def _at(half_days: int, micros: int) -> datetime:
    return datetime(2026, 8, 1, tzinfo=UTC) + timedelta(hours=12 * half_days, microseconds=micros)


# (kind, pool, user, half-day from Aug 1, microseconds): 0 assign, 1 suspend, 2 resume, 3 release,
# 4 expire, 5 resize, 6 reprice. Few distinct microseconds, so that events share instants (ties
# go by seq) and sub-second instants are floored; appended in random order, so that many events
# are backdated corrections of what was recorded before.
ledger_op = st.tuples(st.sampled_from([0, 0, 0, 1, 2, 3, 3, 4, 5, 6]), st.sampled_from(["pu", "pc"]),
                      st.sampled_from(["a", "b", "c", "d", "e"]), st.integers(0, 130),
                      st.sampled_from([0, 0, 1, 499_999, 500_000, 999_999]))


def _ledger_event(kind, pool, user, h, micros):
    t = _at(h, micros)
    return [lambda: SeatAssigned(pool_id=pool, user_id=user, grants=["g"], priority=1),
            lambda: SeatSuspended(pool_id=pool, user_id=user, until=t + timedelta(days=9)),
            lambda: SeatResumed(pool_id=pool, user_id=user),
            lambda: SeatReleased(pool_id=pool, user_id=user, reason=f"r{h % 3}"),
            lambda: LicenceExpired(pool_id=pool, user_id=user, term_end=t),
            lambda: PoolResized(pool_id=pool, seats=h % 4),
            lambda: PoolRepriced(pool_id=pool, price_minor=1000 + 7 * h, overage_price_minor=h % 2 and 4999)][kind]()


@given(ops=st.lists(ledger_op, min_size=1, max_size=40), knowns=st.lists(st.integers(0, 60), max_size=3),
       month=st.sampled_from([8, 9, 10]))
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_fast_path_and_naive_replay_agree_on_random_ledgers(store, app_pool, ops, knowns, month):
    """The product path (narrow copy, period pruning in SQL, integer microseconds, MicroIntervals,
    the engine's fast paths) and the naive replay (every event decoded, whole walks, SeatInterval
    objects) give the same bytes, JSON and CSV, at the head and at earlier sequences."""
    tenant = "fast-" + uuid.uuid4().hex[:10]

    async def run():
        await store.append(tenant, [StreamChange(f"pool-{p}", None, [NewEvent(PoolCreated(
            pool_id=p, product_id="x", seats=2, term_start=_at(4, 0), term_end=_at(135, 0), currency="EUR",
            price_minor=3000, overage_price_minor=4500, billing_mode=mode), _at(0, 0))])
            for p, mode in (("pu", "usage"), ("pc", "committed"))])
        for op in ops:
            ev = _ledger_event(*op)
            await store.append(tenant, [StreamChange(f"pool-{op[1]}", None, [NewEvent(ev, _at(op[3], op[4]))])])
        label = f"2026-{month:02d}"
        period = month_period(2026, month, "UTC")
        async with app_pool.acquire() as conn:
            head = await head_seq(conn, tenant)
            for k in [None, *{min(head, 1 + k) for k in knowns}]:
                fast = await invoice_at(conn, tenant, label, k)
                naive, _n = await invoice_by_replay(store, tenant, period, k or head)
                assert canonical_bytes(invoice_document(fast)) == canonical_bytes(invoice_document(naive)), k
                assert to_csv(fast) == to_csv(naive)
                for b in fast.pools:
                    assert b.total == sum(x.amount for x in b.lines)
    asyncio.get_event_loop().run_until_complete(run())


# ---- CLI and benchmark ---------------------------------------------------------------------------

def run(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def cli_env(dsns):
    if dsns.embedded:
        from urllib.parse import urlsplit
        return {"SEATLEDGER_DATABASE": urlsplit(dsns.migrate).path.lstrip("/")}
    return {"SEATLEDGER_DATABASE_URL": dsns.migrate}


async def test_cli_bill(cli_env, bus, store):
    from ledger.tenancy import CreateTenant
    t = "bill-cli-" + uuid.uuid4().hex[:6]
    await bus.execute(t, CreateTenant(t, t, "UTC"))
    await bus.execute(t, DefineProduct("x", "X"))
    await bus.execute(t, CreatePool("p1", "x", 5, u(1, 1), u(12, 31), "EUR", 3000))
    await seat(store, t, SeatAssigned(pool_id="p1", user_id="a", grants=["g"], priority=1), u(9, 11))
    p = run("-m", "api.cli", "bill", "--tenant", t, "--period", "2026-09", env=cli_env)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["totals"] == [{"currency": "EUR", "totalMinor": "2000"}]
    p = run("-m", "api.cli", "bill", "--tenant", t, "--period", "2026-09", "--csv", "--issue", env=cli_env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0].startswith("pool_id,") and ",2000," in p.stdout.splitlines()[1]
    assert '"number":1' in p.stderr
    p = run("-m", "api.cli", "bill", "--tenant", t, "--period", "2026-09", "--issue", env=cli_env)
    assert p.returncode == 2 and "issued" in p.stderr
    p = run("-m", "api.cli", "bill", "--tenant", t, "--period", "2026-9", env=cli_env)
    assert p.returncode == 2


def test_bench_billing_quick():
    p = run("scripts/bench_billing.py", "--quick")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["same_invoice"] is True and res["line_items"] > 0
    for k in ("invoice_s", "source_s", "engine_s", "naive_replay_s"):
        assert res[k] > 0
