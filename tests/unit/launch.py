"""Real controller processes for tests: the launchers this backend has, free ports, a config file."""

from __future__ import annotations

import pathlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from ryu_nat import backend

BIN = pathlib.Path(sys.executable).parent
# os-ken has no manager command: ryu-nat is its launcher.
LAUNCHERS = ("ryu-manager", "ryu-nat") if backend.NAME == backend.RYU else ("ryu-nat",)
START_TIMEOUT_S = 60.0  # generous: CI machines are shared, and a start is slow when they are busy


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(path: pathlib.Path, options: Mapping[str, str]) -> pathlib.Path:
    path.write_text("[nat]\n" + "".join(f"{name} = {value}\n" for name, value in options.items()))
    return path


def command(launcher: str, config: pathlib.Path, of_port: int, api_port: int, *extra: str) -> list[str]:
    """``launcher`` running ryu_nat.app with ``config``, OpenFlow on ``of_port`` and the API on ``api_port``."""
    args = [str(BIN / launcher), "--config-file", str(config), "--ofp-tcp-listen-port", str(of_port),
            "--wsapi-port", str(api_port), *extra]
    return args + ["ryu_nat.app"] if launcher == "ryu-manager" else args


def is_listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@contextmanager
def controller(args: list[str]) -> Iterator[subprocess.Popen[str]]:
    """The process, once its API port (``--wsapi-port``) accepts connections; terminated on exit if still running.

    Its output is read with ``proc.communicate()`` after the block.
    """
    api_port = int(args[args.index("--wsapi-port") + 1])
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not is_listening(api_port):
            assert proc.poll() is None, f"{args[0]} exited {proc.returncode}: {proc.communicate()[0][-3000:]}"
            assert time.monotonic() < deadline, f"{args[0]} did not listen on {api_port}"
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
