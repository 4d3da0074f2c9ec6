"""What billing knows at a tenant sequence: each pool's Terms and its SeatIntervals, built from the
raw pool-stream events with `seq <= knownAt` (nothing else: no projection table, no clock), so an
invoice computed at K today and in a year is the same, whatever was appended after K.

    src = await load_source(conn, tenant, known_at=K, until=period.end)
    invoice = build_invoice(tenant, period, src.pools_for_engine(), known_at=src.known_at)

Rules (interval building, here and nowhere else):

* Per (pool, user) the seat events are ordered by effective instant, then by `seq` (ledger order).
  Walking them: SeatAssigned opens a holding (if not already held); SeatSuspended / SeatResumed cut
  the holding into a suspended / active interval (a suspended seat is held and billed);
  SeatReleased / LicenceExpired end it. An event that finds nothing to act on is ignored.
* A correction is simply an event whose effective instant is earlier than what it ends: a
  SeatReleased recorded late but effective on the 3rd ends the holding on the 3rd, and the release
  originally recorded for the 20th then finds nothing held (ignored). Hence "clipping".
* Every interval of a holding carries the seq of the SeatAssigned that began it (the engine ranks
  overage holders by it).
* Seat events effective at or after `until` (the period end) cannot change the period's bill and
  are not read; pool-level events (created/resized/repriced/renewed/cancelled) are always read.

Decoding: pool-level events (few) go through the event registry (upcasters + pydantic models) and
`ledger.licences.evolve`. Seat events (the bulk) are read as narrow columns of billing_seat_events,
effective instants as integer microseconds, grouped per (pool, user) - no JSON document, no pydantic
model, no datetime and no sort per row; the intervals are handed to the engine as MicroIntervals
tuples. A row stored at an older schema version than the registry's latest is re-read in full and
upcast through the registry instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import groupby
from operator import itemgetter

from ledger.events import _latest as _LATEST_VERSIONS
from ledger.events import decode, upcast
import ledger.tenancy  # noqa: F401 - registers TenantCreated
from ledger.licences import PoolState, Terms, evolve
from projections.billing import MicroIntervals, SeatInterval, gc_paused

POOL_TYPES = ("PoolCreated", "PoolResized", "PoolRepriced", "PoolRenewed", "PoolCancelled")
SEAT_TYPES = ("SeatAssigned", "SeatSuspended", "SeatResumed", "SeatReleased", "LicenceExpired")
_KIND = {"SeatAssigned": 0, "SeatSuspended": 1, "SeatResumed": 2, "SeatReleased": 3, "LicenceExpired": 4}
# pool streams are "pool-<id>": in the C collation of `stream` that is the range ['pool-', 'pool.')
_POOL_RANGE = "stream >= 'pool-' AND stream < 'pool.'"

# the predicate of the partial index events_pool_terms (ledger/sql/0081), literally
_POOL_TYPES_SQL = ", ".join(f"'{t}'" for t in POOL_TYPES)
_POOL_SQL = f"""
SELECT seq, type, schema_version, data::text AS data, effective_at FROM events
WHERE tenant_id = $1 AND {_POOL_RANGE} AND type IN ({_POOL_TYPES_SQL}) AND seq <= $2
ORDER BY seq
"""

# Seat events come from billing_seat_events (ledger/sql/0060): the same committed events, copied
# column by column in the append transaction, read per (pool, user) newest first, the order of its
# index billing_seat_events_walk (ledger/sql/0080; an index-only scan, no sort). With `since` (the
# period start), a user's events up to their last release effective before `since` are skipped:
# after a release nothing is held, so the walk from there gives the same intervals for everything
# from `since` on (earlier ones cannot be billed). Newest first, those are the rows where the
# running count of such releases is still 0. The instant is sent as exact integer microseconds
# since the epoch (extract(epoch ...) is numeric on PostgreSQL 14+, so exact): the engine floors it
# with integer division and nothing builds a datetime per row.
_MICROS = "(extract(epoch FROM effective_at) * 1000000)::bigint"
# Columns: what the walk reads (instant, seq, kind, reason), then the group (pool, user).
_SEAT_SQL = f"""
SELECT {_MICROS}, seq, kind, reason, pool_id, user_id, schema_version FROM (
  SELECT pool_id, user_id, effective_at, seq, kind, schema_version, reason,
         count(*) FILTER (WHERE kind >= 3 AND effective_at < $4) OVER (
           PARTITION BY pool_id, user_id ORDER BY effective_at DESC, seq DESC ROWS UNBOUNDED PRECEDING)
           AS releases_from_here
  FROM billing_seat_events
  WHERE tenant_id = $1 AND seq <= $2 AND effective_at < $3
) b
WHERE releases_from_here = 0
ORDER BY pool_id, user_id, effective_at DESC, seq DESC
"""
_SEAT_SQL_ALL = f"""
SELECT {_MICROS}, seq, kind, reason, pool_id, user_id, schema_version FROM billing_seat_events
WHERE tenant_id = $1 AND seq <= $2 AND effective_at < $3
ORDER BY pool_id, user_id, effective_at DESC, seq DESC
"""
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=timezone.utc)
_KIND_NAMES = ("SeatAssigned", "SeatSuspended", "SeatResumed", "SeatReleased", "LicenceExpired")


class UnknownTenant(LookupError):
    pass


@dataclass
class PoolSource:
    terms: Terms
    micro: MicroIntervals = field(default_factory=MicroIntervals)

    @property
    def intervals(self) -> list[SeatInterval]:
        """The pool's seat intervals as SeatInterval objects (what the engine is given: `micro`)."""
        return [SeatInterval(uid, _from_micros(a), None if b is None else _from_micros(b), state, reason, seq)
                for uid, a, b, state, reason, seq in self.micro]


