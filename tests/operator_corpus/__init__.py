"""A corpus of correct hand-written numpy operators (f, its VJP, its JVP) and planted VJP bugs, for
the operator checks ``gradcheck.check_vjp`` / ``gradcheck.check_jvp``; none of them is in the
operator catalog ``gradcheck.teach.operators``.

Every family module defines ``f(inputs)``, ``vjp(inputs, cotangents, *, bug=None)`` (the bug
names are the keys of its ``BUGS``: the inputs each bug makes wrong and what it is),
``jvp(inputs, tangents)``, ``inputs(rng, dtype)`` and ``DESCRIPTION``. Conventions are those of
the checks: ``inputs`` is a dict of numpy arrays (integer or boolean arrays are constants), f
returns an array or a tuple of arrays, float32 in gives float32 out (constants are Python
scalars), nothing mutates its arguments. Shapes are small (at most 48 input elements and 36
output elements per operator), so ``mode="auto"`` takes the full Jacobian in both checks.

Modules: :mod:`.reductions` (logsumexp), :mod:`.activations` (softplus with sharpness),
:mod:`.normalization` (group norm), :mod:`.convolution` (depthwise dilated conv1d), :mod:`.scans`
(cumsum, cumprod with zeros), :mod:`.indexing` (gather with repeats), :mod:`.masking` (masked
softmax), :mod:`.geometry` (squared distance matrix), :mod:`.linalg` (log-determinant and
Mahalanobis term via Cholesky), :mod:`.losses` (Huber at the threshold).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from tests.operator_corpus import (
    activations,
    convolution,
    geometry,
    indexing,
    linalg,
    losses,
    masking,
    normalization,
    reductions,
    scans,
)


@dataclass(frozen=True)
class Operator:
    name: str
    family: str
    f: Callable
    vjp: Callable
    jvp: Callable
    inputs: Callable      # inputs(rng, dtype) -> dict of arrays
    description: str


@dataclass(frozen=True)
class Bug:
    name: str
    operator: str         # a key of OPERATORS
    vjp: Callable         # the operator's vjp with the bug planted
    touched: tuple[str, ...]   # the inputs whose gradient the bug changes (the others stay exact)
    description: str


_MODULES = {
    "logsumexp": reductions,
    "softplus_beta": activations,
    "group_norm": normalization,
    "depthwise_conv1d": convolution,
    "cumsum_cumprod": scans,
    "gather": indexing,
    "masked_softmax": masking,
    "sqdist": geometry,
    "gaussian_terms": linalg,
    "huber": losses,
}

OPERATORS: dict[str, Operator] = {
    name: Operator(name, module.__name__.rsplit(".", 1)[-1], module.f, module.vjp, module.jvp, module.inputs,
                   module.DESCRIPTION)
    for name, module in _MODULES.items()
}

BUGS: dict[str, Bug] = {
    f"{name}-{bug}": Bug(f"{name}-{bug}", name, partial(module.vjp, bug=bug), touched, description)
    for name, module in _MODULES.items() for bug, (touched, description) in module.BUGS.items()
}
