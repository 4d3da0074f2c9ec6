"""The write path: commands, decided under the tenant lock, group-committed.

    result = await bus.execute(tenant, command, metadata=..., idempotency_key=...)

Each tenant has a writer task fed by a queue. The writer takes the waiting commands (up to
`batch_max`), locks the tenant's head row, lets each command's handler decide against state read
under that lock *plus the effects of the commands before it in the batch*, writes all the batch's
events and inline projection changes set-based, commits once, and only then answers each caller
(synchronous_commit is on, so an answer means durable). A command its handler rejects fails alone;
an unexpected database error rolls the batch back and re-runs its commands one by one, so one bad
command cannot take its neighbours down. There are no SAVEPOINTs: past 64 subtransactions per
transaction every session of the server slows down.

Every writer - SCIM, admin API, scheduler, reconciler - goes through here.
"""
from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Iterable, Sequence

import asyncpg
import orjson

from .events import NewEvent, RecordedEvent
from .pii import ErasedSubject
from .store import (ConcurrencyError, EventStore, StreamChange, check_versions, lock_head,
                    plan_rows, stream_versions)

log = logging.getLogger(__name__)

# The batch's recorded time (clock_timestamp() after the tenant lock, monotonic per tenant). Deciders
# that depend on time (expiries, grace periods) read it in `load` and keep it in their state, so
# `decide` stays a pure function of its arguments.
BATCH_NOW: contextvars.ContextVar[datetime] = contextvars.ContextVar("seatledger_batch_now")


class CommandRejected(Exception):
    """A handler's refusal: the command fails alone, nothing is written for it."""

    def __init__(self, code: str, detail: str, status: int = 400, **extra):
        super().__init__(detail)
        self.code, self.detail, self.status, self.extra = code, detail, status, extra


class DuplicateEvent(Exception):
    """An event's natural idempotency key was already recorded (e.g. a scheduled expiry)."""


@dataclass
class Decision:
    changes: list[StreamChange] = field(default_factory=list)
    result: Any = None          # JSON-serialisable; returned to the caller and to its retries


class Command:
    """Base for commands. `handler` names the Handler instance that executes this kind."""
    handler: ClassVar["Handler"]


class Handler:
    """Executes one family of commands. Every method runs in the batch transaction, under the lock."""

    # True: each command of this handler is decided in a batch of its own (its `load` reads
    # projections that other commands of a shared batch would change only after all decisions).
    exclusive = False

    def streams(self, command) -> Iterable[str] | None:
        """Streams the command will probably touch, to fetch their versions in one round trip.
        None (the default): the executor finds out by a dry run of `decide` (it is pure)."""
        return None

    async def load(self, conn: asyncpg.Connection, tenant: str, commands: list) -> Any:
        """Read the state these commands decide against (set-based, one query if possible)."""
        return None

    def decide(self, state: Any, command) -> Decision:
        raise NotImplementedError

    def evolve(self, state: Any, command, decision: Decision) -> None:
        """Fold an accepted decision into `state` so later commands of the batch see it."""

    async def project(self, conn: asyncpg.Connection, tenant: str, state: Any,
                      recorded: list[tuple[Any, list[RecordedEvent]]]) -> None:
        """Inline projections (read-your-writes): `recorded` is [(command, its events)]."""


@dataclass
class _Item:
    command: Any
    metadata: dict
    key: str | None
    future: asyncio.Future
    error: BaseException | None = None
    decision: Decision | None = None
    replay: Any = None
    replayed: bool = False


_LINGER_TURNS = 4


