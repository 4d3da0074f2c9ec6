"""The billing engine: prorated seat usage, commitments and overage, as exact money. Pure: no database,
no I/O, no clock.

    period = month_period(2026, 10, "Europe/Paris")          # [start, end) as aware UTC instants
    bill = bill_pool(terms, intervals, period)               # one pool -> PoolBill with line items
    inv = build_invoice("acme", period, [(terms, intervals)], known_at=1234)
    doc = invoice_document(inv); data = canonical_bytes(doc); csv_text = to_csv(inv)

Rules (one of each, documented here and nowhere else):

* Time is billed to the second. Every instant (period bounds, term bounds, effective instants of
  resizes/reprices/renewals/cancellations, interval bounds) is floored to the whole UTC second; the
  terms are read at the last microsecond of each second, so a change recorded at 10:00:00.400 is in
  force for the whole second 10:00:00. The period's length is the real elapsed seconds (a DST month is
  one hour shorter or longer).
* Nothing is billed outside the pool's term (`Terms.in_term`), nor outside the period.
* usage mode: one line per seat-holding interval (active or suspended: a suspended seat is held) and
  per stretch of constant price; amount = overlap seconds / period seconds x price in force.
* committed mode: one commitment line (user None) per stretch of constant (contracted seats, price) in
  the covered part of the period: seats x seconds / period seconds x price. Overage at each instant is
  max(0, holders - contracted) seats at the overage price, attributed to individual holders by
  **last in, first over**: holders are ranked by when their current uninterrupted holding began (a
  suspension does not interrupt it), then by the interval's `seq` (the ledger order of the assignment),
  then by user id; the holders ranked after the first `contracted` ones are the overage ones. The same
  rule the licence engine uses to pick who goes on a downsize ("lifo"). Overage lines are split where
  a resize or reprice takes effect.
* Money is exact (`fractions.Fraction` of minor units) until the line, then rounded **half-even at the
  line** to whole minor units (`Decimal`); pool and currency totals are sums of rounded lines, so the
  lines always add up to the total exactly. No floats anywhere.
* Lines carry a user id, never a name, so erasing a person changes no invoice.
"""
from __future__ import annotations

import csv
import io
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from math import gcd
from typing import Iterable, Literal, Mapping
from zoneinfo import ZoneInfo

import orjson

from ledger.licences import Terms

__all__ = [
    "Period", "SeatInterval", "LineItem", "PoolBill", "Invoice", "AdjustmentLine",
    "month_period", "bill_pool", "build_invoice", "invoice_document", "canonical_bytes", "invoice_hash",
    "to_csv", "round_half_even", "compare_bills", "naive_amount", "naive_breakdown",
]

FORMAT = "seatledger.invoice/1"
Kind = Literal["usage", "commitment", "overage"]
_KIND_ORDER = {"commitment": 0, "usage": 1, "overage": 2}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SECOND = timedelta(seconds=1)
_LAST_US = timedelta(microseconds=999_999)
_FAR = 1 << 62                     # "never ends", in seconds


# ---- inputs ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Period:
    """A billing period [start, end) (aware instants) in the tenant's time zone."""
    start: datetime
    end: datetime
    tz_name: str = "UTC"
    label: str | None = None       # "2026-10" for a calendar month

    def __post_init__(self):
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("period bounds must be aware datetimes")
        if _sec(self.end) <= _sec(self.start):
            raise ValueError("empty billing period")
        ZoneInfo(self.tz_name)     # raises on an unknown zone

    @property
    def seconds(self) -> int:
        return _sec(self.end) - _sec(self.start)


def month_period(year: int, month: int, tz_name: str) -> Period:
    """The calendar month in `tz_name`, as UTC instants; its length is the real elapsed time."""
    tz = ZoneInfo(tz_name)
    ny, nm = (year + 1, 1) if month == 12 else (year, month + 1)
    start = datetime(year, month, 1, tzinfo=tz).astimezone(timezone.utc)
    end = datetime(ny, nm, 1, tzinfo=tz).astimezone(timezone.utc)
    return Period(start, end, tz_name, f"{year:04d}-{month:02d}")


