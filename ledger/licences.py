"""The licence domain: pools of seats, and the pure decider that hands them out.

    events = decide_seats(pool, seats, demand, now)      # pure
    evolve(pool_state, event)                            # pure, shared by the write side and replay

A pool is a tenant's contract for a product: seats, a term, prices, a grace period for deactivated
users and an overage policy. Changes to it (resize, reprice, renew, cancel) carry an effective
instant, which may be in the future: `seats_at(t)` and `term_end_at(t)` apply them from that instant
whether or not the scheduler has acted yet, so the seat limit holds at every instant.

Seat rules, decided here and nowhere else:
* A user holds a pool at most once, whatever the number of grants (rule ids, "admin",
  "entitlement"); losing one grant keeps the seat while another remains (partial deprovisioning).
* A request takes a free seat at once. With none free: `reject` queues the user (recorded),
  `allow` assigns and flags overage, `cap` assigns overage up to `cap` extra seats, then queues.
* Waiting users are served by the priority of their best grant (lower number first), then by the
  time they asked, then by user id (a total order, so every replica decides the same).
* A freed seat goes at once to the next waiting user, in the same decision.
* Deactivation suspends the seat for the pool's grace period (it is still held and billed), then
  ends it; without a grace period it ends at once. Deletion ends it at once.
* Downsizing below use ends the most recently assigned seats first (policy "lifo", named in the
  event) - except under `allow`, where the extra holders stay and are flagged overage. Those users
  are still granted the pool by its rules, so they wait again.
* Nothing is valid outside the term: at the term end every seat ends (LicenceExpired, effective at
  the term end, even when recorded later) and nobody waits for an ended pool; a renewal re-applies
  the rules.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Iterable, Literal

from .events import Event, event

Policy = Literal["reject", "allow", "cap"]
BillingMode = Literal["usage", "committed"]
UNLIMITED = 1 << 62


# ---- events ------------------------------------------------------------------------------------

@event("ProductDefined")
class ProductDefined(Event):
    product_id: str
    name: str


@event("PoolCreated")
class PoolCreated(Event):
    pool_id: str
    product_id: str
    seats: int
    term_start: datetime
    term_end: datetime
    currency: str = "EUR"
    price_minor: int = 0            # per seat per billing period, in minor units
    overage_price_minor: int | None = None
    billing_mode: BillingMode = "usage"
    grace_seconds: int = 0
    overage_policy: Policy = "reject"
    overage_cap: int = 0


@event("PoolResized")
class PoolResized(Event):
    pool_id: str
    seats: int


@event("PoolRepriced")
class PoolRepriced(Event):
    pool_id: str
    price_minor: int
    overage_price_minor: int | None = None


@event("PoolRenewed")
class PoolRenewed(Event):
    pool_id: str
    term_end: datetime


@event("PoolCancelled")
class PoolCancelled(Event):
    pool_id: str


@event("SeatAssigned")
class SeatAssigned(Event):
    pool_id: str
    user_id: str
    grants: list[str]
    priority: int
    overage: bool = False


@event("SeatQueued")
class SeatQueued(Event):
    pool_id: str
    user_id: str
    grants: list[str]
    priority: int


@event("SeatGrantsChanged")
class SeatGrantsChanged(Event):
    pool_id: str
    user_id: str
    grants: list[str]
    priority: int


@event("SeatSuspended")
class SeatSuspended(Event):
    pool_id: str
    user_id: str
    until: datetime


@event("SeatResumed")
class SeatResumed(Event):
    pool_id: str
    user_id: str


@event("SeatReleased")
class SeatReleased(Event):
    pool_id: str
    user_id: str
    reason: str                    # no_grant | deleted | deactivated | grace_ended | downsized | cancelled | admin
    policy: str | None = None      # e.g. "lifo" for downsizing


@event("SeatDequeued")
class SeatDequeued(Event):
    pool_id: str
    user_id: str
    reason: str


@event("LicenceExpired")
class LicenceExpired(Event):
    pool_id: str
    user_id: str
    term_end: datetime


@event("RulesReapplied")
class RulesReapplied(Event):
    """The pool's rules were applied to the whole directory again because a renewal brought it back
    in term after its end (`renewal_at`); recorded so that it happens once per such renewal."""
    pool_id: str
    renewal_at: datetime


@event("SeatEndCorrected")
class SeatEndCorrected(Event):
    """An admin's correction: the user's last holding really ended at `ended_at` (effective then)."""
    pool_id: str
    user_id: str
    ended_at: datetime
    previous_end: datetime
    reason: str | None = None


@event("SeatStartCorrected")
class SeatStartCorrected(Event):
    """An admin's correction: the user's current holding really started at `started_at`."""
    pool_id: str
    user_id: str
    started_at: datetime
    previous_start: datetime
    reason: str | None = None


SEAT_EVENTS = (SeatAssigned, SeatQueued, SeatGrantsChanged, SeatSuspended, SeatResumed, SeatReleased,
               SeatDequeued, LicenceExpired)


# ---- state -------------------------------------------------------------------------------------

@dataclass
class PoolContract:
    """A pool's contract as it is created (the CreatePool command carries the same fields)."""
    pool_id: str
    product_id: str
    seats: int
    term_start: datetime
    term_end: datetime
    currency: str = "EUR"
    price_minor: int = 0
    overage_price_minor: int | None = None
    billing_mode: str = "usage"
    grace_seconds: int = 0
    overage_policy: str = "reject"
    overage_cap: int = 0


