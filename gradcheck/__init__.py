"""gradcheck: prove a backward pass right, or show exactly where and how it is wrong.

>>> import gradcheck
>>> result = gradcheck.check(fn, params, X, y)     # doctest: +SKIP
>>> gradcheck.assert_gradients(fn, params, X, y)   # doctest: +SKIP

``fn(params, X, y) -> (loss, grads)``; see :func:`gradcheck.check.check` for the options.
"""
from gradcheck.check import assert_gradients, check
from gradcheck.result import Diagnosis, Element, Problem, Result, TensorReport
from gradcheck.spec import Layer, NetworkSpec

__version__ = "0.1.0"

#: submodules reachable as attributes after ``import gradcheck``, imported on first use (they
#: pull in SymPy, matplotlib, Hypothesis or frameworks, which a plain check does not need)
_LAZY = ("report", "strategies", "symbolic", "adapters", "diagnose", "sweep", "teach", "numerical",
         "compare", "spec", "result")


def __getattr__(name: str):
    if name in _LAZY:
        import importlib  # noqa: PLC0415

        return importlib.import_module(f"gradcheck.{name}")
    raise AttributeError(f"module 'gradcheck' has no attribute {name!r}")
__all__ = ["check", "assert_gradients", "Result", "TensorReport", "Element", "Problem", "Diagnosis",
           "NetworkSpec", "Layer", "__version__"]
