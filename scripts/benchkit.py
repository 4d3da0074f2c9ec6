"""Small pieces the HTTP benchmarks share: a free port, percentiles in ms, a closed-loop load."""
from __future__ import annotations

import asyncio
import socket
import time


def pct(xs, p):
    """The p-quantile of latencies in seconds, in milliseconds (2 decimals); None if empty."""
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * p))] * 1000, 2) if xs else None


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def load(n: int, conc: int, fn) -> tuple[float, list[float]]:
    """Call fn(0..n-1) from `conc` workers; (elapsed seconds, per-call latencies)."""
    lat: list[float] = []
    it = iter(range(n))

    async def worker():
        for i in it:
            t = time.perf_counter()
            await fn(i)
            lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(conc)])
    return time.perf_counter() - t0, lat
