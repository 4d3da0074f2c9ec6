"""The real HTTP service on a free port (aiohttp TestServer) over a runtime of the test database."""
from __future__ import annotations

import contextlib

from aiohttp.test_utils import TestServer

from api.app import make_app
from api.runtime import Runtime
from ledger.executor import CommandBus


@contextlib.asynccontextmanager
async def serving(dsns, app_pool, store):
    """Yields (server, runtime) with a command bus of its own; `server.make_url(path)` gives URLs."""
    rt = Runtime(dsns, app_pool, store, CommandBus(store))
    srv = TestServer(make_app(rt), host="127.0.0.1")
    await srv.start_server()
    try:
        yield srv, rt
    finally:
        await srv.close()
        await rt.bus.close()
