"""The SymPy oracle: derivatives derived by SymPy, never written by hand; mpmath ground truth.

Never imports the reference package (``gradcheck_reference``, also importable as ``reference``):
the project's independence rule, see ``docs/symbolic.md``, "Independence". Each primitive's
*value* is defined anew in :mod:`gradcheck.symbolic.primitives` and differentiated by
``sympy.diff``; whole networks are built, differentiated and compiled in
:mod:`gradcheck.symbolic.network`; :mod:`.exact` evaluates the same expressions with mpmath at
>= 40 digits. See ``docs/symbolic.md``.
"""
from __future__ import annotations

from gradcheck.symbolic.exact import exact_gradient
from gradcheck.symbolic.network import (
    CacheInfo,
    SymbolicSkipped,
    cache_info,
    clear_cache,
    compile_gradient,
    network_gradient,
    structure_key,
)
from gradcheck.symbolic.primitives import (
    ACTIVATION_DEFS,
    LOSS_DEFS,
    activation_derivative,
    activation_derivative_mp,
    activation_expr,
    activation_kinks,
    activation_latex,
    activation_value,
    activation_value_mp,
    activation_vjp,
    kink_derivatives,
    loss_expr,
    loss_gradient,
    loss_gradient_mp,
    loss_latex,
    loss_value,
    loss_value_mp,
)

__all__ = [
    "network_gradient", "exact_gradient", "SymbolicSkipped", "compile_gradient", "clear_cache",
    "cache_info", "CacheInfo", "structure_key",
    "ACTIVATION_DEFS", "LOSS_DEFS",
    "activation_expr", "activation_latex", "activation_kinks", "kink_derivatives",
    "activation_value", "activation_derivative", "activation_vjp",
    "activation_value_mp", "activation_derivative_mp",
    "loss_expr", "loss_latex", "loss_value", "loss_gradient", "loss_value_mp", "loss_gradient_mp",
]
