"""The temporal projection: who held which seat when, and what the ledger knew when (bitemporal).

Tables (ledger/sql/0050_temporal.sql):

* `seat_intervals`: one row per (pool, user, seat state) with `valid` = the effective-time range the
  state holds and `known` = the tenant sequence range during which the ledger believed it. The
  question "at instant T, as known at sequence K" is `valid @> T AND known @> K`, read on the scalar bounds
  of 0051 (`valid_from <= T < valid_to`, `known_from <= K < known_to`) through btree index-only scans.
* `temporal_pairs`: per (pool, user), the sequences of its seat events and their latest effective
  instant; `temporal_pools` / `temporal_pool_changes`: products and contracted seats over time;
  `temporal_marks`: recorded time -> sequence, for `knownAt` given as a time.

Writing. A (pool, user) pair's timeline is its seat events folded through `ledger.licences.evolve`
in effective-time order (ties by sequence). An event effective at or after the pair's latest one
(the normal case, expiries included) extends the timeline: the open-ended interval is truncated at
the event's instant and the new state opens. An event effective earlier (a correction, e.g. a
release effective on the 3rd recorded on the 20th) refolds the pair's events. Either way the
intervals that stop being believed get `known` closed at the event's sequence, and the new ones open
at it: the beliefs before the correction stay answerable.

Catch-up, not inline: `catch_up` follows the tenant sequence (checkpoint `temporal` in
`checkpoints`) in one transaction under an advisory lock, so concurrent callers never apply an event
twice. Every query first catches up to the tenant head (`ensure_current`), so answers are exact;
`run` keeps it current in the background. A seat event whose state cannot apply (e.g. a grants
change for a seat a correction already ended) changes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, AsyncIterator, Awaitable, Callable, NamedTuple

import asyncpg
import orjson
from asyncpg import Range

from ledger.canonical import from_micros
from ledger.events import Event, _latest, decode
from ledger.licences import (LicenceExpired, PoolCreated, PoolState, Seat, SeatAssigned, SeatGrantsChanged,
                             SeatReleased, SeatResumed, SeatSuspended, evolve)

SUBSCRIBER = "temporal"
LOCK_KEY = "seatledger:temporal:"
HELD = ("active", "suspended")
POOL_KINDS = {"PoolResized": "resize", "PoolRepriced": "reprice", "PoolRenewed": "renew",
              "PoolCancelled": "cancel"}
CORRECTIONS = frozenset({"SeatEndCorrected", "SeatStartCorrected"})
SEAT_TYPES = frozenset({"SeatAssigned", "SeatQueued", "SeatGrantsChanged", "SeatSuspended", "SeatResumed",
                        "SeatReleased", "SeatDequeued", "LicenceExpired"}) | CORRECTIONS
_NEEDS_SEAT = (SeatGrantsChanged, SeatSuspended, SeatResumed)
INTERVAL_COLUMNS = ("tenant_id", "pool_id", "product_id", "user_id", "state", "grants", "priority", "overage",
                    "suspended_until", "valid", "known", "opened_seq", "opened_type", "closed_seq",
                    "closed_type", "closed_reason")


# ---- the pure part: a pair's timeline --------------------------------------------------------------

class Interval(NamedTuple):
    """A state of a pair's seat over valid time (a named tuple: a rebuild makes millions)."""
    valid_from: datetime
    valid_to: datetime | None          # None: open-ended
    state: str
    grants: tuple[str, ...]
    priority: int
    overage: bool
    suspended_until: datetime | None
    opened_seq: int
    opened_type: str
    closed_seq: int | None = None
    closed_type: str | None = None
    closed_reason: str | None = None


def _key(seat: Seat | None):
    if seat is None:
        return None
    return (seat.state, tuple(sorted(seat.grants)), seat.priority, seat.overage, seat.suspended_until)


def fold_seat(seat: Seat | None, user_id: str, ev: Event, eff: datetime) -> Seat | None:
    """One user's seat after `ev`, through the write side's evolve (a stub pool holds the seat)."""
    if seat is None and isinstance(ev, _NEEDS_SEAT):
        return None
    st = PoolState(None, {user_id: seat} if seat is not None else {})  # type: ignore[arg-type]
    evolve(st, ev, eff)
    return st.seats.get(user_id)


def _reason(ev: Event) -> str | None:
    if isinstance(ev, LicenceExpired):
        return "term_ended"
    return getattr(ev, "reason", None)


