"""Which connection to close when the server is full: the client holding most idle sockets.

A connection that has not sent a complete request (silent, slow headers, a slow body, or a
kept-alive socket between requests) costs a file descriptor and holds nothing anyone waits for.
4,100 sockets that connect and send nothing used to fill the per-process cap, so legitimate
streams succeeded 34-37 % of the time and `/healthz` failed (issue 23). As the cap is reached,
the server now closes one of these *pending* connections to admit the new one: the oldest of
the client address holding the most of them. An attacker on a few addresses therefore only
ever evicts its own sockets, and one sharing the victims' address evicts its own oldest ones,
which are older than a client's that sent its request at once.

Behind a load balancer every connection comes from the balancer's address, so addresses listed
in `PERCEPTION_LLM_TRUSTED_PROXIES` are not shares: each of their connections counts alone,
and the oldest pending one goes first.

Counts live in buckets by size (the "max-frequency stack"), so adding, removing and choosing a
victim are O(1) however many sockets and addresses there are.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

logger = logging.getLogger("server.http.protocol")  # logged as the connection guard
REPORT_EVERY_SECONDS = 10.0
Conn = TypeVar("Conn", bound=Hashable)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """`["10.0.0.5", "192.168.0.0/16"]` as networks (ValueError names a bad entry)."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network") from None
    return tuple(networks)


class ConnectionShares(Generic[Conn]):
    """Pending connections by client, oldest first (see the module docstring)."""

    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        self._trusted = parse_networks(trusted_proxies)
        self._trusted_cache: dict[str, bool] = {}
        self._pending: dict[Hashable, dict[Conn, None]] = {}  # client -> its pending, in order
        self._client_of: dict[Conn, Hashable] = {}
        self._by_size: dict[int, dict[Hashable, None]] = {}  # how many pending -> clients
        self._largest = 0

    def client_key(self, client: tuple[str, int] | None) -> Hashable:
        """What a connection's share is counted by: its address, or itself behind a proxy."""
        if client is None:
            return None
        host = client[0]
        if self._trusted and self._is_trusted(host):
            return client  # a proxy's connections are different clients
        return host

    def _is_trusted(self, host: str) -> bool:
        known = self._trusted_cache.get(host)
        if known is None:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                known = False
            else:  # a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d
                address = getattr(address, "ipv4_mapped", None) or address
                known = any(address in network for network in self._trusted)
            if len(self._trusted_cache) < 4096:  # bounded: addresses are attacker-chosen
                self._trusted_cache[host] = known
        return known

    def add(self, conn: Conn, client: Hashable) -> None:
        """`conn` has no complete request now (it is newest among its client's)."""
        if conn in self._client_of:
            return
        self._client_of[conn] = client
        mine = self._pending.setdefault(client, {})
        self._move(client, len(mine), len(mine) + 1)
        mine[conn] = None

    def discard(self, conn: Conn) -> None:
        """`conn` sent a complete request, or is gone."""
        client = self._client_of.pop(conn, _ABSENT)
        if client is _ABSENT:
            return
        mine = self._pending[client]
        del mine[conn]
        self._move(client, len(mine) + 1, len(mine))
        if not mine:
            del self._pending[client]

    def victim(self) -> Conn | None:
        """The oldest pending connection of the client with the most, or None."""
        if not self._largest:
            return None
        client = next(iter(self._by_size[self._largest]))
        return next(iter(self._pending[client]))

    def __len__(self) -> int:
        return len(self._client_of)

    def _move(self, client: Hashable, old: int, new: int) -> None:
        if old:
            bucket = self._by_size[old]
            del bucket[client]
            if not bucket:
                del self._by_size[old]
                if self._largest == old:
                    self._largest = new  # sizes move by one, so the next largest is `new`
        if new:
            self._by_size.setdefault(new, {})[client] = None
            self._largest = max(self._largest, new)


class CapReport:
    """Evictions and refusals at the connection cap, logged at most once per ten seconds (a
    flood of sockets must not become a flood of log lines)."""

    def __init__(self) -> None:
        self.evicted = 0
        self.refused = 0
        self._last = 0.0

    def count(self, loop: asyncio.AbstractEventLoop, cap: int, *, evicted: bool) -> None:
        if evicted:
            self.evicted += 1
        else:
            self.refused += 1
        now = loop.time()
        if now - self._last >= REPORT_EVERY_SECONDS:
            logger.warning(
                "connection limit (%d, PERCEPTION_LLM_MAX_CONNECTIONS) reached: closed %d "
                "connections without a complete request, refused %d new ones",
                cap,
                self.evicted,
                self.refused,
            )
            self._last, self.evicted, self.refused = now, 0, 0


_ABSENT: object = object()
