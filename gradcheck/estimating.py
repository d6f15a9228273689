"""Estimating: the numerical oracle's gradient of the loss, with an error bound per element.

The loss's rounding noise is measured first (:func:`gradcheck.numerical.noise_level`); for
``scheme="auto"`` one complex call tells whether fn is analytic in its parameters (then the complex
step, free of cancellation, else central differences); then every element is perturbed.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradcheck import numerical
from gradcheck.contract import Fault, Tally
from gradcheck.numerical import FunctionFault

Array = np.ndarray
LossOf = Callable[[dict], Any]


def term_scale(loss: float, params: Mapping[str, Array]) -> float:
    """``T`` of the tolerance model: the loss's magnitude per unit of parameter, the size of the
    terms a gradient entry is made of when they cancel to (nearly) zero."""
    total = sum(float(np.add.reduce(np.square(v, dtype=np.float64), axis=None)) for v in params.values())
    count = sum(v.size for v in params.values())
    rms = math.sqrt(total / count) if count else 0.0
    return abs(loss) / max(1.0, rms) if math.isfinite(loss) else 0.0


@dataclass(frozen=True)
class Estimated:
    """The numerical oracle's answer: the estimate, the loss's rounding noise, the scheme used."""

    estimate: numerical.Estimate
    noise: float
    scheme: str


def expected_calls(scheme: str, size: int) -> int:
    """Calls of the loss the element-by-element pass makes with ``scheme`` for ``size`` elements."""
    per_element = 1 if scheme in ("complex", "forward") else len(numerical.OFFSETS.get(scheme, (1.0, -1.0)))
    return per_element * size


def numerical_estimate(loss_of: LossOf, work: dict[str, Array], loss: float, scheme: str, seed: int,
                       tally: Tally, *, watch: Callable[[str, LossOf], LossOf] | None = None) -> Estimated:
    """Noise level, the scheme (complex step where fn is analytic, for ``auto``), the estimate.
    ``watch(scheme, loss_of)``, once the scheme is known, may wrap the loss for the long
    element-by-element pass (the progress display counts its calls)."""
    noise, used = noise_and_scheme(loss_of, work, loss, scheme, seed, tally)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            element_loss = watch(used, loss_of) if watch is not None else loss_of
            est = numerical.estimate(element_loss, work, scheme=used, noise=noise, f0=loss)
            tally.calls += est.calls
    except FunctionFault as f:
        raise Fault.from_function_fault(f) from None
    return Estimated(est, noise, used)


def noise_and_scheme(loss_of: LossOf, work: dict[str, Array], loss: float, scheme: str, seed: int,
                     tally: Tally) -> tuple[float, str]:
    """The loss's rounding noise (:func:`gradcheck.numerical.noise_level`) and the scheme used:
    for ``auto`` and ``complex`` the complex step where fn is analytic, else central differences."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            noise, n = numerical.noise_level(loss_of, work, loss, seed=seed)
            tally.calls += n
            used = scheme
            if scheme in ("auto", "complex"):
                ok, why, n = complex_ok(loss_of, work, loss, noise, seed)
                tally.calls += n
                # central, not central4, even for float32: its smaller step crosses fewer kinks
                used = "complex" if ok else "central"
                if not ok and scheme == "complex":
                    tally.note(f"complex step not usable ({why}); used central differences")
    except FunctionFault as f:
        raise Fault.from_function_fault(f) from None
    return noise, used


def complex_ok(loss_of: LossOf, work: dict[str, Array], f0: float, noise: float, seed: int) -> tuple[bool, str, int]:
    """Does fn evaluate with complex parameters and give the analytic derivative?

    One complex call along a random direction (or the loss's ``probe_direction(work)``, one it
    evaluates cheaply), compared with a central difference along the same direction. Non-analytic
    code (abs, max, comparisons, casts to float) fails this test or the later per-element
    cross-check; either way central differences decide.
    """
    rng = np.random.default_rng(seed + 1)
    direction = {k: rng.standard_normal(v.shape) for k, v in work.items()}
    cheap = getattr(loss_of, "probe_direction", None)
    if cheap is not None:   # a structured loss names a direction it evaluates in one call (JVP checks)
        direction = cheap(work)
    cw = {k: v.astype(np.complex128) for k, v in work.items()}
    h = 1e-20
    for k in cw:
        cw[k] += 1j * h * direction[k]
    try:
        with np.errstate(all="ignore"):
            val = np.asarray(loss_of(cw))
    except Exception as exc:
        return False, f"fn raised {type(exc).__name__} on complex input", 1
    if val.dtype.kind != "c" or val.size != 1:
        return False, "fn returned a real loss for complex input", 1
    dc = float(val.imag.reshape(())) / h
    hc = numerical.effective_eps(next(iter(work.values())).dtype, noise, f0) ** (1 / 3)
    try:
        d1 = numerical.directional(loss_of, work, direction, hc)
        d2 = numerical.directional(loss_of, work, direction, hc / 2)
    except Exception as exc:
        return False, f"fn raised {type(exc).__name__}", 5
    dr = (4 * d2 - d1) / 3
    # Richardson's error bound: rounding (3 x 0.7 noise / h) plus the truncation seen between steps
    tol = 10 * (2.1 * noise / hc + abs(d1 - d2) / 3) + 1e-9 * abs(dr)
    if not math.isfinite(dc) or abs(dc - dr) > tol:
        return False, "complex-step and central directional derivatives disagree (non-analytic code)", 5
    return True, "", 5
