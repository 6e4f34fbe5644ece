"""The REST API's HTTP server: whole requests only, deadlines, a cap on connections, answers on the event thread.

Most tests serve a small WSGI app on the server directly; the last one floods a
real controller (each launcher of this backend) with connections that never
finish their headers, as issue 13 found 1,076 of them blocking the API.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

from ryu_nat.operator.server import Busy, EventThreadCall, Limits, RestServer, run_here
from topologies.controller import http_json

from . import launch
from .lab import BASE_CONFIG

FAST = Limits(read_timeout_s=0.5, write_timeout_s=2.0, max_connections=4, max_head_bytes=1024, max_body_bytes=64)


def echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """What the app was handed, as JSON."""
    body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"] or 0))
    seen = {key: environ[key] for key in ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE")}
    seen["headers"] = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
    seen["body"] = body.decode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]


@contextmanager
def serving(app: Callable[..., Any] = echo, limits: Limits = FAST,
            run: Callable[[Callable[[], bytes]], bytes] = run_here) -> Iterator[RestServer]:
    server = RestServer(app, "127.0.0.1", 0, run, limits)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def raw(server: RestServer, data: bytes, timeout_s: float = 5.0) -> bytes:
    """Send ``data`` on a new connection; everything the server answers until it closes."""
    with socket.create_connection(server.address, timeout=timeout_s) as sock:
        sock.sendall(data)
        return _read_all(sock)


def _read_all(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def status_and_json(answer: bytes) -> tuple[int, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def get(server: RestServer, path: str, timeout_s: float = 5.0) -> tuple[int, Any]:
    return http_json("GET", f"http://127.0.0.1:{server.address[1]}{path}", timeout_s=timeout_s)


def test_the_app_sees_the_decoded_path_query_headers_and_body():
    with serving() as server:
        status, seen = status_and_json(raw(server, b"POST /nat/a%20b?x=1&y=%20 HTTP/1.1\r\nHost: h\r\n"
                                                   b"Content-Type: application/json\r\nX-One: 1\r\n"
                                                   b"X_One: smuggled\r\nContent-Length: 7\r\n\r\n{\"a\":1}"))
    assert status == 200
    assert seen == {"REQUEST_METHOD": "POST", "PATH_INFO": "/nat/a b", "QUERY_STRING": "x=1&y=%20",
                    "CONTENT_TYPE": "application/json", "headers": {"HTTP_HOST": "h", "HTTP_X_ONE": "1"},
                    "body": '{"a":1}'}


@pytest.mark.parametrize(("request_bytes", "status", "code"), [
    (b"GET /x HTTP/1.1\r\nContent-Length: 65\r\n\r\n" + b"a" * 65, 413, "body_too_large"),
    (b"GET /x HTTP/1.1\r\nX: " + b"a" * 1100 + b"\r\n\r\n", 431, "headers_too_large"),
    (b"GET /x HTTP/1.1\r\nX: " + b"a" * 1100, 431, "headers_too_large"),
    (b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n", 501, "chunked_body"),
    (b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, "bad_request"),
    (b"GET /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "bad_request"),
    (b"GET http://evil/x HTTP/1.1\r\n\r\n", 400, "bad_request"),
    (b"get /x HTTP/1.1\r\n\r\n", 400, "bad_request"),
    (b"GET /x HTTP/2.0\r\n\r\n", 505, "http_version"),
])
def test_requests_it_will_not_pass_on_get_a_json_error(request_bytes, status, code):
    with serving() as server:
        got, body = status_and_json(raw(server, request_bytes))
    assert (got, body["error"]["code"]) == (status, code)


def test_a_request_that_never_ends_its_headers_is_cut_off_at_the_deadline():
    with serving() as server, socket.create_connection(server.address, timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /x HTTP/1.1\r\n")
        for _ in range(3):  # dribbling keeps no connection alive past the deadline
            time.sleep(0.1)
            sock.sendall(b"X: 1\r\n")
        status, body = status_and_json(_read_all(sock))
        took = time.monotonic() - started
    assert (status, body["error"]["code"]) == (408, "request_timeout")
    assert FAST.read_timeout_s <= took < FAST.read_timeout_s + 1.0


def test_a_body_shorter_than_its_length_is_cut_off_at_the_deadline():
    with serving() as server:
        status, body = status_and_json(raw(server, b"POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"))
    assert (status, body["error"]["code"]) == (408, "request_timeout")


def test_connections_that_never_finish_cannot_lock_out_a_request():
    with serving() as server, ExitStack() as stack:
        stalled = [stack.enter_context(socket.create_connection(server.address, timeout=5))
                   for _ in range(FAST.max_connections * 5)]
        for sock in stalled:
            sock.sendall(b"GET /x HTTP/1.1\r\n")
        started = time.monotonic()
        status, seen = get(server, "/fine")
        assert (status, seen["PATH_INFO"]) == (200, "/fine")
        assert time.monotonic() - started < FAST.read_timeout_s  # not after the stalled ones timed out
        assert server.open_connections <= FAST.max_connections


def test_when_every_connection_is_being_answered_one_more_gets_503_at_once():
    release = threading.Event()

    def slow_runner(work: Callable[[], bytes]) -> bytes:
        release.wait(10)
        return work()

    with serving(run=slow_runner) as server:
        waiting = [threading.Thread(target=get, args=(server, "/slow")) for _ in range(FAST.max_connections)]
        for thread in waiting:
            thread.start()
        deadline = time.monotonic() + 5
        while server.open_connections < FAST.max_connections and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # each has sent its request and waits for the runner
        status, body = get(server, "/one-more")
        release.set()
        for thread in waiting:
            thread.join(10)
    assert (status, body["error"]["code"]) == (503, "overloaded")


def test_the_app_runs_where_the_runner_says():
    ran_on: list[str] = []

    def runner(work: Callable[[], bytes]) -> bytes:
        result: list[bytes] = []
        thread = threading.Thread(target=lambda: result.append(work()), name="event-thread")
        thread.start()
        thread.join()
        return result[0]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        ran_on.append(threading.current_thread().name)
        return echo(environ, start_response)

    with serving(app, run=runner) as server:
        assert get(server, "/x")[0] == 200
    assert ran_on == ["event-thread"]


def test_stop_closes_the_port():
    with serving() as server:
        port = server.address[1]
    assert not launch.is_listening(port)


def test_a_call_the_event_thread_does_not_take_in_time_is_withdrawn():
    ran = []
    call = EventThreadCall(lambda: ran.append(1))
    with pytest.raises(Busy):
        call.result(0.05)
    call.run()  # the event thread gets to it late: it must not run
    assert ran == []


def test_a_call_that_started_is_waited_for_and_its_error_reraised():
    started, finish = threading.Event(), threading.Event()

    def work() -> bytes:
        started.set()
        finish.wait(5)
        raise ValueError("boom")

    call = EventThreadCall(work)
    thread = threading.Thread(target=call.run)
    thread.start()
    started.wait(5)
    threading.Timer(0.2, finish.set).start()
    with pytest.raises(ValueError, match="boom"):
        call.result(0.05)  # shorter than the work: started work is not withdrawn
    thread.join(5)


@pytest.mark.parametrize("launcher", launch.LAUNCHERS)
def test_a_real_controller_answers_while_1100_connections_never_finish_their_headers(tmp_path, launcher):
    api_port = launch.free_port()
    args = launch.command(launcher, launch.write_config(tmp_path / "nat.conf", BASE_CONFIG), launch.free_port(),
                          api_port)
    with launch.controller(args) as proc, ExitStack() as stack:
        for _ in range(1100):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", api_port), timeout=30))
            sock.sendall(b"GET /nat/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        status, stats = http_json("GET", f"http://127.0.0.1:{api_port}/nat/stats")
        took = time.monotonic() - started
    output, _ = proc.communicate(timeout=10)
    assert (status, stats["switch"]["connected"]) == (200, False)
    assert took < 2.0, f"answered after {took:.1f} s"
    assert "Traceback" not in output