def _step(ivs: list[Interval], seat: Seat | None, new: Seat | None, seq: int, eff: datetime, typ: str,
          reason: str | None) -> bool:
    """Extend the timeline `ivs` (sorted, the last one open-ended iff `seat`) with one event."""
    new_key = _key(new)
    if new_key == _key(seat):
        return False
    if seat is not None:
        last = ivs.pop()
        if eff > last.valid_from:         # a state that lasted no time is dropped
            ivs.append(last._replace(valid_to=eff, closed_seq=seq, closed_type=typ, closed_reason=reason))
    if new is not None:
        ivs.append(Interval(eff, None, *new_key, seq, typ))
    return True


def _as_seat_event(ev: Event, typ: str, assigned: dict[datetime, Event]) -> Event | None:
    """Corrections (issue 4) in effective-time terms: a corrected end is a release at that instant; a
    corrected start assigns, at that instant, the holding that began at `previous_start`."""
    if typ == "SeatEndCorrected":
        return SeatReleased(pool_id=ev.pool_id, user_id=ev.user_id, reason=getattr(ev, "reason", None) or "correction")
    if typ == "SeatStartCorrected":
        a = assigned.get(ev.previous_start)
        return None if a is None else SeatAssigned(pool_id=a.pool_id, user_id=a.user_id, grants=a.grants,
                                                   priority=a.priority, overage=a.overage)
    return ev


def timeline(user_id: str, events: list[tuple[int, datetime, Event, str]]) -> tuple[list[Interval], Seat | None]:
    """A pair's intervals from all its known events (seq, effective_at, event, type)."""
    ivs: list[Interval] = []
    seat = None
    assigned = {eff: ev for _, eff, ev, typ in sorted(events, key=lambda e: e[0]) if typ == "SeatAssigned"}
    for seq, eff, ev, typ in sorted(events, key=lambda e: (e[1], e[0])):
        if typ in CORRECTIONS:
            reason = getattr(ev, "reason", None) or "correction"
            ev = _as_seat_event(ev, typ, assigned)
            if ev is None:
                continue
            new = fold_seat(seat, user_id, ev, eff)
            _step(ivs, seat, new, seq, eff, typ, reason)
            seat = new
            continue
        new = fold_seat(seat, user_id, ev, eff)
        _step(ivs, seat, new, seq, eff, typ, _reason(ev))
        seat = new
    return ivs, seat


@dataclass(slots=True)
class Row:
    iv: Interval
    known_from: int
    stored: bool                      # already in the table (closing it is an UPDATE)


@dataclass(slots=True)
class Pair:
    pool_id: str
    user_id: str
    seqs: list[int]
    last_eff: datetime | int | None   # int (microseconds) while the pair is not folded
    seat: Seat | None
    rows: list[Row]                   # the current belief, sorted by valid_from
    stored: bool = False
    folded: bool = True               # False: a lazy Writer has only tracked its seqs and last_eff


def _seat_from(iv: Interval, user_id: str) -> Seat:
    return Seat(user_id, iv.state, frozenset(iv.grants), iv.priority, iv.valid_from, iv.valid_from, iv.overage,
                iv.suspended_until)


# ---- the lean fold: the same step from an event's raw data (a rebuild folds millions) ------------------

LEAN_TYPES = frozenset({"SeatAssigned", "SeatQueued", "SeatGrantsChanged", "SeatSuspended", "SeatResumed",
                        "SeatReleased", "SeatDequeued", "LicenceExpired"})


def lean_ok(typ: str, schema_version: int) -> bool:
    """Whether a stored event can be folded from its raw data: a lean type at its current schema
    version (older versions go through `decode`, which upcasts)."""
    return typ in LEAN_TYPES and _latest.get(typ) == schema_version


def parse_time(v: str) -> datetime:
    return datetime.fromisoformat(v)


def lean_key(key: tuple | None, typ: str, d: dict) -> tuple | None:
    """`_key(fold_seat(seat, ...))` for a lean event, from `key = _key(seat)` and the raw data: what
    `ledger.licences.evolve` does to one seat (a change to a missing seat changes nothing)."""
    if typ == "SeatAssigned":
        return ("active", tuple(sorted(set(d["grants"]))), d["priority"], d.get("overage", False), None)
    if typ == "SeatQueued":
        return ("waiting", tuple(sorted(set(d["grants"]))), d["priority"], False, None)
    if key is None:
        return None
    if typ == "SeatGrantsChanged":
        return (key[0], tuple(sorted(set(d["grants"]))), d["priority"], key[3], key[4])
    if typ == "SeatSuspended":
        return ("suspended", key[1], key[2], key[3], parse_time(d["until"]))
    if typ == "SeatResumed":
        return ("active", key[1], key[2], key[3], None)
    return None                         # released, dequeued, expired


def lean_reason(typ: str, d: dict) -> str | None:
    if typ == "LicenceExpired":
        return "term_ended"
    return d.get("reason") if typ in ("SeatReleased", "SeatDequeued") else None


def _seat_of_key(user_id: str, key: tuple, eff: datetime) -> Seat:
    return Seat(user_id, key[0], frozenset(key[1]), key[2], eff, eff, key[3], key[4])


class Writer:
    """Folds a run of a tenant's events into row changes. Pairs not preloaded start empty (a rebuild).

    `lazy` (a rebuild whose simple pairs' rows come from SQL, projections/temporal_sql.py): a pair's
    in-order lean events (`apply_raw`) only track its seqs and latest instant; the pair is folded -
    its earlier events first, from the history `apply` is given - once an event needs `apply` (a
    backdated event or a correction). Rows are made for those pairs only."""

    def __init__(self, tenant: str, lazy: bool = False):
        self.tenant = tenant
        self.lazy = lazy
        # a lazy fold met what SQL would read otherwise (an older schema version of a seat event, a
        # seat event before its pool was created, a pool created twice): the rebuild folds eagerly
        self.unsafe = False
        self.pairs: dict[tuple[str, str], Pair] = {}
        self.products: dict[str, str] = {}
        self.touched: dict[tuple[str, str], Pair] = {}
        self.finished: list[tuple] = []           # rows whose belief ended within this run
        self.closes: list[tuple[str, str, datetime, int]] = []   # stored rows to close
        self.pools: list[tuple] = []
        self.changes: list[tuple] = []
        self.marks: dict[datetime, int] = {}
        self.last_seq = 0
        self.events = 0

    def _record(self, pair: Pair, iv: Interval, known_from: int, known_to: int | None) -> tuple:
        # ranges as asyncpg's tuple forms where they mean [lower, upper) - (lower,) is [lower, inf) and
        # int8range [a, b - 1] is [a, b) - cheaper to make and to encode than Range objects
        return (self.tenant, pair.pool_id, self.products.get(pair.pool_id, ""), pair.user_id, iv.state,
                iv.grants, iv.priority, iv.overage, iv.suspended_until,
                (iv.valid_from,) if iv.valid_to is None else
                Range(iv.valid_from, iv.valid_to, lower_inc=True, upper_inc=False),
                (known_from,) if known_to is None else (known_from, known_to - 1),
                iv.opened_seq, iv.opened_type, iv.closed_seq, iv.closed_type, iv.closed_reason)

    def _close(self, pair: Pair, row: Row, seq: int) -> None:
        if row.stored:
            self.closes.append((pair.pool_id, pair.user_id, row.iv.valid_from, seq))
        elif row.known_from < seq:
            self.finished.append(self._record(pair, row.iv, row.known_from, seq))

    def pair(self, pool_id: str, user_id: str) -> Pair:
        p = self.pairs.get((pool_id, user_id))
        if p is None:
            p = self.pairs[(pool_id, user_id)] = Pair(pool_id, user_id, [], None, None, [])
        return p

    def mark(self, seq: int, recorded_at: datetime) -> None:
        if self.marks.get(recorded_at, 0) < seq:
            self.marks[recorded_at] = seq
        self.last_seq = max(self.last_seq, seq)

    def needs_history(self, pool_id: str, user_id: str, eff: datetime, typ: str) -> list[int] | None:
        """The earlier sequences to fetch before applying a seat event effective at `eff`, or None."""
        p = self.pairs.get((pool_id, user_id))
        if p is not None and not p.folded:      # a lazy pair is folded from its history before anything else
            return list(p.seqs) if p.seqs else None
        if p is None or p.last_eff is None or (eff >= p.last_eff and typ not in CORRECTIONS):
            return None
        return list(p.seqs)

    def apply(self, seq: int, pool_id: str, typ: str, eff: datetime, ev: Event,
              history: list[tuple[int, datetime, Event, str]] | None = None) -> None:
        """Fold one pool-stream event. `history`: the pair's earlier events, when needs_history asked."""
        self.events += 1
        self.last_seq = max(self.last_seq, seq)
        if typ not in SEAT_TYPES:
            if isinstance(ev, PoolCreated):
                if pool_id in self.products:
                    self.unsafe = True
                self.products[pool_id] = ev.product_id
                self.pools.append((self.tenant, pool_id, ev.product_id, ev.seats, seq))
            elif typ in POOL_KINDS:
                val = ev.model_dump(mode="json", exclude={"pool_id"})
                self.changes.append((self.tenant, pool_id, seq, POOL_KINDS[typ], eff, orjson.dumps(val).decode()))
            return
        uid = ev.user_id
        p = self.pair(pool_id, uid)
        if not p.folded:
            self._fold_pair(p, history)
        self.touched[(pool_id, uid)] = p
        if history is None and typ in CORRECTIONS and p.last_eff is None:
            history = []
        if history is None and (p.last_eff is None or eff >= p.last_eff):
            new = fold_seat(p.seat, uid, ev, eff)
            if _key(new) != _key(p.seat):
                if p.seat is not None:
                    row = p.rows.pop()
                    self._close(p, row, seq)
                    if eff > row.iv.valid_from:
                        p.rows.append(Row(row.iv._replace(valid_to=eff, closed_seq=seq, closed_type=typ,
                                                  closed_reason=_reason(ev)), seq, False))
                if new is not None:
                    p.rows.append(Row(Interval(eff, None, *_key(new), seq, typ), seq, False))
            p.seat = new
            p.last_eff = eff
        else:
            if p.last_eff is None or eff > p.last_eff:
                p.last_eff = eff
            assert history is not None, "a backdated event needs the pair's history"
            ivs, seat = timeline(uid, list(history) + [(seq, eff, ev, typ)])
            keep = set(ivs)
            rows = []
            for r in p.rows:
                if r.iv in keep:
                    rows.append(r)
                    keep.discard(r.iv)
                else:
                    self._close(p, r, seq)
            rows += [Row(iv, seq, False) for iv in ivs if iv in keep]
            rows.sort(key=lambda r: r.iv.valid_from)
            p.rows, p.seat = rows, seat
        p.seqs.append(seq)

    def _fold_pair(self, p: Pair, history: list[tuple[int, datetime, Event, str]] | None) -> None:
        """A lazy pair's earlier events (all in effective order: each went through `apply_raw`) folded
        as they came, before the event that needs `apply`."""
        assert history is not None or not p.seqs, "a lazy pair's first refold needs its history"
        p.folded, p.seqs, p.last_eff = True, [], None
        for seq, eff, ev, typ in sorted(history or (), key=lambda h: h[0]):
            self.apply(seq, p.pool_id, typ, eff, ev)

    def apply_raw(self, seq: int, pool_id: str, typ: str, us: int, d: dict) -> bool:
        """`apply` for a lean seat event (see `lean_ok`) from its raw data, effective at `us`
        (microseconds), when it extends the pair's timeline (effective at or after its latest event).
        False: nothing done, use `apply`."""
        uid = d["user_id"]
        k = (pool_id, uid)
        p = self.pairs.get(k)
        if p is None:
            p = self.pairs[k] = Pair(pool_id, uid, [], None, None, [], folded=not self.lazy)
        if not p.folded:                # lazy: its rows come from SQL unless a later event refolds it
            if p.last_eff is not None and us < p.last_eff:
                return False
            if pool_id not in self.products:
                self.unsafe = True
            p.last_eff = us             # an integer: most pairs are never folded, and need no datetime
            p.seqs.append(seq)
            return True
        eff = from_micros(us)
        if p.last_eff is not None and eff < p.last_eff:
            return False
        self.events += 1
        if seq > self.last_seq:
            self.last_seq = seq
        self.touched[k] = p
        seat = p.seat
        # `_key(seat)`: the open row's state fields, which are made from it (no grants sorted again)
        old = None if seat is None else p.rows[-1].iv[2:7]
        new = lean_key(old, typ, d)
        if new != old:
            if seat is not None:
                row = p.rows.pop()
                self._close(p, row, seq)
                iv = row.iv
                if eff > iv.valid_from:
                    p.rows.append(Row(Interval(iv.valid_from, eff, iv.state, iv.grants, iv.priority, iv.overage,
                                               iv.suspended_until, iv.opened_seq, iv.opened_type, seq, typ,
                                               lean_reason(typ, d)), seq, False))
            if new is not None:
                p.rows.append(Row(Interval(eff, None, new[0], new[1], new[2], new[3], new[4], seq, typ), seq, False))
                p.seat = _seat_of_key(uid, new, eff)
            else:
                p.seat = None
        p.last_eff = eff
        p.seqs.append(seq)
        return True

    def inserts(self) -> list[tuple]:
        """The new rows: those whose belief ended within this run, then the touched pairs' still believed."""
        return self.finished + [self._record(p, r.iv, r.known_from, None) for p in self.touched.values()
                                for r in p.rows if not r.stored]

    def pair_rows(self) -> list[tuple]:
        return [(self.tenant, p.pool_id, p.user_id, p.seqs, p.last_eff) for p in self.touched.values()]


