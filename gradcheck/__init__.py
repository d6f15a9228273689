"""gradcheck: prove a backward pass right, or show exactly where and how it is wrong.

>>> import gradcheck
>>> result = gradcheck.check(fn, params, X, y)     # doctest: +SKIP
>>> gradcheck.assert_gradients(fn, params, X, y)   # doctest: +SKIP

``fn(params, X, y) -> (loss, grads)``; see :func:`gradcheck.checker.check` for the options.

Everything here is imported on first use (PEP 562), so ``import gradcheck`` -- and the pytest
plugin, which pytest loads in every session of a project that has gradcheck installed -- costs
almost nothing until a check actually runs.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any


def _installed_version() -> str:
    """The version of the installed distribution: pyproject.toml's ``version`` is the only copy."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("gradcheck")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


#: public name -> the module that defines it
_EXPORTS = {
    "check": "gradcheck.checker", "assert_gradients": "gradcheck.checker",
    "check_vjp": "gradcheck.operators", "check_jvp": "gradcheck.operators",
    "assert_vjp": "gradcheck.operators", "assert_jvp": "gradcheck.operators",
    "check_hvp": "gradcheck.second_order", "assert_hvp": "gradcheck.second_order",
    "Result": "gradcheck.result", "TensorReport": "gradcheck.result", "Element": "gradcheck.result",
    "Problem": "gradcheck.result", "Diagnosis": "gradcheck.result",
    "NetworkSpec": "gradcheck.spec", "Layer": "gradcheck.spec",
    # exceptions a caller may catch (SymbolicSkipped imports SymPy on first access)
    "FunctionFault": "gradcheck.numerical", "SpecMismatch": "gradcheck.structured",
    "SymbolicSkipped": "gradcheck.symbolic.network",
}
#: submodules reachable as attributes after ``import gradcheck``
_SUBMODULES = ("report", "strategies", "symbolic", "adapters", "diagnose", "sweep", "teach", "numerical",
               "compare", "spec", "result", "checker", "structured", "fastmode", "options", "progress",
               "config", "tolerance", "operators", "second_order")

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from gradcheck.checker import assert_gradients as assert_gradients
    from gradcheck.checker import check as check
    from gradcheck.numerical import FunctionFault as FunctionFault
    from gradcheck.operators import assert_jvp as assert_jvp
    from gradcheck.operators import assert_vjp as assert_vjp
    from gradcheck.operators import check_jvp as check_jvp
    from gradcheck.operators import check_vjp as check_vjp
    from gradcheck.result import Diagnosis as Diagnosis
    from gradcheck.result import Element as Element
    from gradcheck.result import Problem as Problem
    from gradcheck.result import Result as Result
    from gradcheck.result import TensorReport as TensorReport
    from gradcheck.second_order import assert_hvp as assert_hvp
    from gradcheck.second_order import check_hvp as check_hvp
    from gradcheck.spec import Layer as Layer
    from gradcheck.spec import NetworkSpec as NetworkSpec
    from gradcheck.structured import SpecMismatch as SpecMismatch
    from gradcheck.symbolic.network import SymbolicSkipped as SymbolicSkipped

    __version__: str


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"gradcheck.{name}")
    elif name == "__version__":  # read on first use: importlib.metadata costs ~25 ms to import
        value = _installed_version()
    else:
        raise AttributeError(f"module 'gradcheck' has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES, "__version__"})
