"""The NAT gateway: switch events in, plans out (:class:`Gateway`), over parts that each own their state.

=================  =============================================================
dispatcher.py      :class:`Gateway`: parses, hands each packet to one part, composes the plan
neighbours.py      neighbours and ARP: answers, learns, resolves next hops, holds packets for them
switching.py       the learning switch between private ports, and which ports are private
natpath.py         route decisions, redirects, hairpin; owns the core NAT (table and ports)
offload.py         each mapping's two switch rules, as a state per mapping (:class:`RuleState`)
local.py           the NAT's own addresses: echo replies, time exceeded
guard.py           the inbound guard: drop rules for unsolicited traffic
reassembly.py      fragments wait for their datagram; translated datagrams leave cut again
restore.py         after a restart: mappings rebuilt from the switch's rules; routed packets wait meanwhile
audit.py           the switch's rules compared with the table, and the repairs
explain.py         what the NAT would do with a packet, and why (:class:`Explanation`)
review.py          :class:`Review`: composes the parts for restore, audit and explain (``Gateway.review``)
drops.py           :class:`DropReason`: every reason a packet is dropped, with its meaning
stats.py           every counter, declared once
=================  =============================================================
"""

from ryu_nat.gateway.dispatcher import Gateway
from ryu_nat.gateway.drops import DropReason
from ryu_nat.openflow.reasons import FlowRemovedReason, PacketInReason

__all__ = ["DropReason", "FlowRemovedReason", "Gateway", "PacketInReason"]
