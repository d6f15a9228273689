"""Exercises: a lesson's network or operator written out as a self-contained student file (numpy
and the standard library only) with its bug in place, to be fixed and graded
(``gradcheck teach --exercise NAME``, ``gradcheck teach --grade FILE``).

Each exercise keeps its *reference source*: the whole file with a correct backward. The student
file is that source with the exercise's replacements applied (the right lines swapped for the
wrong ones) and a task docstring in front. The grader never trusts the student's forward: it
executes the reference source itself (:func:`Exercise.reference`) for the loss, the inputs and
the comparison of forwards. The reference source is never written by ``--exercise`` or
``--course``; :func:`Exercise.solution` exists for the tests and for teachers.

Two interfaces:

- ``kind="network"``: ``forward(params, X, y) -> loss`` and ``backward(params, X, y) -> grads``
  (a dict with the keys and shapes of ``params``), checked with :func:`gradcheck.check`;
- ``kind="operator"``: ``f(inputs) -> out`` and ``f_vjp(inputs, dout) -> grads`` (a dict with the
  keys of ``inputs``), checked with :func:`gradcheck.check_vjp`.

Both files define ``make_inputs(seed=0, batch=BATCH)`` (the grader uses its own copy) and the
constant ``EXERCISE``, the exercise's name, which the grader reads without running the file.
"""
from __future__ import annotations

import textwrap
import types
from dataclasses import dataclass, field
from string import Template

#: the banner lines around the code the student edits
BEGIN = "# ---- YOUR WORK: fix {what} below ----"
END = "# ---- end of your work ----"


@dataclass(frozen=True)
class Exercise:
    """One exercise: the reference source, the bug as replacements, the task and the hints."""

    name: str
    title: str
    kind: str                          # "network" | "operator"
    family: str                        # "network" | "layer" | "operator"
    source: str                        # the reference file (correct backward), without the docstring
    replacements: tuple[tuple[str, str], ...]   # (right, wrong) text pairs; right occurs once in source
    marker: str                        # the fix's distinctive text: in source, never in the student file
    task: str                          # what the file computes (docstring), giving nothing away
    hints: tuple[str, str, str]        # where; what kind; the relation that holds
    dtype: str = "float64"
    lesson: str | None = None          # the lesson (``gradcheck teach NAME``) with the same bug
    topic: str = ""
    fresh_batches: tuple[int, ...] = field(default=(0,))   # batch sizes for fresh inputs (0: the file's)

    @property
    def function(self) -> str:
        return "backward" if self.kind == "network" else "f_vjp"

    @property
    def forward_name(self) -> str:
        return "forward" if self.kind == "network" else "f"

    def filename(self) -> str:
        return self.name.replace("-", "_") + ".py"

    def solution(self) -> str:
        """The reference file: the correct backward (for tests and teachers; never written to students)."""
        return self._header() + self.source

    def student_source(self) -> str:
        """The student file: the reference with the bug in place and the task docstring."""
        text = self.source
        for right, wrong in self.replacements:
            if text.count(right) != 1:
                raise ValueError(f"exercise {self.name}: {right!r} occurs {text.count(right)} times in its source")
            text = text.replace(right, wrong)
        return self._header() + text

    def _header(self) -> str:
        iface = ("forward(params, X, y) returns the loss; backward(params, X, y) must return its gradient\n"
                 "with respect to every array in params: a dict with the same keys and shapes."
                 if self.kind == "network" else
                 "f(inputs) returns the output; f_vjp(inputs, dout) must return, for every array in inputs,\n"
                 "the gradient of sum(dout * f(inputs)) with respect to it: a dict with the same keys\n"
                 "and shapes (the vector-Jacobian product).")
        f, fwd, me = self.filename(), self.forward_name, self.function
        lines = [
            f"Exercise {self.name}: {self.title} ({self.dtype})",
            "",
            textwrap.fill(self.task, 96),
            "",
            iface,
            f"{me}() below is wrong. Fix it between the two banner lines; leave {fwd}() and make_inputs()",
            f"as they are (the grader compares your {fwd}() with the original on fresh inputs). Import",
            "nothing but numpy and small standard modules (math, functools, itertools, ...).",
            "",
            "Grade it (exit 0: fixed, 1: still wrong, 2: cannot be graded):",
            f"    gradcheck teach --grade {f}",
            f"    gradcheck teach --grade {f} --hint 1      (hints 1, 2, 3)",
            f"Run it: python {f}",
        ]
        body = "\n".join(lines) + "\n"
        return f'"""{body}"""\n'

    def reference(self) -> types.ModuleType:
        """The reference source executed as a fresh module (the grader's own forward and inputs)."""
        module = types.ModuleType(f"gradcheck_exercise_{self.name.replace('-', '_')}")
        module.__file__ = reference_filename(self.name)
        code = compile(self.solution(), module.__file__, "exec")
        exec(code, module.__dict__)  # the package's own source
        return module


def reference_filename(name: str) -> str:
    return f"<gradcheck exercise {name}: reference>"


# -- sources ----------------------------------------------------------------------------------------
_MAIN_NETWORK = '''

if __name__ == "__main__":
    params, X, y = make_inputs(0)
    print("loss", forward(params, X, y))
    for name, g in backward(params, X, y).items():
        print(name, np.shape(g))
'''

_MAIN_OPERATOR = '''

if __name__ == "__main__":
    inputs = make_inputs(0)
    out = f(inputs)
    print("output shape", out.shape)
    for name, g in f_vjp(inputs, np.ones_like(out)).items():
        print(name, np.shape(g))
'''

