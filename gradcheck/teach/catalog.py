"""The catalog: one :class:`Lesson` per classic derivative bug.

A lesson pairs a mutant class (the bug) with a fix class (the same step done right), names the
method in which they differ, the network and batch it runs on, why the wrong line is wrong, and
what gradcheck should say: the diagnosis pattern (see :mod:`gradcheck.diagnose`), a problem kind
found before any comparison (``accumulating``), or :data:`PASSES` for a lesson whose "bug" is not
one (a kink). ``tensors`` are where the worst error must be (for a passing lesson: where the kinks
are); empty means anywhere.

Adding a lesson: write the mutant (and, if the base class is not already the fix, the fix) as a
subclass in :mod:`gradcheck.teach.mutants`, then append a ``Lesson(...)`` to :data:`NETWORK_LESSONS`.

:data:`LESSONS` also holds the operator lessons (:mod:`gradcheck.teach.operator_lessons`): one
operator's backward checked with ``check_vjp``, the bug a branch of its vjp; and the layer lessons
(:mod:`gradcheck.teach.layer_lessons`): one layer kind's wrong backward swapped into the reference
network, checked with ``check`` on the whole network.
"""
from __future__ import annotations

import difflib
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gradcheck.spec import Layer, NetworkSpec
from gradcheck.teach import mutants as m
from gradcheck.teach.base import Case, code_diff
from gradcheck.teach.layer_lessons import LAYER_LESSONS, LayerLesson
from gradcheck.teach.operator_lessons import OPERATOR_LESSONS, OperatorLesson
from gradcheck.teach.textbook import MLP, batch

#: the expected outcome of a lesson whose code is correct (a kink, float32 rounding)
PASSES = "passes"


@dataclass(frozen=True)
class Lesson:
    """A classic bug: the mutant, its fix, and what gradcheck should report."""

    name: str
    title: str
    topic: str
    mutant: type[MLP]
    fix: type[MLP]
    method: str
    setup: Callable[[], Case]
    why: str
    expected: str
    tensors: tuple[str, ...]
    fix_note: str
    activation: str | None = None
    derivation: Callable[[], str] | None = None
    demo: Callable[[], str] | None = None  # an extra experiment shown with the lesson

    def case(self) -> Case:
        return self.setup()

    def build(self, fixed: bool = False) -> MLP:
        """A fresh instance of the mutant (or of the fix) for this lesson's network."""
        return (self.fix if fixed else self.mutant)(self.case().spec)

    @property
    def passes(self) -> bool:
        return self.expected == PASSES

    def diff(self) -> list[tuple[list[str], list[str]]]:
        """The hunks in which the mutant's method differs from the fix's: [(wrong lines, right lines)]."""
        return code_diff(getattr(self.mutant, self.method), getattr(self.fix, self.method))

    @property
    def wrong(self) -> str:
        return "\n".join(line for w, _ in self.diff() for line in w)

    @property
    def right(self) -> str:
        return "\n".join(line for _, r in self.diff() for line in r)

    def source(self, fixed: bool = False) -> str:
        """The whole method as written in the mutant (or the fix)."""
        cls = self.fix if fixed else self.mutant
        return textwrap.dedent(inspect.getsource(getattr(cls, self.method)))

    def where(self, fixed: bool = False) -> str:
        cls = self.fix if fixed else self.mutant
        owner = next(k for k in cls.__mro__ if self.method in vars(k))
        return f"{owner.__name__}.{self.method}"


# -- the networks ---------------------------------------------------------------------------------
def _spec(act: str = "tanh", *, inp: int = 3, hidden: tuple[int, ...] = (5, 5), out: int = 2, loss: str = "mse",
          batch_size: int = 6, dtype: str = "float64", seed: int = 0) -> NetworkSpec:
    layers = tuple(Layer(w, act) for w in hidden) + (Layer(out, "identity"),)
    return NetworkSpec(input_dim=inp, layers=layers, loss=loss, batch=batch_size, dtype=dtype, init="xavier", seed=seed)


def _case(spec: NetworkSpec, target: str = "real", *, faithful: bool = True, seed: int = 0) -> Case:
    X, y = batch(spec, seed=seed, target=target)
    return Case(spec, MLP(spec).init_params(), X, y, faithful)


