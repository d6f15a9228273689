"""Hand-written backprop code in three styles, each with switchable planted bugs, for the
checker's tests. Written the way users write it (not with the reference package), so the
checker is tested on code it has never seen.
"""
from __future__ import annotations

import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# -- style 1: functional, the origin document's naming (W1, b1, ...), 3 layers ----------------------
def functional_mlp(bug: str | None = None):
    """tanh -> sigmoid -> identity, mean squared error over the batch; widths 3-3-3-2 (W2 square)."""

    def fn(params, X, y):
        W1, b1, W2, b2, W3, b3 = (params[k] for k in ("W1", "b1", "W2", "b2", "W3", "b3"))
        n = X.shape[0]
        z1 = X @ W1 + b1
        a1 = np.tanh(z1)
        z2 = a1 @ W2 + b2
        a2 = sigmoid(z2)
        out = a2 @ W3 + b3
        loss = np.sum((out - y) ** 2) / n
        d_out = 2 * (out - y) / n
        if bug == "factor_half":          # the 2 of d(x^2)/dx forgotten
            d_out = (out - y) / n
        if bug == "missing_mean":         # 1/N of the mean missing in backward
            d_out = 2 * (out - y)
        g = {"W3": a2.T @ d_out, "b3": d_out.sum(axis=0)}
        if bug == "bias_one_sample":      # the batch sum forgotten: first sample only
            g["b3"] = d_out[0].copy()
        if bug == "wrong_layer_weights":  # backprop through W2 instead of W3 (a shape-compatible slip)
            d_a2 = d_out @ W2[:, :2].T
        else:
            d_a2 = d_out @ W3.T
        if bug == "sigmoid_of_pre":       # x * (1 - x) applied to the pre-activation
            d_z2 = d_a2 * z2 * (1 - z2)
        else:
            d_z2 = d_a2 * a2 * (1 - a2)
        g["W2"] = a1.T @ d_z2
        if bug == "transpose":            # a missing transpose on the square W2
            g["W2"] = (a1.T @ d_z2).T
        g["b2"] = d_z2.sum(axis=0)
        d_a1 = d_z2 @ W2.T
        if bug == "tanh_as_one_minus_a":  # tanh' written as 1 - a instead of 1 - a^2
            d_z1 = d_a1 * (1 - a1)
        else:
            d_z1 = d_a1 * (1 - a1 ** 2)
        g["W1"] = X.T @ d_z1
        g["b1"] = d_z1.sum(axis=0)
        if bug == "sign":                 # one layer's sign flipped
            g["W2"] = -g["W2"]
            g["b2"] = -g["b2"]
        if bug == "one_element":          # one element off by 1 %
            g["W1"] = g["W1"].copy()
            g["W1"][1, 2] *= 1.01
        if bug == "scaled_1e-4":          # a whole tensor off by 1e-4 relative
            g["W3"] = g["W3"] * 1.0001
        if bug == "element_1e-4":         # a single element off by 1e-4 relative
            g["W2"] = g["W2"].copy()
            g["W2"][0, 1] *= 1.0001
        return loss, g

    return fn


def functional_params(dtype=np.float64, seed: int = 0):
    rng = np.random.default_rng(seed)
    shapes = {"W1": (4, 3), "b1": (3,), "W2": (3, 3), "b2": (3,), "W3": (3, 2), "b3": (2,)}
    return {k: rng.normal(0, 0.7, size=s).astype(dtype) for k, s in shapes.items()}


