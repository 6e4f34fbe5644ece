"""Mininet topologies for the NAT, and the tools that run them (tests/e2e, mininet/demo.py, the lab).

- ``two_networks``: the topologies (also ``mn --custom`` file);
- ``lab``: Open vSwitch, the controller subprocess, host processes, flow tables;
- ``netprobe``: the traffic probe that runs inside the hosts.
"""
