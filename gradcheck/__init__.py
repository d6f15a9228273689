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
__all__ = ["check", "assert_gradients", "Result", "TensorReport", "Element", "Problem", "Diagnosis",
           "NetworkSpec", "Layer", "__version__"]
