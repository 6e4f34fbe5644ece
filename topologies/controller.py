"""A controller on this machine: a free port, start it and wait until it listens, JSON over HTTP.

One helper each, shared by the unit tests that start a real ``ryu-manager``,
the end-to-end lab (:mod:`topologies.lab`) and the benchmarks. Only the
standard library: no Mininet, no Ryu.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 30.0


class ControllerDied(RuntimeError):
    """The controller process exited on its own."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening_address(port: int) -> str | None:
    """The local IPv4 address something listens on at TCP ``port`` (``'0.0.0.0'`` for any), else None.

    Read from /proc/net/tcp: a probe connection would look like a switch to a controller.
    """
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, local_port = fields[1].split(":")
        if fields[3] == "0A" and int(local_port, 16) == port:  # 0A: LISTEN
            return socket.inet_ntoa(struct.pack("<I", int(address, 16)))
    return None


def listening(port: int) -> bool:
    """Does something listen on TCP ``port``, on any IPv4 or IPv6 address? (Read from /proc, as above.)"""
    if listening_address(port) is not None:
        return True
    try:
        lines = Path("/proc/net/tcp6").read_text().splitlines()[1:]
    except OSError:  # no IPv6 here
        return False
    return any(fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port
               for fields in (line.split() for line in lines))


def start_listening(command: Sequence[str], port: int, timeout_s: float = START_TIMEOUT_S,
                    **popen: Any) -> subprocess.Popen[Any]:
    """Start ``command`` (``ryu-manager ...``) and return once something listens on TCP ``port``.

    ``popen`` goes to :class:`subprocess.Popen` (stdout, env, cwd, ...). Raises
    ControllerDied if the process exits first (with the end of its output, if
    piped), TimeoutError if nothing listens in time (the process is killed then).
    """
    process = subprocess.Popen(list(command), **popen)
    deadline = time.monotonic() + timeout_s
    while listening_address(port) is None:
        if process.poll() is not None:
            output = process.communicate()[0] if process.stdout is not None else None
            said = f"; its output ends:\n{output[-3000:]!s}" if output else ""
            raise ControllerDied(f"{Path(command[0]).name} exited with {process.returncode} before listening "
                                 f"on port {port}{said}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise TimeoutError(f"{Path(command[0]).name} did not listen on port {port} within {timeout_s:.0f} s")
        time.sleep(0.05)
    return process


def http_json(method: str, url: str, body: object = None, timeout_s: float = 10,
              headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
    """One request with an optional JSON body (and ``headers``): (status, decoded JSON or, if it is not
    JSON, text).

    An error status is an answer, not an exception; status 0 means nothing
    answered (the text says why).
    """
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status, text = response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text
