"""Endpoint lists and their health, shared by the sync and async clients."""

from __future__ import annotations

import threading
import time
from typing import List, Optional, Sequence, Set, Tuple, Union

EndpointSpec = Union[str, Tuple[str, int]]

DEFAULT_PORT = 7878


def parse_endpoints(host: Union[EndpointSpec, Sequence[EndpointSpec]], port: int) -> List[Tuple[str, int]]:
    """``"h"`` (with ``port``), ``("h", p)``, ``"h:p"``, or a list of those, as a list of (host, port)."""
    if isinstance(host, str) or (isinstance(host, tuple) and len(host) == 2 and isinstance(host[1], int)):
        specs: Sequence[EndpointSpec] = [host]
    else:
        specs = list(host)
    out = []
    for spec in specs:
        if isinstance(spec, tuple):
            h, p = spec
        elif isinstance(spec, str):
            if spec.count(":") == 1:
                h, ps = spec.split(":")
                p = int(ps)
            else:
                h, p = spec, port
        else:
            raise TypeError("an endpoint is a host, a (host, port) tuple or 'host:port', not %r" % (spec,))
        if not isinstance(p, int) or not 0 < p < 65536:
            raise ValueError("bad port %r" % (p,))
        out.append((h, p))
    if not out:
        raise ValueError("no endpoints")
    return out


class Endpoint:
    """One server address and whether it looks healthy. After a failure it is avoided for a back-off (doubling from
    ``base_backoff`` up to ``max_backoff``) while other endpoints are healthy; when all are down they are tried
    anyway, soonest-healthy first."""

    __slots__ = ("host", "port", "down_until", "failures", "_lock")

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self.down_until = 0.0
        self.failures = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "up" if self.down_until <= time.monotonic() else "down"
        return "Endpoint(%s:%d, %s)" % (self.host, self.port, state)

    @property
    def address(self) -> Tuple[str, int]:
        return (self.host, self.port)

    def is_up(self, now: Optional[float] = None) -> bool:
        return self.down_until <= (time.monotonic() if now is None else now)

    def mark_down(self, base_backoff: float, max_backoff: float) -> None:
        with self._lock:
            self.failures += 1
            backoff = min(max_backoff, base_backoff * (2 ** min(self.failures - 1, 16)))
            self.down_until = time.monotonic() + backoff

    def mark_up(self) -> None:
        if self.failures or self.down_until:
            with self._lock:
                self.failures = 0
                self.down_until = 0.0


def choose(endpoints: Sequence[Endpoint], tried: Set[int]) -> Optional[int]:
    """Index of the endpoint to use next: the first healthy untried one in list order, else the untried one that
    comes back soonest, else None (all tried)."""
    now = time.monotonic()
    best = None
    for i, ep in enumerate(endpoints):
        if i in tried:
            continue
        if ep.down_until <= now:
            return i
        if best is None or ep.down_until < endpoints[best].down_until:
            best = i
    return best