@dataclass(frozen=True)
class SeatInterval:
    """A user holding a seat of the pool over [start, end) (end None: still held)."""
    user_id: str
    start: datetime
    end: datetime | None
    state: str = "active"          # active | suspended (both are held and billed)
    reason: str = ""               # why the interval started/ended, e.g. "assigned; released: deleted"
    seq: int = 0                   # ledger order of the event that began it (tie-break for overage)

    def __post_init__(self):
        if self.state not in ("active", "suspended"):
            raise ValueError(f"seat interval state {self.state!r}: active or suspended")
        if self.start.tzinfo is None or (self.end is not None and self.end.tzinfo is None):
            raise ValueError("seat interval bounds must be aware datetimes")
        if self.end is not None and self.end < self.start:
            raise ValueError("seat interval ends before it starts")


# ---- outputs -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class LineItem:
    kind: str                      # usage | commitment | overage
    user_id: str | None            # None on commitment lines
    start: datetime
    end: datetime
    seconds: int
    seats: int                     # 1 for usage/overage, the contracted seats for commitment
    unit_price_minor: int          # per seat per billing period
    exact_num: int                 # seats x seconds x unit price: the exact amount is exact_num / period_seconds
    period_seconds: int
    amount: Decimal                # the exact amount rounded half-even to whole minor units
    rule: str                      # usage.active | usage.suspended | commitment | overage.lifo
    reason: str

    @property
    def exact(self) -> Fraction:
        """The amount before rounding, in minor units."""
        return Fraction(self.exact_num, self.period_seconds)


@dataclass(frozen=True)
class PoolBill:
    pool_id: str
    product_id: str
    currency: str
    billing_mode: str
    period: Period
    window: tuple[datetime, datetime]   # the billed part of the period (the whole period by default)
    lines: tuple[LineItem, ...]
    total: Decimal                 # sum of the rounded lines
    exact_total: Fraction          # sum of the unrounded lines
    seat_seconds: int              # held seat-time inside the term and the window
    peak_seats: int
    daily_high_water: tuple[tuple[date, int], ...]   # per local day of the tenant zone


@dataclass(frozen=True)
class Invoice:
    tenant_id: str
    period: Period
    known_at: int | None
    pools: tuple[PoolBill, ...]
    totals: tuple[tuple[str, Decimal], ...]          # per currency, sorted by currency

    @property
    def totals_by_currency(self) -> dict[str, Decimal]:
        return dict(self.totals)


@dataclass(frozen=True)
class AdjustmentLine:
    pool_id: str
    kind: str
    user_id: str | None
    before: Decimal
    after: Decimal

    @property
    def delta(self) -> Decimal:
        return self.after - self.before


# ---- money and time ----------------------------------------------------------------------------

def round_half_even(x: Fraction) -> Decimal:
    """An exact amount of minor units rounded half-even to a whole minor unit (integers only)."""
    return Decimal(_div_half_even(x.numerator, x.denominator))


def _div_half_even(n: int, d: int) -> int:
    q, r = divmod(n, d)            # d > 0, so 0 <= r < d
    if 2 * r > d or (2 * r == d and q & 1):
        q += 1
    return q


def _sec(t: datetime) -> int:
    """Whole UTC seconds since the epoch, floored. Integer arithmetic only."""
    if t.tzinfo is None:
        raise ValueError("naive datetime")
    return (t - _EPOCH) // _SECOND


def _dt(s: int) -> datetime:
    return _EPOCH + timedelta(seconds=s)


@dataclass(frozen=True)
class _Segment:
    a: int
    b: int
    in_term: bool
    seats: int
    price: int
    over: int


def _segments(terms: Terms, ws: int, we: int) -> list[_Segment]:
    """[ws, we) cut where anything about the terms may change; each piece read at its first second."""
    points = {ws, we, _sec(terms.term_start), _sec(terms.term_end)}
    for at, kind, value in terms.changes:
        points.add(_sec(at))
        if kind == "renew":
            points.add(_sec(value))
    cuts = sorted(p for p in points if ws <= p <= we)
    out: list[_Segment] = []
    for a, b in zip(cuts, cuts[1:]):
        t = _dt(a) + _LAST_US
        price, over = terms.price_at(t)
        out.append(_Segment(a, b, terms.in_term(t), terms.seats_at(t), price, over))
    return out


