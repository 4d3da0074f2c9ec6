"""Check the hash chain in the database: every row's canonical bytes against its columns, every link.

Reports the first break as (sequence, what was expected, what was found). Tampering with any column
(data, metadata, a time, the type...), deleting, reordering or inserting rows breaks a link or a
bytes/column comparison. A forger who recomputes the whole chain is caught against a head recorded
earlier (`expect_head=(seq, hash)`), e.g. a signed head an auditor kept.

Two implementations of the same check:

* `verify_tenant_py`, the reference: Python per row (json.loads of the canonical bytes, compared with
  the columns; sha256 of the chain). Decimals are parsed as `Decimal`, so numbers compare exactly
  (a float would make 1e23 equal to 99999999999999991611392).
* `verify_tenant` (the default): the same checks in SQL, in C inside the server, one range of
  sequences at a time (`ledger.verify_sql.CHECK_RANGE`: `sha256(prev_hash || canonical) = hash`,
  `prev_hash` = the previous row's hash, gapless sequence, the canonical bytes against the columns).
  Ranges are independent once the first row's prev_hash is returned with them, so they run on several
  connections at once (`pool=`), all on one exported snapshot, and are linked here in order. The SQL
  test is a filter at least as strict as the reference: a range it does not pass wholesale (or that
  makes the server raise, e.g. invalid UTF-8) is verified again row by row by the reference, which
  decides and writes the report - so both give the same `Break` (same `what`, same sequence) on any
  tampering.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from . import verify_sql
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
         "prev_hash, hash FROM events WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq")
_ALL = 2**63 - 1


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

    def jump(self, seq: int, h: bytes) -> Report | None:
        """Rows up to `seq` verified elsewhere (gapless from 1), the last with hash `h`."""
        self.count, self.expected_seq = seq - 1, seq
        return self.advance(seq, h)

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
            doc = json.loads(canon.decode("utf-8"), parse_float=Decimal)
        except (UnicodeDecodeError, ValueError) as exc:
            return brk("canonical bytes", "JSON", exc)
        cols = {"tenant": r["tenant_id"], "seq": seq, "stream": r["stream"],
                "stream_version": r["stream_version"], "type": r["type"],
                "schema_version": r["schema_version"], "effective_us": to_micros(r["effective_at"]),
                "recorded_us": to_micros(r["recorded_at"]), "idempotency_key": r["idempotency_key"]}
        for k in _COLUMNS:
            if doc.get(k) != cols[k]:
                return brk(f"column {k}", doc.get(k), cols[k])
        for k in ("metadata", "data"):
            if doc.get(k) != json.loads(r[k], parse_float=Decimal):
                return brk(f"column {k}", json.dumps(doc.get(k), sort_keys=True, default=str), r[k])
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
        async for r in conn.cursor(_ROWS, tenant, 0, _ALL, prefetch=chunk):
            rep = c.check(r)
            if rep is not None:
                return rep
        return await c.finish(conn)


async def _reference_range(conn, c: _Checker, hi: int) -> Report | None:
    """The reference over the rows after the verified state up to `hi`."""
    for row in await conn.fetch(_ROWS, c.tenant, c.expected_seq - 1, hi):
        rep = c.check(row)
        if rep is not None:
            return rep
    return None


def _accept(c: _Checker, r, lo: int, hi: int, mark: int | None) -> Report | bool:
    """Apply a range's server result to the state: False if the reference must decide, else the
    report of a recorded head that does not match (True: the state is now at `hi`)."""
    if (lo != c.expected_seq - 1          # the state stopped short of the range (rows missing before it)
            or r is None or r["bad"] is not None or r["n"] != hi - lo or r["first_prev"] is None
            or bytes(r["first_prev"]) != c.prev):
        return False
    # rows lo+1 .. hi, gapless, linked to the state, all verified: jump to hi, stopping at the
    # recorded head on the way
    if mark is not None and lo < mark <= hi:
        rep = c.jump(mark, bytes(r["mark_hash"]))
        if rep is not None:
            return rep
    if hi >= c.expected_seq:
        c.jump(hi, bytes(r["last_hash"]))
    return True


async def verify_tenant(conn: asyncpg.Connection, tenant: str, expect_head: tuple[int, str] | None = None,
                        chunk: int = 20_000, pool: asyncpg.Pool | None = None, workers: int = 2) -> Report:
    """The chain checked in the server, a range of `chunk` sequences at a time, on `conn` and up to
    `workers - 1` more connections of `pool` sharing its snapshot; the reference decides on any
    range that does not pass wholesale, so the reports are the reference's."""
    c = _Checker(tenant, expect_head)
    mark = expect_head[0] if expect_head is not None else None
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute(verify_sql.SESSION)
        top = await conn.fetchval("SELECT max(seq) FROM events WHERE tenant_id = $1", tenant) or 0
        ranges = [(lo, min(lo + chunk, top)) for lo in range(0, top, chunk)]
        async with _sharing_snapshot(conn, pool, workers - 1) as helpers:
            i = 0
            while i < len(ranges):
                async with _RangeChecks([conn, *helpers], tenant, ranges, i, mark) as checks:
                    for i in range(i, len(ranges)):
                        lo, hi = ranges[i]
                        verdict = _accept(c, await checks.result(i), lo, hi, mark)
                        if verdict is False:
                            break
                        if verdict is not True:
                            return verdict
                    else:
                        break
                # every connection is idle again: the reference decides on range i
                rep = await _reference_range(conn, c, ranges[i][1])
                if rep is not None:
                    return rep
                i += 1
        return await c.finish(conn)


