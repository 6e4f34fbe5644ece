"""The operator interface on the Mininet lab: REST API, ``ryu-nat-ctl``, metrics and the live page in Chromium.

Traffic is real (netprobe between Mininet hosts through Open vSwitch); the API
is the controller's own, on 127.0.0.1; the page is loaded by Debian's headless
Chromium, which runs its JavaScript and dumps the DOM it built. A page of
another origin (another port of 127.0.0.1), opened in the same Chromium, tries
what a site the operator visits could try against the API.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from topologies import lab
from topologies.controller import http_json
from topologies.two_networks import PUBLIC_IP, SERVER_IP, NatNet

pytestmark = pytest.mark.e2e

LAYOUT = "two_networks"
PRIVATE_HOSTS = 2
UDP_PORT = 9999
CTL = Path(sys.executable).parent / "ryu-nat-ctl"
CHROMIUM = ("chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run")


def api(nat: lab.Controller, method: str, path: str, body: object = None) -> tuple[int, Any]:
    """(status, JSON body) of one request to the controller's API."""
    status, answer = nat.rest(path, method, body)
    assert status and not isinstance(answer, str), (status, answer)
    return status, answer


def ctl(nat: lab.Controller, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CTL), "--url", f"http://127.0.0.1:{nat.wsapi_port}", *args],
                          capture_output=True, text=True, timeout=30, check=False)


def udp_exchange(host: Any, from_port: int) -> dict[str, Any]:
    """One datagram to srv and its echo, from ``from_port``; the server's report of it."""
    [result] = lab.probe(host, "udp-client", "--to", f"{SERVER_IP}:{UDP_PORT}", "--from-port", from_port)["results"]
    assert result.get("echo_ok"), result
    return result


def mapping_of(nat: lab.Controller, private_ip: str, private_port: int) -> dict[str, Any] | None:
    status, found = api(nat, "GET", f"/nat/mappings?private_ip={private_ip}")
    assert status == 200, found
    return next((m for m in found["mappings"] if m["private"]["port"] == private_port), None)


def flows_of(bridge: str, ip: str) -> list[lab.Flow]:
    """The mapping flows that match on ``ip`` or rewrite to it."""
    pattern = re.compile(rf"(?<![\d.]){re.escape(ip)}(?![\d.])")
    return [f for f in lab.rewrite_flows(bridge) if pattern.search(f.match) or pattern.search(f.actions)]


