"""The NAT's two networks in Mininet: a private LAN behind the NAT switch, a public LAN beyond it.

::

    h1 10.0.0.2 ─┐                    ┌─ srv 192.168.3.10
    h2 10.0.0.3 ─┼─ sp ─(2) nat (1)─ spub ─┤
    hN ...      ─┘   private   public   └─ gw 192.168.3.254 ── inet 198.51.100.10
                                            (router, 198.51.100.1)

Only ``nat`` (dpid 1, port 1 = uplink) is an OpenFlow switch, controlled by a
remote controller; ``sp`` and ``spub`` are standalone Open vSwitch bridges
(learning switches without a controller). ``natlab`` attaches the private
hosts straight to ``nat`` on ports 2..N+1 instead of through ``sp``. Private
hosts route through 10.0.0.1, the NAT's private address; ``srv`` knows no route
to 10.0.0.0/8, so only translated traffic can reach it.

Every bridge uses the userspace datapath (there is no kernel module here),
and checksum offload is off on both ends of every veth: with it on, the
netdev datapath forwards TCP and large UDP with checksums never filled in.

Used two ways:

- ``mn --custom topologies/two_networks.py --topo nat,3 --controller remote,ip=127.0.0.1,port=6653``
  (also ``--topo natlab,3``; the topology chooses its own switch classes, so
  ``--switch`` is not needed);
- from Python, :func:`build_net` returns a started :class:`NatNet`.

``mn --custom`` runs this file with ``exec``: it imports only the standard
library and Mininet, and needs no ``__name__`` or ``__file__``.
"""

from __future__ import annotations

import re
import subprocess

from mininet.link import Link
from mininet.net import Mininet
from mininet.node import Host, OVSSwitch, RemoteController
from mininet.topo import Topo
from mininet.util import errRun

PRIVATE_GATEWAY = "10.0.0.1"
PRIVATE_PREFIX = 24
PUBLIC_IP = "192.168.3.1"
PUBLIC_GATEWAY = "192.168.3.254"
SERVER_IP = "192.168.3.10"
INTERNET_GATEWAY = "198.51.100.1"
INTERNET_SERVER_IP = "198.51.100.10"

NAT_SWITCH = "nat"
NAT_DPID = 1
UPLINK_PORT = 1
FIRST_PRIVATE_PORT = 2
SWITCH_NAMES = (NAT_SWITCH, "sp", "spub")
OFFLOADS_OFF = "tx off rx off tso off gso off gro off"


def private_ip(index: int) -> str:
    """Address of private host ``h<index>`` (h1 is 10.0.0.2, the redirect target)."""
    return f"10.0.0.{index + 1}"


def _disable_offloads(run, interfaces) -> None:
    """One ethtool call per interface, through ``run`` (a node's ``cmd``)."""
    for intf in interfaces:
        if str(intf) != "lo":
            run(f"ethtool -K {intf} {OFFLOADS_OFF}")


class OffloadFreeHost(Host):
    """A host whose interfaces compute their own checksums (see the module docstring)."""

    def config(self, **params):
        result = super().config(**params)
        _disable_offloads(self.cmd, self.intfList())
        # Tests send bursts of errors (traceroute, closed ports): do not rate-limit them.
        self.cmd("sysctl -q -w net.ipv4.icmp_ratelimit=0")
        return result


class RouterHost(OffloadFreeHost):
    """The public gateway: forwards between the public LAN and the "internet" subnet."""

    def config(self, **params):
        result = super().config(**params)
        self.cmd("sysctl -q -w net.ipv4.ip_forward=1")
        return result


class UserspaceSwitch(OVSSwitch):
    """Open vSwitch on the userspace datapath, OpenFlow 1.3, offloads off on its ports."""

    def __init__(self, name, **params):
        params.setdefault("datapath", "user")
        params.setdefault("protocols", "OpenFlow13")
        super().__init__(name, **params)

    def start(self, controllers):
        super().start(controllers)
        if not self.batch:
            self.disable_port_offloads()

    @classmethod
    def batchStartup(cls, switches, run=errRun):
        """Mininet starts OVS bridges in one batch: their ports exist only after it."""
        started = super().batchStartup(switches, run)
        for switch in started:
            switch.disable_port_offloads()
        return started

    def disable_port_offloads(self) -> None:
        _disable_offloads(self.cmd, (i for i in self.intfList() if self.ports.get(i)))


class LanSwitch(UserspaceSwitch):
    """A plain learning switch: standalone fail mode and no controller."""

    def __init__(self, name, **params):
        params["failMode"] = "standalone"
        super().__init__(name, **params)

    def start(self, controllers):
        super().start([])

    def connected(self):
        return True


class NatSwitch(UserspaceSwitch):
    """The switch that the NAT controller drives; secure fail mode, so it never floods alone."""

    def __init__(self, name, **params):
        params["failMode"] = "secure"
        params.setdefault("dpid", f"{NAT_DPID:016x}")
        super().__init__(name, **params)


