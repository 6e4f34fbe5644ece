"""``ryu-nat-ctl`` against real HTTP servers: the API over a simulated NAT on the API's own server, and a real
controller; tables, ``--json``, errors and exit codes."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from ryu_nat.operator import ctl, guard
from ryu_nat.operator.server import RestServer, WsgiApp

from . import launch
from .builders import tcp_bytes, udp_bytes
from .lab import BASE_CONFIG, H1, H1_PORT, H2, H2_PORT, PUBLIC, SERVER, UPLINK, from_host
from .restlab import Api

CTL = pathlib.Path(sys.executable).parent / "ryu-nat-ctl"


@contextmanager
def serving(wsgi_app: WsgiApp) -> Iterator[str]:
    """``wsgi_app`` on the API's own HTTP server on 127.0.0.1 (answering on the server's threads); its URL."""
    server = RestServer(wsgi_app, "127.0.0.1", 0)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.address[1]}"
    finally:
        server.stop()


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[tuple[Api, str]]:
    """The API of a simulated NAT on its HTTP server; (api, its URL). Indirect parameter: a token."""
    api = Api(policy=guard.Policy(token=getattr(request, "param", None)))
    with serving(api.wsgi) as url:
        yield api, url


def run_ctl(capsys, *args: str) -> tuple[int, str, str]:
    code = ctl.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_mappings_table(served, capsys):
    api, url = served
    [(_, out)] = api.lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    api.lab.send(H2_PORT, from_host(H2, tcp_bytes(H2, 6000, SERVER, 80)))
    api.lab.now = 3.0
    code, text, err = run_ctl(capsys, "--url", url, "mappings")
    assert (code, err) == (0, "")
    lines = text.splitlines()
    assert lines[0].split() == ["PROTO", "KIND", "PRIVATE", "PUBLIC", "REMOTE", "AGE_S", "IDLE_S", "PACKETS",
                                "BYTES"]
    assert lines[1].split() == ["udp", "nat", f"{H1}:5000", f"{PUBLIC}:{out['udp_src']}", f"{SERVER}:53", "3.0",
                                "3.0", "-", "-"]
    assert lines[2].split()[:3] == ["tcp", "nat", f"{H2}:6000"] and lines[3] == "2 mapping(s)"
    assert lines[0].index("AGE_S") + len("AGE_S") == lines[1].index(" 3.0") + len(" 3.0")  # numbers right-aligned


def test_mappings_filters_and_empty_table(served, capsys):
    api, url = served
    api.lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    code, text, _ = run_ctl(capsys, "--url", url, "mappings", "--proto", "udp", "--private-ip", H1)
    assert code == 0 and text.splitlines()[-1] == "1 mapping(s)"
    code, text, _ = run_ctl(capsys, "--url", url, "mappings", "--private-ip", H2)
    assert (code, text) == (0, "no mappings\n")


def test_mappings_a_page_at_a_time_or_all_of_them(served, capsys):
    api, url = served
    for sport in (5000, 5001, 5002):
        api.lab.send(H1_PORT, from_host(H1, udp_bytes(H1, sport, SERVER, 53)))
    code, text, _ = run_ctl(capsys, "--url", url, "mappings", "--limit", "2")
    first_ids = [m["id"] for m in api.get("/nat/mappings")["mappings"]]
    assert code == 0 and [line.split()[2] for line in text.splitlines()[1:-1]] == [f"{H1}:5000", f"{H1}:5001"]
    assert text.splitlines()[-1] == f"2 of 3 mapping(s); more with --after {first_ids[1]}, or --all"
    code, text, _ = run_ctl(capsys, "--url", url, "mappings", "--limit", "2", "--after", str(first_ids[1]))
    assert code == 0 and text.splitlines()[-1] == "1 of 3 mapping(s)" and f"{H1}:5002" in text
    code, text, _ = run_ctl(capsys, "--url", url, "--json", "mappings", "--limit", "1", "--all")
    assert code == 0 and [m["id"] for m in json.loads(text)["mappings"]] == first_ids
    code, text, _ = run_ctl(capsys, "--url", url, "mappings", "--all", "--limit", "2")
    assert code == 0 and text.splitlines()[-1] == "3 mapping(s)"


@pytest.mark.parametrize("served", ["tok-0123456789abcdef"], indirect=True)
def test_the_token_is_read_from_the_controllers_token_file(served, capsys, tmp_path, monkeypatch):
    _, url = served
    code, _, err = run_ctl(capsys, "--url", url, "stats")
    assert code == ctl.EXIT_API_ERROR and err.startswith("ryu-nat-ctl: this API needs its token")
    assert err.endswith("(HTTP 401, unauthorized)\n")
    token_file = tmp_path / "token"
    token_file.write_text("tok-0123456789abcdef\n")
    code, text, _ = run_ctl(capsys, "--url", url, "--token-file", str(token_file), "stats")
    assert code == 0 and "switch" in text
    monkeypatch.setenv(ctl.TOKEN_FILE_VARIABLE, str(token_file))
    code, text, _ = run_ctl(capsys, "--url", url, "redirect", "add", f"tcp:9090={H2}:80")
    assert (code, text) == (0, f"added redirect tcp:9090={H2}:80\n")


def test_a_token_file_that_cannot_be_read_is_a_usage_error(capsys, tmp_path):
    code, _, err = run_ctl(capsys, "--token-file", str(tmp_path / "absent"), "stats")
    assert code == ctl.EXIT_USAGE and err == (f"ryu-nat-ctl: cannot read the token file {str(tmp_path / 'absent')!r}: "
                                              "No such file or directory\n")
    (tmp_path / "empty").write_text("\n")
    code, _, err = run_ctl(capsys, "--token-file", str(tmp_path / "empty"), "stats")
    assert code == ctl.EXIT_USAGE and err.endswith("does not hold one token\n")


def test_json_output_is_the_apis_answer(served, capsys):
    api, url = served
    api.lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    for args, path in [(["mappings"], "/nat/mappings"), (["stats"], "/nat/stats"),
                       (["redirect", "list"], "/nat/redirects"), (["config"], "/nat/config")]:
        code, text, _ = run_ctl(capsys, "--url", url, "--json", *args)
        assert code == 0 and json.loads(text) == api.get(path), args


def test_stats_table(served, capsys):
    api, url = served
    api.lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    code, text, _ = run_ctl(capsys, "--url", url, "stats")
    rows = {line.split("  ", 1)[0]: line.split("  ", 1)[1].strip() for line in text.splitlines()[1:]}
    assert code == 0 and text.splitlines()[0].split() == ["COUNTER", "VALUE"]
    assert rows["switch"] == "connected, dpid 0000000000000001"
    assert rows["mappings"] == ("live 1, created 1 (nat 1, redirect 0, hairpin 0), expired 0, evicted 0, "
                                "removed 0")
    assert rows["table use"] == "icmp 0/1024, tcp 0/16384, udp 1/16384"
    assert rows["public ports"] == "icmp 0/65535, tcp 0/65535, udp 1/65535"
    assert rows["drops"] == "none" and rows["packet-ins"].startswith("arp ")


def test_redirect_add_list_del(served, capsys):
    _, url = served
    code, text, _ = run_ctl(capsys, "--url", url, "redirect", "add", f"tcp:9090={H2}:80")
    assert (code, text) == (0, f"added redirect tcp:9090={H2}:80\n")
    code, text, _ = run_ctl(capsys, "--url", url, "redirect", "list")
    assert code == 0 and text.splitlines() == [
        "PROTO  PUBLIC_PORT  PRIVATE", f"tcp           8080  {H1}:80", f"tcp           9090  {H2}:80",
        f"udp           5353  {H2}:53"]
    code, text, _ = run_ctl(capsys, "--url", url, "redirect", "del", "tcp:9090")
    assert (code, text) == (0, f"removed redirect tcp:9090={H2}:80\n")


def test_errors_from_the_controller_are_one_line_and_exit_1(served, capsys):
    _, url = served
    code, text, err = run_ctl(capsys, "--url", url, "redirect", "add", f"tcp:8080={H2}:80")
    assert (code, text) == (ctl.EXIT_API_ERROR, "")
    assert err == ("ryu-nat-ctl: tcp port 8080 is already redirected (delete /nat/redirects/tcp/8080 first) "
                   "(HTTP 409, duplicate_redirect)\n")
    code, _, err = run_ctl(capsys, "--url", url, "redirect", "del", "udp:9999")
    assert code == 1 and err == "ryu-nat-ctl: udp port 9999 is not redirected (HTTP 404, unknown_redirect)\n"
    code, _, err = run_ctl(capsys, "--url", url, "flush", SERVER)
    assert code == 1 and "is not a host of the private network 10.0.0.0/24 (HTTP 400, not_private)" in err


@pytest.mark.parametrize("args", [["redirect", "add", "tcp:8080"], ["redirect", "add", "tcp:80=h1:80"],
                                  ["redirect", "del", "8080"]])
def test_bad_redirect_syntax_is_a_usage_error(served, capsys, args):
    api, url = served
    code, _, err = run_ctl(capsys, "--url", url, *args)
    assert code == ctl.EXIT_USAGE and err.startswith("ryu-nat-ctl: bad redirect")
    assert api.seen == set()  # nothing was sent


def test_flush_reset_and_port(served, capsys):
    api, url = served
    [(_, out)] = api.lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    public_port = out["udp_src"]
    code, text, _ = run_ctl(capsys, "--url", url, "port", "udp", str(public_port))
    assert (code, text) == (0, f"udp port {public_port}: in use (held by {H1}:5000)\n")
    code, text, _ = run_ctl(capsys, "--url", url, "port", "tcp", "8080", "--remote", f"{SERVER}:1234")
    assert (code, text) == (0, f"tcp port 8080 towards {SERVER}:1234: in use (redirected)\n")
    code, text, _ = run_ctl(capsys, "--url", url, "flush", H1)
    assert (code, text) == (0, f"removed 1 mapping(s) of {H1}; freed ports: udp {public_port}\n")
    api.lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 40000, PUBLIC, 8080)))
    code, text, _ = run_ctl(capsys, "--url", url, "reset")
    assert (code, text) == (0, "removed 1 mapping(s)\n")
    assert api.get("/nat/mappings")["total"] == 0


def test_unreachable_controller_is_one_line_and_exit_3(capsys):
    url = f"http://127.0.0.1:{launch.free_port()}"
    code, text, err = run_ctl(capsys, "--url", url, "stats")
    assert (code, text) == (ctl.EXIT_UNREACHABLE, "")
    assert err == f"ryu-nat-ctl: cannot reach the controller at {url}: Connection refused\n"


def test_a_url_without_scheme_is_a_usage_error(capsys):
    code, _, err = run_ctl(capsys, "--url", "127.0.0.1:8080", "stats")
    assert code == ctl.EXIT_USAGE and "must start with http://" in err


def test_something_that_is_not_the_api_is_reported(capsys):
    def not_json(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<html>hello</html>"]

    with serving(not_json) as url:
        code, _, err = run_ctl(capsys, "--url", url, "stats")
    assert code == ctl.EXIT_API_ERROR and "is not JSON: is it ryu_nat?" in err


def test_the_console_script_against_a_real_controller(tmp_path):
    """The controller with no switch: reading works, flushing says why it cannot."""
    api_port = launch.free_port()
    url = f"http://127.0.0.1:{api_port}"
    args = launch.command(launch.LAUNCHERS[0], launch.write_config(tmp_path / "nat.conf", BASE_CONFIG),
                          launch.free_port(), api_port)

    def ctl_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CTL), "--url", url, *args], capture_output=True, text=True, timeout=30)

    with launch.controller(args) as proc:
        stats = ctl_run("stats")
        listed = ctl_run("--json", "redirect", "list")
        flushed = ctl_run("flush", H1)
    output, _ = proc.communicate(timeout=10)
    assert stats.returncode == 0 and "switch        not connected" in stats.stdout
    assert [r["rule"] for r in json.loads(listed.stdout)["redirects"]] == [f"tcp:8080={H1}:80", f"udp:5353={H2}:53"]
    assert flushed.returncode == 1 and flushed.stderr == (
        "ryu-nat-ctl: no NAT switch is connected: its rules cannot be deleted now (HTTP 503, no_switch)\n")
    assert "Traceback" not in output


def test_check_audits_and_says_what_it_repaired(served, capsys):
    from .test_restore import udp_rules

    api, url = served
    code, text, err = run_ctl(capsys, "--url", url, "check")
    assert (code, err) == (0, "") and "last audit:" in text and "repairs since start: none" in text
    api.lab.apply(udp_rules(700, H2, 7000, SERVER, 53, 30000))
    code, text, err = run_ctl(capsys, "--url", url, "check")
    assert (code, err) == (1, "") and "orphan_rule 2" in text  # found and repaired: worth a script's attention
    code, text, _ = run_ctl(capsys, "--url", url, "--json", "check")
    assert code == 0 and json.loads(text)["audit"]["runs"] == 3


def test_explain_says_what_would_happen(served, capsys):
    api, url = served
    [(_, out)] = api.lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    code, text, err = run_ctl(capsys, "--url", url, "explain", "udp", f"{SERVER}:53", f"{PUBLIC}:{out['udp_src']}")
    assert (code, err) == (0, "")
    assert text.splitlines()[0] == f"udp {SERVER}:53 -> {PUBLIC}:{out['udp_src']} (from the public side): translated"
    assert f"leaves as {SERVER}:53 -> {H1}:5000" in text and "rules on the switch: installed" in text
    code, text, _ = run_ctl(capsys, "--url", url, "explain", "tcp", f"{SERVER}:80", f"{PUBLIC}:7777")
    assert code == 0 and "dropped: unsolicited" in text
    code, text, _ = run_ctl(capsys, "--url", url, "explain", "icmp", H1, PUBLIC, "--id", "7")
    assert code == 0 and text.startswith(f"icmp {H1}:7 -> {PUBLIC}:7 (from the private side): answered")
    code, _, err = run_ctl(capsys, "--url", url, "explain", "udp", H1, SERVER)
    assert code == 1 and "bad_address" in err
