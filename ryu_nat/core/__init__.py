"""The NAT core: packets, the translation table, port allocation, ICMP.

No I/O, no clock, no Ryu controller imports: time is passed in as ``now``
(seconds, monotonic) and randomness as an injected ``random.Random``.
"""
