"""ryu_nat: network address translation for SDN."""