def _merge(segs: list[_Segment], key) -> list[tuple[int, int, tuple]]:
    """In-term stretches of constant key(segment), merged."""
    out: list[list] = []
    for s in segs:
        if not s.in_term:
            continue
        k = key(s)
        if out and out[-1][1] == s.a and out[-1][2] == k:
            out[-1][1] = s.b
        else:
            out.append([s.a, s.b, k])
    return [tuple(x) for x in out]


# ---- the computation ---------------------------------------------------------------------------

def _normalise(intervals: Iterable[SeatInterval]) -> tuple[list[tuple], list[tuple[tuple, int, int]]]:
    """Floored intervals (user, start, end, state, reason, seq), empty ones dropped, sorted by user and
    start; and the holding runs: (rank key, start, end) per uninterrupted holding of a user (adjacent
    intervals, e.g. active then suspended, are one holding). A user holds a pool at most once:
    overlapping intervals of one user are refused."""
    ivs = []
    for iv in intervals:
        a = _sec(iv.start)
        b = _FAR if iv.end is None else _sec(iv.end)
        if b > a:
            ivs.append((iv.user_id, a, b, iv.state, iv.reason, iv.seq))
    ivs.sort(key=lambda x: (x[0], x[1]))
    runs = []
    uid = None
    run_a = run_b = run_seq = 0
    for x in ivs:
        if x[0] == uid:
            if x[1] < run_b:
                raise ValueError(f"user {uid} holds the pool twice at {_dt(x[1]).isoformat()}")
            if x[1] == run_b:
                run_b = x[2]
                continue
            runs.append(((run_a, run_seq, uid), run_a, run_b))
        elif uid is not None:
            runs.append(((run_a, run_seq, uid), run_a, run_b))
        uid, run_a, run_b, run_seq = x[0], x[1], x[2], x[5]
    if uid is not None:
        runs.append(((run_a, run_seq, uid), run_a, run_b))
    return ivs, runs


def _line(kind, uid, a, b, seats, price, period_s, rule, reason) -> LineItem:
    secs = b - a
    num = seats * secs * price
    return LineItem(kind, uid, _dt(a), _dt(b), secs, seats, price, num, period_s,
                    Decimal(_div_half_even(num, period_s)), rule, reason)


def _usage_lines(ivs: list[tuple], segs, ws, we, period_s) -> list[LineItem]:
    stretches = _merge(segs, lambda s: s.price)
    starts = [s[0] for s in stretches]
    out = []
    for uid, a, b, state, reason, _seq in ivs:
        a, b = max(a, ws), min(b, we)
        if a >= b:
            continue
        i = max(0, bisect_right(starts, a) - 1)
        while i < len(stretches) and stretches[i][0] < b:
            sa, sb, price = stretches[i]
            la, lb = max(a, sa), min(b, sb)
            if la < lb:
                out.append(_line("usage", uid, la, lb, 1, price, period_s, f"usage.{state}", reason))
            i += 1
    return out


def _commitment_lines(segs, period_s) -> list[LineItem]:
    out = []
    for a, b, (seats, price) in _merge(segs, lambda s: (s.seats, s.price)):
        if seats > 0:
            out.append(_line("commitment", None, a, b, seats, price, period_s, "commitment",
                             f"{seats} contracted seats"))
    return out


class _Fenwick:
    """Counts over ranks 0..n-1: add, prefix count, k-th present rank - all O(log n)."""

    def __init__(self, n: int):
        self.n = n
        self.t = [0] * (n + 1)
        self.total = 0
        self.top = 1 << max(0, n.bit_length())

    def add(self, i: int, v: int) -> None:
        self.total += v
        i += 1
        while i <= self.n:
            self.t[i] += v
            i += i & -i

    def prefix(self, i: int) -> int:        # count of ranks < i
        s = 0
        while i > 0:
            s += self.t[i]
            i -= i & -i
        return s

    def kth(self, k: int) -> int:           # rank of the k-th present one (1-based k)
        pos, step = 0, self.top
        while step:
            nxt = pos + step
            if nxt <= self.n and self.t[nxt] < k:
                pos = nxt
                k -= self.t[nxt]
            step >>= 1
        return pos


