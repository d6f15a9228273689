"""Small helpers shared by the corpus modules: dtype handling, seeded generators, bug validation."""
from __future__ import annotations

import numpy as np

DTYPES = ("float64", "float32")


def float_dtype(dtype: str) -> np.dtype:
    """``"float64"`` or ``"float32"`` as a numpy dtype; anything else raises ``ValueError``."""
    if str(dtype) not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: expected one of {DTYPES}")
    return np.dtype(dtype)


def generator(seed: int, salt: int) -> np.random.Generator:
    """An independent generator per (case, seed): ``salt`` keeps two cases with the same seed apart."""
    return np.random.default_rng([int(seed), int(salt)])


def cast(dt: np.dtype, **arrays: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays as contiguous copies in ``dt`` (data is drawn in float64, then rounded once)."""
    return {k: np.ascontiguousarray(v, dtype=dt) for k, v in arrays.items()}


def check_bug(bug: str | None, known: dict) -> None:
    """Refuse an unknown bug name (a typo must not silently build the correct variant)."""
    if bug is not None and bug not in known:
        raise ValueError(f"bug={bug!r}: expected None or one of {sorted(known)}")