def hidden_net(act: str) -> Callable[[], Case]:
    """Two hidden layers of ``act``, a linear output, mean squared error."""
    return lambda: _case(_spec(act, seed=1))


def square_net() -> Case:
    """4-4(tanh)-4(tanh)-4: every weight matrix square, so transposes and wrong indices still run."""
    return _case(_spec("tanh", inp=4, hidden=(4, 4), out=4, batch_size=5, seed=2))


def one_hidden(loss: str = "mse", target: str = "real", *, out: int = 3, faithful: bool = True,
               inp: int = 4, batch_size: int = 5, dtype: str = "float64") -> Callable[[], Case]:
    return lambda: _case(_spec("tanh", inp=inp, hidden=(6,), out=out, loss=loss, batch_size=batch_size,
                               dtype=dtype, seed=3), target, faithful=faithful)


def origin_xor() -> Case:
    """The origin document's XOR network (2-2-1 sigmoid, half SSE, its own initialisation)."""
    from gradcheck_reference.train import XOR_SPEC, XOR_X, XOR_Y  # noqa: PLC0415 - imported when a lesson is built or shown
    return Case(XOR_SPEC, MLP(XOR_SPEC).init_params(), XOR_X.copy(), XOR_Y.copy())


def relu_at_kink() -> Case:
    """ReLU hidden layers with zero first-layer biases and a zero input row: z = 0 exactly there."""
    c = _case(_spec("relu", seed=4))
    params = dict(c.params, b1=np.zeros_like(c.params["b1"]))
    X = c.X.copy()
    X[0] = 0.0
    return Case(c.spec, params, X, c.y)


# -- SymPy derivations shown next to the bugs ------------------------------------------------------------
def sympy_activation(name: str, output_form: str | None = None) -> Callable[[], str]:
    """f and SymPy's f' for a registry activation (from gradcheck.symbolic); with ``output_form``
    (f' written with the output ``a``, e.g. ``"1 - a**2"``) SymPy also checks that form."""
    def text() -> str:
        import sympy as sp  # noqa: PLC0415 - imported when a lesson is built or shown
        try:
            from gradcheck.symbolic import activation_expr  # noqa: PLC0415 - imported when a lesson is built or shown
        except ImportError:
            from gradcheck.symbolic.primitives import activation_expr  # noqa: PLC0415 - imported when a lesson is built or shown
        expr, z = activation_expr(name)
        d = sp.diff(expr, z)
        out = f"SymPy: f(z) = {sp.sstr(expr)}\n       f'(z) = {sp.sstr(d)}"
        if output_form:
            a = sp.Symbol("a")
            residual = sp.simplify(d - sp.sympify(output_form, locals={"a": a}).subs(a, expr))
            out += f"\n       f'(z) - ({output_form}) with a = f(z) simplifies to {residual}"
        return out
    return text


def _mse_derivation() -> str:
    import sympy as sp  # noqa: PLC0415 - imported when a lesson is built or shown
    out, y, N = sp.symbols("out y N", positive=True)
    loss = (out - y) ** 2 / N
    return f"SymPy: L = sum over the batch of {sp.sstr(loss)}  =>  dL/dout = {sp.sstr(sp.diff(loss, out))}"


def _half_sse_derivation() -> str:
    import sympy as sp  # noqa: PLC0415 - imported when a lesson is built or shown
    out, y = sp.symbols("out y")
    loss = (y - out) ** 2 / 2
    return f"SymPy: L = {sp.sstr(loss)}  =>  dL/dout = {sp.sstr(sp.expand(sp.diff(loss, out)))}  (and y - out = -dL/dout)"


def _softmax_ce_derivation() -> str:
    import sympy as sp  # noqa: PLC0415 - imported when a lesson is built or shown
    z0, z1, z2 = sp.symbols("z0 z1 z2")
    p0 = sp.exp(z0) / (sp.exp(z0) + sp.exp(z1) + sp.exp(z2))
    loss = -sp.log(p0)  # the true class is 0
    d0 = sp.simplify(sp.diff(loss, z0) - (p0 - 1))
    d1 = sp.simplify(sp.diff(loss, z1) - sp.exp(z1) / (sp.exp(z0) + sp.exp(z1) + sp.exp(z2)))
    return (f"SymPy: L = -log softmax(z)_0 (class 0);  dL/dz0 - (p0 - 1) = {d0},  dL/dz1 - p1 = {d1}"
            "  =>  dL/dz = p - y")


