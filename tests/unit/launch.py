"""Real controller processes for tests: the launchers this backend has, their command lines, a config file.

Free ports, starting and waiting until a process listens come from
:mod:`topologies.controller`, which the end-to-end lab and the benchmarks share.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from ryu_nat import backend
from topologies.controller import free_port, listening, start_listening

__all__ = ["LAUNCHERS", "command", "controller", "free_port", "is_listening", "write_config"]

BIN = pathlib.Path(sys.executable).parent
# os-ken has no manager command: ryu-nat is its launcher.
LAUNCHERS = ("ryu-manager", "ryu-nat") if backend.NAME == backend.RYU else ("ryu-nat",)
START_TIMEOUT_S = 60.0  # generous: CI machines are shared, and a start is slow when they are busy


def write_config(path: pathlib.Path, options: Mapping[str, str]) -> pathlib.Path:
    path.write_text("[nat]\n" + "".join(f"{name} = {value}\n" for name, value in options.items()))
    return path


def command(launcher: str, config: pathlib.Path, of_port: int, api_port: int, *extra: str) -> list[str]:
    """``launcher`` running ryu_nat.app with ``config``, OpenFlow on ``of_port`` and the API on ``api_port``."""
    args = [str(BIN / launcher), "--config-file", str(config), "--ofp-tcp-listen-port", str(of_port),
            "--wsapi-port", str(api_port), *extra]
    return args + ["ryu_nat.app"] if launcher == "ryu-manager" else args


def is_listening(port: int) -> bool:
    return listening(port)


@contextmanager
def controller(args: list[str]) -> Iterator[subprocess.Popen[str]]:
    """The process, once its API port (``--wsapi-port``) listens; terminated on exit if still running.

    Its output is read with ``proc.communicate()`` after the block.
    """
    api_port = int(args[args.index("--wsapi-port") + 1])
    proc = start_listening(args, api_port, START_TIMEOUT_S, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
