"""Every packet-in returns: hostile and malformed frames through ``Gateway.packet_in``.

Each call runs under a watchdog (a bound generous enough for a loaded CI
machine; speed is measured in bench/, section ``parsing``), must not raise, and
must leave the NAT's invariants true. The frames come from tests/unit/hostile.py.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from ryu_nat.core.packet import Frame, ParseError, parse_frame

from .hostile import (FAMILIES, Watchdog, connected_gateway, every_tcp_option, hostile_frame, invariant_violations,
                      tcp_option_syn)

BOUND_S = 2.0  # per call; a packet-in takes tens of microseconds


@pytest.mark.parametrize("kind", [5, 29, 2, 3, 4, 8, 28, 30, 99, 254, 255])
@pytest.mark.parametrize("from_outside", [True, False])
def test_a_syn_with_a_zero_length_tcp_option_returns(kind, from_outside):
    # Ryu 4.34's option parser never returned on SACK (5), TCP-AO (29) and unknown kinds with
    # length byte 0, e.g. SACK 05 00 01 01: one such SYN from anywhere froze the controller.
    gateway = connected_gateway()
    in_port, frame = tcp_option_syn(kind, 0, from_outside)
    with Watchdog(BOUND_S) as watchdog:
        watchdog.run(gateway.packet_in, in_port, frame, now=1.0)
    assert gateway.stats.packet_ins["public" if from_outside else "private"] == 1
    parsed = parse_frame(frame)
    assert isinstance(parsed, Frame) and parsed.datagram is not None and parsed.datagram.tcp_flags == 0x02


def test_every_tcp_option_kind_with_every_length_byte_returns():
    gateway = connected_gateway()
    calls = 0
    with Watchdog(BOUND_S) as watchdog:
        for kind, length, in_port, frame in every_tcp_option():
            watchdog.run(gateway.packet_in, in_port, frame, now=1.0 + kind)
            calls += 1
    assert calls == 256 * 256
    assert invariant_violations(gateway) == []
    # Every one was read as the SYN it is: none was refused by the parser.
    assert not set(gateway.stats.drops) & {reason.value for reason in ParseError}


# No "explain" phase: it traces every line a failing example runs, and a call stuck in a loop
# (as Ryu's TCP option parser was) then runs out of memory before the failure is reported.
@settings(max_examples=400, phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
@given(rng=st.randoms(use_true_random=False), families=st.lists(st.sampled_from(sorted(FAMILIES)), min_size=1,
                                                                max_size=12))
def test_hostile_frames_return_raise_nothing_and_keep_the_invariants(rng, families):
    gateway = connected_gateway()
    now = 0.0
    with Watchdog(BOUND_S) as watchdog:
        for family in families:
            in_port, frame = hostile_frame(rng, family)
            now += rng.choice((0.0, 0.1, 5.0, 31.0))
            watchdog.run(gateway.packet_in, in_port, frame, now=now)
            assert invariant_violations(gateway) == []
        watchdog.run(gateway.expire, now + 400.0)
    assert invariant_violations(gateway) == []


def test_a_long_hostile_run_on_one_gateway_keeps_the_invariants():
    # State builds up across thousands of frames (mappings, neighbours, fragments, drop rules).
    gateway = connected_gateway()
    rng = random.Random(11)
    with Watchdog(BOUND_S) as watchdog:
        for i in range(3000):
            in_port, frame = hostile_frame(rng)
            watchdog.run(gateway.packet_in, in_port, frame, now=i * 0.05)
            if i % 250 == 0:
                watchdog.run(gateway.expire, i * 0.05)
                assert invariant_violations(gateway) == []
    assert invariant_violations(gateway) == []
    assert gateway.stats.mappings_created.total() > 0  # the mix also reached the set-up path


def test_a_syn_with_a_bad_ip_header_checksum_makes_no_mapping():
    gateway = connected_gateway()
    in_port, frame = tcp_option_syn(2, 4, from_outside=False)  # H1 -> SERVER:80 with an MSS option
    damaged = bytearray(frame)
    damaged[14 + 8] -= 1  # the TTL changed on the way, the header checksum not
    gateway.packet_in(in_port, bytes(damaged), now=1.0)
    assert gateway.stats.drops["bad_ip_checksum"] == 1
    assert gateway.stats.mappings_created.total() == 0
    gateway.packet_in(in_port, frame, now=1.0)
    assert gateway.stats.mappings_created["nat"] == 1
