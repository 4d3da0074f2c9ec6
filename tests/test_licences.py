"""The seat decider: scenarios with exact answers, and hypothesis invariants over random histories."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings, strategies as st

from ledger.licences import (NO_DEMAND, Demand, LicenceExpired, PoolCreated, PoolRenewed, PoolResized, PoolState,
                             SeatAssigned, SeatQueued, SeatReleased, SeatSuspended, compact, decide_seats, evolve)

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
END = datetime(2027, 11, 1, tzinfo=timezone.utc)


def pool(seats=2, policy="reject", cap=0, grace=0, end=END) -> PoolState:
    return evolve(None, PoolCreated(pool_id="p", product_id="design-pro", seats=seats, term_start=T0, term_end=end,
                                    overage_policy=policy, overage_cap=cap, grace_seconds=grace), T0)


def run(state, demand, now):
    evs = compact(decide_seats(state, demand, now))
    for e, at in evs:
        evolve(state, e, at)
    return [type(e).__name__ + ":" + e.user_id for e, _ in evs]


def want(*grants, priority=100, active=True):
    return Demand(frozenset(grants), priority, active)


def test_assign_until_full_then_queue_then_fill_on_release():
    s = pool(2)
    now = T0 + timedelta(days=1)
    assert run(s, {"a": want("r1"), "b": want("r1"), "c": want("r1")}, now) == \
        ["SeatQueued:c", "SeatAssigned:a", "SeatAssigned:b"]
    assert {u for u, x in s.seats.items() if x.state == "active"} == {"a", "b"}
    assert s.seats["c"].state == "waiting"
    assert run(s, {"a": NO_DEMAND}, now + timedelta(hours=1)) == ["SeatReleased:a", "SeatAssigned:c"]


def test_partial_deprovisioning_keeps_the_seat():
    s = pool(1)
    run(s, {"a": want("group-1", "rule-2")}, T0)
    assert run(s, {"a": want("rule-2")}, T0 + timedelta(1)) == ["SeatGrantsChanged:a"]
    assert s.seats["a"].state == "active"
    assert run(s, {"a": NO_DEMAND}, T0 + timedelta(2)) == ["SeatReleased:a"]


def test_priority_then_request_time_serves_the_queue():
    s = pool(1)
    run(s, {"x": want("r")}, T0)
    run(s, {"late-low": want("r", priority=50)}, T0 + timedelta(hours=1))
    run(s, {"later-high": want("r", priority=10)}, T0 + timedelta(hours=2))
    run(s, {"later-low": want("r", priority=50)}, T0 + timedelta(hours=3))
    assert run(s, {"x": NO_DEMAND}, T0 + timedelta(hours=4)) == ["SeatReleased:x", "SeatAssigned:later-high"]
    assert run(s, {"later-high": NO_DEMAND}, T0 + timedelta(hours=5)) == ["SeatReleased:later-high",
                                                                          "SeatAssigned:late-low"]


def test_deactivation_suspends_for_grace_then_ends():
    s = pool(1, grace=3600)
    run(s, {"a": want("r"), "b": want("r")}, T0)
    now = T0 + timedelta(days=1)
    assert run(s, {"a": want("r", active=False)}, now) == ["SeatSuspended:a"]
    assert s.seats["a"].state == "suspended" and s.seats["b"].state == "waiting"   # suspended still holds
    evs = decide_seats(s, {}, now + timedelta(hours=2))
    assert [(type(e).__name__, e.user_id, at) for e, at in evs][:1] == [("SeatReleased", "a", now + timedelta(hours=1))]
    for e, at in evs:
        evolve(s, e, at)
    assert s.seats["b"].state == "active"


def test_reactivation_during_grace_resumes():
    s = pool(1, grace=3600)
    run(s, {"a": want("r")}, T0)
    run(s, {"a": want("r", active=False)}, T0 + timedelta(minutes=1))
    assert run(s, {"a": want("r")}, T0 + timedelta(minutes=2)) == ["SeatResumed:a"]


def test_downsize_ends_most_recent_first_named_lifo():
    s = pool(3)
    for i, u in enumerate("abc"):
        run(s, {u: want("r")}, T0 + timedelta(minutes=i))
    at = T0 + timedelta(days=14)
    evolve(s, PoolResized(pool_id="p", seats=1), at)
    evs = compact(decide_seats(s, {}, at))
    assert [(type(e).__name__, e.user_id, getattr(e, "policy", None)) for e, _ in evs] == \
        [("SeatReleased", "c", "lifo"), ("SeatQueued", "c", None),
         ("SeatReleased", "b", "lifo"), ("SeatQueued", "b", None)]
    for e, at in evs:
        evolve(s, e, at)
    assert [x.user_id for x in s.waiting()] == ["b", "c"]      # still granted: they wait again


def test_scheduled_resize_applies_from_its_instant():
    s = pool(2)
    evolve(s, PoolResized(pool_id="p", seats=1), T0 + timedelta(days=30))     # scheduled, in the future
    assert s.terms.seats_at(T0 + timedelta(days=29)) == 2
    assert s.terms.seats_at(T0 + timedelta(days=30)) == 1
    run(s, {"a": want("r"), "b": want("r")}, T0 + timedelta(days=1))
    assert len(s.held()) == 2
    evs = compact(decide_seats(s, {}, T0 + timedelta(days=31)))
    assert [type(e).__name__ for e, _ in evs] == ["SeatReleased", "SeatQueued"]


def test_term_end_expires_at_the_exact_instant_even_if_decided_late():
    s = pool(2, end=T0 + timedelta(days=10))
    run(s, {"a": want("r")}, T0)
    late = T0 + timedelta(days=12)
    evs = compact(decide_seats(s, {}, late))
    assert [(type(e).__name__, at) for e, at in evs] == [("LicenceExpired", T0 + timedelta(days=10))]
    assert s.terms.capacity(T0 + timedelta(days=10)) == 0


def test_renewal_before_end_continues():
    s = pool(1, end=T0 + timedelta(days=10))
    run(s, {"a": want("r")}, T0)
    evolve(s, PoolRenewed(pool_id="p", term_end=T0 + timedelta(days=400)), T0 + timedelta(days=5))
    assert compact(decide_seats(s, {}, T0 + timedelta(days=20))) == []


def test_allow_assigns_and_flags_overage():
    s = pool(1, policy="allow")
    run(s, {"a": want("r"), "b": want("r")}, T0)
    assert {u: x.overage for u, x in s.seats.items()} == {"a": False, "b": True}


def test_cap_allows_explicit_extra_then_queues():
    s = pool(1, policy="cap", cap=1)
    run(s, {"a": want("r"), "b": want("r"), "c": want("r")}, T0)
    assert sorted(x.state for x in s.seats.values()) == ["active", "active", "waiting"]


# ---- hypothesis: invariants over random histories ------------------------------------------

users = st.sampled_from(list("abcdefgh"))
ops = st.lists(st.one_of(
    st.tuples(st.just("want"), users, st.frozensets(st.sampled_from(["r1", "r2", "admin"]), max_size=2),
              st.sampled_from([10, 50, 100]), st.booleans()),
    st.tuples(st.just("delete"), users),
    st.tuples(st.just("resize"), st.integers(0, 5), st.integers(0, 48)),
    st.tuples(st.just("renew"), st.integers(1, 400)),
    st.tuples(st.just("tick"), st.integers(0, 72)),
), min_size=1, max_size=30)


@given(ops=ops, seats=st.integers(0, 4), policy=st.sampled_from(["reject", "cap", "allow"]),
       grace=st.sampled_from([0, 3600]), term_days=st.integers(1, 30))
@settings(max_examples=300, deadline=None)
def test_seat_invariants_hold_at_every_step(ops, seats, policy, grace, term_days):
    s = pool(seats, policy, cap=1, grace=grace, end=T0 + timedelta(days=term_days))
    now = T0
    last_demand: dict[str, Demand] = {}
    for op in ops:
        demand = {}
        if op[0] == "want":
            _, u, grants, prio, active = op
            demand[u] = Demand(grants, prio, active)
        elif op[0] == "delete":
            demand[op[1]] = Demand(frozenset(), deleted=True)
        elif op[0] == "resize":
            evolve(s, PoolResized(pool_id="p", seats=op[1]), now + timedelta(hours=op[2]))
        elif op[0] == "renew":
            evolve(s, PoolRenewed(pool_id="p", term_end=T0 + timedelta(days=op[1])), now)
        else:
            now += timedelta(hours=op[1])
        before = PoolState(s.terms, dict(s.seats), s.counter)
        evs = compact(decide_seats(s, demand, now))
        for e, at in evs:
            assert at <= now
            evolve(s, e, at)
        last_demand.update(demand)
        held = s.held()
        assert s.held_count() == len(held)
        cap = s.terms.capacity(now)
        assert len(held) <= cap, (len(held), cap)
        if s.waiting():
            assert len(held) >= cap, "someone waits while a seat is free"
        for u, d in demand.items():
            seat = s.seats.get(u)
            if not d.grants or d.deleted:
                assert seat is None
            elif not d.active:
                assert seat is None or seat.state == "suspended"
        if not s.terms.in_term(now):
            assert held == []
        # deciding again with nothing new changes nothing (idempotent at a fixed instant)
        assert compact(decide_seats(s, {}, now)) == []
        del before