# the event and the contract name the same fields: a field added to one must be added to the other
_CONTRACT_FIELDS = tuple(f.name for f in fields(PoolContract))
assert set(_CONTRACT_FIELDS) == set(PoolCreated.model_fields), "PoolCreated and PoolContract differ"


@dataclass
class Terms(PoolContract):
    """A pool's contract and its timeline of effective changes."""
    # (effective instant, kind, value), kept sorted by instant then arrival
    changes: list[tuple[datetime, str, object]] = field(default_factory=list)

    def _latest(self, kind: str, t: datetime, default):
        v = default
        for at, k, val in self.changes:
            if at > t:
                break
            if k == kind:
                v = val
        return v

    def seats_at(self, t: datetime) -> int:
        return self._latest("resize", t, self.seats)

    def price_at(self, t: datetime) -> tuple[int, int]:
        p = self._latest("reprice", t, (self.price_minor, self.overage_price_minor))
        price, over = p
        return price, price if over is None else over

    def term_end_at(self, t: datetime) -> datetime:
        end = self._latest("renew", t, self.term_end)
        cancelled = next((at for at, k, _ in self.changes if k == "cancel" and at <= t), None)
        return min(end, cancelled) if cancelled is not None else end

    def late_renewals_due(self, now: datetime) -> list[datetime]:
        """Instants <= now at which a renewal brought the pool back in term after its end, and
        whose rules have not been re-applied yet (no 'reapplied' mark at that instant)."""
        from datetime import timedelta
        marks = {at for at, k, _ in self.changes if k == "reapplied"}
        out = []
        for at, k, _ in self.changes:
            if k == "renew" and at <= now and at not in marks \
                    and self.term_end_at(at - timedelta(microseconds=1)) <= at and self.in_term(at):
                out.append(at)
        return out

    def in_term(self, t: datetime) -> bool:
        return self.term_start <= t < self.term_end_at(t)

    def capacity(self, t: datetime) -> int:
        """How many may hold a seat at t (active or suspended)."""
        if not self.in_term(t):
            return 0
        if self.overage_policy == "allow":
            return UNLIMITED
        extra = self.overage_cap if self.overage_policy == "cap" else 0
        return self.seats_at(t) + extra

    def add_change(self, at: datetime, kind: str, value) -> None:
        self.changes.append((at, kind, value))
        self.changes.sort(key=lambda c: c[0])      # stable: same instant keeps arrival order


