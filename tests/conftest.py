"""Hypothesis profiles for the property suite.

* ``ci``: derandomized (the same examples every run), no deadline, few examples per cell; loaded
  automatically when the ``CI`` environment variable is set (CI runs ``bash .ci/run``).
* ``dev`` (default locally): a few more examples, random.
* ``thorough``: on demand, ``pytest --hypothesis-profile=thorough``: many examples per cell.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=4, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=6, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=200, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))
