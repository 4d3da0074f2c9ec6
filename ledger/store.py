"""The PostgreSQL event store: append (atomic across streams, expected versions, hash chain) and reads.

Ordering: a tenant's writes are serialized by a row lock on its `tenant_heads` row, taken with
SELECT ... FOR UPDATE inside the append transaction. Transaction-scoped on purpose: it is released by
COMMIT/ROLLBACK whatever happens to the connection afterwards, so several service processes stay
correct and a pool's connection reset cannot leak it. The lock also yields the previous sequence and
hash, so sequences are gapless and the chain has no forks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import AsyncIterator, Iterable, Sequence

import asyncpg
import orjson

from . import canonical
from .events import NewEvent, RecordedEvent
from .pii import ENVELOPE_KEY, KeyRing, open_envelope, seal, split_personal

NOTIFY_CHANNEL = "seatledger_events"
ANY_VERSION = None     # expected_version: no check
NO_STREAM = 0          # expected_version: the stream must not exist yet


class ConcurrencyError(Exception):
    def __init__(self, stream: str, expected: int, actual: int):
        super().__init__(f"stream {stream} is at version {actual}, expected {expected}")
        self.stream, self.expected, self.actual = stream, expected, actual


@dataclass
class StreamChange:
    stream: str
    expected_version: int | None
    events: list[NewEvent]


@dataclass
class Head:
    seq: int
    hash: bytes
    now: datetime          # recorded time for this transaction: clock_timestamp() after the lock


@dataclass
class PendingRow:
    stream: str
    stream_version: int
    new: NewEvent
    metadata: dict


@dataclass
class WriteResult:
    recorded: list[RecordedEvent]
    head: Head


_LOCK_HEAD = """
SELECT seq, hash, greatest(clock_timestamp(), recorded_at) AS now
FROM tenant_heads WHERE tenant_id = $1 FOR UPDATE
"""

_WRITE = """
WITH ins AS (
  INSERT INTO events (tenant_id, seq, stream, stream_version, type, schema_version, data, metadata,
                      effective_at, recorded_at, idempotency_key, encoding, canonical, prev_hash, hash)
  SELECT $1, t.seq, t.stream, t.sv, t.type, t.schv, t.data::jsonb, t.meta::jsonb, t.eff, $2, t.ikey,
         $3, t.canon, t.prev, t.hash
  FROM unnest($4::bigint[], $5::text[], $6::int[], $7::text[], $8::int[], $9::text[], $10::text[],
              $11::timestamptz[], $12::text[], $13::bytea[], $14::bytea[], $15::bytea[])
       AS t(seq, stream, sv, type, schv, data, meta, eff, ikey, canon, prev, hash)
  RETURNING position
), hd AS (
  UPDATE tenant_heads SET seq = $16, hash = $17, recorded_at = $2 WHERE tenant_id = $1
)
SELECT (SELECT array_agg(position ORDER BY position) FROM ins) AS positions,
       pg_notify('seatledger_events', $1 || ':' || $16::text)
"""

_SELECT_EVENTS = """
SELECT position, tenant_id, seq, stream, stream_version, type, schema_version, data, metadata,
       effective_at, recorded_at, idempotency_key, hash, prev_hash