class _Session:
    """A writer's connection while it has work. Between batches it sits in a transaction that the
    previous batch's commit opened (`COMMIT; BEGIN` is one round trip, not two), so the next batch
    starts with the tenant lock. A transaction that has run no statement holds no snapshot, no
    transaction id and no lock, so waiting in it costs the server nothing."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool
        self.conn: asyncpg.Connection | None = None

    async def begin(self) -> asyncpg.Connection:
        if self.conn is None:
            self.conn = await self.pool.acquire()
            try:
                await self.conn.execute("BEGIN")
            except BaseException:
                await self.discard()
                raise
        return self.conn

    async def commit(self) -> None:
        """Commit (durable when this returns: synchronous_commit is on) and open the next one."""
        try:
            await self.conn.execute("COMMIT; BEGIN")
        except BaseException:
            await self.discard()
            raise

    async def abort(self) -> None:
        """After a failed batch: roll back; a connection that cannot is dropped."""
        if self.conn is None:
            return
        try:
            await self.conn.execute("ROLLBACK")
        except BaseException:
            await self.discard()
            raise
        else:
            await self.release()

    async def release(self) -> None:
        """Back to the pool, outside any transaction (our pool does not reset connections)."""
        if self.conn is None:
            return
        try:
            if self.conn.is_in_transaction():
                await self.conn.execute("ROLLBACK")
        except BaseException:
            await self.discard()
            raise
        conn, self.conn = self.conn, None
        await self.pool.release(conn)

    async def discard(self) -> None:
        """Terminated and handed back: a connection whose transaction state is unknown."""
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.terminate()
            await self.pool.release(conn)


class CommandBus:
    def __init__(self, store: EventStore, batch_max: int = 256):
        self.store = store
        self.pool = store.pool
        self.batch_max = batch_max
        self._queues: dict[str, collections.deque[_Item]] = {}
        self._writers: dict[str, asyncio.Task] = {}
        # Stream versions as of a tenant's head seq, from our own commits. Valid exactly when the
        # head we lock still has that seq: nobody (no other process either) appended since.
        self._vcache: dict[str, tuple[int, dict[str, int]]] = {}
        self.batches = 0          # observability: batches committed
        # called with (tenant, head seq) after each commit that wrote events, before its callers are
        # answered: in-process read caches drop what they hold (other processes learn by NOTIFY)
        self.on_commit: list = []
        self.commands = 0

    async def execute(self, tenant: str, command, *, metadata: dict | None = None,
                      idempotency_key: str | None = None) -> Any:
        fut = asyncio.get_running_loop().create_future()
        item = _Item(command, dict(metadata or {}), idempotency_key, fut)
        q = self._queues.get(tenant)
        if q is None:
            q = self._queues[tenant] = collections.deque()
        q.append(item)
        w = self._writers.get(tenant)
        if w is None or w.done():
            self._writers[tenant] = asyncio.create_task(self._writer(tenant, q))
        # shield: a caller that goes away does not cancel its neighbours' batch
        return await asyncio.shield(fut)

    async def close(self) -> None:
        for t in self._writers.values():
            t.cancel()
        for t in self._writers.values():
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass

    async def _writer(self, tenant: str, q: collections.deque) -> None:
        session = _Session(self.pool)
        try:
            while True:
                while q:
                    await self._next_batch(tenant, q, session)
                    # Callers just answered often submit again at once (a caller is woken a few turns
                    # of the loop after its future is set): wait those turns before going idle, which
                    # would cost a ROLLBACK now and a BEGIN for the next batch.
                    for _ in range(_LINGER_TURNS):
                        if q:
                            break
                        await asyncio.sleep(0)
                await session.release()
                if not q:       # nothing arrived meanwhile (no await between here and the end)
                    return
        finally:
            # still held here only when cancelled (or failed) mid-round-trip: its state is unknown
            await session.discard()

    async def _next_batch(self, tenant: str, q: collections.deque, session: _Session) -> None:
        batch = [q.popleft()]
        if not batch[0].command.handler.exclusive:
            while len(batch) < self.batch_max and q and not q[0].command.handler.exclusive:
                batch.append(q.popleft())
        try:
            await self._run(tenant, batch, session)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, ErasedSubject) as exc:
            if len(batch) == 1:
                self._fail(batch[0], exc)
            else:
                log.info("batch of %d failed (%s); re-running one by one", len(batch), exc)
                for it in batch:
                    it.error = it.decision = None
                    try:
                        await self._run(tenant, [it], session)
                    except Exception as exc1:  # noqa: BLE001 - reported to that caller alone
                        self._fail(it, exc1)
        except Exception as exc:  # noqa: BLE001 - a handler bug must not kill the writer
            log.exception("batch failed")
            for it in batch:
                if not it.future.done():
                    it.future.set_exception(exc)

    @staticmethod
    def _fail(item: _Item, exc: BaseException) -> None:
        if isinstance(exc, asyncpg.UniqueViolationError) and exc.constraint_name == "events_idempotency":
            exc = DuplicateEvent(str(exc))
        elif isinstance(exc, asyncpg.UniqueViolationError) and exc.constraint_name == "events_stream_version":
            exc = ConcurrencyError("?", -1, -1)
        elif isinstance(exc, ErasedSubject):
            exc = CommandRejected("erased", f"personal data of an erased subject cannot be written ({exc})",
                                  status=409)
        if not item.future.done():
            item.future.set_exception(exc)

    async def _run(self, tenant: str, batch: list[_Item], session: _Session) -> None:
        conn = await session.begin()
        try:
            head = await lock_head(conn, tenant)
            BATCH_NOW.set(head.now)
            keys = [it.key for it in batch if it.key]
            done: dict[str, Any] = {}
            if keys:
                for r in await conn.fetch(
                        "SELECT idempotency_key, result FROM command_log WHERE tenant_id = $1 "
                        "AND idempotency_key = ANY($2::text[])", tenant, keys):
                    done[r["idempotency_key"]] = orjson.loads(r["result"]) if r["result"] else None
            by_handler: dict[Handler, list] = {}
            for it in batch:
                by_handler.setdefault(it.command.handler, []).append(it.command)
            states = {h: await h.load(conn, tenant, cmds) for h, cmds in by_handler.items()}
            cached = self._vcache.pop(tenant, None)
            versions = dict(cached[1]) if cached and cached[0] == head.seq else {}
            wanted = self._hinted_streams(batch, states) - versions.keys()
            if wanted:
                versions.update(await stream_versions(conn, tenant, wanted))

            rows = []
            spans: list[tuple[_Item, int, int]] = []
            seen_keys: dict[str, _Item] = {}
            for it in batch:
                if it.key and it.key in done:
                    it.replay, it.replayed = done[it.key], True
                    continue
                if it.key and it.key in seen_keys:
                    it.replayed = True           # same key twice in one batch: one execution
                    it.replay = seen_keys[it.key]
                    continue
                h = it.command.handler
                try:
                    decision = h.decide(states[h], it.command)
                    missing = []
                    for c in decision.changes:
                        if c.stream not in versions:
                            if c.expected_version is None:
                                missing.append(c.stream)
                            else:
                                # trusted here, proven at write by the unique index on
                                # (tenant, stream, stream_version); a stale one fails the
                                # batch, which then re-runs command by command
                                versions[c.stream] = c.expected_version
                    if missing:
                        versions.update(await stream_versions(conn, tenant, missing))
                    check_versions(decision.changes, versions)
                except (CommandRejected, ConcurrencyError) as exc:
                    it.error = exc
                    continue
                h.evolve(states[h], it.command, decision)
                it.decision = decision
                if it.key:
                    seen_keys[it.key] = it
                    self._key_first_event(decision, it.key)
                start = len(rows)
                rows.extend(plan_rows(decision.changes, versions, it.metadata))
                spans.append((it, start, len(rows)))

            written = await self.store.write(conn, tenant, head, rows)
            per_handler: dict[Handler, list] = {}
            for it, a, b in spans:
                per_handler.setdefault(it.command.handler, []).append(
                    (it.command, written.recorded[a:b]))
            for h, rec in per_handler.items():
                await h.project(conn, tenant, states[h], rec)
            logged = [(it.key, orjson.dumps(it.decision.result).decode(),
                       written.recorded[a].seq if b > a else None)
                      for it, a, b in spans if it.key]
            if logged:
                await conn.execute(
                    "INSERT INTO command_log (tenant_id, idempotency_key, result, first_seq, recorded_at) "
                    "SELECT $1, k, r::jsonb, s, $5 FROM unnest($2::text[], $3::text[], $4::bigint[]) "
                    "AS t(k, r, s)", tenant, [x[0] for x in logged], [x[1] for x in logged],
                    [x[2] for x in logged], head.now)
        except BaseException:
            await session.abort()
            raise
        await session.commit()
        # committed: tell this process's readers first (before any caller can ask), then answer
        if written.recorded:
            for fn in self.on_commit:
                fn(tenant, written.head.seq)
        if len(versions) < 100_000:
            self._vcache[tenant] = (written.head.seq, versions)
        self.batches += 1
        self.commands += len(batch)
        for it in batch:
            if it.future.done():
                continue
            if it.error is not None:
                it.future.set_exception(it.error)
            elif it.replayed:
                res = it.replay.decision.result if isinstance(it.replay, _Item) else it.replay
                it.future.set_result(res)
            else:
                it.future.set_result(it.decision.result)

    @staticmethod
    def _hinted_streams(batch: list[_Item], states: dict) -> set[str]:
        out: set[str] = set()
        for it in batch:
            h = it.command.handler
            hint = h.streams(it.command)
            if hint is None:
                try:   # dry run: decide is pure; later commands may differ, fetched lazily then
                    hint = [c.stream for c in h.decide(states[h], it.command).changes
                            if c.expected_version is None]
                except Exception:  # noqa: BLE001 - a rejection now is decided for real below
                    hint = ()
            out.update(hint)
        return out

    @staticmethod
    def _key_first_event(decision: Decision, key: str) -> None:
        # The command key also lands on its first event, so the database itself (a unique index)
        # guarantees a command is recorded once, even if command_log were lost.
        for ch in decision.changes:
            if ch.events:
                ne = ch.events[0]
                if ne.idempotency_key is None:
                    ch.events[0] = NewEvent(ne.event, ne.effective_at, f"cmd:{key}")
                return