@dataclass
class Seat:
    user_id: str
    state: str                     # active | waiting | suspended
    grants: frozenset[str]
    priority: int
    since: datetime                # assigned (or queued) at
    requested_at: datetime
    overage: bool = False
    suspended_until: datetime | None = None
    order: int = 0                 # assignment order, for "most recently assigned first"


@dataclass
class PoolState:
    """A pool and its seats. `seats` may be partial: a large pool is loaded with only the seats a
    decision can touch (the users concerned, the waiting queue, and whatever time or capacity may
    end), and `unloaded_held` counts the other held seats so that capacity checks stay exact."""
    terms: Terms
    seats: dict[str, Seat] = field(default_factory=dict)
    counter: int = 0
    unloaded_held: int = 0

    def held(self) -> list[Seat]:
        """The loaded held seats."""
        return [s for s in self.seats.values() if s.state in ("active", "suspended")]

    def held_count(self) -> int:
        return len(self.held()) + self.unloaded_held

    def waiting(self) -> list[Seat]:
        return sorted((s for s in self.seats.values() if s.state == "waiting"),
                      key=lambda s: (s.priority, s.requested_at, s.user_id))


@dataclass(frozen=True)
class Demand:
    """What the directory and the rules say about one user now."""
    grants: frozenset[str]         # rule ids / "admin" / "entitlement" that grant this pool
    priority: int = 100            # best (lowest) priority among the grants
    active: bool = True            # False: deactivated (suspend for grace, then end)
    deleted: bool = False


NO_DEMAND = Demand(frozenset())


# ---- evolve ------------------------------------------------------------------------------------

def evolve(state: PoolState | None, ev: Event, effective_at: datetime) -> PoolState | None:
    """Fold one event into a pool's state. Used by the write side and by replay alike."""
    if isinstance(ev, PoolCreated):
        return PoolState(Terms(**{f: getattr(ev, f) for f in _CONTRACT_FIELDS}))
    assert state is not None, f"{type(ev).__name__} before PoolCreated"
    t = state.terms
    if isinstance(ev, PoolResized):
        t.add_change(effective_at, "resize", ev.seats)
    elif isinstance(ev, PoolRepriced):
        t.add_change(effective_at, "reprice", (ev.price_minor, ev.overage_price_minor))
    elif isinstance(ev, PoolRenewed):
        t.add_change(effective_at, "renew", ev.term_end)
    elif isinstance(ev, PoolCancelled):
        t.add_change(effective_at, "cancel", None)
    elif isinstance(ev, RulesReapplied):
        t.add_change(ev.renewal_at, "reapplied", None)
    elif isinstance(ev, SeatAssigned):
        state.counter += 1
        prev = state.seats.get(ev.user_id)
        state.seats[ev.user_id] = Seat(ev.user_id, "active", frozenset(ev.grants), ev.priority, effective_at,
                                       prev.requested_at if prev else effective_at, ev.overage,
                                       order=state.counter)
    elif isinstance(ev, SeatQueued):
        state.seats[ev.user_id] = Seat(ev.user_id, "waiting", frozenset(ev.grants), ev.priority, effective_at,
                                       effective_at)
    elif isinstance(ev, SeatGrantsChanged):
        s = state.seats[ev.user_id]
        state.seats[ev.user_id] = replace(s, grants=frozenset(ev.grants), priority=ev.priority)
    elif isinstance(ev, SeatSuspended):
        s = state.seats[ev.user_id]
        state.seats[ev.user_id] = replace(s, state="suspended", suspended_until=ev.until)
    elif isinstance(ev, SeatResumed):
        s = state.seats[ev.user_id]
        state.seats[ev.user_id] = replace(s, state="active", suspended_until=None)
    elif isinstance(ev, (SeatReleased, SeatDequeued, LicenceExpired)):
        state.seats.pop(ev.user_id, None)
    elif isinstance(ev, SeatStartCorrected):
        s = state.seats.get(ev.user_id)
        if s is not None:
            state.seats[ev.user_id] = replace(s, since=ev.started_at)
    # SeatEndCorrected changes history only: the seat had already ended
    return state


