"""Check the hash chain in the database: every row's canonical bytes against its columns, every link.

Reports the first break as (sequence, what was expected, what was found). Tampering with any column
(data, metadata, a time, the type...), deleting, reordering or inserting rows breaks a link or a
bytes/column comparison. A forger who recomputes the whole chain is caught against a head recorded
earlier (`expect_head=(seq, hash)`), e.g. a signed head an auditor kept.

Two implementations of the same check:

* `verify_tenant_py`, the reference: Python per row (json.loads of the canonical bytes, compared with
  the columns; sha256 of the chain).
* `verify_tenant` (the default): the same checks in SQL, in C inside the server - a chunk of rows by
  sequence range at a time, `sha256(prev_hash || canonical) = hash`, `prev_hash` = the previous row's
  hash, gapless sequence, the canonical bytes parsed as jsonb and every field compared with its column
  (times as exact microseconds: `extract(epoch ...)` is numeric). The SQL test is a filter that is at
  least as strict as the reference: a chunk it does not pass wholesale (or that makes the server
  raise, e.g. invalid UTF-8) is verified again row by row by the reference, which decides and writes
  the report - so both give the same `Break` (same `what`, same sequence) on any tampering.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import asyncpg

from .canonical import ENCODING, GENESIS, to_micros


@dataclass
class Break:
    tenant: str
    seq: int
    what: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"tenant {self.tenant}: chain broken at sequence {self.seq}: {self.what}: expected {self.expected}, found {self.found}"


@dataclass
class Report:
    tenant: str
    events: int
    head_seq: int
    head_hash: str
    broken: Break | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None


_COLUMNS = ("tenant", "seq", "stream", "stream_version", "type", "schema_version", "effective_us",
            "recorded_us", "idempotency_key")

_ROWS = ("SELECT tenant_id, seq, stream, stream_version, type, schema_version, data::text AS data, "
         "metadata::text AS metadata, effective_at, recorded_at, idempotency_key, encoding, canonical, "
         "prev_hash, hash FROM events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq")


class _Checker:
    """The reference, one row at a time; the state is the chain verified so far."""

    def __init__(self, tenant: str, expect_head: tuple[int, str] | None):
        self.tenant = tenant
        self.prev = GENESIS
        self.expected_seq = 1
        self.count = 0
        self.head_hash = GENESIS.hex()
        self.expect_head = expect_head
        self.found_expected_head = expect_head is None

    def report(self, brk: Break | None = None, seq: int | None = None) -> Report:
        return Report(self.tenant, self.count, self.expected_seq - 1 if seq is None else seq, self.head_hash, brk)

    def advance(self, seq: int, h: bytes) -> Report | None:
        """Row `seq` (the expected one) verified with hash `h`."""
        self.prev = h
        self.head_hash = h.hex()
        self.count += 1
        self.expected_seq += 1
        if self.expect_head is not None and seq == self.expect_head[0]:
            if self.head_hash != self.expect_head[1].lower():
                return self.report(Break(self.tenant, seq, "recorded head", self.expect_head[1], self.head_hash), seq)
            self.found_expected_head = True
        return None

    def check(self, r) -> Report | None:
        tenant, seq = self.tenant, r["seq"]
        expected_seq = self.expected_seq

        def brk(what, exp, got):
            return self.report(Break(tenant, seq, what, str(exp), str(got)))

        if seq != expected_seq:   # a row removed (gap) or rows reordered
            return self.report(Break(tenant, expected_seq, "sequence", str(expected_seq), str(seq)))
        prev = self.prev
        if bytes(r["prev_hash"]) != prev:
            return brk("prev_hash", prev.hex(), bytes(r["prev_hash"]).hex())
        canon = bytes(r["canonical"])
        h = hashlib.sha256(prev + canon).digest()
        if h != bytes(r["hash"]):
            return brk("hash", h.hex(), bytes(r["hash"]).hex())
        if r["encoding"] != ENCODING:
            return brk("encoding", ENCODING, r["encoding"])
        try:
            doc = json.loads(canon.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return brk("canonical bytes", "JSON", exc)
        cols = {"tenant": r["tenant_id"], "seq": seq, "stream": r["stream"],
                "stream_version": r["stream_version"], "type": r["type"],
                "schema_version": r["schema_version"], "effective_us": to_micros(r["effective_at"]),
                "recorded_us": to_micros(r["recorded_at"]), "idempotency_key": r["idempotency_key"]}
        for k in _COLUMNS:
            if doc.get(k) != cols[k]:
                return brk(f"column {k}", doc.get(k), cols[k])
        if doc.get("metadata") != json.loads(r["metadata"]):
            return brk("column metadata", json.dumps(doc.get("metadata"), sort_keys=True), r["metadata"])
        if doc.get("data") != json.loads(r["data"]):
            return brk("column data", json.dumps(doc.get("data"), sort_keys=True), r["data"])
        return self.advance(seq, h)

    async def finish(self, conn) -> Report:
        head = await conn.fetchrow("SELECT seq, hash FROM tenant_heads WHERE tenant_id = $1", self.tenant)
        last = self.expected_seq - 1
        if not self.found_expected_head:
            return self.report(Break(self.tenant, self.expect_head[0], "recorded head", self.expect_head[1],
                                     "chain ends before it"))
        if head is not None and (head["seq"] != last or bytes(head["hash"]).hex() != self.head_hash):
            return self.report(Break(self.tenant, head["seq"], "tenant head", f'{head["seq"]}:{bytes(head["hash"]).hex()}',
                                     f"{last}:{self.head_hash}"))
        return self.report()


async def verify_tenant_py(conn: asyncpg.Connection, tenant: str,
                           expect_head: tuple[int, str] | None = None, chunk: int = 5000) -> Report:
    """The reference verifier: every row checked in Python."""
    c = _Checker(tenant, expect_head)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        async for r in conn.cursor(_ROWS, tenant, 0, prefetch=chunk):
            rep = c.check(r)
            if rep is not None:
                return rep
        return await c.finish(conn)


# One chunk checked in the server: how many rows, the first that fails (NULL: none), the last row's
# sequence and hash, and the hash at the recorded head's sequence if the chunk holds it.
_CHUNK = """
SELECT count(*) AS n, min(seq) FILTER (WHERE ok IS NOT TRUE) AS bad, max(seq) AS last,
       string_agg(hash, ''::bytea) FILTER (WHERE is_last) AS last_hash,
       string_agg(hash, ''::bytea) FILTER (WHERE seq = $5) AS mark_hash
