"""Command-line entry points: ``ryu-nat`` starts the controller with the NAT app."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ryu_nat import compat

APP_MODULE = "ryu_nat.app"


def main(argv: Sequence[str] | None = None) -> int:
    """``ryu-nat [ryu-manager options]``: ``ryu-manager`` with ``ryu_nat.app`` loaded.

    Every option of ``ryu-manager`` is accepted (``--config-file nat.conf``,
    ``--ofp-tcp-listen-port``, ``--wsapi-port``, further app modules).
    """
    compat.install()
    from ryu.cmd import manager  # imported after the shim: it imports ryu.app.wsgi

    args = list(sys.argv[1:] if argv is None else argv)
    if APP_MODULE not in args:
        args.append(APP_MODULE)
    manager.main(args=args, prog="ryu-nat")
    return 0


if __name__ == "__main__":
    sys.exit(main())
