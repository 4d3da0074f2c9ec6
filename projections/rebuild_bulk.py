"""A first build's bulk load into tables no tenant has a row in: their indexes are dropped in the
loading transaction and built once the rows are in (PostgreSQL's advice for populating a database).

Why: keeping indexes up row by row is most of a bulk load's cost, and building one from the loaded
rows (one sort) is far cheaper. Measured on the benchmark's 1M-event ledger (embedded PostgreSQL 18,
2 cores), the same rows into a table with its indexes / into the bare table plus building them:
seat_intervals (969k rows, 3 indexes) 13.9 s / 2.4 + 5.2 s; licence_seats (647k, 5) 5.9 s / 0.7 + 2.5 s;
temporal_pairs (724k, 1) 2.2 s / 0.65 + 0.7 s; scim_resources (100k, 8) 2.8 s / 0.3 + 1.6 s.

When: only for tables that hold no row of any tenant (a new or restored database, whose first
rebuild is its bulk load), because dropping an index takes the table's ACCESS EXCLUSIVE lock - every
reader and writer of that table, of any tenant, waits until the load commits - and only on a
connection of the tables' owner (the migrations' role: the service's role may not drop an index,
and the service never does; `seatledger rebuild` has the owner's DSN because it migrates).
The DDL is transactional: a load that fails rolls back with its indexes in place, and no other
transaction ever sees a table without them.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import asyncpg

from ledger import db

log = logging.getLogger(__name__)

BULK_ROWS = 50_000          # below this, keeping the indexes up is cheap and the exclusive lock not worth it
LOCK_TIMEOUT = "2s"         # a table some session is using is loaded with its indexes kept up instead

# each index of the tables, with what rebuilds it: a constraint (primary key, unique) is dropped and
# added back as a constraint, so ON CONFLICT and the catalog see exactly what the migrations made
_INDEXES = """
SELECT i.indrelid::regclass::text AS tbl, i.indexrelid::regclass::text AS idx,
       pg_get_indexdef(i.indexrelid) AS def, c.conname, pg_get_constraintdef(c.oid) AS condef
FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
WHERE i.indrelid = ANY($1::regclass[])
ORDER BY i.indrelid, i.indexrelid
"""


@dataclass
class Deferred:
    """The indexes dropped for a load, and the statements that build them again."""
    tables: list[str]
    builds: list[tuple[str, str]] = field(default_factory=list)     # (table, statement)

    async def build(self, conn, tables: list[str] | None = None) -> None:
        """The dropped indexes (of `tables`, or all) built from the loaded rows, in the loading
        transaction. One round trip: a caller may go on with Python work while PostgreSQL builds."""
        todo = [sql for t, sql in self.builds if tables is None or t in tables]
        self.builds = [(t, sql) for t, sql in self.builds if tables is not None and t not in tables]
        if todo:
            # one sort per index, in memory where it fits (the load's rows are in the buffers now)
            await conn.execute(";\n".join(["SET LOCAL maintenance_work_mem = '256MB'", *todo]))


async def defer(conn, tables: list[str]) -> Deferred | None:
    """In the caller's transaction, on an owner connection: those of `tables` that hold no row are
    locked and lose their indexes until `Deferred.build`; None (nothing changed, no lock kept) when all
    hold rows, one is busy or fills meanwhile, or the role may not drop their indexes."""
    # only the tables that look empty are locked: an exclusive lock on a table other tenants use would
    # hold up their reads and writes for the whole load
    tables = [t for t, f in zip(tables, await _filled(conn, tables)) if not f]
    if not tables:
        return None
    try:
        async with conn.transaction():          # a savepoint: a refusal leaves the caller's transaction as it was
            await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            await conn.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
            await conn.execute("SET LOCAL lock_timeout TO DEFAULT")
            # again under the lock (no row can arrive now): one that filled meanwhile gives the locks up
            if any(await _filled(conn, tables)):
                raise _Refused()
            d = Deferred(tables)
            for r in await conn.fetch(_INDEXES, tables):
                if r["conname"]:
                    await conn.execute(f'ALTER TABLE {r["tbl"]} DROP CONSTRAINT "{r["conname"]}"')
                    d.builds.append((r["tbl"], f'ALTER TABLE {r["tbl"]} ADD CONSTRAINT "{r["conname"]}" {r["condef"]}'))
                else:
                    await conn.execute(f"DROP INDEX {r['idx']}")
                    d.builds.append((r["tbl"], r["def"]))
            return d
    except _Refused:
        return None
    except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError, asyncpg.InsufficientPrivilegeError) as exc:
        log.info("bulk load of %s with its indexes kept up: %s", ", ".join(tables), exc)
        return None


async def _filled(conn, tables: list[str]) -> list[bool]:
    """Whether each table holds a row (of any tenant)."""
    return list(await conn.fetchrow("SELECT " + ", ".join(f"EXISTS (SELECT 1 FROM {t})" for t in tables)))


class _Refused(Exception):
    pass


@contextlib.asynccontextmanager
async def owner_connection(dsn: str | None, fallback: asyncpg.Pool | asyncpg.Connection):
    """A connection of the tables' owner for a group's transaction when its DSN is known, else one
    of the service's role: `fallback` itself, or one from it when it is a pool."""
    if dsn is None:
        if isinstance(fallback, asyncpg.Pool):
            async with fallback.acquire() as conn:
                yield conn
        else:
            yield fallback
        return
    conn = await asyncpg.connect(dsn)
    try:
        await db.init_connection(conn)
        yield conn
    finally:
        await conn.close()