# ---- reading events -------------------------------------------------------------------------------

_POOL_EVENTS = ("SELECT seq, stream, type, schema_version, data::text AS data, effective_at FROM events "
                "WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 AND stream LIKE 'pool-%' ORDER BY seq")


def decode_row(r) -> Event:
    return decode(r["type"], r["schema_version"], orjson.loads(r["data"]))


async def fetch_history(conn, tenant: str, seqs: list[int]) -> list[tuple[int, datetime, Event, str]]:
    rows = await conn.fetch("SELECT seq, type, schema_version, data::text AS data, effective_at FROM events "
                            "WHERE tenant_id = $1 AND seq = ANY($2::bigint[])", tenant, seqs)
    return [(r["seq"], r["effective_at"], decode_row(r), r["type"]) for r in rows]


async def feed(conn, w: Writer, rows, decoded: bool = False) -> None:
    """Apply raw event rows (seq order; or (row, event) pairs when `decoded`) to the writer, fetching a
    pair's history for a backdated event."""
    for r in rows:
        if decoded:
            r, ev = r
        else:
            ev = decode_row(r)
        pid = r["stream"][5:]
        hist = None
        if r["type"] in SEAT_TYPES:
            need = w.needs_history(pid, ev.user_id, r["effective_at"], r["type"])
            if need is not None:
                hist = await fetch_history(conn, w.tenant, need)
        w.apply(r["seq"], pid, r["type"], r["effective_at"], ev, hist)