FROM (
  SELECT seq, hash, lead(seq) OVER w IS NULL AS is_last,
    (seq = $2 + row_number() OVER w
     AND prev_hash = coalesce(lag(hash) OVER w, $4::bytea)
     AND hash = sha256(prev_hash || canonical)
     AND encoding = $6
     AND doc->'tenant' = to_jsonb(tenant_id)
     AND doc->'seq' = to_jsonb(seq)
     AND doc->'stream' = to_jsonb(stream)
     AND doc->'stream_version' = to_jsonb(stream_version)
     AND doc->'type' = to_jsonb(type)
     AND doc->'schema_version' = to_jsonb(schema_version)
     AND doc->'effective_us' = to_jsonb(extract(epoch FROM effective_at) * 1000000)
     AND doc->'recorded_us' = to_jsonb(extract(epoch FROM recorded_at) * 1000000)
     AND coalesce(doc->'idempotency_key', 'null') = coalesce(to_jsonb(idempotency_key), 'null')
     AND doc->'metadata' = metadata
     AND doc->'data' = data) AS ok
  FROM (
    SELECT seq, hash, prev_hash, canonical, encoding, tenant_id, stream, stream_version, type, schema_version,
           effective_at, recorded_at, idempotency_key, metadata, data,
           convert_from(canonical, 'UTF8')::jsonb AS doc
    FROM events WHERE tenant_id = $1 AND seq > $2 AND seq <= $2 + $3 ORDER BY seq
  ) e
  WINDOW w AS (ORDER BY seq)
) c
"""


async def verify_tenant(conn: asyncpg.Connection, tenant: str,
                        expect_head: tuple[int, str] | None = None, chunk: int = 50_000) -> Report:
    """The chain checked in the server, a chunk at a time; the reference decides on any chunk that
    does not pass wholesale, so the reports are the reference's."""
    c = _Checker(tenant, expect_head)
    mark = expect_head[0] if expect_head is not None else None
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        # each chunk planned for its own bounds (a generic plan may sort the whole tenant), and no JIT
        # compile per chunk for a query whose cost is all in the per-row functions
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL jit = off")
        while True:
            after = c.expected_seq - 1
            try:
                async with conn.transaction():          # a savepoint: an error leaves the snapshot usable
                    r = await conn.fetchrow(_CHUNK, tenant, after, chunk, c.prev, mark, ENCODING)
            except asyncpg.PostgresError:
                r = None
            if r is not None and r["bad"] is None:
                # rows after+1 .. last, gapless, all verified: the state jumps to `last` (count is
                # always expected_seq - 1), stopping at the recorded head on the way
                last = r["last"]
                if mark is not None and after < mark <= last:
                    c.count, c.expected_seq = mark - 1, mark
                    rep = c.advance(mark, bytes(r["mark_hash"]))
                    if rep is not None:
                        return rep
                if last is not None and last >= c.expected_seq:
                    c.count, c.expected_seq = last - 1, last
                    c.advance(last, bytes(r["last_hash"]))
                if r["n"] == chunk:
                    continue
                # the range was not full: the end of the chain, unless rows follow a gap
                if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM events WHERE tenant_id = $1 AND seq > $2)",
                                           tenant, c.expected_seq - 1):
                    break
                after = c.expected_seq - 1
            # the reference, row by row, over the same rows
            rows = await conn.fetch(_ROWS + " LIMIT $3", tenant, after, chunk)
            for row in rows:
                rep = c.check(row)
                if rep is not None:
                    return rep
            if len(rows) < chunk:
                break
        return await c.finish(conn)


async def tenants(conn: asyncpg.Connection) -> list[str]:
    return [r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM tenant_heads ORDER BY tenant_id")]