_ACTIVATIONS = {  # forward line, derivative written from the forward's cached values
    "sigmoid": ("1.0 / (1.0 + np.exp(-z1))", "a1 * (1 - a1)"),
    "tanh": ("np.tanh(z1)", "(1 - a1 ** 2)"),
    "relu": ("np.maximum(z1, 0)", "(z1 > 0)"),
}

_MLP = Template('''\
import numpy as np

EXERCISE = "$name"
DTYPE = np.$dtype
SIZES = ($d, $h, $o)  # input features, hidden units, outputs
BATCH = $n


def make_inputs(seed=0, batch=BATCH):
    """Example inputs (params, X, y) from a seed."""
    rng = np.random.default_rng(seed)
    d, h, o = SIZES
    params = {
        "W1": rng.normal(0.0, 1.0 / np.sqrt(d), size=(d, h)).astype(DTYPE),
        "b1": $b1,
        "W2": rng.normal(0.0, 1.0 / np.sqrt(h), size=(h, o)).astype(DTYPE),
        "b2": rng.normal(0.0, 0.1, size=o).astype(DTYPE),
    }
    X = rng.normal(size=(batch, d)).astype(DTYPE)$xextra
    y = $y
    return params, X, y


def forward(params, X, y):
    """The loss of the network on the batch (X, y)."""
    z1 = X @ params["W1"] + params["b1"]
    a1 = $act
    out = a1 @ params["W2"] + params["b2"]
$loss


$begin
def backward(params, X, y):
    """The gradient of forward(params, X, y) with respect to each array in params."""
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    n = X.shape[0]
    z1 = X @ W1 + b1
    a1 = $act
    out = a1 @ W2 + b2
$dout
    dW2 = a1.T @ dout
    db2 = dout.sum(axis=0)
    da1 = dout @ W2.T
    dz1 = da1 * $deriv
    dW1 = X.T @ dz1
    db1 = dz1.sum(axis=0)
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
$end
''')

_LOSSES = {
    "mse": ("    return np.mean(np.sum((out - y) ** 2, axis=1))",
            "    dout = 2 * (out - y) / n",
            "rng.normal(size=(batch, o)).astype(DTYPE)",
            "the mean over the batch of the squared error sum((out - y) ** 2) of each sample"),
    "softmax": ("    shifted = out - out.max(axis=1, keepdims=True)\n"
                "    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))\n"
                "    return -np.mean(np.sum(y * logp, axis=1))",
                "    p = np.exp(out - out.max(axis=1, keepdims=True))\n"
                "    p = p / p.sum(axis=1, keepdims=True)\n"
                "    dout = (p - y) / n",
                "np.eye(o, dtype=DTYPE)[rng.integers(0, o, size=batch)]",
                "the mean over the batch of the cross-entropy of softmax(out) against one-hot targets y"),
}


def _mlp(name: str, act: str, loss: str = "mse", *, d: int = 3, h: int = 4, o: int = 2, n: int = 6,
         dtype: str = "float64", kink: bool = False) -> tuple[str, str]:
    """An MLP exercise's reference source and its task text."""
    forward_act, deriv = _ACTIVATIONS[act]
    loss_line, dout, ymake, loss_text = _LOSSES[loss]
    source = _MLP.substitute(
        name=name, dtype=dtype, d=d, h=h, o=o, n=n, act=forward_act.replace("z1", "z1"), deriv=deriv,
        b1="np.zeros(h, dtype=DTYPE)" if kink else "rng.normal(0.0, 0.1, size=h).astype(DTYPE)",
        xextra="\n    X[0] = 0.0  # one sample exactly at z1 = 0" if kink else "",
        y=ymake, loss=loss_line, dout=dout, begin=BEGIN.format(what="backward()"), end=END,
    ) + _MAIN_NETWORK
    units = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "ReLU"}[act]
    act_text = {"sigmoid": "sigmoid(z1) = 1 / (1 + exp(-z1))", "tanh": "tanh(z1)",
                "relu": "relu(z1) = max(z1, 0)"}[act]
    task = (f"A network with one hidden layer of {h} {units} units ({d} inputs, {o} outputs, a batch of "
            f"{n} samples, {dtype}): z1 = X @ W1 + b1, a1 = {act_text}, out = a1 @ W2 + b2; the loss is "
            f"{loss_text}.")
    if kink:
        task += (" b1 starts at zero and one sample is all zeros, so some pre-activations are exactly 0, "
                 "where ReLU has a kink: either one-sided derivative is accepted there.")
    return source, task


# -- layer kinds ------------------------------------------------------------------------------------
#: the convolution's forward pass, written into both convolutional exercises (each file stands alone)
_CONV2D = '''\
def conv2d(x, K, c):
    """A valid 2-d convolution (cross-correlation), stride 1: x (n, ci, h, w), K (co, ci, k, k)."""
    k = K.shape[2]
    ho, wo = x.shape[2] - k + 1, x.shape[3] - k + 1
    out = np.zeros((x.shape[0], K.shape[0], ho, wo), dtype=np.result_type(x, K))
    for i in range(ho):
        for j in range(wo):
            window = x[:, :, i:i + k, j:j + k]
            out[:, :, i, j] = np.tensordot(window, K, axes=([1, 2, 3], [1, 2, 3]))
    return out + c[None, :, None, None]
'''

