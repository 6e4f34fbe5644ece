"""One limiter for every log line that traffic can cause: at most one line per reason per 5 s.

A stranger decides how often a refused packet, a bad handshake or a framework
warning happens; the log must not grow with it. :class:`LogLimiter` lets the
first line of each reason through, swallows the rest for ``interval_s``, and
the next line it lets through says how many it swallowed. The gateway passes
its own ``now`` (it reads no clock); :class:`FrameworkFilter` puts the warnings
of Ryu or os-ken themselves (whose code we cannot change) through the same
limiter, keyed by logger and message template. No I/O of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable

INTERVAL_S = 5.0
MAX_REASONS = 1024  # reasons remembered at once; more (only a bug would make them) share one


class LogLimiter:
    """When each reason last had a line, and how many of its lines were swallowed since."""

    def __init__(self, interval_s: float = INTERVAL_S, max_reasons: int = MAX_REASONS) -> None:
        self.interval_s = interval_s
        self.max_reasons = max_reasons
        self._last: dict[Hashable, float] = {}
        self._swallowed: dict[Hashable, int] = {}

    def admit(self, reason: Hashable, now: float) -> int | None:
        """None: swallow this line. Else let it through: the number swallowed since the reason's last line."""
        if reason not in self._last and len(self._last) >= self.max_reasons:
            reason = "(other reasons)"
        last = self._last.get(reason)
        if last is not None and now - last < self.interval_s:
            self._swallowed[reason] = self._swallowed.get(reason, 0) + 1
            return None
        self._last[reason] = now
        return self._swallowed.pop(reason, 0)

    def log(self, logger: logging.Logger, level: int, reason: Hashable, now: float, message: str,
            *args: object, exc_info: bool = False) -> bool:
        """Log ``message % args`` unless ``reason`` had a line less than ``interval_s`` ago; True if logged."""
        swallowed = self.admit(reason, now)
        if swallowed is None:
            return False
        if swallowed:
            message += " (%d more like this in the last %g s not logged)"
            args = (*args, swallowed, self.interval_s)
        logger.log(level, message, *args, exc_info=exc_info)
        return True


class FrameworkFilter(logging.Filter):
    """A handler filter: warnings and errors of every logger but ryu_nat's own (which use the limiter
    directly) go through ``limiter``, one reason per logger and message template.

    Ryu 4.34 logged one WARNING per TCP segment with options it could not parse;
    ryu_nat no longer hands it received bytes, but any such line of the framework
    is bounded here.
    """

    def __init__(self, limiter: LogLimiter) -> None:
        super().__init__()
        self.limiter = limiter

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or record.name.split(".", 1)[0] == "ryu_nat":
            return True
        swallowed = self.limiter.admit((record.name, str(record.msg)), record.created)
        if swallowed is None:
            return False
        if swallowed:
            record.msg = f"{record.getMessage()} ({swallowed} more like this in the last " \
                         f"{self.limiter.interval_s:g} s not logged)"
            record.args = None
        return True


def limit_framework_warnings(limiter: LogLimiter, logger: logging.Logger | None = None) -> FrameworkFilter:
    """Add a :class:`FrameworkFilter` to every handler of ``logger`` (the root logger) that has none yet."""
    target = logger or logging.getLogger()
    added = FrameworkFilter(limiter)
    for handler in target.handlers:
        if not any(isinstance(f, FrameworkFilter) for f in handler.filters):
            handler.addFilter(added)
    return added