def _bce_derivation() -> str:
    import sympy as sp  # noqa: PLC0415 - imported when a lesson is built or shown
    z, y = sp.symbols("z y", real=True)
    s = 1 / (1 + sp.exp(-z))
    loss = -(y * sp.log(s) + (1 - y) * sp.log(1 - s))
    residual = sp.simplify(sp.diff(loss, z) - (s - y))
    return f"SymPy: L = {sp.sstr(loss)};  dL/dz - (sigmoid(z) - y) = {residual}  =>  dL/dz = sigmoid(z) - y"


def _l2_derivation() -> str:
    import sympy as sp  # noqa: PLC0415 - imported when a lesson is built or shown
    w, lam = sp.symbols("w lambda", positive=True)
    penalty = lam / 2 * w**2
    return f"SymPy: penalty = {sp.sstr(penalty)}  =>  d/dw = {sp.sstr(sp.diff(penalty, w))}"


def naive_float32_check() -> str:
    """What a fixed-step checker (central differences, h = 1e-6, computed in float32) says about the
    float32 lesson's correct code and its bug: the numbers that make float32 checks hard."""
    case = _float32_case()
    out = []
    for label, cls in (("correct code", m.MSEDelta), ("the N - 1 bug", m.MSEOverNMinusOne)):
        fn = cls(case.spec)
        _, grads = fn(case.params, case.X, case.y)
        worst = 0.0
        for k, p in case.params.items():
            for idx in np.ndindex(p.shape):
                q = {kk: v.copy() for kk, v in case.params.items()}
                q[k][idx] += np.float32(1e-6)
                f_plus = fn.loss(q, case.X, case.y)
                q[k][idx] -= np.float32(2e-6)
                f_minus = fn.loss(q, case.X, case.y)
                num = (f_plus - f_minus) / 2e-6
                a = float(grads[k][idx])
                worst = max(worst, abs(a - num) / max(abs(a), abs(num), 1e-30))
        out.append(f"{label}: max relative error {worst:.2f}")
    return ("A naive check (h = 1e-6 in float32, |a - n| / max(|a|, |n|)) reports " + "; ".join(out)
            + ": the bug hides in the rounding noise. gradcheck's float32 step and error bound tell them apart.")


def _float32_case() -> Case:
    return one_hidden(out=2, inp=3, batch_size=11, dtype="float32")()


# -- the lessons -----------------------------------------------------------------------------------------
HIDDEN = ("W1", "b1", "W2", "b2")
ALL_SQUARE = ("W1", "b1", "W2", "b2", "W3", "b3")
ONE_HIDDEN = ("W1", "b1", "W2", "b2")