@dataclass
class Source:
    tenant: str
    known_at: int
    timezone: str
    pools: dict[str, PoolSource]
    events_read: int = 0

    def pools_for_engine(self) -> list[tuple[Terms, MicroIntervals]]:
        return [(p.terms, p.micro) for _pid, p in sorted(self.pools.items())]


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _micros(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


def _from_micros(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


async def head_seq(conn, tenant: str) -> int | None:
    return await conn.fetchval("SELECT seq FROM tenant_heads WHERE tenant_id = $1", tenant)


async def tenant_timezone(conn, tenant: str, known_at: int) -> str | None:
    """The tenant's IANA zone as recorded by TenantCreated (None: no such tenant event at K)."""
    row = await conn.fetchrow(
        "SELECT type, schema_version, data::text AS data FROM events WHERE tenant_id = $1 AND stream = 'tenant' "
        "AND type = 'TenantCreated' AND seq <= $2 ORDER BY stream_version LIMIT 1", tenant, known_at)
    if row is None:
        return None
    import orjson
    return decode(row["type"], row["schema_version"], orjson.loads(row["data"])).timezone


async def resolve_known_at(conn, tenant: str, known_at: int | None) -> int:
    head = await head_seq(conn, tenant)
    if head is None:
        raise UnknownTenant(tenant)
    if known_at is None:
        return head
    if known_at < 1 or known_at > head:
        raise ValueError(f"knownAt must be between 1 and the tenant's head ({head})")
    return known_at


async def load_source(conn, tenant: str, known_at: int | None = None, *, until: datetime | None = None,
                      since: datetime | None = None, default_tz: str = "UTC") -> Source:
    """Terms and seat intervals of every pool of `tenant` as known at sequence `known_at` (default:
    the head). `until`: seat events effective at or after it are not read (see the module doc).
    `since`: only intervals that can be billed from `since` on are built (bill a period starting
    there); the first of a holding still starts when the holding began, so overage ranks hold."""
    import orjson
    k = await resolve_known_at(conn, tenant, known_at)
    tz = await tenant_timezone(conn, tenant, k) or default_tz
    states: dict[str, PoolState] = {}
    for r in await conn.fetch(_POOL_SQL, tenant, k):
        ev = decode(r["type"], r["schema_version"], orjson.loads(r["data"]))
        states[ev.pool_id] = evolve(states.get(ev.pool_id), ev, r["effective_at"])
    until = until or _FAR_FUTURE
    with gc_paused():                    # 100,000s of rows and tuples, no cycles (see gc_paused)
        if since is None:
            rows = await conn.fetch(_SEAT_SQL_ALL, tenant, k, until)
        else:
            rows = await conn.fetch(_SEAT_SQL, tenant, k, until, since)
        return await _seat_source(conn, tenant, k, tz, states, rows, since)


async def _seat_source(conn, tenant: str, k: int, tz: str, states: dict[str, PoolState], rows: list,
                       since: datetime | None) -> Source:
    """load_source's second half: the seat rows walked into each pool's intervals."""
    import orjson
    latest = [_LATEST_VERSIONS.get(name) for name in _KIND_NAMES]
    stale = [r[1] for r in rows if latest[r[2]] is not None and r[6] != latest[r[2]]]
    if stale:
        upcasted: dict[int, tuple[str, str | None]] = {}
        for r in await conn.fetch("SELECT seq, type, schema_version, data::text AS data FROM events "
                                  "WHERE tenant_id = $1 AND seq = ANY($2::bigint[])", tenant, stale):
            _v, d = upcast(r["type"], r["schema_version"], orjson.loads(r["data"]))
            upcasted[r["seq"]] = (d["user_id"], d.get("reason"))
        rows = [r if r[1] not in upcasted else (r[0], r[1], r[2], upcasted[r[1]][1], r[4], upcasted[r[1]][0])
                for r in rows]
    pools = {pid: PoolSource(st.terms) for pid, st in states.items()}
    since_us = None if since is None else _micros(since)
    # rows arrive grouped per (pool, user), newest first within a group: walked oldest first
    for (pool_id, user_id), group in groupby(rows, key=_GROUP):
        pool = pools.get(pool_id)
        if pool is not None:             # seat events of a pool created after K cannot exist
            events = list(group)
            events.reverse()
            holding_pieces(user_id, events, since_us, pool.micro)
    return Source(tenant, k, tz, pools, len(rows))


_GROUP = itemgetter(4, 5)                # pool_id, user_id of a seat row


def seat_intervals(user_id: str, events: list[tuple], since: datetime | None = None) -> list[SeatInterval]:
    """One user's intervals in one pool from (effective_at, seq, kind, reason) tuples (any order).
    kind: 0 assigned, 1 suspended, 2 resumed, 3 released, 4 expired.

    `since`: pieces ending at or before it are left out, and the first piece kept of a holding
    starts when the holding began (it absorbs the adjacent pieces left out), so the bill from
    `since` on, overage ranks included, is the one every piece would give."""
    if len(events) > 1:
        events = sorted(events, key=lambda e: (e[0], e[1]))
    return [SeatInterval(*piece) for piece in holding_pieces(user_id, events, since, [])]


def holding_pieces(user_id: str, events, since, out: list) -> list:
    """The walk behind seat_intervals: appends (user_id, start, end, state, reason, seq of the
    assignment) per piece to `out` (returned), from events already in (effective instant, seq) order,
    each indexed [0] effective instant, [1] seq, [2] kind, [3] reason (tuples, or database rows with
    more columns). Instants are anything ordered (datetimes, integer microseconds), `since` alike."""
    held = False
    began = start = None
    state = "active"
    label = ""
    aseq = 0
    kept = False                       # a piece of the current holding was emitted

    def piece(end, reason):
        nonlocal kept
        if since is not None and end is not None and end <= since:
            return
        out.append((user_id, start if kept or since is None else began, end, state, reason, aseq))
        kept = True

    for ev in events:
        k, eff = ev[2], ev[0]
        if k == 0:
            if not held:
                held, began, start, state, label, aseq, kept = True, eff, eff, "active", "assigned", ev[1], False
        elif not held:
            continue                     # nothing to act on (e.g. superseded by a correction)
        elif k == 1:
            if state == "active":
                piece(eff, label + "; suspended")
                start, state, label = eff, "suspended", "suspended"
        elif k == 2:
            if state == "suspended":
                piece(eff, label + "; resumed")
                start, state, label = eff, "active", "resumed"
        else:
            piece(eff, f"{label}; released: {ev[3]}" if k == 3 else f"{label}; expired")
            held = False
    if held:
        piece(None, label)
    return out


async def invoice_by_replay(store, tenant: str, period, known_at: int | None = None):
    """The same invoice the naive way - the benchmark's baseline and the tests' reference: every event
    of the tenant up to `known_at` (default: all) through the generic read path (EventStore.read_tenant:
    full rows, envelopes opened, pydantic models through the registry), pool events folded with
    `evolve`, each (pool, user)'s seat events walked whole (no period pruning, no narrow copy) into
    SeatInterval objects, then the engine. Returns (invoice, events read)."""
    from projections.billing import build_invoice
    kinds = {name: i for i, name in enumerate(_KIND_NAMES)}
    states: dict[str, PoolState] = {}
    per_user: dict[tuple[str, str], list] = {}
    after, n = 0, 0
    while known_at is None or after < known_at:
        page = await store.read_tenant(tenant, after, 20_000)
        page = [e for e in page if known_at is None or e.seq <= known_at]
        if not page:
            break
        for e in page:
            after, n = e.seq, n + 1
            ev = e.decoded()                 # every event, as a generic consumer would
            if not e.stream.startswith("pool-") or (e.type not in kinds and e.type not in POOL_TYPES):
                continue
            if e.type in POOL_TYPES:
                states[ev.pool_id] = evolve(states.get(ev.pool_id), ev, e.effective_at)
            elif e.effective_at < period.end:
                per_user.setdefault((ev.pool_id, ev.user_id), []).append(
                    (e.effective_at, e.seq, kinds[e.type], getattr(ev, "reason", None)))
    intervals: dict[str, list[SeatInterval]] = {pid: [] for pid in states}
    for (pid, uid), evs in per_user.items():
        if pid in intervals:             # as in load_source: no seat without its pool
            intervals[pid].extend(seat_intervals(uid, evs))
    invoice = build_invoice(tenant, period, [(states[pid].terms, intervals[pid]) for pid in sorted(states)],
                            known_at=after if known_at is None else known_at)
    return invoice, n


async def changes_between(conn, tenant: str, k1: int, k2: int, until: datetime | None = None) -> list[dict]:
    """Pool-stream events recorded in (k1, k2] that can change a bill: pool-level ones, and seat
    events effective before `until`. [{seq, type, effectiveAt, poolId, userId}] in seq order."""
    rows = await conn.fetch(
        f"SELECT seq, type, stream, effective_at, data->>'user_id' AS user_id FROM events "
        f"WHERE tenant_id = $1 AND {_POOL_RANGE} AND seq > $2 AND seq <= $3 AND type = ANY($4::text[]) "
        "AND (type = ANY($5::text[]) OR $6::timestamptz IS NULL OR effective_at < $6) ORDER BY seq",
        tenant, k1, k2, list(POOL_TYPES + SEAT_TYPES), list(POOL_TYPES), until)
    return [{"seq": r["seq"], "type": r["type"], "effectiveAt": _iso(r["effective_at"]), "poolId": r["stream"][5:],
             "userId": r["user_id"]} for r in rows]


def _iso(t: datetime) -> str:
    from datetime import timezone
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


# ---- invoices and adjustments at a sequence ----------------------------------------------------

ADJUSTMENT_FORMAT = "seatledger.adjustment/1"


def parse_period(label: str) -> tuple[int, int]:
    """'2026-11' -> (2026, 11); ValueError otherwise."""
    import re
    m = re.fullmatch(r"(\d{4})-(\d{2})", label or "")
    if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1970:
        raise ValueError("period is a calendar month YYYY-MM, e.g. 2026-11")
    return int(m.group(1)), int(m.group(2))


async def invoice_at(conn, tenant: str, period_label: str, known_at: int | None = None):
    """The tenant's invoice for the calendar month `period_label` (in its time zone) as known at
    `known_at` (default: the head)."""
    from projections.billing import build_invoice, month_period
    y, m = parse_period(period_label)
    k = await resolve_known_at(conn, tenant, known_at)
    tz = await tenant_timezone(conn, tenant, k) or "UTC"
    period = month_period(y, m, tz)
    src = await load_source(conn, tenant, k, until=period.end, since=period.start)
    return build_invoice(tenant, period, src.pools_for_engine(), known_at=k)


async def adjustment_report(conn, tenant: str, period_label: str, k1: int, k2: int) -> dict:
    """Per-line differences between the invoice known at k1 and at k2, each with the events recorded
    in (k1, k2] that caused it: the user's own seat events; for commitment lines (and lines no seat
    event of their user explains) the pool-level changes; for an overage line moved by someone
    else's change, the pool's other seat events. Amounts are minor units as strings."""
    from dataclasses import replace
    from decimal import Decimal
    from projections.billing import compare_bills
    if k1 > k2:
        raise ValueError("from must not be after to")
    before = await invoice_at(conn, tenant, period_label, k1)
    after = await invoice_at(conn, tenant, period_label, k2)
    period = after.period
    changes = await changes_between(conn, tenant, k1, k2, until=period.end)
    bpools = {b.pool_id: b for b in before.pools}
    apools = {b.pool_id: b for b in after.pools}
    lines, totals = [], {}
    for pid in sorted(set(bpools) | set(apools)):
        b, a = bpools.get(pid), apools.get(pid)
        b = b or replace(a, lines=())
        a = a or replace(b, lines=())
        pool_changes = [c for c in changes if c["poolId"] == pid]
        pool_level = [c for c in pool_changes if c["type"] in POOL_TYPES]
        for x in compare_bills(b, a):
            own = [c for c in pool_changes if x.user_id is not None and c["userId"] == x.user_id]
            causes = own or pool_level or [c for c in pool_changes if c["type"] in SEAT_TYPES]
            lines.append({"poolId": pid, "currency": a.currency, "kind": x.kind, "userId": x.user_id,
                          "beforeMinor": str(x.before), "afterMinor": str(x.after), "deltaMinor": str(x.delta),
                          "causes": [{"seq": c["seq"], "type": c["type"], "effectiveAt": c["effectiveAt"],
                                      "userId": c["userId"]} for c in causes]})
            totals[a.currency] = totals.get(a.currency, Decimal(0)) + x.delta
    return {"format": ADJUSTMENT_FORMAT, "tenant": tenant, "period": period_label,
            "periodStart": _iso(period.start), "periodEnd": _iso(period.end), "timezone": period.tz_name,
            "from": k1, "to": k2, "lines": lines,
            "totals": [{"currency": c, "deltaMinor": str(v)} for c, v in sorted(totals.items())],
            "beforeTotals": [{"currency": c, "totalMinor": str(v)} for c, v in before.totals],
            "afterTotals": [{"currency": c, "totalMinor": str(v)} for c, v in after.totals]}
