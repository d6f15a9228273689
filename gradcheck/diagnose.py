"""Name the likely bug from the pattern of errors of a failing check.

Each rule looks at the claimed and numerical gradients of the tensors that failed and claims a
pattern only when the numbers support it (ratios constant to within the estimates' resolution,
a transposed match within tolerance, ...); otherwise it returns None ("no known pattern").
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gradcheck.result import Diagnosis, Result, fmt_index


def _ratio(c: np.ndarray, d: np.ndarray, floor: float) -> float | None:
    """The constant c/d if every significant element agrees on it (to 1e-6 relative), else None."""
    mask = np.abs(d) > max(floor * 100, 1e-300)
    if mask.sum() < 1:
        return None
    r = c[mask] / d[mask]
    med = float(np.median(r))
    if med == 0 or not np.all(np.abs(r - med) <= 1e-6 * abs(med) + 1e-9):
        return None
    return med


def _batch_size(spec: dict | None) -> int | None:
    return int(spec["batch"]) if spec and "batch" in spec else None


def diagnose(result: Result, spec: dict[str, Any] | None = None) -> Diagnosis | None:
    """A :class:`Diagnosis` for a failing result with per-element data, or None."""
    failed = [t for t in result.tensors.values() if not t.passed and t.claimed is not None]
    if not failed:
        return None
    names = [t.name for t in failed]
    # 1. one constant factor across every failing tensor
    ratios = [_ratio(t.claimed, t.numerical, t.floor) for t in failed]
    if all(r is not None for r in ratios) and np.allclose(ratios, ratios[0], rtol=1e-6):
        r = ratios[0]
        scope = "every gradient" if len(failed) == len(result.tensors) else ", ".join(names)
        n = _batch_size(spec)
        if abs(r + 1) < 1e-6:
            return Diagnosis("sign_flip", f"{scope} = -1.000 x numerical: sign flipped", "high", names, {"ratio": r})
        if n and n > 1 and abs(r - n) < 1e-6 * n:
            return Diagnosis("missing_mean", f"{scope} = {r:.3f} x numerical = the batch size: the 1/N of "
                             "the mean loss is missing in backward", "high", names, {"ratio": r})
        if n and n > 1 and abs(r - 1 / n) < 1e-6 / n:
            return Diagnosis("extra_mean", f"{scope} = 1/{n} x numerical: divided by the batch size twice",
                             "high", names, {"ratio": r})
        if abs(r - 0.5) < 1e-6:
            return Diagnosis("factor_half", f"{scope} = 0.500 x numerical: a factor 2 is missing (the 2 of "
                             "d(x^2)/dx?)", "high", names, {"ratio": r})
        if abs(r - 2) < 1e-6:
            return Diagnosis("factor_two", f"{scope} = 2.000 x numerical: a spurious factor 2", "high", names,
                             {"ratio": r})
        return Diagnosis("constant_factor", f"{scope} = {r:.6g} x numerical: a constant factor is wrong",
                         "medium", names, {"ratio": r})
    # 2. a square matrix gradient that matches the numerical one transposed
    for t in failed:
        if t.claimed.ndim == 2 and t.claimed.shape[0] == t.claimed.shape[1] > 1:
            if np.all(np.abs(t.claimed.T - t.numerical) <= 10 * t.error.T + 1e-12 + 16 * np.finfo(float).eps
                      * np.abs(t.numerical)):
                return Diagnosis("transposed", f"grads[{t.name!r}] matches the numerical gradient transposed: "
                                 "a missing or extra .T", "high", [t.name])
    # 3. a single wrong element
    if len(failed) == 1 and failed[0].n_failed == 1 and failed[0].n_elements > 1:
        t = failed[0]
        w = result.worst
        where = fmt_index(t.name, w.index) if w else t.name
        return Diagnosis("one_element", f"only {where} is wrong (every other element agrees): an indexing "
                         "slip or a special case for one element", "medium", [t.name])
    return None