async def marks_between(conn, tenant: str, after: int, upto: int) -> list[tuple[int, datetime]]:
    return [(r["s"], r["recorded_at"]) for r in await conn.fetch(
        "SELECT recorded_at, max(seq) AS s FROM events WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 "
        "GROUP BY recorded_at", tenant, after, upto)]


# ---- writing rows -----------------------------------------------------------------------------------

async def preload(conn, tenant: str, w: Writer, keys: set[tuple[str, str]], prefix: str = "") -> None:
    if not keys:
        return
    pools = sorted({k[0] for k in keys})
    for r in await conn.fetch(f"SELECT pool_id, product_id FROM {prefix}temporal_pools WHERE tenant_id = $1 "
                              "AND pool_id = ANY($2::text[])", tenant, pools):
        w.products[r["pool_id"]] = r["product_id"]
    ps, us = [k[0] for k in keys], [k[1] for k in keys]
    for r in await conn.fetch(
            f"SELECT t.pool_id, t.user_id, t.seqs, t.last_eff FROM {prefix}temporal_pairs t "
            "JOIN unnest($2::text[], $3::text[]) AS k(p, u) ON t.pool_id = k.p AND t.user_id = k.u "
            "WHERE t.tenant_id = $1", tenant, ps, us):
        w.pairs[(r["pool_id"], r["user_id"])] = Pair(r["pool_id"], r["user_id"], list(r["seqs"]), r["last_eff"],
                                                      None, [], stored=True)
    for r in await conn.fetch(
            f"SELECT s.* FROM {prefix}seat_intervals s JOIN unnest($2::text[], $3::text[]) AS k(p, u) "
            "ON s.pool_id = k.p AND s.user_id = k.u WHERE s.tenant_id = $1 AND upper_inf(s.known)",
            tenant, ps, us):
        p = w.pairs.get((r["pool_id"], r["user_id"]))
        if p is None:
            continue
        v = r["valid"]
        p.rows.append(Row(Interval(v.lower, None if v.upper_inf else v.upper, r["state"], tuple(r["grants"]),
                                   r["priority"], r["overage"], r["suspended_until"], r["opened_seq"],
                                   r["opened_type"], r["closed_seq"], r["closed_type"], r["closed_reason"]),
                          r["known"].lower, True))
    for p in w.pairs.values():
        p.rows.sort(key=lambda r: r.iv.valid_from)
        if p.rows and p.rows[-1].iv.valid_to is None:
            p.seat = _seat_from(p.rows[-1].iv, p.user_id)


