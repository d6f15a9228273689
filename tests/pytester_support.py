"""Shared set-up for tests that run generated pytest sessions (pytester) against this checkout."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import gradcheck

ROOT = Path(gradcheck.__file__).resolve().parent.parent


def isolate(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """Make pytester's subprocesses import this checkout of gradcheck, with no inherited options;
    when this suite itself runs under xdist, the inner session must not think it is a worker."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(var, raising=False)
    return pytester