_CONV = Template('''\
import numpy as np

EXERCISE = "$name"
DTYPE = np.float64
BATCH = 2


def make_inputs(seed=0, batch=BATCH):
    """Example inputs (params, X, y) from a seed: X holds batch single-channel 6 x 6 images."""
    rng = np.random.default_rng(seed)
    params = {
        "K1": rng.normal(0.0, 0.4, size=(2, 1, 3, 3)),
        "c1": rng.normal(0.0, 0.1, size=2),
        "K2": rng.normal(0.0, 0.3, size=(2, 2, 3, 3)),
        "c2": rng.normal(0.0, 0.1, size=2),
        "W": rng.normal(0.0, 0.3, size=(8, 2)),
        "b": rng.normal(0.0, 0.1, size=2),
    }
    X = rng.normal(size=(batch, 1, 6, 6))
    y = rng.normal(size=(batch, 2))
    return params, X, y


$conv2d

def layers(params, X):
    a1 = np.tanh(conv2d(X, params["K1"], params["c1"]))
    a2 = np.tanh(conv2d(a1, params["K2"], params["c2"]))
    flat = a2.reshape(a2.shape[0], -1)
    return a1, a2, flat, flat @ params["W"] + params["b"]


def forward(params, X, y):
    """The loss: mean over the batch of the squared error of each sample."""
    out = layers(params, X)[-1]
    return np.mean(np.sum((out - y) ** 2, axis=1))


$begin
def conv2d_backward(x, K, dout):
    """Gradients of conv2d(x, K, c) given dout = dL/d(output): (dx, dK, dc)."""
    k = K.shape[2]
    dx = np.zeros_like(x)
    dK = np.zeros_like(K)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = x[:, :, i:i + k, j:j + k]
            dK += np.tensordot(dout[:, :, i, j], window, axes=([0], [0]))
            dx[:, :, i:i + k, j:j + k] += np.tensordot(dout[:, :, i, j], K, axes=([1], [0]))
    return dx, dK, dout.sum(axis=(0, 2, 3))


def backward(params, X, y):
    """The gradient of forward(params, X, y) with respect to each array in params."""
    a1, a2, flat, out = layers(params, X)
    dout = 2 * (out - y) / X.shape[0]
    dW = flat.T @ dout
    db = dout.sum(axis=0)
    dz2 = (dout @ params["W"].T).reshape(a2.shape) * (1 - a2 ** 2)
    da1, dK2, dc2 = conv2d_backward(a1, params["K2"], dz2)
    dz1 = da1 * (1 - a1 ** 2)
    _, dK1, dc1 = conv2d_backward(X, params["K1"], dz1)
    return {"K1": dK1, "c1": dc1, "K2": dK2, "c2": dc2, "W": dW, "b": db}
$end
''')

_BATCHNORM = Template('''\
import numpy as np

EXERCISE = "$name"
DTYPE = np.float64
BATCH = 8
EPS = 1e-5


def make_inputs(seed=0, batch=BATCH):
    """Example inputs (params, X, y) from a seed."""
    rng = np.random.default_rng(seed)
    params = {
        "W1": rng.normal(0.0, 0.6, size=(3, 4)),
        "b1": rng.normal(0.0, 0.1, size=4),
        "gamma": rng.normal(1.0, 0.2, size=4),
        "beta": rng.normal(0.0, 0.2, size=4),
        "W2": rng.normal(0.0, 0.5, size=(4, 2)),
        "b2": rng.normal(0.0, 0.1, size=2),
    }
    X = rng.normal(size=(batch, 3))
    y = rng.normal(size=(batch, 2))
    return params, X, y


def forward(params, X, y):
    """The loss: linear, batch normalization (batch statistics), tanh, linear, squared error."""
    z = X @ params["W1"] + params["b1"]
    mu = z.mean(axis=0)
    var = ((z - mu) ** 2).mean(axis=0)
    xhat = (z - mu) / np.sqrt(var + EPS)
    a = np.tanh(params["gamma"] * xhat + params["beta"])
    out = a @ params["W2"] + params["b2"]
    return np.mean(np.sum((out - y) ** 2, axis=1))


$begin
def backward(params, X, y):
    """The gradient of forward(params, X, y) with respect to each array in params."""
    n = X.shape[0]
    z = X @ params["W1"] + params["b1"]
    mu = z.mean(axis=0)
    var = ((z - mu) ** 2).mean(axis=0)
    inv_std = 1.0 / np.sqrt(var + EPS)
    xhat = (z - mu) * inv_std
    a = np.tanh(params["gamma"] * xhat + params["beta"])
    out = a @ params["W2"] + params["b2"]
    dout = 2 * (out - y) / n
    dW2 = a.T @ dout
    db2 = dout.sum(axis=0)
    dh = (dout @ params["W2"].T) * (1 - a ** 2)
    dgamma = (dh * xhat).sum(axis=0)
    dbeta = dh.sum(axis=0)
    dxhat = dh * params["gamma"]
    dz = inv_std * (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0))
    dW1 = X.T @ dz
    db1 = dz.sum(axis=0)
    return {"W1": dW1, "b1": db1, "gamma": dgamma, "beta": dbeta, "W2": dW2, "b2": db2}
$end
''')