async def write(conn, tenant: str, w: Writer, *, prefix: str = "") -> None:
    """Write a run's changes (tables named `prefix` + name: the live ones, or a rebuild's side tables)."""
    t = prefix
    if w.closes:
        await conn.execute(
            f"UPDATE {t}seat_intervals s SET known = int8range(lower(s.known), c.seq) "
            "FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::bigint[]) AS c(p, u, vf, seq) "
            "WHERE s.tenant_id = $1 AND s.user_id = c.u AND s.pool_id = c.p AND lower(s.valid) = c.vf "
            "AND upper_inf(s.known)", tenant, *[list(x) for x in zip(*w.closes)])
    ins = w.inserts()
    if ins:
        await conn.copy_records_to_table(f"{t}seat_intervals", records=ins, columns=INTERVAL_COLUMNS)
    pairs = w.pair_rows()
    if pairs:
        if prefix:      # a side table has no key to upsert on: the pairs' rows replaced
            await conn.execute(f"DELETE FROM {t}temporal_pairs s USING unnest($1::text[], $2::text[]) AS k(p, u) "
                               "WHERE s.pool_id = k.p AND s.user_id = k.u",
                               [p[1] for p in pairs], [p[2] for p in pairs])
            await conn.copy_records_to_table(f"{t}temporal_pairs", records=pairs,
                                             columns=("tenant_id", "pool_id", "user_id", "seqs", "last_eff"))
        else:
            await conn.execute(
                "INSERT INTO temporal_pairs (tenant_id, pool_id, user_id, seqs, last_eff) "
                "SELECT $1, p, u, ARRAY(SELECT jsonb_array_elements_text(s::jsonb)::bigint), e "
                "FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS x(p, u, s, e) "
                "ON CONFLICT (tenant_id, pool_id, user_id) DO UPDATE SET seqs = EXCLUDED.seqs, "
                "last_eff = EXCLUDED.last_eff", tenant, [p[1] for p in pairs], [p[2] for p in pairs],
                [orjson.dumps(p[3]).decode() for p in pairs], [p[4] for p in pairs])
    if w.pools:
        await conn.copy_records_to_table(f"{t}temporal_pools", records=w.pools,
                                         columns=("tenant_id", "pool_id", "product_id", "seats", "created_seq"))
    if w.changes:
        await conn.executemany(
            f"INSERT INTO {t}temporal_pool_changes (tenant_id, pool_id, seq, kind, effective_at, value) "
            "VALUES ($1, $2, $3, $4, $5, $6::jsonb)", w.changes)
    if w.marks:
        await conn.copy_records_to_table(f"{t}temporal_marks", records=[(tenant, s, at) for at, s in w.marks.items()],
                                         columns=("tenant_id", "seq", "recorded_at"))


async def _checkpoint(conn, tenant: str) -> int:
    return await conn.fetchval("SELECT seq FROM checkpoints WHERE subscriber = $1 AND tenant_id = $2",
                               SUBSCRIBER, tenant) or 0


async def set_checkpoint(conn, tenant: str, seq: int) -> None:
    await conn.execute(
        "INSERT INTO checkpoints (subscriber, tenant_id, seq) VALUES ($1, $2, $3) ON CONFLICT (subscriber, tenant_id) "
        "DO UPDATE SET seq = EXCLUDED.seq, updated_at = now()", SUBSCRIBER, tenant, seq)


async def lock(conn, tenant: str) -> None:
    """Serializes the writers of a tenant's temporal tables (catch-up and rebuild's swap)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", LOCK_KEY + tenant)


async def catch_up_locked(conn, tenant: str, upto: int | None = None, chunk: int = 20_000) -> int:
    """Inside the caller's transaction, holding `lock`: apply events up to `upto` (default: the head)."""
    after = await _checkpoint(conn, tenant)
    if upto is None:
        upto = await conn.fetchval("SELECT seq FROM tenant_heads WHERE tenant_id = $1", tenant) or 0
    while after < upto:
        end = min(upto, after + chunk)
        await catch_up_run(conn, tenant, after, end)
        await set_checkpoint(conn, tenant, end)
        after = end
    return after


async def catch_up_run(conn, tenant: str, after: int, upto: int, *, prefix: str = "") -> None:
    """The tables named `prefix` + name (the live ones, or a rebuild's side tables that hold the rows
    as of `after`) brought from `after` to `upto`: the pairs the events touch read back, fed, written."""
    rows = await conn.fetch(_POOL_EVENTS, tenant, after, upto)
    w = Writer(tenant)
    keys = set()
    for r in rows:
        if r["type"] in SEAT_TYPES:
            keys.add((r["stream"][5:], orjson.loads(r["data"])["user_id"]))
    await preload(conn, tenant, w, keys, prefix)
    await feed(conn, w, rows)
    for s, at in await marks_between(conn, tenant, after, upto):
        w.mark(s, at)
    # a mark already stored for the same recorded time (a batch split across chunks) moves up
    if w.marks:
        await conn.execute(f"DELETE FROM {prefix}temporal_marks WHERE tenant_id = $1 "
                           "AND recorded_at = ANY($2::timestamptz[])", tenant, list(w.marks))
    await write(conn, tenant, w, prefix=prefix)