class _RangeChecks:
    """CHECK_RANGE over `ranges[start:]` on several connections at once; results taken in order.
    Leaving waits for the queries in flight (a connection is never left busy)."""

    def __init__(self, conns, tenant: str, ranges, start: int, mark: int | None):
        loop = asyncio.get_running_loop()
        self.results = {i: loop.create_future() for i in range(start, len(ranges))}
        self.conns, self.tenant, self.ranges, self.next, self.mark = conns, tenant, ranges, start, mark
        self.stopped = False

    async def __aenter__(self):
        self.tasks = [asyncio.create_task(self._work(conn)) for conn in self.conns]
        return self

    async def __aexit__(self, *exc):
        self.stopped = True
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def result(self, i: int):
        return self.results[i]

    async def _work(self, conn) -> None:
        while not self.stopped and self.next < len(self.ranges):
            i, self.next = self.next, self.next + 1
            lo, hi = self.ranges[i]
            try:
                async with conn.transaction():      # a savepoint: an error leaves the snapshot usable
                    r = await conn.fetchrow(verify_sql.CHECK_RANGE, self.tenant, lo, hi, self.mark, ENCODING)
            except asyncpg.PostgresError:          # e.g. bytes that are not UTF-8: the reference says why
                r = None
            except asyncio.CancelledError:
                self.results[i].cancel()
                raise
            except BaseException as exc:
                self.results[i].set_exception(exc)
                raise
            self.results[i].set_result(r)


@asynccontextmanager
async def _sharing_snapshot(conn, pool: asyncpg.Pool | None, wanted: int):
    """Up to `wanted` idle connections of `pool`, each in a read-only transaction on `conn`'s
    snapshot (exported), so every range is read as of the same instant; none if the pool is busy."""
    free = 0 if pool is None else pool.get_idle_size() + pool.get_max_size() - pool.get_size()
    helpers: list = []
    if min(wanted, free) <= 0:
        yield helpers
        return
    snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
    if not re.fullmatch(r"[0-9A-F-]+", snapshot):
        raise ValueError(f"unexpected snapshot id {snapshot!r}")
    try:
        for _ in range(min(wanted, free)):
            try:
                helper = await pool.acquire(timeout=5)
            except asyncio.TimeoutError:           # taken meanwhile: fewer helpers
                break
            helpers.append((helper, helper.transaction(isolation="repeatable_read", readonly=True)))
            await helpers[-1][1].start()
            await helper.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'; {verify_sql.SESSION}")
        yield [h for h, _ in helpers]
    finally:
        for helper, tx in helpers:
            try:
                await tx.rollback()
            finally:
                await pool.release(helper)


async def tenants(conn: asyncpg.Connection) -> list[str]:
    return [r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM tenant_heads ORDER BY tenant_id")]
