"""End-to-end fixtures: real Open vSwitch, Mininet hosts and ``ryu-manager`` running ryu_nat.app.

- ``e2e_machine`` (session, automatic): root, Open vSwitch started, stale
  bridges and links of ours swept. Not being root fails every test: these
  tests must run, never skip, in CI.
- ``lab_net`` (module): the topology a test module asks for through module
  constants ``LAYOUT`` ("two_networks" or "natlab") and ``PRIVATE_HOSTS``;
  building one takes well under a second, so each module gets a fresh one.
  A bridge, link or child process still there after it stops fails the module.
- ``start_nat`` (function): starts the controller with the default config
  updated by keyword overrides (``start_nat(udp_table_size=2)``) and waits
  until the switch is set up; ``nat`` is ``start_nat()`` with defaults.
  At teardown the controller stops, its log and the switch's flows are kept
  under ``logs/e2e/``, and a traceback or OpenFlow error in the log, or a
  controller that died on its own, fails the test. A failing test shows both
  in its report.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The imports below need the repository on sys.path.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from topologies import lab
from topologies.two_networks import NatNet, build_net, leftovers, sweep

LOG_ROOT = REPO / "logs" / "e2e"
CONTROLLERS = pytest.StashKey[list[lab.Controller]]()
NET = pytest.StashKey[NatNet]()


@pytest.fixture(scope="session", autouse=True)
def e2e_machine() -> None:
    try:
        lab.prepare_machine()
    except PermissionError as exc:
        pytest.fail(f"{exc}: run the end-to-end tests as root", pytrace=False)


@pytest.fixture(scope="module")
def lab_net(request: pytest.FixtureRequest) -> Iterator[NatNet]:
    """The module's network; once stopped, anything it left behind fails the module."""
    layout = getattr(request.module, "LAYOUT", "two_networks")
    net = build_net(lab.free_port(), private_hosts=getattr(request.module, "PRIVATE_HOSTS", 3),
                    lab=layout == "natlab")
    try:
        yield net
    finally:
        net.stop()
    left = leftovers() + [f"process {p}" for p in lab.child_processes()]
    if left:
        sweep()
        pytest.fail(f"the network left behind: {', '.join(left)}", pytrace=False)


def _log_dir(item: pytest.Item) -> Path:
    module = Path(str(item.path)).stem
    return LOG_ROOT / module / re.sub(r"[^\w.-]+", "_", item.name)


@pytest.fixture
def start_nat(request: pytest.FixtureRequest, lab_net: NatNet,
              tmp_path: Path) -> Iterator[Callable[..., lab.Controller]]:
    log_dir = _log_dir(request.node)
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.iterdir():
        old.unlink()
    started: list[lab.Controller] = []
    request.node.stash[CONTROLLERS] = started
    request.node.stash[NET] = lab_net

    def start(**overrides: object) -> lab.Controller:
        """Stop any earlier controller, clear the switch and the hosts' ARP caches, start afresh."""
        for controller in started:
            controller.stop()
        lab.run("ovs-ofctl", "-O", "OpenFlow13", "del-flows", lab_net.nat.name)
        lab.reset_hosts(lab_net.hosts)
        config = lab.write_config(tmp_path / f"nat{len(started)}.conf", **overrides)
        controller = lab.Controller(config, lab_net.controller_port,
                                    log_dir / f"controller{len(started)}.log")
        started.append(controller)
        controller.start()
        controller.wait_connected(lab_net.nat.name)
        return controller

    try:
        yield start
    finally:
        (log_dir / "flows.txt").write_text(lab.dump_flows(lab_net.nat.name))
        for controller in started:
            controller.stop()
        problems = [f"controller: {c.died}" for c in started if c.died]
        problems += [excerpt for c in started for excerpt in c.log_errors()]
        if problems:
            pytest.fail(f"{len(problems)} controller problem(s), logs in {log_dir}:\n"
                        + "\n".join(problems[:5]), pytrace=False)


@pytest.fixture
def nat(start_nat: Callable[..., lab.Controller]) -> lab.Controller:
    return start_nat()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the controller log and the NAT switch's flows to a failing test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for index, controller in enumerate(item.stash.get(CONTROLLERS, [])):
        report.sections.append((f"controller log {index} ({controller.log_path})",
                                controller.log_tail(200)))
    net = item.stash.get(NET, None)
    if net is not None:
        report.sections.append((f"ovs-ofctl dump-flows {net.nat.name}", lab.dump_flows(net.nat.name)))