_RNN = Template('''\
import numpy as np

EXERCISE = "$name"
DTYPE = np.float64
BATCH = 3
STEPS = 4


def make_inputs(seed=0, batch=BATCH):
    """Example inputs (params, X, y) from a seed: X is (batch, STEPS, 2), y is (batch, STEPS, 2)."""
    rng = np.random.default_rng(seed)
    params = {
        "Wx": rng.normal(0.0, 0.5, size=(2, 3)),
        "Wh": rng.normal(0.0, 0.5, size=(3, 3)),
        "b": rng.normal(0.0, 0.1, size=3),
        "Wo": rng.normal(0.0, 0.5, size=(3, 2)),
        "bo": rng.normal(0.0, 0.1, size=2),
    }
    X = rng.normal(size=(batch, STEPS, 2))
    y = rng.normal(size=(batch, STEPS, 2))
    return params, X, y


def states(params, X):
    """The hidden states h[0] = 0, h[t + 1] = tanh(X[:, t] @ Wx + h[t] @ Wh + b)."""
    h = [np.zeros((X.shape[0], params["Wh"].shape[0]), dtype=np.result_type(X, params["Wh"]))]
    for t in range(X.shape[1]):
        h.append(np.tanh(X[:, t] @ params["Wx"] + h[t] @ params["Wh"] + params["b"]))
    return h


def forward(params, X, y):
    """The loss: an output at every time step, out[:, t] = h[t + 1] @ Wo + bo; squared error summed
    over steps and outputs, averaged over the batch."""
    h = states(params, X)
    out = np.stack(h[1:], axis=1) @ params["Wo"] + params["bo"]
    return np.mean(np.sum((out - y) ** 2, axis=(1, 2)))


$begin
def backward(params, X, y):
    """The gradient of forward(params, X, y) with respect to each array in params."""
    h = states(params, X)
    hs = np.stack(h[1:], axis=1)
    out = hs @ params["Wo"] + params["bo"]
    dout = 2 * (out - y) / X.shape[0]
    grads = {"Wo": np.einsum("nth,nto->ho", hs, dout), "bo": dout.sum(axis=(0, 1))}
    dhs = dout @ params["Wo"].T
    dWx = np.zeros_like(params["Wx"])
    dWh = np.zeros_like(params["Wh"])
    db = np.zeros_like(params["b"])
    dh_next = np.zeros_like(h[0])
    for t in reversed(range(X.shape[1])):
        dh = dhs[:, t] + dh_next
        dz = dh * (1 - h[t + 1] ** 2)
        dWx += X[:, t].T @ dz
        dWh += h[t].T @ dz
        db += dz.sum(axis=0)
        dh_next = dz @ params["Wh"].T
    grads.update(Wx=dWx, Wh=dWh, b=db)
    return grads
$end
''')

_EMBEDDING = Template('''\
import numpy as np

EXERCISE = "$name"
DTYPE = np.float64
BATCH = 6
VOCAB, LENGTH, DIM = 5, 3, 3


def make_inputs(seed=0, batch=BATCH):
    """Example inputs (params, X, y) from a seed: X holds token ids (batch, LENGTH) in 0..VOCAB-1."""
    rng = np.random.default_rng(seed)
    params = {
        "E": rng.normal(0.0, 1.0, size=(VOCAB, DIM)),
        "W1": rng.normal(0.0, 0.4, size=(LENGTH * DIM, 4)),
        "b1": rng.normal(0.0, 0.1, size=4),
        "W2": rng.normal(0.0, 0.5, size=(4, 2)),
        "b2": rng.normal(0.0, 0.1, size=2),
    }
    X = rng.integers(0, VOCAB, size=(batch, LENGTH))
    y = rng.normal(size=(batch, 2))
    return params, X, y


def forward(params, X, y):
    """The loss: embedding lookup E[X], flattened per sample, a tanh layer, a linear layer,
    squared error averaged over the batch."""
    e = params["E"][X].reshape(X.shape[0], -1)
    a = np.tanh(e @ params["W1"] + params["b1"])
    out = a @ params["W2"] + params["b2"]
    return np.mean(np.sum((out - y) ** 2, axis=1))


$begin
def backward(params, X, y):
    """The gradient of forward(params, X, y) with respect to each array in params."""
    E = params["E"]
    e = E[X].reshape(X.shape[0], -1)
    a = np.tanh(e @ params["W1"] + params["b1"])
    out = a @ params["W2"] + params["b2"]
    dout = 2 * (out - y) / X.shape[0]
    dW2 = a.T @ dout
    db2 = dout.sum(axis=0)
    dz = (dout @ params["W2"].T) * (1 - a ** 2)
    dW1 = e.T @ dz
    db1 = dz.sum(axis=0)
    de = (dz @ params["W1"].T).reshape(X.shape[0], X.shape[1], E.shape[1])
    dE = np.zeros_like(E)
    np.add.at(dE, X, de)
    return {"E": dE, "W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
$end
''')

