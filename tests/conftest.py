"""Hypothesis profiles for the property suite.

* ``derandomized`` (every run, local and CI): the same examples every run (seeded from each test
  function, no example database), no deadline, 4 examples per cell. A failure found in CI is found
  again by ``make test`` on any machine. ``ci`` is the same profile under Hypothesis's usual name.
* ``thorough``: on demand, ``make test-thorough`` (``pytest --hypothesis-profile=thorough``):
  random, 200 examples per cell; new examples every run. Not part of CI.

``HYPOTHESIS_PROFILE=<name>`` or ``pytest --hypothesis-profile=<name>`` (which wins) picks another.
Tests with their own ``@settings(max_examples=...)`` keep that count under every profile.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

DERANDOMIZED = dict(derandomize=True, deadline=None, max_examples=4, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("derandomized", **DERANDOMIZED)
settings.register_profile("ci", **DERANDOMIZED)
settings.register_profile("thorough", deadline=None, max_examples=200, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "derandomized"))
