"""The aiohttp application."""
from __future__ import annotations

from aiohttp import web

from .runtime import Runtime

RUNTIME = web.AppKey("runtime", Runtime)


async def health(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    async with rt.pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
    return web.json_response({"status": "ok", "embedded_postgres": rt.dsns.embedded})


def make_app(runtime: Runtime) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[RUNTIME] = runtime
    app.router.add_get("/healthz", health)
    return app