class _PublicSide(Topo):
    """Public LAN, server, gateway router and internet server, shared by both layouts."""

    def build_public(self) -> str:
        nat = self.addSwitch(NAT_SWITCH, cls=NatSwitch)
        spub = self.addSwitch("spub", cls=LanSwitch, dpid=f"{3:016x}")
        srv = self.addHost("srv", cls=OffloadFreeHost, ip=f"{SERVER_IP}/24",
                           defaultRoute=f"via {PUBLIC_GATEWAY}")
        gw = self.addHost("gw", cls=RouterHost, ip=f"{PUBLIC_GATEWAY}/24")
        inet = self.addHost("inet", cls=OffloadFreeHost, ip=f"{INTERNET_SERVER_IP}/24",
                            defaultRoute=f"via {INTERNET_GATEWAY}")
        self.addLink(nat, spub, port1=UPLINK_PORT)
        self.addLink(srv, spub)
        self.addLink(gw, spub)
        self.addLink(gw, inet, params1={"ip": f"{INTERNET_GATEWAY}/24"})
        return nat

    def add_private_host(self, index: int) -> str:
        return self.addHost(f"h{index}", cls=OffloadFreeHost,
                            ip=f"{private_ip(index)}/{PRIVATE_PREFIX}",
                            defaultRoute=f"via {PRIVATE_GATEWAY}")


class NatTopo(_PublicSide):
    """``nat,N``: N private hosts on the private LAN switch ``sp``, which sits on nat port 2."""

    def build(self, n=3):
        nat = self.build_public()
        sp = self.addSwitch("sp", cls=LanSwitch, dpid=f"{2:016x}")
        self.addLink(nat, sp, port1=FIRST_PRIVATE_PORT)
        for index in range(1, n + 1):
            self.addLink(self.add_private_host(index), sp)


class NatLabTopo(_PublicSide):
    """``natlab,N``: N private hosts straight on nat ports 2..N+1 (the coursework layout)."""

    def build(self, n=3):
        nat = self.build_public()
        for index in range(1, n + 1):
            self.addLink(self.add_private_host(index), nat, port2=FIRST_PRIVATE_PORT + index - 1)


topos = {"nat": NatTopo, "natlab": NatLabTopo}


class _QuietRemoteController(RemoteController):
    """The caller starts the controller when it likes; skip Mininet's telnet probe and warning."""

    def checkListening(self):
        return None


class NatNet:
    """A started two-network Mininet and handles to the nodes the tests talk to."""

    def __init__(self, net: Mininet, controller_port: int) -> None:
        self.net = net
        self.controller_port = controller_port
        self.nat = net.get(NAT_SWITCH)
        self.private = sorted((h for h in net.hosts if re.fullmatch(r"h\d+", h.name)),
                              key=lambda h: int(h.name[1:]))
        self.srv = net.get("srv")
        self.gw = net.get("gw")
        self.inet = net.get("inet")

    @property
    def hosts(self) -> list[Host]:
        return list(self.net.hosts)

    def stop(self) -> None:
        stop_net(self.net)


def stop_net(net: Mininet) -> None:
    """Stop Mininet and the controller node's shell, then remove what is left (see :func:`sweep`).

    A signal may have interrupted a node's ``cmd()``: Mininet refuses to send
    that node more commands until its shell is back at the prompt.
    """
    try:
        for node in net.hosts + net.switches:
            if node.shell and node.waiting:
                node.sendInt()
                node.waitOutput()
        net.stop()
    finally:
        # Mininet.stop() leaves each controller node's shell running.
        for controller in net.controllers:
            controller.terminate()
        sweep()


def build_net(controller_port: int, private_hosts: int = 3, lab: bool = False,
              controller_ip: str = "127.0.0.1") -> NatNet:
    """Build and start the network; ``nat`` connects to ``controller_ip:controller_port``.

    Returns once every node is configured; the controller need not be up yet
    (the switch keeps retrying, and ``topologies.lab.attach_controller`` makes
    it connect at once). Raises whatever Mininet raises, after removing what
    it had built.
    """
    topo = (NatLabTopo if lab else NatTopo)(n=private_hosts)
    net = Mininet(topo=topo, build=False, controller=None, link=Link,
                  autoSetMacs=False, waitConnected=False)
    try:
        net.addController("c0", controller=_QuietRemoteController, ip=controller_ip,
                          port=controller_port)
        net.build()
        net.start()
    except BaseException:
        stop_net(net)
        raise
    return NatNet(net, controller_port)


def leftovers() -> list[str]:
    """Bridges and root-namespace links with this topology's names that exist now."""
    bridges = subprocess.run(["ovs-vsctl", "--timeout=5", "list-br"], capture_output=True,
                             text=True, check=False).stdout.split()
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                           check=False).stdout
    names = "|".join(SWITCH_NAMES)
    found = [f"bridge {b}" for b in bridges if b in SWITCH_NAMES]
    found += [f"link {m.group(1)}" for m in
              re.finditer(rf"^\d+: ((?:{names})(?:-eth\d+)?)[@:]", links, re.MULTILINE)]
    return found


def sweep() -> None:
    """Remove bridges and switch-side links with this topology's names, left by a crashed run.

    Touches nothing else: not other bridges, links or processes. (``mn -c``
    would also kill every ``ryu-manager``, ``ping`` and ``controller`` on the
    machine and delete every bridge.) Host namespaces need no sweeping: each
    belongs to a host shell, which exits when its Mininet process does.
    """
    found = leftovers()
    bridges = [item.split()[1] for item in found if item.startswith("bridge ")]
    if bridges:
        command = ["ovs-vsctl", "--timeout=10"]
        for bridge in bridges:
            command += ["--", "--if-exists", "del-br", bridge]
        subprocess.run(command, check=False)
    # Deleting a bridge removes its own ports; what is left are veths that lost their bridge.
    for item in leftovers():
        if item.startswith("link "):
            subprocess.run(["ip", "link", "del", item.split()[1]], capture_output=True, check=False)