FROM events
"""


async def lock_head(conn: asyncpg.Connection, tenant: str) -> Head:
    row = await conn.fetchrow(_LOCK_HEAD, tenant)
    if row is None:
        await conn.execute("INSERT INTO tenant_heads (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING", tenant)
        row = await conn.fetchrow(_LOCK_HEAD, tenant)
    return Head(seq=row["seq"], hash=bytes(row["hash"]), now=row["now"])


async def stream_versions(conn: asyncpg.Connection, tenant: str, streams: Iterable[str]) -> dict[str, int]:
    names = list(set(streams))
    if not names:
        return {}
    # The unique index (tenant_id, stream, stream_version) answers this with one short backward
    # index scan per stream; no separate versions table to update on every append.
    rows = await conn.fetch(
        "SELECT s.stream, (SELECT max(e.stream_version) FROM events e WHERE e.tenant_id = $1 "
        "AND e.stream = s.stream) AS version FROM unnest($2::text[]) AS s(stream)", tenant, names)
    found = {r["stream"]: r["version"] or 0 for r in rows}
    return {s: found.get(s, 0) for s in names}


def check_versions(changes: Sequence[StreamChange], versions: dict[str, int]) -> None:
    """Raises ConcurrencyError if a stream moved. `versions` includes earlier commands of the batch."""
    for ch in changes:
        actual = versions.get(ch.stream, 0)
        if ch.expected_version is not None and ch.expected_version != actual:
            raise ConcurrencyError(ch.stream, ch.expected_version, actual)


def plan_rows(changes: Sequence[StreamChange], versions: dict[str, int], metadata: dict) -> list[PendingRow]:
    """Assign stream versions (and advance `versions` in place for later commands of the batch)."""
    rows = []
    for ch in changes:
        v = versions.get(ch.stream, 0)
        for ne in ch.events:
            v += 1
            rows.append(PendingRow(ch.stream, v, ne, metadata))
        versions[ch.stream] = v
    return rows


class EventStore:
    def __init__(self, pool: asyncpg.Pool, keyring: KeyRing | None = None):
        self.pool = pool
        self.keys = keyring or KeyRing()

    # ---- writing ---------------------------------------------------------------------------
    async def write(self, conn: asyncpg.Connection, tenant: str, head: Head,
                    rows: list[PendingRow]) -> WriteResult:
        """Seal personal data, hash, and insert `rows` after `head`, in the caller's transaction."""
        if not rows:
            return WriteResult([], head)
        subjects = {r.new.event.subject_id() for r in rows if r.new.event.personal and r.new.event.subject_id()}
        keys = await self.keys.get_or_create(conn, tenant, subjects) if subjects else {}
        now = head.now
        now_us = canonical.to_micros(now)
        seq, prev = head.seq, head.hash
        out_rows = []
        recorded = []
        # A command's metadata dict is shared by all its events: checked and encoded once.
        meta_json: dict[int, str] = {}
        for r in rows:
            ev = r.new.event
            payload = ev.payload()
            if ev.personal:
                public, private = split_personal(payload, ev.personal)
                subject = ev.subject_id()
                if private and subject:
                    public[ENVELOPE_KEY] = seal(keys[subject], tenant, subject, private)
                payload_stored = public
            else:
                payload_stored = payload
            mj = meta_json.get(id(r.metadata))
            if mj is None:
                canonical.check(r.metadata, "$.metadata")
                mj = meta_json[id(r.metadata)] = orjson.dumps(r.metadata).decode()
            seq += 1
            eff = r.new.effective_at or now
            # data comes from a registered event model (no float fields, checked at registration),
            # metadata was checked above, every other field is typed here: no leaf walk needed
            canon = canonical.dumps_checked(canonical.event_document(
                tenant=tenant, seq=seq, stream=r.stream, stream_version=r.stream_version,
                type=ev.type_name, schema_version=ev.version,
                effective_us=now_us if eff is now else canonical.to_micros(eff), recorded_us=now_us,
                idempotency_key=r.new.idempotency_key, metadata=r.metadata, data=payload_stored))
            h = canonical.chain(prev, canon)
            out_rows.append((seq, r.stream, r.stream_version, ev.type_name, ev.version,
                             orjson.dumps(payload_stored).decode(), mj, eff, r.new.idempotency_key,
                             canon, prev, h))
            recorded.append(RecordedEvent(
                position=0, tenant=tenant, seq=seq, stream=r.stream, stream_version=r.stream_version,
                type=ev.type_name, schema_version=ev.version, data=payload, metadata=r.metadata,
                effective_at=eff, recorded_at=now, idempotency_key=r.new.idempotency_key,
                hash=h, prev_hash=prev, _decoded=ev))
            prev = h
        cols = [list(c) for c in zip(*out_rows)]      # one array parameter per column
        res = await conn.fetchrow(_WRITE, tenant, now, canonical.ENCODING, *cols, seq, prev)
        for rec, pos in zip(recorded, res["positions"]):
            rec.position = pos
        return WriteResult(recorded, Head(seq=seq, hash=prev, now=now))

    async def append(self, tenant: str, changes: Sequence[StreamChange],
                     metadata: dict | None = None) -> list[RecordedEvent]:
        """Append events to several streams atomically; ConcurrencyError if any stream moved."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                head = await lock_head(conn, tenant)
                versions = await stream_versions(conn, tenant, (c.stream for c in changes))
                check_versions(changes, versions)
                rows = plan_rows(changes, versions, metadata or {})
                return (await self.write(conn, tenant, head, rows)).recorded

    # ---- reading ---------------------------------------------------------------------------
    async def _records(self, conn, tenant_rows: list) -> list[RecordedEvent]:
        out = []
        need: dict[str, set[str]] = {}
        for r in tenant_rows:
            data = orjson.loads(r["data"]) if isinstance(r["data"], str) else r["data"]
            env = data.get(ENVELOPE_KEY) if isinstance(data, dict) else None
            if env:
                need.setdefault(r["tenant_id"], set()).add(env["subject"])
        keys: dict[tuple[str, str], bytes] = {}
        for tenant, subjects in need.items():
            for s, k in (await self.keys.get(conn, tenant, subjects)).items():
                keys[(tenant, s)] = k
        for r in tenant_rows:
            data = orjson.loads(r["data"])
            erased = False
            env = data.pop(ENVELOPE_KEY, None)
            if env:
                key = keys.get((r["tenant_id"], env["subject"]))
                if key is None:
                    erased = True
                else:
                    data.update(open_envelope(key, r["tenant_id"], env))
            out.append(RecordedEvent(
                position=r["position"], tenant=r["tenant_id"], seq=r["seq"], stream=r["stream"],
                stream_version=r["stream_version"], type=r["type"], schema_version=r["schema_version"],
                data=data, metadata=orjson.loads(r["metadata"]), effective_at=r["effective_at"],
                recorded_at=r["recorded_at"], idempotency_key=r["idempotency_key"],
                hash=bytes(r["hash"]), prev_hash=bytes(r["prev_hash"]), erased=erased))
        return out

    async def read_stream(self, tenant: str, stream: str, after_version: int = 0,
                          limit: int = 10_000) -> list[RecordedEvent]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                _SELECT_EVENTS + " WHERE tenant_id = $1 AND stream = $2 AND stream_version > $3 "
                "ORDER BY stream_version LIMIT $4", tenant, stream, after_version, limit)
            return await self._records(conn, rows)

    async def read_tenant(self, tenant: str, after_seq: int = 0, limit: int = 1000,
                          conn: asyncpg.Connection | None = None) -> list[RecordedEvent]:
        """A tenant's events in sequence order. Sequences commit in order (the tenant lock is held
        until commit), so a reader following `seq` never skips an event that commits late."""
        if conn is None:
            async with self.pool.acquire() as c:
                return await self.read_tenant(tenant, after_seq, limit, c)
        rows = await conn.fetch(_SELECT_EVENTS + " WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                                tenant, after_seq, limit)
        return await self._records(conn, rows)

    async def read_all(self, horizon_from: int, after_position: int = 0, limit: int = 1000,
                       window_end: int | None = None) -> tuple[list[RecordedEvent], int, bool]:
        """All tenants' events of transactions in the window [horizon_from, window_end).

        window_end defaults to the current horizon, the xmin of our snapshot: every transaction
        with an id below it has ended, so the window is complete and final, and reading it in
        position order never skips an event that commits late. Returns (events, window_end,
        exhausted). Page inside a window by passing the same window_end and the last position;
        when exhausted, the next window starts at window_end with after_position 0.
        """
        async with self.pool.acquire() as conn:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                if window_end is None:
                    window_end = int(await conn.fetchval(
                        "SELECT pg_snapshot_xmin(pg_current_snapshot())::text"))
                rows = await conn.fetch(
                    _SELECT_EVENTS + " WHERE tx >= $1::text::xid8 AND tx < $2::text::xid8 "
                    "AND position > $3 ORDER BY position LIMIT $4",
                    str(horizon_from), str(window_end), after_position, limit)
                return await self._records(conn, rows), window_end, len(rows) < limit

    async def head(self, tenant: str) -> tuple[int, bytes]:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT seq, hash FROM tenant_heads WHERE tenant_id = $1", tenant)
            return (row["seq"], bytes(row["hash"])) if row else (0, canonical.GENESIS)
