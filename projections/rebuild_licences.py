"""The licence projections' current state folded from the pool and product events (sequence order,
as the write side folds): `licence_pools`, `licence_seats` (through `ledger.licences.evolve`, or its
one-seat equivalent from the raw data for the lean seat events), `licence_rules`,
`licence_admin_grants`, `licence_products`; rows encoded as `projections.licences` writes them.

A seat folded from raw data keeps its times (`since`, `requested_at`) as the events carry them,
integer microseconds since the Unix epoch, and its rows go to COPY as such (`Table.micros`): a
rebuild folds hundreds of thousands of seats, and making each time a datetime only for asyncpg to
take it apart again cost about a second of a 1M-event rebuild. A seat that went through `evolve`
(an older event version, a correction) may hold datetimes; `records` and `tables` take either.
"""
from __future__ import annotations

from datetime import datetime

from ledger.canonical import from_micros, to_micros
from ledger.licences import PoolState, Seat, SeatGrantsChanged, SeatResumed, SeatSuspended, evolve
from projections import temporal as tp
from projections.licences import terms_from_json, terms_to_json
from projections.rebuild_compare import PG_EPOCH_US, Table

TABLES = (
    Table("licence_pools", ("pool_id",), ("product_id", "terms", "counter", "held")),
    Table("licence_seats", ("pool_id", "user_id"), ("state", "grants", "priority", "since", "requested_at",
                                                    "overage", "suspended_until", "ord"), micros=True),
    Table("licence_products", ("product_id",), ("name",)),
    Table("licence_rules", ("pool_id", "rule_id"), ("priority", "kind", "group_id", "filter")),
    Table("licence_admin_grants", ("pool_id", "user_id"), ()),
)


class LicenceFold:
    def __init__(self):
        self.pools: dict[str, PoolState] = {}
        self.products: dict[str, str] = {}
        self.rules: dict[tuple[str, str], tuple] = {}
        self.admin: set[tuple[str, str]] = set()

    def apply(self, stream: str, typ: str, eff: datetime, ev) -> None:
        if typ == "ProductDefined":
            self.products[ev.product_id] = ev.name
        elif typ == "RuleAdded":
            self.rules[(ev.pool_id, ev.rule_id)] = (ev.priority, ev.kind, ev.group_id, ev.filter)
        elif typ == "RuleRemoved":
            self.rules.pop((ev.pool_id, ev.rule_id), None)
        elif typ == "AdminGranted":
            self.admin.add((ev.pool_id, ev.user_id))
        elif typ == "AdminRevoked":
            self.admin.discard((ev.pool_id, ev.user_id))
        elif stream.startswith("pool-") and hasattr(ev, "pool_id"):
            st = self.pools.get(ev.pool_id)
            if st is None and typ != "PoolCreated":
                return
            if isinstance(ev, (SeatGrantsChanged, SeatSuspended, SeatResumed)) and ev.user_id not in st.seats:
                return
            self.pools[ev.pool_id] = evolve(st, ev, eff)

    def apply_raw(self, typ: str, eff: int, d: dict) -> None:
        """`apply` for a lean seat event (`tp.lean_ok`) from its raw data: `evolve` on one seat. `eff`:
        the effective time in microseconds, kept as such in the seat."""
        st = self.pools.get(d["pool_id"])
        if st is None:
            return
        uid = d["user_id"]
        seats = st.seats
        if typ == "SeatAssigned":
            st.counter += 1
            prev = seats.get(uid)
            seats[uid] = Seat(uid, "active", frozenset(d["grants"]), d["priority"], eff,
                              prev.requested_at if prev else eff, d.get("overage", False), order=st.counter)
        elif typ == "SeatQueued":
            seats[uid] = Seat(uid, "waiting", frozenset(d["grants"]), d["priority"], eff, eff)
        elif typ in ("SeatReleased", "SeatDequeued", "LicenceExpired"):
            seats.pop(uid, None)
        else:
            s = seats.get(uid)
            if s is None:
                return
            if typ == "SeatGrantsChanged":
                seats[uid] = Seat(uid, s.state, frozenset(d["grants"]), d["priority"], s.since, s.requested_at,
                                  s.overage, s.suspended_until, s.order)
            elif typ == "SeatSuspended":
                seats[uid] = Seat(uid, "suspended", s.grants, s.priority, s.since, s.requested_at, s.overage,
                                  tp.parse_time(d["until"]), s.order)
            elif typ == "SeatResumed":
                seats[uid] = Seat(uid, "active", s.grants, s.priority, s.since, s.requested_at, s.overage,
                                  None, s.order)

    def tables(self) -> dict[str, dict[tuple, tuple]]:
        """table -> {key: normalized row} (times as instants, terms as Terms)."""
        pools, seats = {}, {}
        for pid, p in self.pools.items():
            pools[(pid,)] = (p.terms.product_id, terms_from_json(terms_to_json(p.terms)), p.counter, p.held_count())
            for uid, s in p.seats.items():
                seats[(pid, uid)] = (s.state, tuple(sorted(s.grants)), s.priority, _instant(s.since),
                                     _instant(s.requested_at), s.overage, s.suspended_until, s.order)
        return {"licence_pools": pools, "licence_seats": seats,
                "licence_products": {(k,): (v,) for k, v in self.products.items()},
                "licence_rules": {k: v for k, v in self.rules.items()},
                "licence_admin_grants": {k: () for k in self.admin}}

    def records(self, tenant: str, pools: set[str] | None = None) -> dict[str, list[tuple]]:
        """table -> rows as the live projection stores them (tenant, keys, values; licence_seats' times
        as COPY's `micros` tuples); `pools`: only the rows of those pools (licence_pools, licence_seats -
        a refolded tail's scope)."""
        rows, seats = [], []
        grants: dict[frozenset, list[str]] = {}     # a few sets of grants, each sorted once (COPY only reads them)
        pg = PG_EPOCH_US
        for pid, p in self.pools.items():
            if pools is not None and pid not in pools:
                continue
            rows.append((tenant, pid, p.terms.product_id, terms_to_json(p.terms), p.counter, p.held_count()))
            seats += [(tenant, pid, uid, s.state, grants.get(s.grants) or grants.setdefault(s.grants, sorted(s.grants)),
                       s.priority, (s.since - pg,) if type(s.since) is int else _micros(s.since),
                       (s.requested_at - pg,) if type(s.requested_at) is int else _micros(s.requested_at),
                       s.overage, None if s.suspended_until is None else _micros(s.suspended_until), s.order)
                      for uid, s in p.seats.items()]
        return {"licence_pools": rows, "licence_seats": seats,
                "licence_products": [(tenant, k, v) for k, v in self.products.items()],
                "licence_rules": [(tenant, *k, *v) for k, v in self.rules.items()],
                "licence_admin_grants": [(tenant, *k) for k in self.admin]}


def _instant(t: int | datetime) -> datetime:
    return from_micros(t) if type(t) is int else t


def _micros(t: datetime) -> tuple[int]:
    """A datetime as COPY's `micros` value: (microseconds since 2000-01-01,)."""
    return (to_micros(t) - PG_EPOCH_US,)