# -- operators --------------------------------------------------------------------------------------
_POOL = Template('''\
import numpy as np

EXERCISE = "$name"
DTYPE = np.float64
BATCH = 3


def make_inputs(seed=0, batch=BATCH):
    """Example inputs (params, X, y) from a seed: X holds batch single-channel 6 x 6 images."""
    rng = np.random.default_rng(seed)
    params = {
        "K": rng.normal(0.0, 0.4, size=(2, 1, 3, 3)),
        "c": rng.normal(0.0, 0.1, size=2),
        "W": rng.normal(0.0, 0.4, size=(8, 2)),
        "b": rng.normal(0.0, 0.1, size=2),
    }
    X = rng.normal(size=(batch, 1, 6, 6))
    y = rng.normal(size=(batch, 2))
    return params, X, y


$conv2d

def pool(a):
    """$pool_doc"""
    n, ch, h, w = a.shape
    return a.reshape(n, ch, h // 2, 2, w // 2, 2).$pool_op(axis=(3, 5))


def layers(params, X):
    a = np.tanh(conv2d(X, params["K"], params["c"]))
    flat = pool(a).reshape(X.shape[0], -1)
    return a, flat, flat @ params["W"] + params["b"]


def forward(params, X, y):
    """The loss: mean over the batch of the squared error of each sample."""
    out = layers(params, X)[-1]
    return np.mean(np.sum((out - y) ** 2, axis=1))


$begin
def pool_backward(a, dout):
    """The gradient with respect to a of sum(dout * pool(a))."""
    n, ch, h, w = a.shape
    windows = a.reshape(n, ch, h // 2, 2, w // 2, 2)
$pool_backward
    return da.reshape(a.shape)


def backward(params, X, y):
    """The gradient of forward(params, X, y) with respect to each array in params."""
    a, flat, out = layers(params, X)
    dout = 2 * (out - y) / X.shape[0]
    dW = flat.T @ dout
    db = dout.sum(axis=0)
    dpooled = (dout @ params["W"].T).reshape(a.shape[0], a.shape[1], a.shape[2] // 2, a.shape[3] // 2)
    dz = pool_backward(a, dpooled) * (1 - a ** 2)
    k = params["K"].shape[2]
    dK = np.zeros_like(params["K"])
    for i in range(dz.shape[2]):
        for j in range(dz.shape[3]):
            dK += np.tensordot(dz[:, :, i, j], X[:, :, i:i + k, j:j + k], axes=([0], [0]))
    return {"K": dK, "c": dz.sum(axis=(0, 2, 3)), "W": dW, "b": db}
$end
''')

_SOFTMAX = Template('''\
import numpy as np

EXERCISE = "$name"
DTYPE = np.$dtype
BATCH = 4
CLASSES = 5


def make_inputs(seed=0, batch=BATCH):
    """Example inputs {"x": (batch, CLASSES)} from a seed."""
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(0.0, 1.5, size=(batch, CLASSES)).astype(DTYPE)}


def f(inputs):
    """Softmax over the last axis: out[i, j] = exp(x[i, j]) / sum_k exp(x[i, k])."""
    x = inputs["x"]
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


$begin
def f_vjp(inputs, dout):
    """The gradient of sum(dout * f(inputs)) with respect to inputs["x"]."""
    s = f(inputs)
    dx = s * (dout - (s * dout).sum(axis=-1, keepdims=True))
    return {"x": dx}
$end
''')

_LAYERNORM = Template('''\
import numpy as np

EXERCISE = "$name"
DTYPE = np.float64
BATCH = 3
FEATURES = 6
EPS = 1e-5


def make_inputs(seed=0, batch=BATCH):
    """Example inputs {"x": (batch, FEATURES), "gamma": (FEATURES,), "beta": (FEATURES,)} from a seed."""
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(0.5, 1.0, size=(batch, FEATURES)),
            "gamma": rng.normal(1.0, 0.3, size=FEATURES),
            "beta": rng.normal(0.0, 0.3, size=FEATURES)}


def f(inputs):
    """Layer normalization: each sample (row) normalized over its features, then scaled and shifted."""
    x = inputs["x"]
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return inputs["gamma"] * (x - mu) / np.sqrt(var + EPS) + inputs["beta"]


$begin
def f_vjp(inputs, dout):
    """The gradient of sum(dout * f(inputs)) with respect to x, gamma and beta."""
    x = inputs["x"]
    mu = x.mean(axis=-1, keepdims=True)
    inv_std = 1.0 / np.sqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + EPS)
    xhat = (x - mu) * inv_std
    dxhat = dout * inputs["gamma"]
    dx = inv_std * (dxhat - dxhat.mean(axis=-1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return {"x": dx, "gamma": (dout * xhat).sum(axis=0), "beta": dout.sum(axis=0)}
$end
''')


def _layer(template: Template, name: str, **extra: str) -> str:
    return template.substitute(name=name, begin=BEGIN.format(what="the backward pass"), end=END, conv2d=_CONV2D,
                               **extra) \
        + _MAIN_NETWORK


def _operator(template: Template, name: str, **extra: str) -> str:
    return template.substitute(name=name, begin=BEGIN.format(what="f_vjp()"), end=END, **extra) + _MAIN_OPERATOR


def _network_exercise(name: str, title: str, act: str, replacements: tuple[tuple[str, str], ...], marker: str,
                      hints: tuple[str, str, str], loss: str = "mse", topic: str = "", **sizes) -> Exercise:
    source, task = _mlp(name, act, loss, **sizes)
    return Exercise(name=name, title=title, kind="network", family="network", source=source,
                    replacements=replacements, marker=marker, task=task, hints=hints,
                    dtype=sizes.get("dtype", "float64"), lesson=name, topic=topic, fresh_batches=(0, 9))


