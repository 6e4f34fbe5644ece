"""Command-line entry points: ``ryu-nat`` starts the controller with the NAT app."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ryu_nat import compat
from ryu_nat.config import ConfigError, check_files

APP_MODULE = "ryu_nat.app"


def main(argv: Sequence[str] | None = None) -> int:
    """``ryu-nat [ryu-manager options]``: ``ryu-manager`` with ``ryu_nat.app`` loaded.

    Every option of ``ryu-manager`` is accepted (``--config-file nat.conf``,
    ``--ofp-tcp-listen-port``, ``--wsapi-port``, further app modules).
    A config file that cannot be read or parsed ends it with one line (exit
    status 1), where ``ryu-manager`` would stop with oslo.config's traceback.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if APP_MODULE not in args:
        args.append(APP_MODULE)
    try:
        check_files(*config_files(args))
    except ConfigError as exc:
        print(f"ryu_nat: {exc}", file=sys.stderr)
        return 1
    compat.install()
    from ryu.cmd import manager  # imported after the shim: it imports ryu.app.wsgi

    manager.main(args=args, prog="ryu-nat")
    return 0


def config_files(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """The ``--config-file`` and ``--config-dir`` arguments, in order, as oslo.config will read them."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("--config-file", action="append", default=[])
    parser.add_argument("--config-dir", action="append", default=[])
    try:
        known, _ = parser.parse_known_args(args)
    except argparse.ArgumentError:  # say "--config-file" without a file: ryu-manager's usage message says so
        return [], []
    return known.config_file, known.config_dir


if __name__ == "__main__":
    sys.exit(main())
