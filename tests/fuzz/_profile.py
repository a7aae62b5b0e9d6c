"""Hypothesis settings for the fuzz tests: bounded for CI, longer on demand.

SIOPG_FUZZ_PROFILE=ci (default: a few hundred examples per test, the whole directory well
under 30 s on 2 cores) or long (many more examples, no deadline) for a fuzzing session.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "siopg-ci",
    max_examples=200,
    deadline=2000,  # ms per example: generous under load, still catches a blow-up
    database=None,  # no .hypothesis directory in the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "siopg-long",
    max_examples=20_000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

FUZZ = settings(settings.get_profile(f"siopg-{os.environ.get('SIOPG_FUZZ_PROFILE', 'ci')}"))
