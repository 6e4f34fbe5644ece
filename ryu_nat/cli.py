"""Command-line entry point: ``ryu-nat`` starts the controller with the NAT app, on Ryu or on os-ken.

It does what ``ryu-manager`` does for our app (os-ken has no manager command):
monkey-patch for eventlet where the framework uses it, register the
framework's logging and OpenFlow options, parse the command line and config
files, load and start the apps. Unlike ``ryu-manager`` it never imports
``ryu.app.wsgi``, so it needs no :mod:`ryu_nat.compat` shim. The app itself
serves the REST API and stops the process on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import sys
from collections.abc import Sequence

APP_MODULE = "ryu_nat.app"


def main(argv: Sequence[str] | None = None) -> int:
    """``ryu-nat [options] [further app modules]``: the NAT app, with ``ryu-manager``'s usual options.

    ``--config-file nat.conf``, ``--ofp-tcp-listen-port``, ``--wsapi-host``,
    ``--wsapi-port``, ``--verbose``, ``--log-file`` and the rest of the
    framework's logging and OpenFlow options. A config file that cannot be
    read or parsed ends it with one line (exit status 1), where ``ryu-manager``
    would stop with oslo.config's traceback.
    """
    from ryu_nat import compat

    compat.quiet_eventlet_deprecation()  # before the framework imports eventlet
    try:
        from ryu_nat import backend
    except ImportError as exc:  # BackendMissing: neither framework, or not the one asked for
        print(f"ryu-nat: {exc}", file=sys.stderr)
        return 2
    from ryu_nat.config import ConfigError  # the core it imports needs the backend
    from ryu_nat.configfiles import check_files

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        check_files(*config_files(args))
    except ConfigError as exc:
        print(f"ryu_nat: {exc}", file=sys.stderr)
        return 1
    # First, as ryu-manager does. Under eventlet, patch(...) patches only the modules it names as True (or, with
    # thread=False, all but threading): the two calls together patch everything. Plain threads: no-ops.
    backend.hub.patch(thread=False)
    backend.hub.patch(thread=True)
    backend.log.early_init_log(logging.DEBUG)
    _ = backend.controller  # registers the --ofp-* options
    from ryu_nat import app  # registers [nat] and the --wsapi-* options

    conf = backend.cfg.CONF
    conf.register_cli_opts([backend.cfg.MultiStrOpt("app", positional=True, default=[],
                                                     help="further app modules to run beside ryu_nat.app")])
    conf(args=args, prog="ryu-nat", project=backend.NAME,
         version=f"ryu-nat {importlib.metadata.version('ryu_nat')} on {backend.NAME}")
    backend.log.init_log()
    manager = backend.app_manager.AppManager.get_instance()
    try:
        manager.load_apps([app.__name__, *(name for name in conf.app if name != APP_MODULE)])
        services = manager.instantiate_apps(**manager.create_contexts())
        backend.hub.joinall(services)  # until the app stops the process
    except SystemExit as exc:  # a bad config or a taken port: the app said why in one line
        _exit(exc.code)
    except KeyboardInterrupt:  # Ctrl-C before the app took over the signal
        _exit(130)
    return 0


def _exit(code: object) -> None:
    """End the process now: with os-ken, threads that were started would keep it alive."""
    if isinstance(code, str):
        print(code, file=sys.stderr)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)


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
