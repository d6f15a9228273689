"""Shared by ``tests/test_diagnose.py`` and ``benchmarks/diagnose_false_positives.py``: passing
checks of correct networks (what ``check`` hands to ``diagnose``), the same check re-compared with
other claimed gradients, and the random perturbations whose diagnoses must never name a *specific*
cause. Test-support code (it uses the reference network, not part of the library); the benchmark
imports it from the checkout (``tests`` is a package).
"""
from __future__ import annotations

import copy
from functools import cache

import numpy as np

import gradcheck
from gradcheck.compare import compare, eps_of
from gradcheck.result import Element, Result
from gradcheck.spec import Layer, NetworkSpec
from reference.network import Network

#: the correct networks of :func:`base_check`
KINDS = ("float64", "float32", "square", "softmax", "wide")
#: the ways :func:`perturb` corrupts a claimed gradient (the test runs the first five)
PERTURBATIONS = ("mult", "add", "replace", "element", "shuffle", "mult_small", "near_ratio")


def spec_for(act="tanh", *, inp=3, hidden=(5, 5), out=2, loss="mse", batch=6, dtype="float64", seed=0):
    """A dense network ``inp - hidden... - out`` (identity output layer)."""
    layers = tuple(Layer(w, act) for w in hidden) + (Layer(out, "identity"),)
    return NetworkSpec(input_dim=inp, layers=layers, loss=loss, batch=batch, dtype=dtype, seed=seed)


def data_for(spec, seed=0, one_hot=False):
    """``(X, y)`` for ``spec``: normal inputs, normal or one-hot targets, in the spec's dtype."""
    rng = np.random.default_rng(100 + seed)
    X = rng.standard_normal((spec.batch, spec.input_dim)).astype(spec.dtype)
    if one_hot:
        y = np.eye(spec.output_dim)[rng.integers(0, spec.output_dim, spec.batch)].astype(spec.dtype)
    else:
        y = rng.standard_normal((spec.batch, spec.output_dim)).astype(spec.dtype)
    return X, y


def with_claimed(base: Result, claimed: dict[str, np.ndarray]) -> Result:
    """``base`` (a check of correct code) with other claimed gradients, re-compared as check does."""
    r = copy.deepcopy(base)
    failures = []
    for k, t in r.tensors.items():
        c = np.asarray(claimed[k], dtype=np.float64)
        cmp = compare(c, t.numerical, t.error, claimed_eps=eps_of(t.dtype))
        kink = t.kink if t.kink is not None else np.zeros(c.shape, bool)
        failed = ~kink & ~cmp.passed
        t.claimed, t.rel = c, cmp.rel
        t.passed, t.n_failed = not failed.any(), int(failed.sum())
        t.max_rel_error = float(np.max(np.where(kink, 0, cmp.rel)))
        for ix in np.argwhere(failed):
            ix = tuple(int(v) for v in ix)
            failures.append(Element(k, list(ix), float(c[ix]), float(t.numerical[ix]), float(cmp.rel[ix]),
                                    float(cmp.tol[ix]), float(t.error[ix])))
    failures.sort(key=lambda e: -e.rel_error)
    r.failures = failures
    r.passed = all(t.passed for t in r.tensors.values())
    return r


@cache
def base_check(kind: str):
    """A passing check of correct code, with its params and X (what check hands to diagnose)."""
    if kind == "square":
        spec = spec_for("tanh", inp=4, hidden=(4, 4), out=4, batch=5)
    elif kind == "softmax":
        spec = spec_for("tanh", inp=4, hidden=(6,), out=3, loss="softmax_cross_entropy", batch=5)
    elif kind == "wide":
        spec = spec_for("tanh", inp=6, hidden=(5,), out=3, batch=4)
    else:
        spec = spec_for("tanh", dtype=kind)
    net = Network(spec)
    params = net.init_params()
    X, y = data_for(spec, one_hot=kind == "softmax")
    r = gradcheck.check(net, params, X, y, spec=spec)
    assert r.passed, str(r)
    return r, params, X


def perturb(claimed: dict, subset: list, how: str, delta: float, rng: np.random.Generator,
            batch: int = 1) -> None:
    """Corrupt ``claimed[k]`` for ``k`` in ``subset`` in place (or replace it), the way ``how`` says
    (one of :data:`PERTURBATIONS`; ``delta`` the relative size, ``batch`` for the ratio N)."""
    for k in subset:
        c = claimed[k]
        scale = float(np.max(np.abs(c))) or 1.0
        if how == "near_ratio":  # a named ratio (-1, 2, 1/2, N, 1/N) blurred by >= 1% noise per element
            around = float(rng.choice([-1.0, 2.0, 0.5, batch, 1.0 / batch]))
            claimed[k] = around * c * (1 + max(delta, 1e-2) * rng.standard_normal(c.shape))
        elif how == "mult":
            c *= 1 + delta * rng.standard_normal(c.shape)
        elif how == "mult_small":
            c *= 1 + 1e-3 * delta * rng.standard_normal(c.shape)
        elif how == "add":
            c += delta * scale * rng.standard_normal(c.shape)
        elif how == "replace":
            claimed[k] = scale * rng.standard_normal(c.shape)
        elif how == "element":
            i = tuple(int(rng.integers(s)) for s in c.shape)
            c[i] += delta * scale * rng.choice([-1, 1])
        elif how == "shuffle":
            claimed[k] = rng.permutation(c.reshape(-1)).reshape(c.shape)
        else:
            raise ValueError(f"how={how!r}: expected one of {PERTURBATIONS}")


def random_subset(names: list, rng: np.random.Generator) -> list:
    """Each tensor with probability 1/2; one at random if that leaves none."""
    return [k for k in names if rng.random() < 0.5] or [names[int(rng.integers(len(names)))]]