NETWORK_LESSONS: tuple[Lesson, ...] = (
    # activation derivatives
    Lesson("sigmoid-prime-of-z", "sigmoid' computed from the pre-activation with the x(1 - x) formula",
           "activation", m.SigmoidPrimeOfZ, m.SigmoidFromOutput, "derivative", hidden_net("sigmoid"),
           "The origin document writes sigmoid_derivative(x) = x * (1 - x), which is sigma'(z) only when x is "
           "the sigmoid's OUTPUT a = sigma(z). Fed the pre-activation z it computes z(1 - z), which is not a "
           "derivative of anything here (it is negative for z > 1).",
           "hidden_layer_derivative", HIDDEN, "pass the activation a = sigmoid(z) to x * (1 - x), or compute "
           "sigmoid(z) * (1 - sigmoid(z)) from z", "sigmoid", sympy_activation("sigmoid", "a*(1 - a)")),
    Lesson("sigmoid-prime-twice", "sigmoid' applied to the activation: sigmoid applied twice",
           "activation", m.SigmoidPrimeTwice, m.SigmoidFromOutput, "derivative", hidden_net("sigmoid"),
           "sigma'(z) = sigma(z) (1 - sigma(z)). Code that already holds a = sigma(z) and calls "
           "sigmoid_prime(a) = sigma(a) (1 - sigma(a)) squashes twice: sigma(sigma(z)).",
           "hidden_layer_derivative", HIDDEN, "use a * (1 - a) on the cached activation, or sigmoid'(z) on z",
           "sigmoid", sympy_activation("sigmoid", "a*(1 - a)")),
    Lesson("tanh-one-minus-a", "tanh' written as 1 - a", "activation", m.TanhOneMinusA, m.TanhFromOutput,
           "derivative", hidden_net("tanh"),
           "tanh'(z) = 1 - tanh(z)^2 = 1 - a^2. Without the square it is right only where a is 0 or 1.",
           "hidden_layer_derivative", HIDDEN, "square it: 1 - a**2", "tanh", sympy_activation("tanh", "1 - a**2")),
    Lesson("tanh-of-activation", "tanh'(a): the derivative evaluated at the activation", "activation",
           m.TanhOfActivation, m.TanhFromOutput, "derivative", hidden_net("tanh"),
           "1 - tanh(x)^2 is the derivative at x = z. With x = a = tanh(z) it computes 1 - tanh(tanh(z))^2. "
           "Either 1 - tanh(z)**2 on z or 1 - a**2 on the output, not a mix.",
           "hidden_layer_derivative", HIDDEN, "1 - a**2 (from the output) or 1 - np.tanh(z)**2 (from the input)",
           "tanh", sympy_activation("tanh", "1 - a**2")),
    Lesson("relu-kink", "relu' at 0: (z >= 0) or (a > 0)? A kink, not a bug", "activation",
           m.ReluFromInputAtZero, m.ReluFromOutput, "derivative", relu_at_kink,
           "relu has no derivative at z = 0; 0 and 1 (and anything between) are subgradients. The two "
           "versions differ only where z is exactly 0, which this batch forces (a zero input row and zero "
           "first-layer biases). gradcheck sees the one-sided differences disagree there, leaves those "
           "elements out of the verdict, lists them as kinks, and passes both versions.",
           PASSES, ("b1",), "nothing to fix: either convention is correct", "relu", sympy_activation("relu")),
    Lesson("leaky-relu-swapped", "leaky relu slopes swapped", "activation", m.LeakyReluSwapped, m.LeakyRelu,
           "derivative", hidden_net("leaky_relu"),
           "leaky_relu(z) = z for z > 0 and alpha z below, so its derivative is 1 above 0 and alpha below. "
           "Swapping them scales every positive unit's gradient by alpha and every negative one's by 1/alpha.",
           "hidden_layer_derivative", HIDDEN, "np.where(z > 0, 1.0, alpha)", "leaky_relu",
           sympy_activation("leaky_relu")),
    Lesson("elu-without-exp", "elu' without the exponential", "activation", m.EluWithoutExp, m.EluFromOutput,
           "derivative", hidden_net("elu"),
           "elu(z) = alpha (exp(z) - 1) for z <= 0, whose derivative is alpha exp(z) = a + alpha, not the "
           "constant alpha: that is leaky relu's derivative.",
           "hidden_layer_derivative", HIDDEN, "alpha * exp(z), i.e. a + alpha, for z <= 0", "elu",
           sympy_activation("elu")),
    Lesson("softplus-of-output", "softplus' computed from the output", "activation", m.SoftplusPrimeOfOutput,
           m.SoftplusPrime, "derivative", hidden_net("softplus"),
           "softplus(z) = log(1 + exp(z)) has derivative sigmoid(z), a function of z. With a = softplus(z) "
           "at hand, sigmoid(a) is the derivative at the wrong point (a > z always).",
           "hidden_layer_derivative", HIDDEN, "sigmoid(z) (or 1 - exp(-a) from the output)", "softplus",
           sympy_activation("softplus", "1 - exp(-a)")),
    Lesson("swish-product-rule", "swish: the product rule dropped", "activation", m.SwishProductRuleDropped,
           m.SwishPrime, "derivative", hidden_net("silu"),
           "swish(z) = z sigmoid(z) is a product: its derivative is sigmoid(z) + z sigmoid'(z). Keeping only "
           "z sigmoid'(z) (or only sigmoid(z)) treats one factor as a constant.",
           "hidden_layer_derivative", HIDDEN, "s + z * s * (1 - s) with s = sigmoid(z)", "silu",
           sympy_activation("silu")),
    Lesson("gelu-inner-derivative", "gelu (tanh form): the inner derivative forgotten", "activation",
           m.GeluInnerDerivativeDropped, m.GeluTanhPrime, "derivative", hidden_net("gelu_tanh"),
           "gelu(z) = 0.5 z (1 + tanh(u)) with u = c (z + 0.044715 z^3): the chain rule gives tanh(u)' = "
           "(1 - tanh(u)^2) u' with u' = c (1 + 3 * 0.044715 z^2). Dropping u' is the classic chain-rule slip.",
           "hidden_layer_derivative", HIDDEN, "multiply by u' = c * (1 + 3 * 0.044715 * z**2)", "gelu_tanh",
           sympy_activation("gelu_tanh")),
    # the loss gradient
    Lesson("missing-mean", "the 1/N of the mean loss missing in backward", "loss", m.MSEWithoutMean, m.MSEDelta,
           "output_delta", hidden_net("tanh"),
           "The loss is the MEAN over the batch of per-sample losses, so every per-sample gradient carries 1/N. "
           "Without it every gradient is N times too large (and the learning rate silently depends on N).",
           "missing_mean", ALL_SQUARE, "divide by the batch size: 2 * (out - y) / len(out)", None, _mse_derivation),
    Lesson("factor-two", "the factor 2 of the squared error missing", "loss", m.MSEWithoutTwo, m.MSEDelta,
           "output_delta", hidden_net("tanh"),
           "d/dout (out - y)^2 = 2 (out - y). The 2 disappears only for the 0.5 * (out - y)^2 convention; "
           "this loss has no 0.5, so every gradient comes out half as large.",
           "factor_half", ALL_SQUARE, "2 * (out - y) / len(out), or put 0.5 in the loss", None, _mse_derivation),
    Lesson("mean-twice", "divided by the batch size twice", "loss", m.MSEMeanTwice, m.MSEDelta,
           "output_delta", hidden_net("tanh"),
           "The 1/N of the mean belongs in the gradient exactly once. Dividing again (here, or in every "
           "layer's weight gradient as a 'mean over the batch') makes every gradient N times too small.",
           "extra_mean", ALL_SQUARE, "divide by N once", None, _mse_derivation),
    Lesson("origin-error-sign", "the origin document's error y - out used as the gradient", "loss",
           m.OriginErrorSign, m.OriginDelta, "output_delta", origin_xor,
           "The origin document computes error = y - out and updates W += lr * ...: gradient DESCENT written "
           "with the negative gradient. Returning its delta as a gradient flips every sign, and an optimizer "
           "doing W -= lr * grad then climbs the loss.",
           "sign_flip", ("W1", "b1", "W2", "b2"), "(out - y) * out * (1 - out), or keep y - out and use +=",
           None, _half_sse_derivation),
    Lesson("softmax-missing", "cross-entropy gradient without the softmax", "loss", m.SoftmaxMissing,
           m.SoftmaxCrossEntropy, "output_delta", one_hidden("softmax_cross_entropy", "one_hot"),
           "For L = -sum y log softmax(z) the gradient with respect to the logits is softmax(z) - y: the "
           "probabilities, not the logits, minus the targets. z - y is the gradient of a squared error.",
           "output_gradient", ONE_HIDDEN, "(softmax(z) - y) / len(z)", None, _softmax_ce_derivation),
    Lesson("bce-without-sigmoid", "binary cross-entropy on logits without the sigmoid", "loss",
           m.BCEWithoutSigmoid, m.BCEWithLogits, "output_delta", one_hidden("bce_with_logits", "binary", out=2),
           "For binary cross-entropy on a logit z, dL/dz = sigmoid(z) - y: the probability minus the target. "
           "z - y uses the logit as if it were the probability.",
           "output_gradient", ONE_HIDDEN, "(sigmoid(z) - y) / len(z)", None, _bce_derivation),
    # the layer steps
    Lesson("missing-transpose", "weight gradient transposed: dz.T @ a instead of a.T @ dz", "layer",
           m.WeightGradTransposed, MLP, "weight_grad", square_net,
           "With W of shape (fan_in, fan_out) and z = a @ W, dL/dW = a.T @ dz, shaped (fan_in, fan_out). "
           "dz.T @ a is its transpose; the shape check catches it unless W is square, as here.",
           "transposed", ("W1", "W2", "W3"), "c.a[i - 1].T @ dz"),
    Lesson("delta-not-transposed", "delta passed down through W instead of W.T", "layer",
           m.DeltaNotTransposed, MLP, "delta_down", square_net,
           "z_i = a_{i-1} @ W_i, so dL/da_{i-1} = dz_i @ W_i.T. Without the transpose the shapes only work "
           "for square W, and every layer below gets a wrong delta.",
           "hidden_layer_derivative", ("W1", "b1", "W2", "b2"), "dz @ W.T"),
    Lesson("sign-one-layer", "wrong sign in one layer", "layer", m.SignFlippedInOneLayer, MLP, "weight_grad",
           square_net,
           "Mixing the origin document's ascent convention (W += lr * a.T @ delta with delta = (y - out)...) "
           "with descent gradients in one layer flips that layer's gradient: SGD climbs the loss along it.",
           "sign_flip", ("W2",), "one convention everywhere: grads are dL/dW, the optimizer subtracts them"),
    Lesson("bias-one-sample", "bias gradient from one sample", "layer", m.BiasFromOneSample, MLP, "bias_grad",
           one_hidden(inp=6, batch_size=4),
           "b is added to every row of the batch, so dL/db is the sum of the deltas over the batch. dz[0] is "
           "the first sample's contribution only (code written for a batch of one).",
           "bias_one_sample", ("b1", "b2"), "dz.sum(axis=0)"),
    Lesson("loop-skips-first-unit", "a loop over units that starts at 1", "layer", m.BiasLoopSkipsFirst,
           m.BiasLoop, "bias_grad", one_hidden(),
           "Python indices start at 0: range(1, n) skips unit 0, whose gradient stays at its initial 0. One "
           "element per tensor is wrong; every other agrees.",
           "one_element", ("b1", "b2"), "range(dz.shape[1]), or better dz.sum(axis=0)"),
    Lesson("stale-weights", "weights updated before backprop through them", "layer", m.StaleWeights, MLP,
           "delta_down", square_net,
           "A training step that updates W_i as soon as its gradient is known and then passes the delta down "
           "through the UPDATED W_i backpropagates through weights the forward pass never used. (Done in "
           "place on params, gradcheck reports it as fn modifying its input.)",
           "hidden_layer_derivative", ("W1", "b1", "W2", "b2"),
           "compute every gradient first, update after (or keep the old W for the delta)"),
    Lesson("stale-cache", "cache overwritten by another forward before backward", "layer", m.StaleCache,
           m.Monitored, "__call__", one_hidden(),
           "Backward reads the activations forward cached. A second forward (logging validation outputs) "
           "between the two replaces them, so backward differentiates at the wrong inputs.",
           "output_gradient", ONE_HIDDEN, "run backward before any other forward, or keep each forward's cache"),
    Lesson("wrong-layer-weights", "backprop through another layer's weights", "layer", m.WrongLayerWeights, MLP,
           "delta_down", square_net,
           "Each delta goes back through its own layer's weights: dz_i @ W_i.T. A line copy-pasted from the "
           "output layer keeps W3 and sends layer 2's delta through the wrong matrix.",
           "hidden_layer_derivative", ("W1", "b1"), "dz @ params[f'W{i}'].T"),
    Lesson("off-by-one-layer", "off-by-one layer index in the weight gradient", "layer", m.OffByOneLayer, MLP,
           "weight_grad", square_net,
           "dL/dW_i = a_{i-1}.T @ dz_i uses the layer's INPUT. a[i] is its output; with equal widths the "
           "shapes still match. Every bias gradient (which needs no input) stays right.",
           "weights_only", ("W1", "W2", "W3"), "c.a[i - 1].T @ dz"),
    Lesson("dropout-scale", "dropout's 1/keep forgotten in backward", "layer", m.DropoutScaleForgotten,
           m.Dropout, "delta_down", one_hidden(faithful=False),
           "Inverted dropout computes a * mask / keep in forward; its derivative is mask / keep. Using the "
           "mask alone scales every gradient below the dropout by keep (0.8). (The mask is fixed per call, "
           "seeded, so the check differentiates one function; a fresh mask per call is reported as "
           "nondeterminism.)",
           "constant_factor", ("W1", "b1"), "multiply by mask / keep, as in forward"),
    Lesson("weight-decay-missing", "L2 weight decay missing from the gradient", "loss", m.WeightDecayMissing,
           m.WeightDecay, "weight_grad", one_hidden(faithful=False),
           "The loss includes (lambda/2) sum W^2, so each weight gradient gets + lambda W. Left out, the "
           "optimizer never sees the penalty the loss reports.",
           "weight_decay", ("W1", "W2"), "add self.LAMBDA * W to each weight gradient", None, _l2_derivation),
    Lesson("weight-decay-doubled", "L2 weight decay counted twice", "loss", m.WeightDecayDoubled, m.WeightDecay,
           "weight_grad", one_hidden(faithful=False),
           "d/dW (lambda/2) W^2 = lambda W. Writing 2 lambda W (forgetting the 1/2 cancels the 2), or adding the "
           "decay both in the gradient and in the optimizer, doubles it.",
           "weight_decay", ("W1", "W2"), "self.LAMBDA * W, once", None, _l2_derivation),
    Lesson("float32-real-bug", "float32: rounding noise vs a real 10% bug", "numerics", m.MSEOverNMinusOne,
           m.MSEDelta, "output_delta", _float32_case,
           "In float32 a finite difference with a tiny step (h = 1e-6) cancels catastrophically: f(x + h) - "
           "f(x - h) keeps one or two digits, so a fixed-step checker either reports large errors on correct "
           "float32 code or needs a tolerance so loose it misses real bugs. gradcheck picks the step from the "
           "dtype and bounds the estimate's own error: the correct code passes, and dividing by N - 1 = 10 "
           "instead of N = 11 (a 10% error) fails and is named as the factor 1.100.",
           "constant_factor", ("W1", "b1", "W2", "b2"), "divide by len(out), the N of the mean", None,
           _mse_derivation, naive_float32_check),
    Lesson("accumulating-gradients", "gradients accumulated across calls (zero_grad forgotten)", "state",
           m.Accumulating, m.ZeroGrad, "__call__", one_hidden(),
           "Frameworks ADD each backward's gradient into .grad, so each step must start from zero. Without "
           "zero_grad() the second call returns the sum of two gradients. gradcheck calls fn twice with the "
           "same inputs and sees the second gradient equal twice the first.",
           "accumulating", (), "zero the stored gradients at the start of every step"),
)

