"""Settings for the whole suite."""

from __future__ import annotations

from hypothesis import settings

# CI machines are shared and have two cores: a property test is about its examples, not their
# speed, so a slow example must not fail it (speed is measured in bench/). Examples stay
# reproducible: hypothesis prints the failing one.
settings.register_profile("ryu_nat", deadline=None)
settings.load_profile("ryu_nat")