def _overage_lines(runs, segs, ws, we, period_s) -> list[LineItem]:
    runs = sorted(runs, key=lambda r: r[0])
    n = len(runs)
    adds: dict[int, list[int]] = defaultdict(list)
    removes: dict[int, list[int]] = defaultdict(list)
    for rank, (_key, a, b) in enumerate(runs):
        a, b = max(a, ws), min(b, we)
        if a < b:
            adds[a].append(rank)
            removes[b].append(rank)
    seg_at = {s.a: s for s in segs}
    points = sorted(set(adds) | set(removes) | set(seg_at) | {we})
    fen = _Fenwick(n)
    open_: dict[int, int] = {}               # rank -> overage since
    out: list[LineItem] = []
    seg: _Segment | None = None
    cut = n

    def close(rank: int, t: int) -> None:
        since = open_.pop(rank)
        if t > since:
            out.append(_line("overage", runs[rank][0][2], since, t, 1, seg.over, period_s, "overage.lifo",
                             f"held beyond {seg.seats} contracted seats (last in, first over)"))

    def holders_in(lo: int, hi: int):
        for j in range(fen.prefix(lo) + 1, fen.prefix(hi) + 1):
            yield fen.kth(j)

    def new_cut() -> int:
        if seg is None or not seg.in_term or fen.total <= seg.seats:
            return n
        return fen.kth(seg.seats + 1)

    for t in points:
        boundary = t in seg_at or t == we
        if boundary:
            for r in sorted(open_):
                close(r, t)
        for r in removes.get(t, ()):
            fen.add(r, -1)
            if r in open_:
                close(r, t)
        inserted = adds.get(t, ())
        for r in inserted:
            fen.add(r, 1)
        if t == we:
            break
        if boundary:
            seg = seg_at[t]
            cut = new_cut()
            for r in holders_in(cut, n):
                open_[r] = t
            continue
        c = new_cut()
        lo, hi = min(cut, c), max(cut, c)
        for r in (*inserted, *holders_in(lo, hi)):
            if r >= c:
                if r not in open_:
                    open_[r] = t
            elif r in open_:
                close(r, t)
        cut = c
    return out


def _day_bounds(period: Period, ws: int, we: int) -> list[tuple[date, int, int]]:
    tz = ZoneInfo(period.tz_name)
    d = _dt(ws).astimezone(tz).date()
    out = []
    while True:
        a = _sec(datetime(d.year, d.month, d.day, tzinfo=tz))
        nd = d + timedelta(days=1)
        b = _sec(datetime(nd.year, nd.month, nd.day, tzinfo=tz))
        if a >= we:
            break
        if b > ws:
            out.append((d, max(a, ws), min(b, we)))
        d = nd
    return out


def _profile(runs, segs, days, ws, we) -> tuple[int, int, list[tuple[date, int]]]:
    """Held seat-seconds in term, the peak of concurrent holders in term, and each local day's peak."""
    delta: dict[int, int] = defaultdict(int)
    for _key, a, b in runs:
        a, b = max(a, ws), min(b, we)
        if a < b:
            delta[a] += 1
            delta[b] -= 1
    seg_at = {s.a: s.in_term for s in segs}
    day_at = {a: i for i, (_d, a, _b) in enumerate(days)}
    points = sorted(set(delta) | set(seg_at) | set(day_at) | {ws, we})
    count, in_term, day = 0, False, -1
    seat_seconds, peak = 0, 0
    high = [0] * len(days)
    for p, q in zip(points, points[1:]):
        count += delta.get(p, 0)
        in_term = seg_at.get(p, in_term)
        day = day_at.get(p, day)
        if in_term and count:
            seat_seconds += count * (q - p)
            peak = max(peak, count)
            if day >= 0 and count > high[day]:
                high[day] = count
    return seat_seconds, peak, [(d, h) for (d, _a, _b), h in zip(days, high)]