#: a lesson of any kind: a textbook network's ``check``, one operator's ``check_vjp``, or the
#: ``check`` of a reference network with one layer kind's backward replaced
AnyLesson = Lesson | OperatorLesson | LayerLesson

#: every lesson: the network lessons, then the operator lessons, then the layer lessons
LESSONS: tuple[AnyLesson, ...] = NETWORK_LESSONS + OPERATOR_LESSONS + LAYER_LESSONS

_BY_NAME = {lesson.name: lesson for lesson in LESSONS}
assert len(_BY_NAME) == len(LESSONS), "two lessons share a name"


def get_lesson(name: str) -> AnyLesson:
    """The lesson ``name``, or number ``name`` as ``gradcheck teach --list`` numbers them (from 1);
    a ValueError suggests lessons whose name or topic contains the word, or close spellings."""
    if name.isdigit():
        k = int(name)
        if 1 <= k <= len(LESSONS):
            return LESSONS[k - 1]
        raise ValueError(f"no lesson number {k}: the lessons are numbered 1 to {len(LESSONS)} "
                         "(`gradcheck teach --list`)")
    try:
        return _BY_NAME[name]
    except KeyError:
        word = name.lower()
        close = [l.name for l in LESSONS if word in l.name.lower() or word in l.topic.lower()][:5]
        close = close or difflib.get_close_matches(name, list(_BY_NAME), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown lesson {name!r}{hint}; `gradcheck teach --list` shows all {len(LESSONS)}") from None


__all__ = ["Lesson", "OperatorLesson", "LayerLesson", "AnyLesson", "Case", "LESSONS", "NETWORK_LESSONS",
           "OPERATOR_LESSONS", "LAYER_LESSONS", "PASSES", "get_lesson", "code_diff"]
