"""A long check's progress display inside pytest: silent unless pytest runs with -v (issue 16.3)."""
from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

TEST_FILE = '''
import numpy as np
import gradcheck
from gradcheck import progress

progress.SHOW_AFTER = 0.0  # every check counts as long here, so the display would show


def test_a_check():
    w = np.array([0.5, -1.0, 2.0])
    X = np.eye(3)

    def fn(p, X, y):
        r = X @ p["w"] - y
        return float(r @ r), {"w": 2 * X.T @ r}
    assert gradcheck.check(fn, {"w": w}, X, np.ones(3), name="lin").passed
'''


@pytest.mark.parametrize("verbose, shown", [((), False), (("-v",), True)])
def test_progress_is_silent_in_pytest_unless_verbose(pytester: pytest.Pytester, verbose, shown):
    pytester.makepyfile(test_long=TEST_FILE)
    # -s: stderr is not captured, so whatever the check prints reaches the run's output
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", *verbose)
    result.assert_outcomes(passed=1)
    printed = "gradcheck: checking lin" in (result.stdout.str() + result.stderr.str())
    assert printed == shown