def _build() -> tuple[Exercise, ...]:
    ex: list[Exercise] = [
        _network_exercise(
            "sigmoid-prime-of-z", "the derivative of the hidden sigmoid", "sigmoid",
            (("dz1 = da1 * a1 * (1 - a1)", "dz1 = da1 * z1 * (1 - z1)"),), "a1 * (1 - a1)",
            ("W1 and b1 are wrong while W2 and b2 are right: look at the step that takes the gradient "
             "through the hidden activation, from da1 to dz1.",
             "The local derivative of the sigmoid is evaluated at the wrong quantity: the formula's shape "
             "is fine, what it is fed is not.",
             "For a = sigmoid(z): da/dz = sigmoid(z) (1 - sigmoid(z)), and sigmoid(z) is a itself, the layer's "
             "output, so dL/dz = dL/da * a (1 - a) elementwise."),
            topic="activation derivative"),
        _network_exercise(
            "tanh-one-minus-a", "the derivative of the hidden tanh", "tanh",
            (("dz1 = da1 * (1 - a1 ** 2)", "dz1 = da1 * (1 - a1)"),), "(1 - a1 ** 2)",
            ("Only W1 and b1 are off: the gradient goes wrong when it passes the hidden activation.",
             "The activation's derivative is not the one of tanh: a power is missing.",
             "d tanh(z)/dz = 1 - tanh(z)^2, and tanh(z) is the layer's output a, so dL/dz = dL/da * (1 - a^2)."),
            topic="activation derivative"),
        _network_exercise(
            "missing-transpose", "the weight gradient of the first layer", "tanh",
            (("dW1 = X.T @ dz1", "dW1 = dz1.T @ X"),), "X.T @ dz1",
            ("W1 alone is wrong: every other gradient is right, so look at the line that forms dW1.",
             "The shape is right only because W1 is square: the product is taken in the wrong orientation "
             "(rows and columns exchanged).",
             "dL/dW1[i, j] = sum over samples n of X[n, i] * dL/dz1[n, j]: the input feature index comes "
             "first, the hidden unit second."),
            topic="matrix calculus", d=3, h=3, o=2),
    ]
    source, task = _mlp("delta-not-transposed", "relu", "mse", d=3, h=3, o=3, kink=True)
    ex.append(Exercise(
        name="delta-not-transposed", title="passing the gradient down through W2 (ReLU, with kinks)",
        kind="network", family="network", source=source,
        replacements=(("da1 = dout @ W2.T", "da1 = dout @ W2"),), marker="dout @ W2.T", task=task,
        hints=("W2 and b2 are right; W1 and b1 are wrong. The gradient goes wrong on its way from the "
               "output back to the hidden layer (da1). The ReLU kinks are not the problem: the grader "
               "accepts either one-sided derivative there.",
               "A matrix is used in the wrong orientation; its shape happens to fit because W2 is square.",
               "out[n, k] = sum_j a1[n, j] W2[j, k], so dL/da1[n, j] = sum_k dL/dout[n, k] W2[j, k]: the "
               "sum runs over W2's second index."),
        lesson="delta-not-transposed", topic="matrix calculus; ReLU kinks", fresh_batches=(0, 9)))
    ex += [
        _network_exercise(
            "missing-mean", "the gradient of a mean squared error", "tanh",
            (("    dout = 2 * (out - y) / n", "    dout = 2 * (out - y)"),), "2 * (out - y) / n",
            ("Every tensor is wrong, by the same amount: the error enters at the very start of the "
             "backward pass, dout.",
             "A constant factor: every gradient is too large by a factor that depends on the batch.",
             "loss = (1/N) sum_n sum_k (out[n, k] - y[n, k])^2, so dL/dout[n, k] = (2/N) (out[n, k] - y[n, k]) "
             "with N the batch size."),
            topic="loss gradient"),
        _network_exercise(
            "factor-two", "the gradient of a squared error", "sigmoid",
            (("    dout = 2 * (out - y) / n", "    dout = (out - y) / n"),), "2 * (out - y) / n",
            ("Every tensor is wrong by the same ratio: look at dout, where the backward pass starts.",
             "A constant factor, the same for every batch size: one half of the right size.",
             "d/du u^2 = 2u, so with loss = (1/N) sum (out - y)^2: dL/dout = (2/N) (out - y)."),
            topic="loss gradient"),
        _network_exercise(
            "bias-one-sample", "the bias gradients", "tanh",
            (("    db2 = dout.sum(axis=0)", "    db2 = dout[0]"),
             ("    db1 = dz1.sum(axis=0)", "    db1 = dz1[0]")), "dz1.sum(axis=0)",
            ("W1 and W2 are right; only the biases b1 and b2 are wrong.",
             "Only part of the batch contributes to the bias gradients.",
             "b is added to every sample's pre-activation, z[n] = ... + b, so dL/db = sum over all samples n "
             "of dL/dz[n]."),
            topic="batch reduction", n=5),
        _network_exercise(
            "float32-real-bug", "the loss gradient, in float32", "tanh",
            (("    dout = 2 * (out - y) / n", "    dout = 2 * (out - y) / (n - 1)"),), "2 * (out - y) / n",
            ("Every tensor is wrong by the same ratio, so the error is in dout. It is not float32 rounding: "
             "the grader's tolerance allows for float32, and the error is far larger.",
             "A constant factor slightly above 1 that depends on the batch size: the wrong count.",
             "The loss is a mean over N samples: loss = (1/N) sum_n sum_k (out - y)^2, so "
             "dL/dout = (2/N) (out - y), with exactly N in the denominator."),
            topic="float32", n=11, dtype="float32"),
        _network_exercise(
            "softmax-missing", "the gradient of softmax cross-entropy", "tanh",
            (("    p = np.exp(out - out.max(axis=1, keepdims=True))\n"
              "    p = p / p.sum(axis=1, keepdims=True)\n"
              "    dout = (p - y) / n", "    dout = (out - y) / n"),), "(p - y) / n",
            ("Every tensor is wrong, starting at dout, the gradient with respect to the logits.",
             "The logits are used where the probabilities belong: a function of out is missing.",
             "For loss = -(1/N) sum_n sum_k y[n, k] log softmax(out[n])_k with one-hot y: "
             "dL/dout[n] = (softmax(out[n]) - y[n]) / N."),
            loss="softmax", topic="loss gradient", o=3),
    ]
    ex += [
        Exercise(
            name="net-conv-dx-assign", title="a convolution's input gradient", kind="network", family="layer",
            source=_layer(_CONV, "net-conv-dx-assign"),
            replacements=(("dx[:, :, i:i + k, j:j + k] += ", "dx[:, :, i:i + k, j:j + k] = "),),
            marker="dx[:, :, i:i + k, j:j + k] += ",
            task=("A small CNN: conv 1 -> 2 channels (3 x 3) and tanh, conv 2 -> 2 channels (3 x 3) and tanh, "
                  "flatten, a linear layer, squared error averaged over the batch. The convolutions are "
                  "written with loops over output positions; conv2d_backward() returns (dx, dK, dc)."),
            hints=("K2, c2, W and b are right; K1 and c1, the first convolution's parameters, are wrong. They "
                   "receive da1, the input gradient of the second convolution: look at dx in "
                   "conv2d_backward().",
                   "The windows of a stride-1 convolution overlap: an input pixel is in several windows, "
                   "and some of its contributions are lost.",
                   "x[n, c, p, q] feeds every output (i, j) whose window covers it, so dL/dx[n, c, p, q] = "
                   "sum over those (i, j) and filters f of dout[n, f, i, j] K[f, c, p - i, q - j]."),
            lesson="net-conv-dx-assign", topic="convolution", fresh_batches=(0, 3)),
        Exercise(
            name="net-batchnorm-stats-constant", title="backward through batch normalization", kind="network",
            family="layer", source=_layer(_BATCHNORM, "net-batchnorm-stats-constant"),
            replacements=(("    dz = inv_std * (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0))",
                           "    dz = inv_std * dxhat"),), marker="dxhat.mean(axis=0)",
            task=("A linear layer (3 -> 4), batch normalization with batch statistics (mean and variance "
                  "over the batch, then gamma and beta), tanh, a linear layer (4 -> 2), squared error "
                  "averaged over the batch."),
            hints=("gamma, beta, W2 and b2 are right; W1 and b1 are wrong: the gradient through the "
                   "normalization itself (dz from dxhat) is the problem. Notice that the loss cannot depend "
                   "on b1 at all.",
                   "The batch mean and variance are treated as constants, but they depend on every sample "
                   "of the batch: two terms are missing.",
                   "With xhat = (z - mu) / sigma over a batch of N: dL/dz = (1/sigma) (g - mean_n(g) - "
                   "xhat * mean_n(g * xhat)), where g = dL/dxhat and the means run over the batch."),
            lesson="net-batchnorm-stats-constant", topic="normalization", fresh_batches=(0, 6)),
        Exercise(
            name="net-rnn-no-carry", title="backpropagation through time", kind="network", family="layer",
            source=_layer(_RNN, "net-rnn-no-carry"),
            replacements=(("        dh = dhs[:, t] + dh_next\n", "        dh = dhs[:, t]\n"),
                          ("    dh_next = np.zeros_like(h[0])\n", ""),
                          ("        dh_next = dz @ params[\"Wh\"].T\n", "")),
            marker="dhs[:, t] + dh_next",
            task=("A vanilla RNN over 4 time steps: h[t + 1] = tanh(X[:, t] @ Wx + h[t] @ Wh + b) from "
                  "h[0] = 0, an output h[t + 1] @ Wo + bo at every step, squared error summed over steps and "
                  "averaged over the batch."),
            hints=("Wo and bo are right; Wx, Wh and b are wrong: the loop over time steps, and what dh "
                   "holds at each step.",
                   "A term from the next time step is missing: h[t] also influences the loss through "
                   "h[t + 1], h[t + 2], ...",
                   "dL/dh[t] = dL/dout[t] @ Wo.T + dL/dz[t + 1] @ Wh.T, where dL/dz[t + 1] = dL/dh[t + 1] * "
                   "(1 - h[t + 1]^2), and the second term is zero only at the last step."),
            lesson="net-rnn-no-carry", topic="recurrent", fresh_batches=(0, 5)),
        Exercise(
            name="net-embedding-assign", title="the embedding table's gradient", kind="network", family="layer",
            source=_layer(_EMBEDDING, "net-embedding-assign"),
            replacements=(("    np.add.at(dE, X, de)\n", "    dE[X] = de\n"),), marker="np.add.at(dE, X, de)",
            task=("Token ids X (6 samples of 3 tokens, a vocabulary of 5) are looked up in an embedding "
                  "table E, flattened per sample, then a tanh layer (9 -> 4), a linear layer (4 -> 2), squared "
                  "error averaged over the batch. Token ids repeat within the batch."),
            hints=("W1, b1, W2 and b2 are right; only the table E is wrong: the last step, from de to dE.",
                   "Rows of E used more than once (a repeated token) keep only one of their contributions.",
                   "E[v] is used at every position (n, l) with X[n, l] = v, so dL/dE[v] = sum over all those "
                   "positions of dL/de[n, l]."),
            lesson="net-embedding-assign", topic="embedding", fresh_batches=(0, 8)),
        Exercise(
            name="net-maxpool-grad-to-window", title="the gradient of 2 x 2 max pooling", kind="network",
            family="layer", source=_layer(_POOL, "net-maxpool-grad-to-window", pool_op="max",
                                          pool_doc="2 x 2 max pooling, stride 2: the largest of each window.",
                                          pool_backward="    mask = windows == windows.max(axis=(3, 5), keepdims=True)\n"
                                                        "    da = mask * dout[:, :, :, None, :, None]"),
            replacements=(("    mask = windows == windows.max(axis=(3, 5), keepdims=True)\n"
                           "    da = mask * dout[:, :, :, None, :, None]",
                           "    da = np.ones_like(windows) * dout[:, :, :, None, :, None]"),),
            marker="windows.max(axis=(3, 5), keepdims=True)",
            task=("A convolution 1 -> 2 channels (3 x 3) on 6 x 6 images and tanh, 2 x 2 max pooling with "
                  "stride 2, flatten, a linear layer, squared error averaged over the batch."),
            hints=("W and b are right; K and c, the convolution's parameters, are wrong. They receive their "
                   "gradient through the pooling: look at pool_backward().",
                   "The pooled value's gradient reaches elements of the window that did not produce it.",
                   "max(a1, a2, a3, a4) changes only with its largest argument: d max / d a_i = 1 for the "
                   "largest element of the window and 0 for the others."),
            lesson="net-maxpool-grad-to-window", topic="pooling", fresh_batches=(0, 2)),
        Exercise(
            name="net-avgpool-wrong-count", title="the gradient of 2 x 2 average pooling", kind="network",
            family="layer", source=_layer(_POOL, "net-avgpool-wrong-count", pool_op="mean",
                                          pool_doc="2 x 2 average pooling, stride 2: the mean of each window.",
                                          pool_backward="    da = np.ones_like(windows) * dout[:, :, :, None, :, None] / 4"),
            replacements=(("dout[:, :, :, None, :, None] / 4", "dout[:, :, :, None, :, None] / 2"),),
            marker="dout[:, :, :, None, :, None] / 4",
            task=("A convolution 1 -> 2 channels (3 x 3) on 6 x 6 images and tanh, 2 x 2 average pooling "
                  "with stride 2, flatten, a linear layer, squared error averaged over the batch."),
            hints=("W and b are right; K and c, the convolution's parameters, are wrong, all by the same "
                   "ratio: look at pool_backward().",
                   "A constant factor: the count of elements in a window is wrong.",
                   "The pooled value is (a1 + a2 + a3 + a4) / 4, so d pooled / d a_i = 1/4 for every element "
                   "of the window."),
            lesson="net-avgpool-wrong-count", topic="pooling", fresh_batches=(0, 2)),
        Exercise(
            name="softmax-no-rowsum", title="the vector-Jacobian product of softmax",
            kind="operator", family="operator", source=_operator(_SOFTMAX, "softmax-no-rowsum", dtype="float32"),
            replacements=(("    dx = s * (dout - (s * dout).sum(axis=-1, keepdims=True))\n", "    dx = s * dout\n"),),
            marker="(s * dout).sum(",
            task="The operator f is a softmax over the last axis of x (4 rows of 5 classes, float32).",
            hints=("The gradient of x is wrong in every row, and the error is the same kind in each row: "
                   "look at how dx is formed from s and dout.",
                   "Only the diagonal of each row's Jacobian is used: a term shared by the whole row, that "
                   "comes from the normalization, is missing.",
                   "d s_j / d x_i = s_j (delta_ij - s_i), so (dout^T J)_i = s_i (dout_i - sum_j dout_j s_j)."),
            dtype="float32", lesson="softmax-no-rowsum", topic="operator", fresh_batches=(0, 3)),
        Exercise(
            name="layernorm-batch-axis", title="the vector-Jacobian product of layer normalization",
            kind="operator", family="operator", source=_operator(_LAYERNORM, "layernorm-batch-axis"),
            replacements=(("dxhat - dxhat.mean(axis=-1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=-1, "
                           "keepdims=True)",
                           "dxhat - dxhat.mean(axis=0, keepdims=True) - xhat * (dxhat * xhat).mean(axis=0, "
                           "keepdims=True)"),),
            marker="dxhat.mean(axis=-1, keepdims=True)",
            task=("The operator f is layer normalization: each row of x (3 samples of 6 features) is "
                  "normalized with its own mean and variance over the features, then scaled by gamma and "
                  "shifted by beta."),
            hints=("gamma and beta are right; the gradient of x is wrong, and one sample's output appears to "
                   "depend on another sample's input.",
                   "The statistics are reduced over the wrong axis: the means in the backward pass mix "
                   "samples instead of features.",
                   "Per row, with F features, g = dout * gamma and xhat the normalized row: dL/dx = (1/sigma) "
                   "(g - mean_features(g) - xhat * mean_features(g * xhat))."),
            lesson="layernorm-batch-axis", topic="operator", fresh_batches=(0, 5)),
    ]
    return tuple(ex)


EXERCISES: tuple[Exercise, ...] = _build()
_BY_NAME = {e.name: e for e in EXERCISES}


def get_exercise(name: str) -> Exercise:
    """The exercise ``name``; a ValueError lists the names."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"no exercise {name!r}; the exercises are: {', '.join(_BY_NAME)}") from None


def write_exercise(exercise: Exercise, out_dir: str = ".", *, force: bool = False) -> str:
    """Write the student file into ``out_dir``; refuses to overwrite an existing file unless ``force``.
    Returns the path."""
    import os  # noqa: PLC0415

    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, exercise.filename())
    if os.path.exists(path) and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(exercise.student_source())
    return path
