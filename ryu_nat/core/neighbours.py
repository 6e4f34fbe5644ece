"""Who is where: private hosts (MAC, port), public neighbours (MAC), and packets
waiting for an ARP reply.

Packets to a next hop whose MAC is unknown wait in a bounded queue per next hop;
the ARP request is repeated every ``retry_s`` and the queue dropped after
``give_up_s``. No I/O; time is passed in.
"""

from __future__ import annotations

from collections import deque

import cachetools
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Location:
    """Where an address is reached: switch port and Ethernet address."""

    port: int
    mac: str


@dataclass(slots=True)
class _Waiting:
    first_asked: float
    last_asked: float
    packets: deque[tuple[int, bytes]] = field(default_factory=deque)


@dataclass(frozen=True, slots=True)
class Expired:
    """What :meth:`Neighbours.expire` found: addresses to ask again, and packets given up."""

    ask_again: tuple[int, ...]
    dropped: int


class Neighbours:
    """An ARP cache and the packets that wait on it."""

    def __init__(self, per_hop: int = 16, max_hops: int = 256, retry_s: float = 1.0, give_up_s: float = 3.0,
                 max_known: int = 65536) -> None:
        self.per_hop = per_hop
        self.max_hops = max_hops
        self.retry_s = retry_s
        self.give_up_s = give_up_s
        # Least recently learned or used goes first when full: bounded whatever hosts claim.
        self._known: cachetools.LRUCache[int, Location] = cachetools.LRUCache(max_known)
        self._waiting: dict[int, _Waiting] = {}

    def lookup(self, ip: int) -> Location | None:
        return self._known.get(ip)

    def peek(self, ip: int) -> Location | None:
        """As :meth:`lookup`, without making ``ip`` the most recently used (a question, not traffic)."""
        return cachetools.Cache.__getitem__(self._known, ip) if ip in self._known else None

    def learn(self, ip: int, location: Location) -> list[tuple[int, bytes]]:
        """Remember where ``ip`` is; the packets that were waiting for it, to send now."""
        self._known[ip] = location
        waiting = self._waiting.pop(ip, None)
        return list(waiting.packets) if waiting else []

    def wait(self, ip: int, in_port: int, frame: bytes, now: float) -> bool | None:
        """Queue a frame for ``ip``. True: first one, ask now; False: queued; None: queue full, dropped."""
        waiting = self._waiting.get(ip)
        if waiting is None:
            if len(self._waiting) >= self.max_hops:
                return None
            waiting = self._waiting[ip] = _Waiting(first_asked=now, last_asked=now)
            waiting.packets.append((in_port, frame))
            return True
        if len(waiting.packets) >= self.per_hop:
            return None
        waiting.packets.append((in_port, frame))
        return False

    def expire(self, now: float) -> Expired:
        """Give up on next hops silent for ``give_up_s``; list those to ask again."""
        ask_again, dropped = [], 0
        for ip, waiting in list(self._waiting.items()):
            if now - waiting.first_asked >= self.give_up_s:
                dropped += len(waiting.packets)
                del self._waiting[ip]
            elif now - waiting.last_asked >= self.retry_s:
                waiting.last_asked = now
                ask_again.append(ip)
        return Expired(tuple(ask_again), dropped)
