"""One limiter for every log line traffic can cause: at most one line per reason per 5 s, and the next
line says how many were not logged (issue 11: 2,000 SYNs with odd TCP options gave 2,000 lines)."""

from __future__ import annotations

import logging
import time

from ryu_nat.ratelimit import FrameworkFilter, LogLimiter, limit_framework_warnings

from .builders import udp_bytes
from .lab import H1, H1_PORT, H2, H2_PORT, SERVER, Lab, from_host

# What Ryu 4.34's TCP option parser logged for every segment it could not parse.
RYU_TCP_WARNING = "Encounter an error during parsing TCP option field.Skip parsing TCP option."


def test_a_reason_gets_one_line_per_interval_and_the_next_says_how_many_were_not_logged():
    limiter = LogLimiter(interval_s=5.0)
    assert limiter.admit("ports_exhausted", 0.0) == 0
    assert [limiter.admit("ports_exhausted", t / 10) for t in range(1, 50)] == [None] * 49
    assert limiter.admit("cannot_nat", 1.0) == 0  # another reason has its own line
    assert limiter.admit("ports_exhausted", 5.0) == 49
    assert limiter.admit("ports_exhausted", 10.0) == 0


def test_reasons_are_bounded_and_the_rest_share_one():
    limiter = LogLimiter(max_reasons=2)
    assert [limiter.admit(reason, 0.0) for reason in ("a", "b", "c", "d")] == [0, 0, 0, None]


def test_refused_mappings_log_one_line_per_5_s_with_the_number_not_logged(caplog):
    lab = Lab({"port_range": "2000-2000"})
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))  # takes the only port
    with caplog.at_level(logging.WARNING, logger="ryu_nat.gateway.natpath"):
        for sport in range(2000):
            lab.apply(lab.gateway.packet_in(H2_PORT, from_host(H2, udp_bytes(H2, 1024 + sport, SERVER, 53)),
                                            lab.now + sport / 1000))
        lab.apply(lab.gateway.packet_in(H2_PORT, from_host(H2, udp_bytes(H2, 9999, SERVER, 53)), lab.now + 5.0))
    assert lab.gateway.stats.drops["ports_exhausted"] == 2001
    first, second = caplog.messages
    assert first == f"refused proto 17 from {H2}:1024: ports_exhausted"  # no destination: RFC 6888 REQ-12
    assert second.endswith("ports_exhausted (1999 more like this in the last 5 s not logged)")


def test_the_frameworks_per_packet_warning_goes_through_the_same_limiter():
    lines: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = lines.append  # type: ignore[method-assign]
    ryu = logging.getLogger("ryu")
    ryu.addHandler(handler)
    level = ryu.level
    ryu.setLevel(logging.INFO)
    try:
        limiter = LogLimiter(interval_s=1.0)
        limit_framework_warnings(limiter, ryu)
        limit_framework_warnings(limiter, ryu)  # once per handler
        assert len([f for f in handler.filters if isinstance(f, FrameworkFilter)]) == 1
        tcp = logging.getLogger("ryu.lib.packet.tcp")
        for _ in range(2000):
            tcp.warning(RYU_TCP_WARNING)
        logging.getLogger("ryu.lib.packet.tcp").info("info lines are not limited")
        logging.getLogger("ryu_nat.gateway.natpath").warning("ours have their own limiter")
        time.sleep(1.05)
        tcp.warning(RYU_TCP_WARNING)
    finally:
        ryu.removeHandler(handler)
        ryu.setLevel(level)
    assert [record.getMessage() for record in lines if record.name == "ryu.lib.packet.tcp"] == [
        RYU_TCP_WARNING, "info lines are not limited",
        f"{RYU_TCP_WARNING} (1999 more like this in the last 1 s not logged)"]


def test_the_app_puts_the_frameworks_warnings_through_its_limiter(make_app):
    from .lab import BASE_CONFIG

    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    try:
        app = make_app(BASE_CONFIG)
        [installed] = [f for f in handler.filters if isinstance(f, FrameworkFilter)]
        assert installed.limiter is app.limiter
    finally:
        root.removeHandler(handler)
