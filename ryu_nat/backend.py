"""The one module that imports the controller framework: Ryu 4.34 or os-ken, its maintained fork.

Both share their packet library, OpenFlow 1.3 parser, events and app manager
under two package names (``ryu``, ``os_ken``); only the app base class is
renamed (``RyuApp``, ``OSKenApp``). Everything else in ryu_nat imports them from
here: ``from ryu_nat.backend import ipv4, ofp_event``.

Which framework, decided once, when this module is first imported:

1. the one already imported (``ryu-manager`` imports ``ryu`` before any app);
2. else ``RYU_NAT_BACKEND`` (``ryu`` or ``os_ken``), so that a virtual
   environment holding both can be told;
3. else ``ryu`` if it is installed, else ``os_ken``.

Names are imported when first asked for (PEP 562), so the core can take the
packet library without loading the controller, the OpenFlow code or eventlet.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

RYU = "ryu"
OS_KEN = "os_ken"
BACKENDS = (RYU, OS_KEN)
ENV_VAR = "RYU_NAT_BACKEND"

# Our name -> module path inside the framework package.
_MODULES = {
    "cfg": "cfg",
    "log": "log",
    "app_manager": "base.app_manager",
    "event": "controller.event",
    "ofp_event": "controller.ofp_event",
    "handler": "controller.handler",
    "controller": "controller.controller",
    "hub": "lib.hub",
    "ofproto_protocol": "ofproto.ofproto_protocol",
    "ofproto_parser": "ofproto.ofproto_parser",
    "ofproto_v1_3": "ofproto.ofproto_v1_3",
    "ofproto_v1_3_parser": "ofproto.ofproto_v1_3_parser",
    "arp": "lib.packet.arp",
    "ethernet": "lib.packet.ethernet",
    "icmp": "lib.packet.icmp",
    "ipv4": "lib.packet.ipv4",
    "tcp": "lib.packet.tcp",
    "udp": "lib.packet.udp",
    "packet": "lib.packet.packet",
    "packet_utils": "lib.packet.packet_utils",
}
# Names taken from one of those modules.
_NAMES = {
    "set_ev_cls": "handler",
    "CONFIG_DISPATCHER": "handler",
    "MAIN_DISPATCHER": "handler",
    "DEAD_DISPATCHER": "handler",
    "Datapath": "controller",
}
_APP_CLASS = {RYU: "RyuApp", OS_KEN: "OSKenApp"}


class BackendMissing(ImportError):
    """Neither framework is installed, or the one asked for is not."""


def _choose() -> str:
    loaded = [name for name in BACKENDS if name in sys.modules]
    if loaded:
        return loaded[0]
    wanted = os.environ.get(ENV_VAR, "").strip()
    if wanted:
        if wanted not in BACKENDS:
            raise BackendMissing(f"{ENV_VAR}={wanted!r}: want one of {', '.join(BACKENDS)}")
        if importlib.util.find_spec(wanted) is None:
            raise BackendMissing(f"{ENV_VAR}={wanted}, but {wanted} is not installed")
        return wanted
    for name in BACKENDS:
        if importlib.util.find_spec(name) is not None:
            return name
    raise BackendMissing("ryu_nat needs Ryu 4.34 or os-ken: pip install 'ryu_nat[osken]' (see README, Installing)")


NAME = _choose()


def __getattr__(name: str) -> Any:
    """Import ``name`` from the framework on first use (``BaseApp``: the app base class)."""
    if name == "BaseApp":
        value: Any = getattr(__getattr__("app_manager"), _APP_CLASS[NAME])
    elif name in _NAMES:
        value = getattr(__getattr__(_NAMES[name]), name)
    elif name in _MODULES:
        if name == "controller":
            __getattr__("app_manager")  # the controller module imports it back: it must come first
        value = importlib.import_module(f"{NAME}.{_MODULES[name]}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value
