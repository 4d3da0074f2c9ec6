"""A tenant's ledger (or a sequence range) as JSON Lines or CSV, streamed in constant memory.

Shared by `GET /v1/<tenant>/audit/export` and `seatledger export`. The rows come from a server-side
cursor inside one REPEATABLE READ, read-only transaction (one snapshot: a consistent prefix of the
chain, whatever commits meanwhile), a bounded number of rows at a time.

One line (or CSV row) per event; `canonical` (base64) is the exact hashed bytes, `prev_hash` and
`hash` are hex, so `scripts/verify_export.py` can check the chain with the standard library alone.
The other fields are the stored columns (data as stored: personal fields stay sealed in `_pii`,
nothing is decrypted) and are checked against the canonical bytes by that script.
"""
from __future__ import annotations

import base64
import csv
import io
from typing import AsyncIterator

import asyncpg
import orjson

FORMATS = ("jsonl", "csv")
CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
COLUMNS = ("seq", "tenant", "stream", "stream_version", "type", "schema_version", "effective_at",
           "recorded_at", "idempotency_key", "actor", "source", "request_id", "correlation_id",
           "causation_id", "metadata", "data", "encoding", "canonical", "prev_hash", "hash")
_META = ("actor", "source", "request_id", "correlation_id", "causation_id")
CHUNK_ROWS = 1000

_SQL = """
SELECT seq, tenant_id, stream, stream_version, type, schema_version, effective_at, recorded_at,
       idempotency_key, metadata::text AS metadata, data::text AS data, encoding, canonical, prev_hash, hash
FROM events WHERE tenant_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq
"""
_MAX_SEQ = 2 ** 63 - 1


def _iso(t) -> str:
    return t.isoformat()


def _jsonl(r) -> bytes:
    meta_text = r["metadata"]
    meta = orjson.loads(meta_text)
    line = {"seq": r["seq"], "tenant": r["tenant_id"], "stream": r["stream"],
            "stream_version": r["stream_version"], "type": r["type"], "schema_version": r["schema_version"],
            "effective_at": _iso(r["effective_at"]), "recorded_at": _iso(r["recorded_at"]),
            "idempotency_key": r["idempotency_key"]}
    for k in _META:
        line[k] = meta.get(k)
    line["metadata"] = orjson.Fragment(meta_text)
    line["data"] = orjson.Fragment(r["data"])
    line["encoding"] = r["encoding"]
    line["canonical"] = base64.b64encode(r["canonical"]).decode("ascii")
    line["prev_hash"] = r["prev_hash"].hex()
    line["hash"] = r["hash"].hex()
    return orjson.dumps(line) + b"\n"


def _csv_row(r) -> list:
    meta = orjson.loads(r["metadata"])
    return [r["seq"], r["tenant_id"], r["stream"], r["stream_version"], r["type"], r["schema_version"],
            _iso(r["effective_at"]), _iso(r["recorded_at"]), r["idempotency_key"] or "",
            *(("" if meta.get(k) is None else str(meta.get(k))) for k in _META),
            r["metadata"], r["data"], r["encoding"], base64.b64encode(r["canonical"]).decode("ascii"),
            r["prev_hash"].hex(), r["hash"].hex()]


async def head_seq(conn: asyncpg.Connection, tenant: str) -> int | None:
    """The tenant's head sequence, None if the tenant has no ledger."""
    return await conn.fetchval("SELECT seq FROM tenant_heads WHERE tenant_id = $1", tenant)


async def export_chunks(conn: asyncpg.Connection, tenant: str, fmt: str = "jsonl", from_seq: int = 1,
                        to_seq: int | None = None, chunk_rows: int = CHUNK_ROWS) -> AsyncIterator[bytes]:
    """Yield the export as byte chunks of at most `chunk_rows` events. The caller runs it inside a
    REPEATABLE READ read-only transaction (see `snapshot`), which a server-side cursor requires."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    cur = conn.cursor(_SQL, tenant, from_seq, _MAX_SEQ if to_seq is None else to_seq, prefetch=chunk_rows)
    if fmt == "jsonl":
        buf: list[bytes] = []
        async for r in cur:
            buf.append(_jsonl(r))
            if len(buf) >= chunk_rows:
                yield b"".join(buf)
                buf.clear()
        if buf:
            yield b"".join(buf)
        return
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(COLUMNS)
    n = 0
    async for r in cur:
        w.writerow(_csv_row(r))
        n += 1
        if n >= chunk_rows:
            yield out.getvalue().encode("utf-8")
            out.seek(0)
            out.truncate()
            n = 0
    rest = out.getvalue()
    if rest:
        yield rest.encode("utf-8")


def snapshot(conn: asyncpg.Connection):
    """The transaction an export runs in: one snapshot, read-only."""
    return conn.transaction(isolation="repeatable_read", readonly=True)
