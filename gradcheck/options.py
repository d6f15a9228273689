"""A check's options, validated in one place, and the labels its result carries.

Misuse of the harness raises here, before fn is called, naming the option as ``name=value`` and
what was expected (like Hypothesis does). Options the chosen mode would ignore are refused rather
than silently dropped.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradcheck import numerical
from gradcheck.result import fmt_index

Array = np.ndarray

SCHEME_CHOICES = ("auto",) + numerical.SCHEMES
MODES = ("full", "fast")
ORACLES = ("numerical", "structured")


@dataclass(frozen=True)
class Options:
    """The options of one :func:`gradcheck.check` call, validated (:meth:`validated`)."""

    scheme: str = "auto"
    rtol: float | None = None
    name: str | None = None
    spec: Any = None
    loss_fn: Callable[[dict, Any, Any], Any] | None = None
    mode: str = "full"
    symbolic: bool | None = None
    detect_kinks: bool = True
    seed: int = 0
    oracle: str = "numerical"
    quiet: bool | None = None
    budget: float | None = None
    max_calls: int | None = None

    @property
    def runs_symbolic(self) -> bool:
        """The SymPy oracle joins: asked for (``symbolic=True``), or by default when a spec was
        given with the black-box oracle. ``oracle="structured"`` is the fast path the caller chose
        for speed (the cross-check made it 1.4x slower at P = 99, 2.4x at P = 979), so there it
        runs only when asked for. Too large a network is skipped before SymPy is imported
        (:mod:`gradcheck.crosscheck`)."""
        if self.symbolic is not None:
            return bool(self.symbolic)
        return self.spec is not None and self.oracle == "numerical"

    def validated(self, fn: Any, params: Any, X: Any) -> Options:
        """These options, checked together with fn, params and X; raises naming ``name=value``."""
        if not callable(fn):
            raise TypeError(f"fn must be callable as fn(params, X, y) -> (loss, grads), got {type(fn).__name__}")
        validate_params(params)
        if X is None:
            raise ValueError("X is None: pass the input batch that fn(params, X, y) expects")
        _choice("scheme", self.scheme, SCHEME_CHOICES)
        _choice("mode", self.mode, MODES)
        _choice("oracle", self.oracle, ORACLES)
        if self.rtol is not None and not (isinstance(self.rtol, (int, float)) and not isinstance(self.rtol, bool)
                                          and math.isfinite(self.rtol) and self.rtol >= 0):
            raise ValueError(f"rtol={self.rtol!r}: expected a finite number >= 0, or None "
                             "(an infinite tolerance would pass any gradient)")
        if self.loss_fn is not None and not callable(self.loss_fn):
            raise TypeError(f"loss_fn must be callable as loss_fn(params, X, y) -> loss, got "
                            f"{type(self.loss_fn).__name__}")
        if not isinstance(self.detect_kinks, bool):
            raise TypeError(f"detect_kinks={self.detect_kinks!r}: expected True or False")
        if self.symbolic not in (None, True, False):
            raise TypeError(f"symbolic={self.symbolic!r}: expected True, False or None (on when spec is given)")
        if self.quiet not in (None, True, False):
            raise TypeError(f"quiet={self.quiet!r}: expected True, False or None")
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool):
            raise TypeError(f"seed={self.seed!r}: expected an int")
        if self.name is not None and not isinstance(self.name, str):
            raise TypeError(f"name={self.name!r}: expected a str or None")
        if self.mode == "fast":  # what fast mode cannot honour is refused, not silently dropped
            if self.symbolic:
                raise ValueError("symbolic=True: mode='fast' runs no symbolic oracle; use mode='full' "
                                 "for the three-way comparison")
            if not self.detect_kinks:
                raise ValueError("detect_kinks=False: mode='fast' always sets non-differentiable points "
                                 "aside (it cannot judge them); use mode='full' to judge them")
        if self.symbolic and self.spec is None:
            raise ValueError("symbolic=True: the symbolic oracle needs spec= (a gradcheck.NetworkSpec "
                             "describing fn's network)")
        self._validate_budget()
        if self.oracle == "structured":
            from gradcheck import structured  # noqa: PLC0415 - optional path, imported on use
            structured.validate(self.spec, params, self.scheme)
        return self

    def _validate_budget(self) -> None:
        """``budget`` (seconds) and ``max_calls``: positive and finite, with the modes they bound."""
        if self.budget is not None:
            if not isinstance(self.budget, (int, float, np.integer, np.floating)) or isinstance(self.budget, bool):
                raise TypeError(f"budget={self.budget!r}: expected a number of seconds (a positive finite "
                                "float), or None")
            if not (math.isfinite(self.budget) and self.budget > 0):
                raise ValueError(f"budget={self.budget!r}: expected a positive finite number of seconds, or "
                                 "None (no budget: the full check)")
        if self.max_calls is not None:
            if not isinstance(self.max_calls, (int, np.integer)) or isinstance(self.max_calls, bool):
                raise TypeError(f"max_calls={self.max_calls!r}: expected an int, or None")
            if self.max_calls < 1:
                raise ValueError(f"max_calls={self.max_calls!r}: expected a positive number of calls of fn, or None")
        if self.budget is None and self.max_calls is None:
            return
        what = f"budget={self.budget!r}" if self.budget is not None else f"max_calls={self.max_calls!r}"
        if self.mode == "fast":
            raise ValueError(f"{what}: mode='fast' is bounded already (about 22 + 2 log2(P) calls); a budget "
                             "applies to mode='full'")
        if self.oracle == "structured":
            raise ValueError(f"{what}: not with oracle='structured' (its batched passes estimate whole "
                             "tensors at once); use the default oracle='numerical' under a budget")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(map(repr, choices))}")


def validate_params(params: Any) -> None:
    """params must be a non-empty dict of str -> finite floating numpy arrays."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict of str -> numpy array, got {type(params).__name__}")
    if not params:
        raise ValueError("params is empty: there is no gradient to check")
    for k, v in params.items():
        if not isinstance(k, str):
            raise TypeError(f"params keys must be str, got {k!r} ({type(k).__name__})")
        if not isinstance(v, np.ndarray):
            raise TypeError(f"params[{k!r}] must be a numpy array, got {type(v).__name__}"
                            + (" (use np.asarray)" if isinstance(v, (list, tuple, float, int)) else ""))
        if v.dtype.kind != "f":
            raise ValueError(f"params[{k!r}] has dtype {v.dtype}; finite differences need a floating "
                             f"dtype (e.g. params[{k!r}].astype(np.float64))")
        if v.size == 0:
            raise ValueError(f"params[{k!r}] is empty (shape {v.shape})")
        if not np.all(np.isfinite(v)):
            bad = np.argwhere(~np.isfinite(v))[0]
            raise ValueError(f"params[{k!r}] has a non-finite value at {fmt_index(k, bad)}")


@dataclass(frozen=True)
class Labels:
    """What every result of one check carries whatever its outcome: name, scheme, dtype, spec, and
    the clock that started with the check."""

    name: str | None
    scheme: str
    dtype: str
    spec: dict | None
    t0: float = field(default_factory=time.perf_counter)

    def fields(self) -> dict[str, Any]:
        """The keyword arguments of :class:`~gradcheck.result.Result` these labels fill."""
        return {"name": self.name, "scheme": self.scheme, "dtype": self.dtype, "spec": self.spec}
