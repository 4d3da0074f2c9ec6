"""Billing facts: issued invoices and credit/debit notes, on the stream `billing-<YYYY-MM>`.

An invoice is computed (projections.billing_source.invoice_at) from the events with seq <= knownAt,
which never change, so the command records only what seals it: the period, knownAt, the totals per
currency (minor units as strings) and the SHA-256 of the canonical document. Recomputing at knownAt
later reproduces those bytes. One invoice per period unless explicitly re-issued (409 otherwise).

A note records an adjustment report between two sequences (from, to]: the per-currency amounts
credited (the invoice known at `to` is lower) or debited, and the report's hash.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import orjson

from .events import Event, NewEvent, event
from .executor import Command, CommandRejected, Decision, Handler
from .store import StreamChange

PERIOD_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
AMOUNT_RE = re.compile(r"^-?\d+$")


@event("InvoiceIssued")
class InvoiceIssued(Event):
    period: str                     # YYYY-MM in the tenant's time zone
    period_start: datetime
    period_end: datetime
    timezone: str
    known_at: int                   # the tenant sequence the invoice was computed at
    totals: dict[str, str]          # currency -> total in minor units
    sha256: str                     # hex digest of the canonical invoice document
    number: int                     # 1 for the first issue of the period, 2 for a re-issue, ...
    reissue: bool = False


class _NoteIssued(Event):
    period: str
    from_known_at: int
    to_known_at: int
    amounts: dict[str, str]         # currency -> amount in minor units (positive)
    sha256: str                     # hex digest of the canonical adjustment report
    lines: int


@event("CreditNoteIssued")
class CreditNoteIssued(_NoteIssued):
    pass


@event("DebitNoteIssued")
class DebitNoteIssued(_NoteIssued):
    pass


def stream_of(period: str) -> str:
    return f"billing-{period}"


@dataclass
class _PeriodState:
    version: int
    invoices: list[dict]
    notes: list[dict]


@dataclass
class BillingState:
    head: int
    periods: dict[str, _PeriodState]


class BillingHandler(Handler):
    def streams(self, cmd):
        return [stream_of(cmd.period)]

    async def load(self, conn, tenant, commands):
        streams = sorted({stream_of(c.period) for c in commands})
        head = await conn.fetchval("SELECT seq FROM tenant_heads WHERE tenant_id = $1", tenant) or 0
        periods = {s[8:]: _PeriodState(0, [], []) for s in streams}
        for r in await conn.fetch("SELECT stream, stream_version, seq, type, data::text AS data FROM events "
                                  "WHERE tenant_id = $1 AND stream = ANY($2::text[]) ORDER BY seq",
                                  tenant, streams):
            p = periods[r["stream"][8:]]
            p.version = r["stream_version"]
            d = {**orjson.loads(r["data"]), "seq": r["seq"], "type": r["type"]}
            (p.invoices if r["type"] == "InvoiceIssued" else p.notes).append(d)
        return BillingState(head, periods)

    def decide(self, state: BillingState, cmd) -> Decision:
        if not PERIOD_RE.match(cmd.period):
            raise CommandRejected("invalidValue", "period is YYYY-MM", field="period")
        p = state.periods[cmd.period]
        return cmd.decide(state, p)

    def evolve(self, state: BillingState, cmd, decision: Decision) -> None:
        p = state.periods[cmd.period]
        for ch in decision.changes:
            for ne in ch.events:
                p.version += 1
                d = {**ne.event.payload(), "type": ne.event.type_name}
                (p.invoices if isinstance(ne.event, InvoiceIssued) else p.notes).append(d)


BILLING = BillingHandler()


def _check_totals(totals: dict[str, str], what: str) -> None:
    for c, v in totals.items():
        if not re.match(r"^[A-Z]{3}$", c) or not isinstance(v, str) or not AMOUNT_RE.match(v):
            raise CommandRejected("invalidValue", f"{what}: currency -> minor units as a string", field=what)


@dataclass
class IssueInvoice(Command):
    period: str
    period_start: datetime
    period_end: datetime
    timezone: str
    known_at: int
    totals: dict[str, str]
    sha256: str
    reissue: bool = False
    handler = BILLING

    def decide(self, st: BillingState, p: _PeriodState) -> Decision:
        if not 1 <= self.known_at <= st.head:
            raise CommandRejected("invalidValue", f"knownAt must be between 1 and {st.head}", field="knownAt")
        _check_totals(self.totals, "totals")
        if p.invoices and not self.reissue:
            last = p.invoices[-1]
            raise CommandRejected("alreadyIssued", f"the invoice for {self.period} was issued at knownAt "
                                  f"{last['known_at']}; re-issue explicitly", status=409, issued=last)
        ev = InvoiceIssued(period=self.period, period_start=self.period_start, period_end=self.period_end,
                           timezone=self.timezone, known_at=self.known_at, totals=self.totals, sha256=self.sha256,
                           number=len(p.invoices) + 1, reissue=bool(p.invoices))
        return Decision([StreamChange(stream_of(self.period), p.version, [NewEvent(ev)])],
                        result={"period": self.period, "knownAt": self.known_at, "sha256": self.sha256,
                                "totals": self.totals, "number": ev.number, "reissue": ev.reissue})


@dataclass
class IssueNote(Command):
    """Records the credit and/or debit note of an adjustment report: `deltas` per currency (negative:
    credit, positive: debit). Mixed signs record one note of each kind."""
    period: str
    from_known_at: int
    to_known_at: int
    deltas: dict[str, str]
    sha256: str
    lines: int
    handler = BILLING

    def decide(self, st: BillingState, p: _PeriodState) -> Decision:
        if not 1 <= self.from_known_at < self.to_known_at <= st.head:
            raise CommandRejected("invalidValue", f"need 1 <= from < to <= {st.head}", field="to")
        _check_totals(self.deltas, "deltas")
        credit = {c: v[1:] for c, v in sorted(self.deltas.items()) if v.startswith("-") and int(v) != 0}
        debit = {c: v for c, v in sorted(self.deltas.items()) if not v.startswith("-") and int(v) != 0}
        if not credit and not debit:
            raise CommandRejected("nothingToAdjust", "the invoices at from and to are equal", status=409)
        for n in p.notes:
            if n["from_known_at"] == self.from_known_at and n["to_known_at"] == self.to_known_at:
                raise CommandRejected("alreadyIssued", f"a note for ({self.from_known_at}, {self.to_known_at}] "
                                      "was issued", status=409)
        common = dict(period=self.period, from_known_at=self.from_known_at, to_known_at=self.to_known_at,
                      sha256=self.sha256, lines=self.lines)
        evs = []
        if credit:
            evs.append(NewEvent(CreditNoteIssued(amounts=credit, **common)))
        if debit:
            evs.append(NewEvent(DebitNoteIssued(amounts=debit, **common)))
        return Decision([StreamChange(stream_of(self.period), p.version, evs)],
                        result={"period": self.period, "from": self.from_known_at, "to": self.to_known_at,
                                "credit": credit, "debit": debit, "sha256": self.sha256})
