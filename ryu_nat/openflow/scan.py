"""Every rule of ours on the switch, read a slice at a time: a search of the cookie space by counts.

After a restart the controller knows no mapping id, and an audit must also find
rules whose ids no mapping has; both read the switch's rules back without
asking for them all at once (a full table is 131,072 rules, and a reply that
size would hold up every other message from the switch). Flow statistics select
rules by cookie under a mask, so the space of our cookies (tag | kind | mapping
id, :mod:`ryu_nat.openflow.cookies`) is searched as a tree. A node is a cookie
and a mask: an aggregate-statistics request counts its rules; a node with none
is passed over, one with at most :data:`SLICE_RULES` is read whole (a
flow-statistics request: a *slice*), and a bigger one is split by its next bits
(the kind's seven, then the id's two at a time). Siblings are counted in
order, and once their counts add up to their parent's the rest are known empty,
so a dense table costs one count per level above its slices.

The kind's lowest bit is never in a mask: a mapping's ORIGINAL and REPLY rules
(kinds 2 and 3) are always in the same slice, and slices come in increasing
order of kind and mapping id. An optional ``crowded(first_id, last_id)`` splits
a node whose mapping ids the caller holds too many of (an audit compares each
slice with the table), so a slice is small on both sides. One request is
outstanding at a time; one unanswered for ``timeout_s`` is asked again, up to
:data:`RETRIES` times, then its node is reported unreadable. No I/O; time is
passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from ryu_nat.openflow import cookies
from ryu_nat.openflow.flowentries import SwitchRule

SLICE_RULES = 2048  # at most this many rules per flow-statistics request (1,024 mappings)
SLICE_LIMIT = 2 * SLICE_RULES  # a slice whose reply brings more (rules added meanwhile) is given up
KIND_BITS = 7  # the cookie's kind byte without its lowest bit
ID_BITS = 40
DEPTH = KIND_BITS + ID_BITS  # every bit of a cookie of ours that a mask may select
ID_STEP = 2  # a node of mapping ids splits in 4: slices come out near SLICE_RULES, not a sixteenth of it
RETRIES = 2
TIMEOUT_S = 10.0
_MAPPING_KINDS = int(cookies.RuleKind.ORIGINAL) >> 1  # kinds 2 and 3 share their top seven bits
_ID_SPAN = 1 << ID_BITS


class Ask(enum.Enum):
    COUNT = "count"  # an aggregate-statistics request
    RULES = "rules"  # a flow-statistics request (a slice)


@dataclass(frozen=True, slots=True)
class Node:
    """The cookies whose first ``depth`` searched bits are ``value``: kind bits 47..41, then id bits 39..0."""

    value: int = 0
    depth: int = 0

    @property
    def cookie(self) -> int:
        kind_depth, id_depth = self._depths
        kind_bits, id_bits = self.value >> id_depth, self.value & ((1 << id_depth) - 1)
        return cookies.OURS | kind_bits << (48 - kind_depth) | id_bits << (ID_BITS - id_depth)

    @property
    def mask(self) -> int:
        kind_depth, id_depth = self._depths
        return (cookies.OURS_MASK | ((1 << kind_depth) - 1) << (48 - kind_depth)
                | ((1 << id_depth) - 1) << (ID_BITS - id_depth))

    @property
    def mapping_ids(self) -> tuple[int, int] | None:
        """(first, last) mapping id of the mapping rules this node holds; None if it holds none."""
        kind_depth, id_depth = self._depths
        if self.value >> id_depth != _MAPPING_KINDS >> (KIND_BITS - kind_depth):
            return None
        id_bits = self.value & ((1 << id_depth) - 1)
        size = _ID_SPAN >> id_depth
        return id_bits * size, (id_bits + 1) * size - 1

    def children(self) -> list[Node]:
        """The next level: by the whole kind first, then two id bits at a time; ascending."""
        step = KIND_BITS - self.depth if self.depth < KIND_BITS else min(ID_STEP, DEPTH - self.depth)
        return [Node(self.value << step | low, self.depth + step) for low in range(1 << step)]

    @property
    def _depths(self) -> tuple[int, int]:
        kind_depth = min(self.depth, KIND_BITS)
        return kind_depth, self.depth - kind_depth


@dataclass(frozen=True, slots=True)
class Request:
    """What to ask the switch next: a count or the rules of ``node``."""

    ask: Ask
    node: Node


@dataclass(frozen=True, slots=True)
class Slice:
    """The rules of ``node`` (all of them, as one reply gave them)."""

    node: Node
    rules: list[SwitchRule]


@dataclass(frozen=True, slots=True)
class Empty:
    """``node`` holds no rule (its mapping ids, if any, have none on the switch)."""

    node: Node


@dataclass(frozen=True, slots=True)
class Unreadable:
    """``node``'s rules could not be read: unanswered, undecodable, or more than a slice may hold."""

    node: Node


