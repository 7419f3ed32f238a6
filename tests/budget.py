"""How many examples the property-based tests draw: the hypothesis profiles.

Two profiles, picked by HYPOTHESIS_PROFILE (tests/conftest.py loads it before any test
module is imported):

* ``ci``, the default (`make test`): `examples(n)` is *n*, the budget each test names;
  the frame fuzzers ask for 100 examples per frame type and direction.
* ``deep``: `examples(n)` is 30 times *n*, and tests that name no budget draw 3,000:
  `make fuzz-deep` runs the protocol fuzzers so, for a long look before a release or
  after a change to protocol/. `make fuzz` (atheris) runs the same invariants
  coverage-guided for as long as you like.

Every run draws new examples, as before (no fixed seed).
"""

from __future__ import annotations

import os

from hypothesis import settings

#: The profile's multiplier on every budget a test names.
SCALE = {"ci": 1, "deep": 30}

#: The profile in force (HYPOTHESIS_PROFILE, default ci).
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

settings.register_profile("ci", max_examples=100)
settings.register_profile("deep", max_examples=100 * SCALE["deep"])


def load() -> None:
    """Load the profile HYPOTHESIS_PROFILE names (a clear error for an unknown one)."""
    if PROFILE not in SCALE:
        raise ValueError(f"HYPOTHESIS_PROFILE={PROFILE!r}: not one of {sorted(SCALE)}")
    settings.load_profile(PROFILE)


def examples(ci: int) -> int:
    """The number of examples for a test that draws *ci* of them in the ci profile."""
    return ci * SCALE[PROFILE]
