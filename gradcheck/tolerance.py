"""The constants of the tolerance model, in one table.

Every number that decides a verdict lives here, with the reason for its value. The code
(:mod:`gradcheck.compare`, :mod:`gradcheck.numerical`, :mod:`gradcheck.checker`), the explanation
text (:mod:`gradcheck.result`) and the docs read this table; ``tests/test_tolerance_table.py``
checks that docs/checker.md quotes :func:`markdown_table` verbatim, so changing a value here
cannot leave an explanation or a document saying something else.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TypeVar

_T = TypeVar("_T", int, float)


def _c(value: _T, why: str) -> _T:
    """A constant with the reason for its value (the docs table's "why" column)."""
    return field(default=value, metadata={"why": why})


@dataclass(frozen=True)
class Constants:
    """The tolerance model's constants (read them from :data:`MODEL`)."""

    safety: float = _c(10.0, "multiple of a one-sd error estimate (the oracle's error bound, the claimed "
                             "gradient's measured rounding) allowed before an element fails: false alarms "
                             "from rounding are astronomically rare and a 3x misestimate is covered")
    analytic_ulps: float = _c(16.0, "ulps of (|numerical| + the check's gradient scale) always allowed for "
                                    "rounding of the claimed gradient that no measurement can see (a few "
                                    "ulps per layer of backprop)")
    resolved_power: float = _c(1 / 3, "an element is resolved when its tolerance, relative, is at most "
                                      "eps_c^resolved_power (6e-6 in float64, 5e-3 in float32: what an "
                                      "optimal central difference resolves with room to spare); the "
                                      "headline relative error is over resolved elements; the others are "
                                      "judged on absolute agreement and counted")
    claimed_probe_ulps: float = _c(1024.0, "step of the claimed-gradient rounding probe, in ulps of each "
                                           "parameter: wide enough to re-draw every rounding, too narrow "
                                           "to cross a kink")
    claimed_probe_wide_ulps: float = _c(2.0 ** 20, "step of the second, wide claimed-gradient probe (float64 "
                                                   "only; 2e-10 relative): re-draws the rounding of saturated "
                                                   "intermediates (tanh near 1, whose 1 - a^2 is flat at 1024 "
                                                   "ulps); its estimate counts only where it looks like "
                                                   "rounding (below sqrt(eps) of the gradient), never a kink")
    claimed_probe_points: int = _c(7, "points per direction of the claimed-gradient probe, at irregular "
                                      "distances, x itself left out (a cubic fit absorbs the smooth change; "
                                      "its residuals are the rounding)")
    claimed_probe_directions: int = _c(2, "random directions of the claimed-gradient probe; per element "
                                          "the quieter one wins when one is 10x noisier (a jump)")
    nondeterminism_ulps: float = _c(1024.0, "two calls with identical inputs may differ by this many ulps "
                                            "of the tensor's scale (summation order) before fn is called "
                                            "nondeterministic")
    ladder_rungs: int = _c(16, "most steps h, h/2, h/4, ... tried on a failing element (a kink of another "
                               "unit within h is stepped over once h/2^j is below its distance; a step "
                               "far too large for the function, e.g. x = 1e5 + noise, needs ~15 rungs "
                               "before truncation falls below rounding); usually 3 rungs settle it")
    ladder_agreement_sd: float = _c(4.0, "sd of rounding within which two estimates agree (successive "
                                         "Richardson values; a gap and half the previous one)")
    ladder_halving_band: float = _c(0.05, "a smooth one-sided gap halves with the step: ratio 0.5 within this "
                                          "band (plus rounding) at two successive steps; kinks of other units "
                                          "crossed at spread-out distances give ratios of 0.6-0.7 (a larger "
                                          "curvature term only costs another rung: it shrinks 4x a rung)")
    kink_gap_sd: float = _c(8.0, "one-sided differences disagree significantly beyond this many sd of "
                                 "their rounding")
    kink_ratio_band: float = _c(0.2, "a kink at x keeps the one-sided gap as the step shrinks: ratio 1 "
                                     "within this band at two successive steps, significant at all three")
    oracle_ulps: float = _c(64.0, "ulps of (|symbolic| + scale) allowed between two oracles besides the "
                                  "numerical estimate's bound (the symbolic float64 evaluation rounds "
                                  "too); beyond them the run fails as an oracle disagreement")


#: the model in force
MODEL = Constants()


def markdown_table(model: Constants = MODEL) -> str:
    """The constants as the markdown table docs/checker.md quotes (a test keeps them equal)."""
    rows = ["| constant | value | why |", "|---|---|---|"]
    for f in fields(model):
        value = getattr(model, f.name)
        shown = "1/3" if f.name == "resolved_power" and abs(value - 1 / 3) < 1e-12 else (
            f"{value:g}" if isinstance(value, float) else str(value))
        rows.append(f"| `{f.name}` | {shown} | {f.metadata['why']} |")
    return "\n".join(rows)
