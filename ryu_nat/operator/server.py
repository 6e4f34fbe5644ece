"""The REST API's HTTP server: each request is read whole, with a deadline, then answered on the app's event thread.

It runs the same under eventlet (Ryu: ``ryu-manager`` and ``ryu-nat`` monkey-patch
``socket`` and ``threading`` before apps load, so the threads here are green
threads) and on plain threads (os-ken 4). For each connection:

- the request line, the headers and the body must all arrive within
  ``read_timeout_s`` of the connection's start and fit ``max_head_bytes`` and
  ``max_body_bytes``: a slow or endless client is cut off, never waited for;
- at most ``max_connections`` are open. One more closes the oldest connection
  that is still sending its request (or, when every one is being answered, is
  itself answered 503), so connections that never finish cannot lock others out;
- only then does ``run`` take the WSGI app's call to the app's event thread,
  with the body already in memory: no client can hold that thread. The answer
  is written back from here, within ``write_timeout_s``.

One request per connection (answers are HTTP/1.0, and the server closes the
connection after each): the clients are ``ryu-nat-ctl``, the live page and scripts. The WSGI protocol itself is the
standard library's (:class:`wsgiref.handlers.SimpleHandler`).
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import socket
import threading
import time
import urllib.parse
import wsgiref.handlers
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ryu_nat.ratelimit import LogLimiter

LOG = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# Runs a piece of work where state may change (the app's event thread) and returns its result.
Runner = Callable[[Callable[[], bytes]], bytes]

HEAD_END = b"\r\n\r\n"
METHOD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
LISTEN_BACKLOG = 1024  # a flood waits in the kernel's queue (accepted, then cut) rather than seeing SYNs dropped
ACCEPT_RETRY_S = 0.05  # after a failed accept (out of file descriptors), before the next


@dataclass(frozen=True)
class Limits:
    """What one client may cost the server."""

    read_timeout_s: float = 5.0  # from the connection's start to the last byte of the body
    write_timeout_s: float = 10.0  # to send the whole answer
    max_connections: int = 64
    max_head_bytes: int = 16 * 1024  # request line and headers
    max_body_bytes: int = 64 * 1024


class Busy(Exception):
    """The event thread did not take the call in time; the call was withdrawn and will not run."""


class EventThreadCall:
    """Work handed to another thread (the app's event thread), and the caller's wait for its result.

    The other thread calls :meth:`run`; the caller calls :meth:`result`. A call
    the other thread has not started when the caller stops waiting is
    withdrawn: it never runs, so a request answered 503 changed nothing.
    """

    _PENDING, _RUNNING, _WITHDRAWN = range(3)

    def __init__(self, work: Callable[[], Any]) -> None:
        self._work = work
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._state = self._PENDING
        self._value: Any = None
        self._error: BaseException | None = None

    def run(self) -> None:
        with self._lock:
            if self._state != self._PENDING:
                return
            self._state = self._RUNNING
        try:
            self._value = self._work()
        except BaseException as exc:  # handed to the caller, which re-raises it
            self._error = exc
        finally:
            self._done.set()

    def result(self, timeout_s: float) -> Any:
        """The work's return value (or its exception, raised); Busy if it did not start within ``timeout_s``."""
        if not self._done.wait(timeout_s):
            with self._lock:
                if self._state == self._PENDING:
                    self._state = self._WITHDRAWN
                    raise Busy(f"the controller did not take the request within {timeout_s:g} s")
            self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


def run_here(work: Callable[[], bytes]) -> bytes:
    """A Runner for a server whose app may run on any thread (tests, tools)."""
    return work()


class _Refused(Exception):
    """A request the server answers itself, without the app."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Gone(Exception):
    """The client closed the connection, or was cut off for another."""


class _Connection:
    def __init__(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        self.sock = sock
        self.peer = peer
        self.started = time.monotonic()
        self.reading = True  # until the whole request is in

    def cut(self) -> None:
        """Wake and end whatever this connection's thread waits for."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class RestServer:
    """Serves one WSGI app on ``(host, port)``; :meth:`start` binds and returns, :meth:`stop` closes everything."""

    def __init__(self, app: WsgiApp, host: str, port: int, run: Runner = run_here, limits: Limits = Limits(),
                 limiter: LogLimiter | None = None) -> None:
        self._app = app
        self._limiter = limiter or LogLimiter()  # clients decide how often things go wrong: lines are bounded
        self._host = host
        self._port = port
        self._run = run
        self.limits = limits
        self._lock = threading.Lock()
        self._open: dict[int, _Connection] = {}
        self._listener: socket.socket | None = None
        self._stopping = False

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the real port, when it was asked for port 0)."""
        if self._listener is None:
            return self._host, self._port
        host, port = self._listener.getsockname()[:2]
        return host, port

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    def start(self) -> None:
        """Listen now (OSError if the address is taken), and serve from a thread of its own."""
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        self._listener = socket.create_server((self._host, self._port), family=family, backlog=LISTEN_BACKLOG)
        threading.Thread(target=self._accept_loop, name="ryu_nat-rest", daemon=True).start()

    def stop(self) -> None:
        self._stopping = True
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
            except OSError:
                pass
            listener.close()
        with self._lock:
            connections = list(self._open.values())
        for connection in connections:
            connection.cut()

    # --- connections ----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        listener = self._listener
        while not self._stopping and listener is not None:
            try:
                sock, peer = listener.accept()
            except OSError as exc:
                if self._stopping:
                    return
                self._limiter.log(LOG, logging.WARNING, "rest_accept", time.monotonic(),
                                  "REST server: accept failed: %s", exc)
                time.sleep(ACCEPT_RETRY_S)
                continue
            self._admit(_Connection(sock, peer))

    def _admit(self, connection: _Connection) -> None:
        with self._lock:
            if len(self._open) >= self.limits.max_connections:
                waiting = [c for c in self._open.values() if c.reading]
                if not waiting:
                    self._refuse_at_once(connection)
                    return
                oldest = min(waiting, key=lambda c: c.started)
                LOG.debug("REST server: %d connections open; closing the oldest unfinished one (%s:%d)",
                          len(self._open), *oldest.peer[:2])
                oldest.cut()
                del self._open[id(oldest)]
            self._open[id(connection)] = connection
        threading.Thread(target=self._serve, args=(connection,), name="ryu_nat-rest-conn", daemon=True).start()

    def _refuse_at_once(self, connection: _Connection) -> None:
        """Every open connection is being answered: say so without waiting for this one's request."""
        try:
            connection.sock.settimeout(0)
            connection.sock.send(_error(503, "overloaded", "too many connections; try again"))
        except OSError:
            pass
        connection.sock.close()

    def _serve(self, connection: _Connection) -> None:
        try:
            try:
                environ, body = self._read(connection)
                connection.reading = False
                answer = self._run(lambda: self._call_app(environ, body))
            except _Refused as refused:
                LOG.debug("REST %s:%d refused: %d %s", *connection.peer[:2], refused.status, refused.message)
                answer = _error(refused.status, refused.code, refused.message)
            except Busy as exc:
                self._limiter.log(LOG, logging.WARNING, "rest_busy", time.monotonic(), "REST %s:%d: %s",
                                  *connection.peer[:2], exc)
                answer = _error(503, "busy", str(exc))
            self._send(connection, answer)
        except (_Gone, OSError):
            pass
        finally:
            with self._lock:
                if self._open.get(id(connection)) is connection:
                    del self._open[id(connection)]
            connection.sock.close()

    def _recv(self, connection: _Connection, deadline: float) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Refused(408, "request_timeout",
                           f"the request did not arrive within {self.limits.read_timeout_s:g} s")
        connection.sock.settimeout(remaining)
        try:
            data = connection.sock.recv(65536)
        except socket.timeout:
            raise _Refused(408, "request_timeout",
                           f"the request did not arrive within {self.limits.read_timeout_s:g} s") from None
        if not data:
            raise _Gone()
        return data

    def _read(self, connection: _Connection) -> tuple[dict[str, Any], bytes]:
        """The whole request as a CGI environ and its body; _Refused for one we will not pass on."""
        limits = self.limits
        deadline = connection.started + limits.read_timeout_s
        buffer = bytearray()
        while (end := buffer.find(HEAD_END)) < 0:
            if len(buffer) > limits.max_head_bytes:
                raise _Refused(431, "headers_too_large", f"request line and headers exceed {limits.max_head_bytes} bytes")
            buffer += self._recv(connection, deadline)
        if end > limits.max_head_bytes:
            raise _Refused(431, "headers_too_large", f"request line and headers exceed {limits.max_head_bytes} bytes")
        request_line, _, header_block = bytes(buffer[:end]).partition(b"\r\n")
        method, target, version = _request_line(request_line)
        try:
            headers = http.client.parse_headers(io.BytesIO(header_block + HEAD_END))
        except http.client.HTTPException as exc:
            raise _Refused(431, "headers_too_large", str(exc)) from None
        if headers.get("Transfer-Encoding") is not None:
            raise _Refused(501, "chunked_body", "send the body with a Content-Length, not a transfer coding")
        length = _content_length(headers.get_all("Content-Length") or [])
        if length > limits.max_body_bytes:
            raise _Refused(413, "body_too_large", f"the body exceeds {limits.max_body_bytes} bytes")
        body = bytearray(buffer[end + len(HEAD_END):])
        while len(body) < length:
            body += self._recv(connection, deadline)
        return self._environ(connection, method, target, version, headers, length), bytes(body[:length])

    def _environ(self, connection: _Connection, method: str, target: str, version: str,
                 headers: http.client.HTTPMessage, length: int) -> dict[str, Any]:
        path, _, query = target.partition("?")
        host, port = self.address
        environ = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": urllib.parse.unquote_to_bytes(path).decode("latin-1"),  # PEP 3333
            "QUERY_STRING": query,
            "SERVER_NAME": host,
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": version,
            "REMOTE_ADDR": connection.peer[0],
            "REMOTE_PORT": str(connection.peer[1]),
            "CONTENT_TYPE": headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(length),
        }
        for name, value in headers.items():
            # A name with "_" would read as the same variable as its "-" twin: drop it rather than guess.
            if "_" in name or name.lower() in ("content-type", "content-length"):
                continue
            key = "HTTP_" + name.upper().replace("-", "_")
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _call_app(self, environ: dict[str, Any], body: bytes) -> bytes:
        """Run the app (on the event thread): the whole HTTP answer as bytes."""
        out = io.BytesIO()
        handler = _Handler(io.BytesIO(body), out, io.StringIO(), environ, multithread=True, multiprocess=False)
        handler.run(self._app)
        return out.getvalue()

    def _send(self, connection: _Connection, answer: bytes) -> None:
        connection.sock.settimeout(self.limits.write_timeout_s)
        connection.sock.sendall(answer)