async def catch_up(pool: asyncpg.Pool, tenant: str) -> int:
    async with pool.acquire() as conn:
        async with conn.transaction():
            await lock(conn, tenant)
            return await catch_up_locked(conn, tenant)


async def ensure_current(pool: asyncpg.Pool, tenant: str) -> int:
    """Catch up to the tenant's head if behind; returns the sequence the tables reflect."""
    async with pool.acquire() as conn:
        r = await conn.fetchrow(
            "SELECT (SELECT seq FROM tenant_heads WHERE tenant_id = $1) AS head, "
            "(SELECT seq FROM checkpoints WHERE subscriber = $2 AND tenant_id = $1) AS cp", tenant, SUBSCRIBER)
    if r["head"] is not None and (r["cp"] or 0) >= r["head"]:
        return r["cp"]
    return await catch_up(pool, tenant)


async def run(pool: asyncpg.Pool, tenant: str, interval: float = 1.0) -> None:
    """Keep a tenant's temporal tables current in the background (queries catch up anyway)."""
    import asyncio
    while True:
        await ensure_current(pool, tenant)
        await asyncio.sleep(interval)


# ---- queries ---------------------------------------------------------------------------------------

async def resolve_known(conn, tenant: str, known: int | datetime | None, head: int) -> int:
    """knownAt as a sequence: an integer as given, a time -> the last sequence recorded by then."""
    if known is None:
        return head
    if isinstance(known, int):
        return known
    return await conn.fetchval("SELECT coalesce(max(seq), 0) FROM temporal_marks WHERE tenant_id = $1 "
                               "AND recorded_at <= $2", tenant, known)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _seat(r) -> dict:
    v = r["valid"]
    return {"user_id": r["user_id"], "pool_id": r["pool_id"], "product_id": r["product_id"], "state": r["state"],
            "grants": list(r["grants"]), "priority": r["priority"], "overage": r["overage"],
            "suspended_until": _iso(r["suspended_until"]), "since": _iso(v.lower),
            "until": None if v.upper_inf else _iso(v.upper), "by_seq": r["opened_seq"]}


async def pools_of_product(conn, tenant: str, product_id: str, k: int) -> list[str]:
    return [r["pool_id"] for r in await conn.fetch(
        "SELECT pool_id FROM temporal_pools WHERE tenant_id = $1 AND product_id = $2 AND created_seq <= $3 "
        "ORDER BY pool_id", tenant, product_id, k)]


# valid @> T and known @> K on the scalar bounds (0051): index-only scans of seat_intervals_holders
# (a page per pool in user order, merged) and seat_intervals_at (the count)
_PAGE_COLUMNS = ("user_id, pool_id, product_id, state, grants, priority, overage, suspended_until, valid, "
                 "opened_seq")
_HOLDERS = f"""
SELECT c.total, h.* FROM (
  SELECT count(*) AS total FROM seat_intervals s
  WHERE s.tenant_id = $1 AND s.pool_id = ANY($2::text[]) AND s.valid_from <= $3::timestamptz
    AND s.valid_to > $3::timestamptz AND s.known_from <= $4::bigint AND s.known_to > $4::bigint
    AND s.state <> 'waiting'
) c LEFT JOIN LATERAL (
  SELECT h.* FROM unnest($2::text[]) AS p(id) CROSS JOIN LATERAL (
    SELECT {_PAGE_COLUMNS} FROM seat_intervals s
    WHERE s.tenant_id = $1 AND s.pool_id = p.id AND s.state <> 'waiting'
      AND s.user_id >= $5::text COLLATE "C" AND (s.user_id > $5::text COLLATE "C" OR p.id > $6::text COLLATE "C")
      AND s.valid_from <= $3::timestamptz AND s.valid_to > $3::timestamptz
      AND s.known_from <= $4::bigint AND s.known_to > $4::bigint
    ORDER BY s.user_id LIMIT $7) h
  ORDER BY h.user_id, h.pool_id LIMIT $7
) h ON true
"""


async def holders(conn, tenant: str, pool_ids: list[str], at: datetime, k: int, limit: int = 1000,
                  after: tuple[str, str] = ("", "")) -> tuple[int, list[dict]]:
    """(total, one page) of the seats held (active or suspended) at `at` as known at `k`, by (user, pool)."""
    rows = await conn.fetch(_HOLDERS, tenant, pool_ids, at, k, after[0], after[1], limit)
    return rows[0]["total"], [_seat(r) for r in rows if r["user_id"] is not None]