def page_dom(url: str, profile: Path, *options: str) -> str:
    """A page as headless Chromium builds it, after 5 s of its (virtual) time."""
    done = subprocess.run([*CHROMIUM, f"--user-data-dir={profile}", "--virtual-time-budget=5000", *options,
                           "--dump-dom", url], capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def live_page(nat: lab.Controller) -> str:
    return f"http://127.0.0.1:{nat.wsapi_port}/nat/"


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        """No access log on the test's output."""


@contextmanager
def other_site(directory: Path) -> Iterator[str]:
    """``directory`` served on another port of 127.0.0.1: another origin than the API's; its URL."""
    handler = functools.partial(_QuietFiles, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


ATTACK_PAGE = """<!DOCTYPE html>
<html><body>
<form id="form" method="POST" enctype="text/plain" action="API/nat/redirects" target="sink">
<input type="hidden" name='{"protocol": "tcp", "public_port": 9091, "private": {"ip": "H2", "port": 80}, "x": "'
 value='"}'></form>
<iframe name="sink"></iframe>
<pre id="log"></pre>
<script>
const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };
const rule = (port) => JSON.stringify({protocol: "tcp", public_port: port, private: {ip: "H2", port: 80}});
async function attack() {
  // A "simple" request: no preflight, the answer unreadable, but it reaches the server.
  try { await fetch("API/nat/redirects", {method: "POST", mode: "no-cors", body: rule(9092),
                                          headers: {"Content-Type": "text/plain"}}); log("no-cors sent"); }
  catch (e) { log("no-cors failed " + e); }
  // A JSON request: the browser asks first (preflight), and sends it only if the API allows this origin.
  try { const r = await fetch("API/nat/redirects", {method: "POST", body: rule(9093),
                                                    headers: {"Content-Type": "application/json"}});
        log("json answered " + r.status); }
  catch (e) { log("json blocked"); }
  try { const r = await fetch("API/nat/mappings"); log("read answered " + r.status); }
  catch (e) { log("read blocked"); }
  document.getElementById("form").submit();
  log("form submitted");
}
attack();
</script></body></html>
"""


def metrics_of(nat: lab.Controller) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = nat.rest("/metrics")
    assert status == 200 and isinstance(text, str), (status, text)
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_traffic_shows_in_the_api_and_in_ryu_nat_ctl(lab_net: NatNet, nat: lab.Controller) -> None:
    h1 = lab_net.private[0]
    with lab.server(lab_net.srv, "udp", UDP_PORT):
        first = udp_exchange(h1, 40001)
        udp_exchange(h1, 40001)  # the same mapping, this time on the switch's rules alone
    public_port = first["reply"]["peer"][1]
    mapping = lab.wait_until(lambda: (m := mapping_of(nat, h1.IP(), 40001)) and m["packets"] and m, 15,
                             what="the mapping's packets from the switch's flow statistics")
    assert (mapping["protocol"], mapping["kind"]) == ("udp", "nat")
    assert mapping["public"] == {"ip": PUBLIC_IP, "port": public_port}
    assert mapping["remote"] == {"ip": SERVER_IP, "port": UDP_PORT}
    assert mapping["packets"] >= 2 and mapping["bytes"] > 0 and mapping["idle_s"] <= mapping["age_s"]

    table = ctl(nat, "mappings", "--proto", "udp")
    assert table.returncode == 0, table.stderr
    [row] = [line.split() for line in table.stdout.splitlines() if f"{h1.IP()}:40001" in line]
    assert row[:5] == ["udp", "nat", f"{h1.IP()}:40001", f"{PUBLIC_IP}:{public_port}", f"{SERVER_IP}:{UDP_PORT}"]
    as_json = json.loads(ctl(nat, "--json", "mappings").stdout)
    assert any(m["id"] == mapping["id"] for m in as_json["mappings"])

    status, stats = api(nat, "GET", "/nat/stats")
    assert status == 200 and stats["switch"] == {"connected": True, "dpid": "0000000000000001"}
    assert stats["table"]["udp"]["used"] >= 1 and stats["ports"]["udp"]["used"] >= 1
    assert stats["mappings"]["created_by_kind"]["nat"] >= 1 and stats["flow_stats"]["polls"] >= 1

    scraped = metrics_of(nat)
    assert scraped[("ryu_nat_mappings", (("protocol", "udp"),))] >= 1
    assert scraped[("ryu_nat_setups_total", ())] >= 1
    assert scraped[("ryu_nat_setup_latency_seconds_count", ())] >= 1
    assert scraped[("ryu_nat_flow_stats_poll_seconds_count", ())] >= 1
    assert scraped[("ryu_nat_packet_ins_total", (("kind", "private"),))] >= 1


def test_redirect_added_at_run_time_is_used_at_once(lab_net: NatNet, nat: lab.Controller) -> None:
    h2 = lab_net.private[1]
    rule = {"protocol": "tcp", "public_port": 9090, "private": {"ip": h2.IP(), "port": 80}}
    with lab.server(h2, "tcp", 80):
        before = lab.probe(lab_net.srv, "tcp-client", "--to", f"{PUBLIC_IP}:9090", "--timeout", 2)
        assert "error" in before, before  # not forwarded yet (and the NAT put a drop rule on that port)
        status, added = api(nat, "POST", "/nat/redirects", rule)
        assert (status, added["rule"]) == (201, f"tcp:9090={h2.IP()}:80")
        after = lab.probe(lab_net.srv, "tcp-client", "--to", f"{PUBLIC_IP}:9090")
        assert after.get("download_ok") and after["reply"]["server"] == "h2", after
        assert after["reply"]["peer"][0] == SERVER_IP
        [forwarded] = [m for m in api(nat, "GET", f"/nat/mappings?private_ip={h2.IP()}")[1]["mappings"]
                       if m["kind"] == "redirect"]
        assert forwarded["public"] == {"ip": PUBLIC_IP, "port": 9090} and forwarded["remote"]["ip"] == SERVER_IP

        removed = ctl(nat, "redirect", "del", "tcp:9090")
        assert (removed.returncode, removed.stdout) == (0, f"removed redirect tcp:9090={h2.IP()}:80\n")
        again = lab.probe(lab_net.srv, "tcp-client", "--to", f"{PUBLIC_IP}:9090", "--timeout", 2)
    assert "error" in again, again


def test_flush_deletes_the_hosts_flows_from_the_switch(lab_net: NatNet, nat: lab.Controller) -> None:
    h1, h2 = lab_net.private
    bridge = lab_net.nat.name
    with lab.server(lab_net.srv, "udp", UDP_PORT):
        udp_exchange(h1, 40002)
        udp_exchange(h2, 40002)
    assert len(flows_of(bridge, h1.IP())) == 2 and len(flows_of(bridge, h2.IP())) == 2

    flushed = ctl(nat, "flush", h1.IP())
    assert flushed.returncode == 0, flushed.stderr
    assert re.fullmatch(rf"removed 1 mapping\(s\) of {re.escape(h1.IP())}; freed ports: udp \d+\n", flushed.stdout)
    lab.wait_until(lambda: not flows_of(bridge, h1.IP()), 5, what=f"{h1.IP()}'s flows to leave the switch")
    assert len(flows_of(bridge, h2.IP())) == 2
    assert api(nat, "GET", f"/nat/mappings?private_ip={h1.IP()}")[1]["total"] == 0


def test_live_page_shows_a_mapping_and_then_its_removal(lab_net: NatNet, nat: lab.Controller,
                                                        tmp_path: Path) -> None:
    h1 = lab_net.private[0]
    row = f'data-private="{h1.IP()}:40003"'
    with lab.server(lab_net.srv, "udp", UDP_PORT):
        udp_exchange(h1, 40003)
    # The page as served, opened where its script can fetch nothing: what it shows is its first render.
    status, served = http_json("GET", live_page(nat))
    assert status == 200 and isinstance(served, str), status
    (tmp_path / "first.html").write_text(served)
    first_render = page_dom((tmp_path / "first.html").as_uri(), tmp_path / "profile")
    assert row in first_render and "controller unreachable" in first_render, first_render[-3000:]
    assert "loading" not in first_render
    shown = page_dom(live_page(nat), tmp_path / "profile")
    assert row in shown and "switch 0000000000000001 · updated" in shown, shown[-3000:]
    status, flushed = api(nat, "DELETE", f"/nat/connections/{h1.IP()}")
    assert (status, flushed["removed"]) == (200, 1)
    gone = page_dom(live_page(nat), tmp_path / "profile")
    assert row not in gone and '<p id="empty">no mappings</p>' in gone, gone[-3000:]


def test_a_page_of_another_origin_cannot_add_a_redirect(lab_net: NatNet, nat: lab.Controller,
                                                       tmp_path: Path) -> None:
    h2 = lab_net.private[1]
    site = tmp_path / "site"
    site.mkdir()
    api_url = f"http://127.0.0.1:{nat.wsapi_port}"
    (site / "attack.html").write_text(ATTACK_PAGE.replace("API", api_url).replace("H2", h2.IP()))
    before = api(nat, "GET", "/nat/redirects")[1]["redirects"]
    with other_site(site) as url:
        dom = page_dom(f"{url}/attack.html", tmp_path / "profile")
    assert "no-cors sent" in dom and "json blocked" in dom and "read blocked" in dom, dom[-2000:]
    assert "form submitted" in dom
    assert api(nat, "GET", "/nat/redirects")[1]["redirects"] == before
    refusals = re.findall(r"REST (\w+) /nat/(\S+): (\d+) (\w+)", nat.log_text())
    assert ("POST", "redirects", "403", "foreign_origin") in refusals, refusals
    assert ("GET", "mappings", "403", "foreign_origin") in refusals, refusals