def bill_pool(terms: Terms, intervals: Iterable[SeatInterval], period: Period, *,
              window: tuple[datetime, datetime] | None = None) -> PoolBill:
    """One pool's bill for `period`. `window` (inside the period) bills only that part, still prorated
    against the whole period's length (for partial bills and the additivity property)."""
    if terms.billing_mode not in ("usage", "committed"):
        raise ValueError(f"billing mode {terms.billing_mode!r}")
    ps, pe = _sec(period.start), _sec(period.end)
    ws, we = (ps, pe) if window is None else (max(ps, _sec(window[0])), min(pe, _sec(window[1])))
    we = max(ws, we)
    period_s = pe - ps
    ivs, runs = _normalise(intervals)
    segs = _segments(terms, ws, we)
    if terms.billing_mode == "usage":
        lines = _usage_lines(ivs, segs, ws, we, period_s)
    else:
        lines = _commitment_lines(segs, period_s) + _overage_lines(runs, segs, ws, we, period_s)
    lines.sort(key=lambda x: (_KIND_ORDER[x.kind], x.user_id or "", x.start, x.end))
    seat_seconds, peak, high = _profile(runs, segs, _day_bounds(period, ws, we), ws, we)
    return PoolBill(terms.pool_id, terms.product_id, terms.currency, terms.billing_mode, period,
                    (_dt(ws), _dt(we)), tuple(lines), sum((x.amount for x in lines), Decimal(0)),
                    Fraction(sum(x.exact_num for x in lines), period_s), seat_seconds, peak, tuple(high))


def build_invoice(tenant_id: str, period: Period, pools: Iterable[tuple[Terms, Iterable[SeatInterval]]], *,
                  known_at: int | None = None) -> Invoice:
    bills = sorted((bill_pool(t, ivs, period) for t, ivs in pools), key=lambda b: b.pool_id)
    totals: dict[str, Decimal] = defaultdict(lambda: Decimal(0))
    for b in bills:
        totals[b.currency] += b.total
    return Invoice(tenant_id, period, known_at, tuple(bills), tuple(sorted(totals.items())))


def compare_bills(before: PoolBill, after: PoolBill) -> list[AdjustmentLine]:
    """Per (kind, user) amount differences between two bills of one pool (nonzero ones only), e.g. the
    bill known at K1 and the bill known at K2 after a backdated correction."""
    def sums(b: PoolBill) -> dict[tuple[str, str | None], Decimal]:
        s: dict = defaultdict(lambda: Decimal(0))
        for x in b.lines:
            s[(x.kind, x.user_id)] += x.amount
        return s
    sb, sa = sums(before), sums(after)
    keys = sorted(set(sb) | set(sa), key=lambda k: (_KIND_ORDER[k[0]], k[1] or ""))
    out = [AdjustmentLine(after.pool_id, k, u, sb.get((k, u), Decimal(0)), sa.get((k, u), Decimal(0)))
           for k, u in keys]
    return [x for x in out if x.delta != 0]


# ---- documents ---------------------------------------------------------------------------------

@lru_cache(maxsize=1 << 16)
def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _frac(x: Fraction) -> str:
    return _ratio(x.numerator, x.denominator)


def _ratio(n: int, d: int) -> str:
    """n/d reduced, as "n" or "n/d" (an exact amount of minor units)."""
    g = gcd(n, d)
    n, d = n // g, d // g
    return str(n) if d == 1 else f"{n}/{d}"


def _line_doc(x: LineItem) -> dict:
    return {"kind": x.kind, "userId": x.user_id, "from": _iso(x.start), "to": _iso(x.end),
            "seconds": x.seconds, "seats": x.seats, "unitPriceMinor": str(x.unit_price_minor),
            "exactMinor": _ratio(x.exact_num, x.period_seconds), "amountMinor": str(x.amount), "rule": x.rule, "reason": x.reason}


def invoice_document(invoice: Invoice) -> dict:
    """The canonical invoice: str/int/bool/None leaves only (amounts in minor units as strings)."""
    p = invoice.period
    return {
        "format": FORMAT,
        "rounding": "half-even per line; totals are sums of rounded lines",
        "tenant": invoice.tenant_id,
        "knownAt": invoice.known_at,
        "period": {"start": _iso(p.start), "end": _iso(p.end), "seconds": p.seconds, "timezone": p.tz_name,
                   "label": p.label},
        "pools": [{
            "poolId": b.pool_id, "productId": b.product_id, "currency": b.currency,
            "billingMode": b.billing_mode, "from": _iso(b.window[0]), "to": _iso(b.window[1]),
            "totalMinor": str(b.total), "exactTotalMinor": _frac(b.exact_total),
            "seatSeconds": b.seat_seconds, "peakSeats": b.peak_seats,
            "dailyHighWater": [{"day": d.isoformat(), "seats": h} for d, h in b.daily_high_water],
            "lines": [_line_doc(x) for x in b.lines],
        } for b in invoice.pools],
        "totals": [{"currency": c, "totalMinor": str(v)} for c, v in invoice.totals],
    }