class _Handler(wsgiref.handlers.SimpleHandler):
    """The standard library's WSGI driver, writing a complete HTTP/1.0 answer into a buffer."""

    os_environ: dict[str, str] = {}  # not the process's environment
    origin_server = True
    server_software = "ryu_nat"

    def log_exception(self, exc_info: Any) -> None:
        LOG.error("REST: the WSGI app failed", exc_info=exc_info)


def _request_line(line: bytes) -> tuple[str, str, str]:
    parts = line.decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[0] or not set(parts[0]) <= METHOD_CHARS or not parts[1].startswith("/"):
        raise _Refused(400, "bad_request", "a request line is METHOD /path HTTP/1.1")
    if parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
        raise _Refused(505, "http_version", "HTTP/1.0 or HTTP/1.1 only")
    return parts[0], parts[1], parts[2]


def _content_length(values: list[str]) -> int:
    if not values:
        return 0
    if len(set(values)) != 1 or not (values[0].isascii() and values[0].isdigit()):
        raise _Refused(400, "bad_request", "Content-Length must be one decimal number")
    return int(values[0])


def _error(status: int, code: str, message: str) -> bytes:
    """An answer of the server's own, in the API's error format."""
    body = (json.dumps({"error": {"code": code, "message": message}}, indent=1) + "\n").encode()
    return (f"HTTP/1.0 {status} {http.client.responses.get(status, 'Error')}\r\n"
            f"Content-Type: application/json; charset=UTF-8\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode() + body
