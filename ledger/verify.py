"""Check the hash chain in the database: every row's canonical bytes against its columns, every link.

Reports the first break as (sequence, what was expected, what was found). Tampering with any column
(data, metadata, a time, the type...), deleting, reordering or inserting rows breaks a link or a
bytes/column comparison. A forger who recomputes the whole chain is caught against a head recorded
earlier (`expect_head=(seq, hash)`), e.g. a signed head an auditor kept.
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


async def verify_tenant(conn: asyncpg.Connection, tenant: str,
                        expect_head: tuple[int, str] | None = None, chunk: int = 5000) -> Report:
    prev = GENESIS
    expected_seq = 1
    count = 0
    head_hash = GENESIS.hex()
    found_expected_head = expect_head is None
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        cur = conn.cursor(
            "SELECT tenant_id, seq, stream, stream_version, type, schema_version, data::text AS data, "
            "metadata::text AS metadata, effective_at, recorded_at, idempotency_key, encoding, canonical, "
            "prev_hash, hash FROM events WHERE tenant_id = $1 ORDER BY seq", tenant, prefetch=chunk)
        async for r in cur:
            seq = r["seq"]

            def brk(what, exp, got):
                return Report(tenant, count, expected_seq - 1, head_hash, Break(tenant, seq, what, str(exp), str(got)))

            if seq != expected_seq:   # a row removed (gap) or rows reordered
                return Report(tenant, count, expected_seq - 1, head_hash,
                              Break(tenant, expected_seq, "sequence", str(expected_seq), str(seq)))
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
            prev = h
            head_hash = h.hex()
            count += 1
            expected_seq += 1
            if expect_head is not None and seq == expect_head[0]:
                if head_hash != expect_head[1].lower():
                    return Report(tenant, count, seq, head_hash,
                                  Break(tenant, seq, "recorded head", expect_head[1], head_hash))
                found_expected_head = True
        head = await conn.fetchrow("SELECT seq, hash FROM tenant_heads WHERE tenant_id = $1", tenant)
    if not found_expected_head:
        return Report(tenant, count, expected_seq - 1, head_hash,
                      Break(tenant, expect_head[0], "recorded head", expect_head[1], "chain ends before it"))
    if head is not None and (head["seq"] != expected_seq - 1 or bytes(head["hash"]).hex() != head_hash):
        return Report(tenant, count, expected_seq - 1, head_hash,
                      Break(tenant, head["seq"], "tenant head", f'{head["seq"]}:{bytes(head["hash"]).hex()}',
                            f"{expected_seq - 1}:{head_hash}"))
    return Report(tenant, count, expected_seq - 1, head_hash)


async def tenants(conn: asyncpg.Connection) -> list[str]:
    return [r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM tenant_heads ORDER BY tenant_id")]