def canonical_bytes(doc: Mapping | Invoice) -> bytes:
    """UTF-8 JSON, keys sorted, no whitespace, non-ASCII kept - exactly json.dumps(doc, sort_keys=True,
    separators=(",", ":"), ensure_ascii=False).encode() (orjson emits those bytes for these values, faster):
    hash these to seal an issued invoice. A document not built here is checked for its leaves first."""
    if isinstance(doc, Invoice):
        # str/int/bool/None leaves by construction
        return orjson.dumps(invoice_document(doc), option=orjson.OPT_SORT_KEYS)
    from ledger.canonical import dumps      # the ledger's encoding: the same bytes, leaves checked
    return dumps(dict(doc))


def invoice_hash(doc: Mapping | Invoice) -> str:
    import hashlib
    return hashlib.sha256(canonical_bytes(doc)).hexdigest()


CSV_COLUMNS = ("pool_id", "currency", "kind", "user_id", "from", "to", "seconds", "seats", "unit_price_minor",
               "exact_minor", "amount_minor", "rule", "reason")


def to_csv(invoice: Invoice) -> str:
    """One row per line item (the amounts of a pool's rows add up to its total exactly)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    for b in invoice.pools:
        for x in b.lines:
            w.writerow((b.pool_id, b.currency, x.kind, x.user_id or "", _iso(x.start), _iso(x.end), x.seconds,
                        x.seats, x.unit_price_minor, _ratio(x.exact_num, x.period_seconds), str(x.amount), x.rule, x.reason))
    return buf.getvalue()


# ---- the naive reference (tests only) ----------------------------------------------------------

def naive_breakdown(terms: Terms, intervals: Iterable[SeatInterval], period: Period,
                    window: tuple[datetime, datetime] | None = None) -> dict[tuple[str, str | None], Fraction]:
    """Exact amounts per (kind, user id) by walking the period second by second. Written
    independently of the engine above (it shares only the inputs) and slow on purpose: small
    histories only. Same documented rules: instants floored to the second, terms read at the last
    microsecond of each second, last in first over."""
    one = timedelta(seconds=1)

    def floor(t):
        return t.replace(microsecond=0)

    start, end = floor(period.start), floor(period.end)
    length = (end - start) // one
    lo, hi = start, end
    if window is not None:
        lo, hi = max(start, floor(window[0])), min(end, floor(window[1]))
    ivs = [(iv.user_id, floor(iv.start), None if iv.end is None else floor(iv.end), iv.seq) for iv in intervals]
    ivs = [x for x in ivs if x[2] is None or x[2] > x[1]]

    out: dict[tuple[str, str | None], Fraction] = defaultdict(Fraction)
    began: dict[str, tuple[datetime, int]] = {}     # user -> (uninterrupted holding began, its seq)
    t = min([lo] + [a for _u, a, _b, _s in ivs])
    while t < hi:
        now = {}
        for u, a, b, seq in ivs:
            if a <= t and (b is None or t < b):
                now[u] = began[u] if u in began else (t, seq)
        began = now
        probe = t + timedelta(microseconds=999_999)
        if t >= lo and terms.in_term(probe):
            price, over = terms.price_at(probe)
            if terms.billing_mode == "usage":
                for u in began:
                    out[("usage", u)] += Fraction(price, length)
            else:
                contracted = terms.seats_at(probe)
                out[("commitment", None)] += Fraction(contracted * price, length)
                ranked = sorted((b, s, u) for u, (b, s) in began.items())
                for _b, _s, u in ranked[contracted:]:
                    out[("overage", u)] += Fraction(over, length)
        t += one
    return {k: v for k, v in out.items() if v}


def naive_amount(terms: Terms, intervals: Iterable[SeatInterval], period: Period,
                 window: tuple[datetime, datetime] | None = None) -> Fraction:
    """The exact (unrounded) total by the naive second-by-second walk."""
    return sum(naive_breakdown(terms, list(intervals), period, window).values(), Fraction(0))
