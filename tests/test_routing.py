"""Segment-indexed routing (api/routing.py) answers exactly as aiohttp's own router: the same route,
the same match_info, the same 404 and 405 (with Allow) - for every route the service registers,
through two real HTTP servers, one indexed and one not."""
from __future__ import annotations

import re

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from yarl import URL

from api.routing import SegmentIndex, index_by_segment

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _echo_app(routes: list[tuple[str, str]], indexed: bool) -> web.Application:
    app = web.Application()
    for method, path in routes:
        async def echo(request: web.Request, path=path) -> web.Response:
            return web.json_response({"route": path, "match": dict(request.match_info)})
        app.router.add_route(method, path, echo)
    if indexed:
        index_by_segment(app.router)
    return app


def _sample_paths(routes) -> list[str]:
    paths = set()
    for _, path in routes:
        for value in ("acme", "a%2Fb"):
            paths.add(re.sub(r"\{[^}]+\}", value, path))
    paths |= {"/v1/acme", "/v1/acme/", "/v1/acme/nothing", "/v1/acme/pools/p1/nothing", "/v1//pools",
              "/scim/v2/acme/Users/u1", "/scim/v2/acme/Groups/.search", "/scim/v2/acme", "/scim/v2/acme/x/y/z",
              "/healthz", "/v1/audit/public-key", "/", "/nothing"}
    return sorted(paths)


@pytest.fixture(scope="module")
async def servers(service):
    srv, _ = service
    routes = [(r.method, r.resource.canonical) for r in srv.app.router.routes() if r.method != "HEAD"]
    plain, indexed = TestServer(_echo_app(routes, False)), TestServer(_echo_app(routes, True))
    await plain.start_server()
    await indexed.start_server()
    yield routes, plain, indexed
    await plain.close()
    await indexed.close()


async def test_indexed_router_answers_like_aiohttp(servers):
    routes, plain, indexed = servers
    assert len(routes) > 40
    async with ClientSession() as s:
        for path in _sample_paths(routes):
            for method in METHODS:
                answers = []
                for srv in (plain, indexed):
                    url = URL(str(srv.make_url("/")).rstrip("/") + path, encoded=True)    # %2F stays
                    async with s.request(method, url) as r:
                        answers.append((r.status, sorted(r.headers.get("Allow", "").split(",")), await r.read()))
                assert answers[0] == answers[1], (method, path)


def test_the_service_router_tries_only_the_routes_of_the_segment(service):
    srv, _ = service
    v1 = [r for r in srv.app.router.resources() if r.canonical.startswith("/v1/{tenant}/")]
    index = SegmentIndex("/v1", v1)
    assert [r.canonical for r in index.candidates("/v1/acme/entitlements/ada@x")] == \
        ["/v1/{tenant}/entitlements/{user}"]
    assert all("/pools" in r.canonical for r in index.candidates("/v1/acme/pools/p1/resize"))
    assert index.candidates("/v1/acme/unknown") == ()