def holding_intervals(events) -> dict[str, list[list]]:
    """Each user's holdings of one pool as [start, end or None, assigning seq], in effective time,
    from (event, effective_at, seq) in recorded order - corrections applied where they point."""
    out: dict[str, list[list]] = {}
    for ev, at, seq in events:
        if isinstance(ev, SeatAssigned):
            out.setdefault(ev.user_id, []).append([at, None, seq])
        elif isinstance(ev, (SeatReleased, LicenceExpired)):
            iv = out.get(ev.user_id)
            if iv and iv[-1][1] is None:
                iv[-1][1] = at
        elif isinstance(ev, SeatEndCorrected):
            iv = out.get(ev.user_id)
            if iv and iv[-1][1] is not None:
                iv[-1][1] = ev.ended_at
        elif isinstance(ev, SeatStartCorrected):
            iv = out.get(ev.user_id)
            if iv and iv[-1][1] is None:
                iv[-1][0] = ev.started_at
    return out


def first_full_instant(terms: Terms, intervals: dict[str, list[list]], user_id: str,
                       start: datetime, end: datetime) -> datetime | None:
    """The first instant in [start, end) at which the pool had no seat free for `user_id` (holders
    other than it >= capacity), or None if a seat was free for the whole span."""
    points = {start}
    for uid, ivs in intervals.items():
        for a, b, _ in ivs:
            for t in (a, b):
                if t is not None and start < t < end:
                    points.add(t)
    points.update(at for at, _, _ in terms.changes if start < at < end)
    for t in sorted(points):
        held = sum(1 for uid, ivs in intervals.items() if uid != user_id
                   for a, b, _ in ivs if a <= t and (b is None or t < b))
        if held >= terms.capacity(t):
            return t
    return None


# ---- decide ------------------------------------------------------------------------------------

def decide_seats(state: PoolState, demand: dict[str, Demand], now: datetime) -> list[tuple[Event, datetime]]:
    """The seat events that bring `state` in line with `demand` (users not named keep their seat).

    Returns (event, effective instant) pairs, in order; evolving them in order gives the new state.
    `state` is not modified.
    """
    out: list[tuple[Event, datetime]] = []
    work = _copy(state)
    t = work.terms
    pid = t.pool_id

    def emit(ev: Event, at: datetime = now) -> None:
        out.append((ev, at))
        evolve(work, ev, at)

    # 1. time: seats past the term end expire at the term end; grace periods that ran out end.
    end = t.term_end_at(now)
    ended = now >= end
    if ended:
        for s in sorted(work.held(), key=lambda s: s.order):
            emit(LicenceExpired(pool_id=pid, user_id=s.user_id, term_end=end), end)
        for s in work.waiting():
            emit(SeatDequeued(pool_id=pid, user_id=s.user_id, reason="term_ended"), end)
    for s in sorted(work.held(), key=lambda s: s.order):
        if s.state == "suspended" and s.suspended_until is not None and s.suspended_until <= now:
            emit(SeatReleased(pool_id=pid, user_id=s.user_id, reason="grace_ended"), s.suspended_until)

    # 2. users whose demand changed: releases, suspensions, grant changes, dequeues
    requests: list[tuple[str, Demand]] = []
    for uid, d in demand.items():
        s = work.seats.get(uid)
        wants = bool(d.grants) and not d.deleted
        if s is None:
            if wants and d.active:
                requests.append((uid, d))
            continue
        if not wants:
            reason = "deleted" if d.deleted else "no_grant"
            if s.state == "waiting":
                emit(SeatDequeued(pool_id=pid, user_id=uid, reason=reason))
            else:
                emit(SeatReleased(pool_id=pid, user_id=uid, reason=reason))
            continue
        if not d.active:
            if s.state == "waiting":
                emit(SeatDequeued(pool_id=pid, user_id=uid, reason="deactivated"))
            elif s.state == "suspended":
                # still held during the grace period: it names the grants that hold it now
                if s.grants != d.grants or s.priority != d.priority:
                    emit(SeatGrantsChanged(pool_id=pid, user_id=uid, grants=sorted(d.grants), priority=d.priority))
            elif s.state == "active":
                if t.grace_seconds > 0:
                    from datetime import timedelta
                    if s.grants != d.grants or s.priority != d.priority:
                        emit(SeatGrantsChanged(pool_id=pid, user_id=uid, grants=sorted(d.grants), priority=d.priority))
                    emit(SeatSuspended(pool_id=pid, user_id=uid, until=now + timedelta(seconds=t.grace_seconds)))
                else:
                    emit(SeatReleased(pool_id=pid, user_id=uid, reason="deactivated"))
            continue
        if s.state == "suspended":
            emit(SeatResumed(pool_id=pid, user_id=uid))
            s = work.seats[uid]
        if s.grants != d.grants or s.priority != d.priority:
            emit(SeatGrantsChanged(pool_id=pid, user_id=uid, grants=sorted(d.grants), priority=d.priority))

    # 3. over capacity (a downsize took effect, a cancellation): most recently assigned first
    cap = t.capacity(now)
    over = work.held_count() - cap
    if over > 0:
        held = sorted(work.held(), key=lambda s: s.order)      # the most recent ones are loaded
        for s in reversed(held[-over:]):
            emit(SeatReleased(pool_id=pid, user_id=s.user_id, reason="downsized", policy="lifo"))
            if s.state == "active":
                # the rules still grant it: the user waits again, served when a seat frees (a
                # suspended seat belongs to a deactivated user, who does not wait)
                emit(SeatQueued(pool_id=pid, user_id=s.user_id, grants=sorted(s.grants), priority=s.priority))

    # 4. new requests queue in priority order, then everyone waiting is served while seats are free
    for uid, d in sorted(requests, key=lambda r: (r[1].priority, r[0])) if not ended else ():
        emit(SeatQueued(pool_id=pid, user_id=uid, grants=sorted(d.grants), priority=d.priority))
    _fill(work, now, emit)
    return out