Result = Slice | Empty | Unreadable


@dataclass(slots=True)
class _Family:
    """Siblings share what their parent counted: once theirs add up to it, the rest are empty."""

    left: int


@dataclass(slots=True)
class _Entry:
    node: Node
    count: int | None
    family: _Family | None


@dataclass(slots=True)
class _Pending:
    request: Request
    xid: int
    sent_at: float
    tries: int
    rules: list[SwitchRule] = field(default_factory=list)


class Scan:
    """One search of our cookies on the switch: the next request, and what each reply reveals."""

    def __init__(self, crowded: Callable[[int, int], bool] | None = None, timeout_s: float = TIMEOUT_S) -> None:
        self._crowded = crowded
        self.timeout_s = timeout_s
        self._stack: list[_Entry] = [_Entry(Node(), None, None)]
        self._pending: _Pending | None = None
        self._retry: tuple[Request, int] | None = None  # a request asked again, and how often it was sent
        self._asked: Request | None = None  # handed out by next_request, not yet sent
        self._results: list[Result] = []
        self.requests = 0
        self.rules_read = 0

    @property
    def done(self) -> bool:
        """Nothing left to ask, and no answer awaited (a request handed out but not sent is awaited)."""
        return not self._stack and self._pending is None and self._asked is None

    @property
    def pending_xid(self) -> int | None:
        return None if self._pending is None else self._pending.xid

    def next_request(self, now: float) -> Request | None:
        """The request to send now, if any: none while one is outstanding (unless it timed out)."""
        self._asked = self._next(now)
        return self._asked

    def _next(self, now: float) -> Request | None:
        pending = self._pending
        if pending is not None:
            if now - pending.sent_at < self.timeout_s:
                return None
            if pending.tries > RETRIES:
                self._give_up(pending)
            else:
                self._pending = None
                self._retry = (pending.request, pending.tries)
                return pending.request
        while self._stack:
            entry = self._stack[-1]
            count = entry.count
            if count is None and entry.family is not None and entry.family.left == 0:
                count = 0  # the siblings before it hold every rule their parent had
            if count is None:
                return Request(Ask.COUNT, entry.node)
            self._stack.pop()
            request = self._settle(entry.node, count)
            if request is not None:
                return request
        return None

    def sent(self, request: Request, xid: int, now: float) -> None:
        """``request`` went out with ``xid``."""
        retry, self._retry, self._asked = self._retry, None, None
        tries = retry[1] + 1 if retry is not None and retry[0] is request else 1
        self._pending = _Pending(request, xid, now, tries)
        self.requests += 1

    def counted(self, xid: int, count: int) -> bool:
        """The count that answers ``xid``; False if no count was awaited under that xid."""
        pending = self._pending
        if pending is None or pending.xid != xid or pending.request.ask is not Ask.COUNT:
            return False
        self._pending = None
        entry = self._stack[-1]
        entry.count = count
        if entry.family is not None:
            entry.family.left -= count
        return True

    def part(self, xid: int, rules: list[SwitchRule], more: bool) -> bool:
        """One part of the slice that answers ``xid``; False if no slice was awaited under that xid."""
        pending = self._pending
        if pending is None or pending.xid != xid or pending.request.ask is not Ask.RULES:
            return False
        pending.rules += rules
        if len(pending.rules) > SLICE_LIMIT:
            self._give_up(pending)
        elif not more:
            self._pending = None
            self.rules_read += len(pending.rules)
            self._results.append(Slice(pending.request.node, pending.rules))
        return True

    def failed(self, xid: int) -> None:
        """The reply to ``xid`` could not be read: its node is reported unreadable."""
        pending = self._pending
        if pending is not None and pending.xid == xid:
            self._give_up(pending)

    def take_results(self) -> list[Result]:
        """What the replies so far revealed, in cookie order, once each."""
        results, self._results = self._results, []
        return results

    def _settle(self, node: Node, count: int) -> Request | None:
        """A node whose count is known: passed over, read whole, or split (children pushed)."""
        ids = node.mapping_ids
        crowded = ids is not None and node.depth < DEPTH and self._crowded is not None and self._crowded(*ids)
        if count == 0 and not crowded:
            self._results.append(Empty(node))
            return None
        if node.depth == DEPTH or (count <= SLICE_RULES and not crowded):
            if count > SLICE_LIMIT:
                self._results.append(Unreadable(node))
                return None
            return Request(Ask.RULES, node)
        family = _Family(count)
        self._stack += [_Entry(child, 0 if count == 0 else None, family) for child in reversed(node.children())]
        return None

    def _give_up(self, pending: _Pending) -> None:
        """Report the node of an outstanding request unreadable (a count's node is not split either)."""
        self._pending = None
        if pending.request.ask is Ask.COUNT:
            self._stack.pop()
        self._results.append(Unreadable(pending.request.node))
