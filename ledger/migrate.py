"""Apply the ordered SQL files under ledger/sql/, once each, recorded in schema_migrations.

Safe to run twice and from two processes at once: a session advisory lock serializes migrators of
one database, and each file runs in its own transaction together with its record.
"""
from __future__ import annotations

import hashlib
from importlib import resources

import asyncpg

# Arbitrary constant naming "the seatledger migrator" among advisory locks.
MIGRATION_LOCK = 0x5EA71ED6E2


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("ledger") / "sql"
    files = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name, (folder / name).read_text(encoding="utf-8")) for name in files]


async def migrate(dsn: str) -> list[str]:
    """Returns the names of the migrations applied by this call."""
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                     name text PRIMARY KEY, checksum text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {r["name"]: r["checksum"] for r in await conn.fetch("SELECT name, checksum FROM schema_migrations")}
            for name, sql in migration_files():
                checksum = hashlib.sha256(sql.encode()).hexdigest()
                if name in done:
                    if done[name] != checksum:
                        raise RuntimeError(f"migration {name} changed after it was applied")
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)", name, checksum
                    )
                applied.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied
