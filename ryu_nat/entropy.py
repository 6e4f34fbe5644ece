"""Unpredictable random numbers without a system call per number.

RFC 6056 randomizes public ports so that an off-path attacker cannot guess
them, which rules out a seeded Mersenne Twister (its future outputs follow from
624 observed ones). ``random.SystemRandom`` asks the kernel for every number,
which measured about a tenth of a flow setup; this draws from ``os.urandom`` in
blocks instead.
"""

from __future__ import annotations

import os
import random

BLOCK_BYTES = 4096


class BlockSystemRandom(random.Random):
    """``random.Random`` whose every bit comes from ``os.urandom``, fetched a block at a time."""

    def __init__(self, block_bytes: int = BLOCK_BYTES) -> None:
        self._block_bytes = block_bytes
        self._block = b""
        self._at = 0
        super().__init__()

    def seed(self, a: object = None, version: int = 2) -> None:
        """Nothing to seed: the kernel supplies the bits."""

    def getrandbits(self, k: int) -> int:
        if k < 0:
            raise ValueError("number of bits must be non-negative")
        if k == 0:
            return 0
        size = (k + 7) // 8
        if self._at + size > len(self._block):
            self._block = os.urandom(max(self._block_bytes, size))
            self._at = 0
        chunk = self._block[self._at:self._at + size]
        self._at += size
        return int.from_bytes(chunk, "big") >> (size * 8 - k)

    def random(self) -> float:
        return self.getrandbits(53) * 2.0 ** -53

    def getstate(self) -> object:
        raise NotImplementedError("a random source fed by the kernel has no state to save")

    def setstate(self, state: object) -> None:
        raise NotImplementedError("a random source fed by the kernel has no state to restore")
