"""Inbound traffic: dropped unless a redirect rule says where it goes; hairpinning through it.

The default test config has ``redirects = tcp:8080=10.0.0.2:80`` (h1's port 80).
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from topologies import lab
from topologies.two_networks import PUBLIC_IP, SERVER_IP, NatNet, private_ip

pytestmark = pytest.mark.e2e

LAYOUT = "two_networks"
PRIVATE_HOSTS = 2
REDIRECT = f"{PUBLIC_IP}:8080"
UNSOLICITED_PORT = 7777


def test_unsolicited_tcp_and_udp_reach_no_private_host(lab_net: NatNet, nat: lab.Controller) -> None:
    """Listeners on every private host would accept; none must hear a thing."""
    with ExitStack() as stack:
        captures = [stack.enter_context(lab.capture(host, "tcp or udp")) for host in lab_net.private]
        for host in lab_net.private:
            stack.enter_context(lab.server(host, "tcp", UNSOLICITED_PORT))
            stack.enter_context(lab.server(host, "udp", UNSOLICITED_PORT))
        tcp = lab.probe(lab_net.srv, "tcp-client", "--to", f"{PUBLIC_IP}:{UNSOLICITED_PORT}",
                        "--timeout", 2)
        [udp] = lab.probe(lab_net.srv, "udp-client", "--to", f"{PUBLIC_IP}:{UNSOLICITED_PORT}",
                          "--timeout", 1, "--tries", 2)["results"]
    assert "error" in tcp, tcp
    assert udp.get("error") in ("timeout", "refused"), udp
    assert [line for capture in captures for line in lab.packets(capture)] == []


def test_redirect_reaches_private_server_which_sees_the_client(lab_net: NatNet,
                                                                nat: lab.Controller) -> None:
    h1 = lab_net.private[0]
    assert h1.IP() == private_ip(1)
    with lab.server(h1, "tcp", 80):
        result = lab.probe(lab_net.srv, "tcp-client", "--to", REDIRECT, "--download", 100_000)
    assert result.get("download_ok") and result["upload_ok"], result
    assert result["reply"]["server"] == "h1"
    assert result["reply"]["peer"][0] == SERVER_IP


def test_redirect_serves_http(lab_net: NatNet, nat: lab.Controller, tmp_path: Path) -> None:
    page = tmp_path / "index.html"
    page.write_text("hello from h1\n")
    with lab.http_server(lab_net.private[0], 80, tmp_path) as web:
        body = lab_net.srv.cmd(f"curl -sS --max-time 10 http://{REDIRECT}/index.html")
        lab.wait_until(lambda: [line for line in web.lines if "GET /index.html" in line], 5,
                       what="the access log line")
    assert body.strip() == "hello from h1"
    [access] = [line for line in web.lines if "GET /index.html" in line]
    assert access.startswith(SERVER_IP + " ")


def test_hairpin_private_host_reaches_redirect_through_public_address(
        lab_net: NatNet, nat: lab.Controller) -> None:
    h1, h2 = lab_net.private[:2]
    with lab.server(h1, "tcp", 80):
        result = lab.probe(h2, "tcp-client", "--to", REDIRECT, "--download", 100_000)
    assert result.get("download_ok") and result["upload_ok"], result
    assert result["reply"]["server"] == "h1"


def test_redirect_target_port_is_not_open_on_other_public_ports(lab_net: NatNet,
                                                                 nat: lab.Controller) -> None:
    """Only the configured public port leads to h1:80; port 80 of the public address does not."""
    with lab.server(lab_net.private[0], "tcp", 80) as web:
        result = lab.probe(lab_net.srv, "tcp-client", "--to", f"{PUBLIC_IP}:80", "--timeout", 2)
    assert "error" in result, result
    assert web.json_lines() == []