def functional_batch(dtype=np.float64, n: int = 5, seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype(dtype), rng.normal(size=(n, 2)).astype(dtype)


# -- style 2: layer classes, torch-like names and (out, in) weights ---------------------------------
class Linear:
    def __init__(self, name):
        self.name = name

    def forward(self, params, x):
        self.x = x
        return x @ params[f"{self.name}.weight"].T + params[f"{self.name}.bias"]

    def backward(self, params, d_out, grads, bug=None):
        w = params[f"{self.name}.weight"]
        grads[f"{self.name}.weight"] = d_out.T @ self.x if bug != "transpose" else (d_out.T @ self.x).T
        grads[f"{self.name}.bias"] = d_out.sum(axis=0)
        return d_out @ w


class Sigmoid:
    def forward(self, x):
        self.out = sigmoid(x)
        return self.out

    def backward(self, d_out, bug=None):
        return d_out * self.out * (1 - self.out)


class ClassMLP:
    """fc1 (4->4, square) -> sigmoid -> fc2 (4->1); binary cross-entropy on logits."""

    def __init__(self, bug: str | None = None):
        self.bug = bug
        self.fc1, self.act, self.fc2 = Linear("fc1"), Sigmoid(), Linear("fc2")

    def __call__(self, params, X, y):
        n = X.shape[0]
        logits = self.fc2.forward(params, self.act.forward(self.fc1.forward(params, X)))
        if self.bug == "stale_cache":  # a monitoring forward on other data overwrites the cache
            self.fc2.forward(params, self.act.forward(self.fc1.forward(params, X[::-1].copy())))
        loss = np.sum(np.logaddexp(0, logits) - y * logits) / n
        d = (sigmoid(logits) - y) / n
        if self.bug == "sign":
            d = -d
        grads = {}
        d = self.fc2.backward(params, d, grads)
        d = self.act.backward(d)
        self.fc1.backward(params, d, grads, bug=self.bug)
        return loss, grads


def class_params(dtype=np.float64, seed: int = 2):
    rng = np.random.default_rng(seed)
    shapes = {"fc1.weight": (4, 4), "fc1.bias": (4,), "fc2.weight": (1, 4), "fc2.bias": (1,)}
    return {k: rng.normal(0, 0.8, size=s).astype(dtype) for k, s in shapes.items()}


def class_batch(dtype=np.float64, n: int = 6, seed: int = 3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype(dtype), rng.integers(0, 2, size=(n, 1)).astype(dtype)


# -- style 3: a dict of layers with TF-like names, softmax cross-entropy ----------------------------
LAYERS = {"hidden": ("hidden/kernel", "hidden/bias"), "out": ("out/kernel", "out/bias")}


def dict_layers_fn(bug: str | None = None):
    def fn(params, X, y):
        n = X.shape[0]
        h = X @ params["hidden/kernel"] + params["hidden/bias"]
        a = np.where(h > 0, h, 0.1 * h)  # leaky relu, slope 0.1
        z = a @ params["out/kernel"] + params["out/bias"]
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = -np.sum(y * logp) / n
        if bug == "softmax_missing":      # the gradient of CE written as -y/N (softmax forgotten)
            dz = -y / n
        else:
            dz = (np.exp(logp) - y) / n
        g = {"out/kernel": a.T @ dz, "out/bias": dz.sum(axis=0)}
        da = dz @ params["out/kernel"].T
        slope = np.where(h > 0, 1.0, 0.1)
        if bug == "slopes_swapped":
            slope = np.where(h > 0, 0.1, 1.0)
        dh = da * slope
        g["hidden/kernel"] = X.T @ dh
        g["hidden/bias"] = dh.sum(axis=0)
        if bug == "factor_two":
            g = {k: 2 * v for k, v in g.items()}
        return loss, g

    return fn


def dict_params(dtype=np.float64, seed: int = 4):
    rng = np.random.default_rng(seed)
    shapes = {"hidden/kernel": (3, 5), "hidden/bias": (5,), "out/kernel": (5, 3), "out/bias": (3,)}
    return {k: rng.normal(0, 0.8, size=s).astype(dtype) for k, s in shapes.items()}


def dict_batch(dtype=np.float64, n: int = 7, seed: int = 5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = np.eye(3)[rng.integers(0, 3, size=n)]
    return X.astype(dtype), y.astype(dtype)