def _fill(work: PoolState, now: datetime, emit) -> None:
    t = work.terms
    contracted = t.seats_at(now)
    for s in work.waiting():
        held = work.held_count()
        if held >= t.capacity(now):
            break
        emit(SeatAssigned(pool_id=t.pool_id, user_id=s.user_id, grants=sorted(s.grants), priority=s.priority,
                          overage=held >= contracted))


def _copy(state: PoolState) -> PoolState:
    t = state.terms
    terms = replace(t, changes=list(t.changes))
    return PoolState(terms, dict(state.seats), state.counter, state.unloaded_held)


def compact(events: Iterable[tuple[Event, datetime]]) -> list[tuple[Event, datetime]]:
    """Drop a SeatQueued immediately followed by its own SeatAssigned (a request served at once):
    the ledger records one SeatAssigned for it."""
    evs = list(events)
    out = []
    assigned = {e.user_id for e, _ in evs if isinstance(e, SeatAssigned)}
    dropped = set()
    for e, at in evs:
        if isinstance(e, SeatQueued) and e.user_id in assigned and e.user_id not in dropped:
            dropped.add(e.user_id)
            continue
        out.append((e, at))
    return out


def to_new_events(evs: list[tuple[Event, datetime]], now: datetime) -> list:
    """NewEvents for decided seat events. Time-driven ones carry a natural idempotency key, so that
    however many processes run the scheduler, each is recorded once (a unique index guards it)."""
    from .canonical import to_micros
    from .events import NewEvent
    out = []
    for e, at in evs:
        key = None
        if isinstance(e, LicenceExpired):
            key = f"expire:{e.pool_id}:{e.user_id}:{to_micros(e.term_end)}"
        elif isinstance(e, SeatReleased) and e.reason == "grace_ended":
            key = f"grace:{e.pool_id}:{e.user_id}:{to_micros(at)}"
        out.append(NewEvent(e, at if at != now else None, key))
    return out
