"""Who is where: private hosts (MAC, port), public neighbours (MAC), packets waiting for an ARP
reply, and the ageing that keeps what is known true.

Packets to a next hop whose MAC is unknown wait in a bounded queue per next hop;
the ARP request is repeated every ``retry_s`` and the queue dropped after
``give_up_s``. A known neighbour is trusted for ``reachable_s`` after it last
proved it is there (an answer, or its own traffic); then it is asked again, as
Linux does in its PROBE state: a request sent to its known MAC every
``retry_s``, ``probes`` times; if none is answered the entry goes. Entries are
kept in the order they were last confirmed, so ageing looks only at the oldest,
and at most ``max_known`` are kept (the least recently confirmed goes first).
No I/O; time is passed in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Location:
    """Where an address is reached: switch port and Ethernet address."""

    port: int
    mac: str


@dataclass(slots=True)
class Neighbour:
    """A known neighbour: where it is, when its MAC was set, when it last proved it is there."""

    location: Location
    updated: float  # when ``location`` was set (Linux's lock time counts from it)
    confirmed: float
    probes: int = 0  # re-checks sent since it was last confirmed
    last_probe: float = 0.0


@dataclass(slots=True)
class _Waiting:
    first_asked: float
    last_asked: float
    packets: deque[tuple[int, bytes]] = field(default_factory=deque)


@dataclass(frozen=True, slots=True)
class Expired:
    """What :meth:`Neighbours.expire` found.

    ``ask_again``: unresolved addresses to ask for again; ``dropped``: packets
    given up with ``given_up``, the addresses that never answered; ``probe``:
    known neighbours to re-check at their known location; ``forgotten``: known
    neighbours removed because no re-check was answered.
    """

    ask_again: tuple[int, ...] = ()
    dropped: int = 0
    given_up: tuple[int, ...] = ()
    probe: tuple[tuple[int, Location], ...] = ()
    forgotten: tuple[int, ...] = ()


class Neighbours:
    """An ARP cache, its ageing, and the packets that wait on it."""

    def __init__(self, per_hop: int = 16, max_hops: int = 256, retry_s: float = 1.0, give_up_s: float = 3.0,
                 max_known: int = 65536, reachable_s: float = 60.0, probes: int = 3,
                 probes_per_expire: int = 256) -> None:
        self.per_hop = per_hop
        self.max_hops = max_hops
        self.retry_s = retry_s
        self.give_up_s = give_up_s
        self.max_known = max_known
        self.reachable_s = reachable_s
        self.probes = probes
        self.probes_per_expire = probes_per_expire
        self._known: dict[int, Neighbour] = {}  # least recently confirmed first
        self._waiting: dict[int, _Waiting] = {}

    def __len__(self) -> int:
        return len(self._known)

    def lookup(self, ip: int) -> Location | None:
        known = self._known.get(ip)
        return None if known is None else known.location

    def entry(self, ip: int) -> Neighbour | None:
        return self._known.get(ip)

    def is_waiting(self, ip: int) -> bool:
        """True while the NAT asks for ``ip`` (an answer from it is one to our own request)."""
        return ip in self._waiting

    def learn(self, ip: int, location: Location, now: float) -> list[tuple[int, bytes]]:
        """Remember where ``ip`` is, confirmed now; the packets that were waiting for it, to send now."""
        self._known.pop(ip, None)
        self._known[ip] = Neighbour(location, now, now)
        if len(self._known) > self.max_known:
            del self._known[next(iter(self._known))]
        waiting = self._waiting.pop(ip, None)
        return list(waiting.packets) if waiting else []

    def confirm(self, ip: int, now: float) -> None:
        """``ip`` proved it is still at its known location (it answered, or sent from there)."""
        known = self._known.get(ip)
        if known is None or (known.confirmed == now and not known.probes):
            return
        known.confirmed, known.probes = now, 0
        del self._known[ip]
        self._known[ip] = known  # to the end: the order stays that of confirmation

    def forget(self, ip: int) -> None:
        self._known.pop(ip, None)

    def doubt_all(self, now: float) -> None:
        """Re-check every known neighbour from now on (the network may have changed under us)."""
        for known in self._known.values():
            known.confirmed = min(known.confirmed, now - self.reachable_s)

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

    def ask(self, ip: int, now: float) -> bool:
        """Start asking for ``ip`` with no packet waiting; True if the caller should ask now."""
        if ip in self._waiting or len(self._waiting) >= self.max_hops:
            return False
        self._waiting[ip] = _Waiting(first_asked=now, last_asked=now)
        return True

    def expire(self, now: float) -> Expired:
        """Give up on next hops silent for ``give_up_s`` and list those to ask again; re-check neighbours
        not confirmed for ``reachable_s`` and forget those that answered no re-check."""
        ask_again, given_up, dropped = [], [], 0
        for ip, waiting in list(self._waiting.items()):
            if now - waiting.first_asked >= self.give_up_s:
                dropped += len(waiting.packets)
                given_up.append(ip)
                del self._waiting[ip]
            elif now - waiting.last_asked >= self.retry_s:
                waiting.last_asked = now
                ask_again.append(ip)
        probe, forgotten = self._age(now)
        return Expired(tuple(ask_again), dropped, tuple(given_up), probe, forgotten)

    def _age(self, now: float) -> tuple[tuple[tuple[int, Location], ...], tuple[int, ...]]:
        """The oldest entries, up to ``probes_per_expire`` of them that need something: a re-check, or
        removal after ``probes`` unanswered ones. Stops at the first entry still fresh."""
        probe: list[tuple[int, Location]] = []
        forgotten: list[int] = []
        budget = self.probes_per_expire
        for ip, known in self._known.items():
            if now - known.confirmed < self.reachable_s or budget <= 0:
                break
            if known.probes and now - known.last_probe < self.retry_s:
                continue
            budget -= 1
            if known.probes >= self.probes:
                forgotten.append(ip)
            else:
                known.probes += 1
                known.last_probe = now
                probe.append((ip, known.location))
        for ip in forgotten:
            del self._known[ip]
        return tuple(probe), tuple(forgotten)
