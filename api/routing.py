"""Routing that stays cheap however many tenant routes there are.

aiohttp indexes resources by their static prefix, so every `/v1/{tenant}/…` route shares the bucket
"/v1" and a request tries that bucket's patterns one by one in registration order: the 34th route
paid 34 regex matches. `index_by_segment(router)` puts one `SegmentIndex` in place of each such
bucket: it reads the path segment after the first variable (`entitlements`, `pools`, `Users`) and
tries only the resources with that literal segment, together with those it cannot classify (a
variable there, a custom pattern), in their registration order. So the same resource answers as
before, with the same `match_info`, and a 404 or 405 (with the same allowed methods) is the same.
The resources stay registered in the router (names, url_for, listings); only the index changes.
A route added after the call is indexed the usual way and tried after the SegmentIndex.
"""
from __future__ import annotations

import re

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractResource, MatchedSubAppResource

_VARIABLE = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*\}$")     # `{tenant}`: matches one whole segment


def _bucket(canonical: str) -> str:
    """The key aiohttp's router indexes a resource by: its path before the first variable's segment."""
    if "{" in canonical:
        canonical = canonical.partition("{")[0].rpartition("/")[0]
    return canonical.rstrip("/") or "/"


def _literal_segment(canonical: str, bucket: str) -> str | None:
    """The literal segment after the first variable ('' when the path ends there), or None when the
    resource may match paths with any segment there."""
    if not canonical.startswith(bucket + "/"):
        return None
    parts = canonical[len(bucket) + 1:].split("/", 2)
    if not _VARIABLE.match(parts[0]):
        return None
    if len(parts) == 1:
        return ""
    return None if "{" in parts[1] or "}" in parts[1] else parts[1]


class SegmentIndex(AbstractResource):
    def __init__(self, bucket: str, resources: list[AbstractResource]):
        super().__init__()
        self._bucket = bucket
        self._prefix = bucket.rstrip("/") + "/"
        any_segment = [(i, r) for i, r in enumerate(resources) if _literal_segment(r.canonical, bucket) is None]
        by_segment: dict[str, list[tuple[int, AbstractResource]]] = {}
        for i, r in enumerate(resources):
            seg = _literal_segment(r.canonical, bucket)
            if seg is not None:
                by_segment.setdefault(seg, []).append((i, r))
        self._candidates = {seg: tuple(r for _, r in sorted(own + any_segment, key=lambda x: x[0]))
                            for seg, own in by_segment.items()}
        self._others = tuple(r for _, r in any_segment)

    def candidates(self, path: str) -> tuple[AbstractResource, ...]:
        if not path.startswith(self._prefix):
            return self._others
        rest = path[len(self._prefix):]
        _, sep, after = rest.partition("/")
        return self._candidates.get(after.partition("/")[0] if sep else "", self._others)

    async def resolve(self, request: web.Request):
        allowed: set[str] = set()
        for resource in self.candidates(request.rel_url.path_safe):
            match, methods = await resource.resolve(request)
            if match is not None:
                return match, methods
            allowed |= methods
        return None, allowed

    @property
    def canonical(self) -> str:
        return self._prefix + "{segment_index}"     # indexes it under the bucket it replaces

    def url_for(self, **kwargs: str):
        raise NotImplementedError("url_for is answered by the resources themselves")

    def add_prefix(self, prefix: str) -> None:
        raise NotImplementedError("index a router after its routes are final")

    def get_info(self) -> dict:
        return {"bucket": self._bucket}

    def raw_match(self, path: str) -> bool:
        return False

    def __len__(self) -> int:
        return 0            # its routes are counted by the resources that own them

    def __iter__(self):
        return iter(())


def index_by_segment(router: web.UrlDispatcher, min_resources: int = 4) -> None:
    """Replace each index bucket of at least `min_resources` resources, some variable, by a SegmentIndex."""
    if not (hasattr(router, "index_resource") and hasattr(router, "unindex_resource")):
        return              # a router without a prefix index (older aiohttp) tries every route anyway
    buckets: dict[str, list[AbstractResource]] = {}
    for resource in router.resources():
        # domain sub-apps are not in the index (the router tries them first, as before)
        if not isinstance(resource, (SegmentIndex, MatchedSubAppResource)):
            buckets.setdefault(_bucket(resource.canonical), []).append(resource)
    for bucket, resources in buckets.items():
        if len(resources) < min_resources or not any("{" in r.canonical for r in resources):
            continue
        for resource in resources:
            router.unindex_resource(resource)
        router.index_resource(SegmentIndex(bucket, resources))
