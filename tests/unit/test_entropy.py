"""Random ports from kernel entropy, a block at a time."""

from __future__ import annotations

import pytest

from ryu_nat.entropy import BlockSystemRandom


def test_randint_stays_in_range_and_covers_it():
    rng = BlockSystemRandom(block_bytes=64)
    seen = {rng.randint(1024, 1031) for _ in range(2000)}
    assert seen == set(range(1024, 1032))


def test_bits_have_the_asked_width_and_vary():
    rng = BlockSystemRandom()
    values = [rng.getrandbits(13) for _ in range(1000)]
    assert all(0 <= v < 2**13 for v in values) and len(set(values)) > 900
    assert rng.getrandbits(0) == 0 and 0.0 <= rng.random() < 1.0


def test_two_sources_do_not_repeat_each_other():
    assert [BlockSystemRandom().getrandbits(64) for _ in range(2)] != [0, 0]
    assert BlockSystemRandom().getrandbits(128) != BlockSystemRandom().getrandbits(128)


def test_no_state_to_save_or_restore():
    with pytest.raises(NotImplementedError):
        BlockSystemRandom().getstate()
