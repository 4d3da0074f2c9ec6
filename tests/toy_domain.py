"""A toy domain for testing the write path: names claimed uniquely, and a pool of slots."""
from __future__ import annotations

from dataclasses import dataclass

from ledger.events import Event, NewEvent, event
from ledger.executor import Command, CommandRejected, Decision, Handler
from ledger.store import StreamChange


@event("ToyNoted")
class Noted(Event):
    text: str
    n: int = 0


@event("ToyPersonNamed")
class PersonNamed(Event):
    person: str
    email: str | None = None
    display: str | None = None
    role: str = "member"
    personal = frozenset({"email", "display"})
    subject_field = "person"


@event("ToyNameClaimed")
class NameClaimed(Event):
    name: str
    by: str


@event("ToySlotTaken")
class SlotTaken(Event):
    who: str


class NameHandler(Handler):
    """A name may be claimed once per tenant; the claims table is an inline projection."""

    def streams(self, cmd):
        return [f"name-{cmd.name}"]

    async def load(self, conn, tenant, commands):
        rows = await conn.fetch("SELECT name FROM toy_names WHERE tenant_id = $1 AND name = ANY($2::text[])",
                                tenant, [c.name for c in commands])
        return {r["name"] for r in rows}

    def decide(self, taken, cmd):
        if cmd.name in taken:
            raise CommandRejected("uniqueness", f"name {cmd.name} is taken", status=409)
        return Decision([StreamChange(f"name-{cmd.name}", 0, [NewEvent(NameClaimed(name=cmd.name, by=cmd.by))])],
                        result={"name": cmd.name})

    def evolve(self, taken, cmd, decision):
        taken.add(cmd.name)

    async def project(self, conn, tenant, state, recorded):
        await conn.executemany("INSERT INTO toy_names (tenant_id, name) VALUES ($1, $2)",
                               [(tenant, c.name) for c, _ in recorded])


class SlotHandler(Handler):
    def __init__(self, slots: int):
        self.slots = slots

    async def load(self, conn, tenant, commands):
        rows = await conn.fetchval("SELECT max(stream_version) FROM events WHERE tenant_id = $1 AND stream = 'slots'", tenant)
        return {"used": rows or 0}

    def decide(self, state, cmd):
        if state["used"] >= self.slots:
            raise CommandRejected("full", "no slot free", status=409)
        return Decision([StreamChange("slots", state["used"], [NewEvent(SlotTaken(who=cmd.who))])],
                        result=state["used"] + 1)

    def evolve(self, state, cmd, decision):
        state["used"] += 1


NAMES = NameHandler()
SLOTS = SlotHandler(10)


@dataclass
class ClaimName(Command):
    name: str
    by: str = "x"
    handler = NAMES


@dataclass
class TakeSlot(Command):
    who: str
    handler = SLOTS


class NoteHandler(Handler):
    def decide(self, state, cmd):
        return Decision([StreamChange(cmd.stream, None, [NewEvent(Noted(text=cmd.text))])], result=cmd.text)


@dataclass
class Note(Command):
    stream: str
    text: str
    handler = NoteHandler()


class BoomHandler(Handler):
    """Writes a projection row that violates a constraint: an unexpected database error."""

    def decide(self, state, cmd):
        return Decision([StreamChange("boom", None, [NewEvent(Noted(text="boom"))])])

    async def project(self, conn, tenant, state, recorded):
        await conn.execute("INSERT INTO toy_names (tenant_id, name) VALUES ($1, NULL)", tenant)


@dataclass
class Boom(Command):
    handler = BoomHandler()


TOY_SQL = """CREATE TABLE IF NOT EXISTS toy_names (tenant_id text NOT NULL, name text NOT NULL,
             PRIMARY KEY (tenant_id, name));
             GRANT SELECT, INSERT ON toy_names TO seatledger_app;"""


class ExpectHandler(Handler):
    """Appends with an explicit expected version, as a decider that knows its stream would."""

    def decide(self, state, cmd):
        return Decision([StreamChange(cmd.stream, cmd.expected, [NewEvent(Noted(text=cmd.text))])], result=cmd.text)


@dataclass
class Expect(Command):
    stream: str
    expected: int
    text: str
    handler = ExpectHandler()
