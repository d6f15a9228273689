"""Explaining a failure: the diagnosis (which bug it looks like) and the step-size curve."""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from gradcheck import numerical
from gradcheck.result import Result

Array = np.ndarray


def explain_failure(result: Result, loss_of: Callable[[dict], Any], work: dict[str, Array],
                    spec_dict: dict | None, X: Any = None) -> None:
    """Diagnosis and step-size curve for a failing result."""
    try:
        from gradcheck import diagnose  # noqa: PLC0415
        result.diagnosis = diagnose.diagnose(result, spec=spec_dict, params=work, X=X)
    except Exception as exc:  # a diagnosis is advice: a bug in it must not hide the verdict
        result.notes.append(f"diagnosis unavailable: gradcheck's diagnosis failed ({type(exc).__name__}: "
                            f"{exc}); this is a harness bug, not a verdict on fn: please report it")
    w = result.worst
    if w is not None and w.param in work:
        flat_i = int(np.ravel_multi_index(tuple(w.index), work[w.param].shape))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            curve = numerical.step_curve(loss_of, work, w.param, flat_i)
        floor = result.tensors[w.param].floor
        result.step_curve = [[h, _relative(w.claimed - dh, max(abs(dh), floor))] for h, dh in curve]
        result.calls += 2 * len(curve)


def _relative(error: float, scale: float) -> float:
    """``|error| / scale`` as a float, inf where that overflows or scale is 0 (an exactly-zero
    gradient with a zero floor), 0 where both are 0: no warning, whatever the numbers."""
    error, scale = abs(float(error)), float(scale)
    if scale > 0 and math.isfinite(scale):
        with np.errstate(all="ignore"):
            return float(np.float64(error) / np.float64(scale))
    return 0.0 if error == 0 else math.inf