async def export_holders(conn, tenant: str, pool_ids: list[str], at: datetime, k: int,
                         page: int = 5000) -> AsyncIterator[dict]:
    """Every holder, in keyset pages (call inside one REPEATABLE READ transaction for one snapshot)."""
    after = ("", "")
    while True:
        _, rows = await holders(conn, tenant, pool_ids, at, k, page, after)
        for r in rows:
            yield r
        if len(rows) < page:
            return
        after = (rows[-1]["user_id"], rows[-1]["pool_id"])


async def licences(conn, tenant: str, user_id: str, at: datetime, k: int) -> list[dict]:
    rows = await conn.fetch(
        "SELECT * FROM seat_intervals WHERE tenant_id = $1 AND user_id = $2 AND valid @> $3::timestamptz "
        "AND known @> $4::bigint ORDER BY pool_id", tenant, user_id, at, k)
    return [_seat(r) for r in rows]


async def usage(conn, tenant: str, at: datetime, k: int) -> list[dict]:
    rows = await conn.fetch("""
        SELECT p.pool_id, p.product_id,
          coalesce((SELECT (c.value->>'seats')::int FROM temporal_pool_changes c WHERE c.tenant_id = p.tenant_id
                    AND c.pool_id = p.pool_id AND c.kind = 'resize' AND c.seq <= $3 AND c.effective_at <= $2
                    ORDER BY c.effective_at DESC, c.seq DESC LIMIT 1), p.seats) AS seats,
          coalesce(n.active, 0) AS active, coalesce(n.suspended, 0) AS suspended, coalesce(n.waiting, 0) AS waiting
        FROM temporal_pools p LEFT JOIN LATERAL (
          SELECT count(*) FILTER (WHERE s.state = 'active') AS active,
                 count(*) FILTER (WHERE s.state = 'suspended') AS suspended,
                 count(*) FILTER (WHERE s.state = 'waiting') AS waiting
          FROM seat_intervals s WHERE s.tenant_id = p.tenant_id AND s.pool_id = p.pool_id
            AND s.valid_from <= $2::timestamptz AND s.valid_to > $2::timestamptz
            AND s.known_from <= $3::bigint AND s.known_to > $3::bigint) n ON true
        WHERE p.tenant_id = $1 AND p.created_seq <= $3 ORDER BY p.pool_id""", tenant, at, k)
    return [{"pool_id": r["pool_id"], "product_id": r["product_id"], "seats": r["seats"],
             "used": r["active"] + r["suspended"], "active": r["active"], "suspended": r["suspended"],
             "waiting": r["waiting"]} for r in rows]


def _interval(r) -> dict:
    v = r["valid"]
    return {"user_id": r["user_id"], "pool_id": r["pool_id"], "product_id": r["product_id"], "state": r["state"],
            "from": _iso(v.lower), "to": None if v.upper_inf else _iso(v.upper), "grants": list(r["grants"]),
            "priority": r["priority"], "overage": r["overage"], "suspended_until": _iso(r["suspended_until"]),
            "opened_by": {"seq": r["opened_seq"], "type": r["opened_type"]},
            "closed_by": None if r["closed_seq"] is None else
            {"seq": r["closed_seq"], "type": r["closed_type"], "reason": r["closed_reason"]}}


async def user_timeline(conn, tenant: str, user_id: str, k: int) -> list[dict]:
    rows = await conn.fetch(
        "SELECT * FROM seat_intervals WHERE tenant_id = $1 AND user_id = $2 AND known @> $3::bigint "
        "ORDER BY pool_id, lower(valid)", tenant, user_id, k)
    return [_interval(r) for r in rows]


async def pool_timeline(conn, tenant: str, pool_id: str, k: int, limit: int = 1000,
                        after: tuple[str, datetime] | None = None) -> list[dict]:
    """A pool's intervals ordered by (user, from), a page at a time (keyset after (user, from))."""
    u, f = after if after else ("", datetime.min.replace(tzinfo=__import__("datetime").timezone.utc))
    rows = await conn.fetch(
        "SELECT * FROM seat_intervals WHERE tenant_id = $1 AND pool_id = $2 AND known @> $3::bigint "
        "AND (user_id, lower(valid)) > ($4::text COLLATE \"C\", $5::timestamptz) "
        "ORDER BY user_id, lower(valid) LIMIT $6", tenant, pool_id, k, u, f, limit)
    return [_interval(r) for r in rows]
