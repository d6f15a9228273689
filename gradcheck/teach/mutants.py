"""The lessons' code: each bug is a subclass of the textbook :class:`~gradcheck.teach.textbook.MLP`
that replaces one step of backward with the classic wrong version, next to the class that has it
right. Nothing here is edited at run time; a lesson names a (mutant, fix, method) triple and the
catalog shows the lines in which the two methods differ.
"""
from __future__ import annotations

import math

import numpy as np

from gradcheck.teach.textbook import MLP, Cache, sigmoid, softmax
from gradcheck_reference.activations import ACTIVATIONS

LEAKY_ALPHA = float(ACTIVATIONS["leaky_relu"].params["alpha"])
ELU_ALPHA = float(ACTIVATIONS["elu"].params["alpha"])
GELU_C = math.sqrt(2 / math.pi)


# -- hidden-layer activation derivatives, written from the layer's output a = f(z) ------------------
class SigmoidFromOutput(MLP):
    def derivative(self, i, c):
        z, a = c.z[i], c.a[i]
        return a * (1 - a)


class SigmoidPrimeOfZ(MLP):
    def derivative(self, i, c):
        z, a = c.z[i], c.a[i]
        return z * (1 - z)  # the origin document's x * (1 - x), fed the pre-activation


class SigmoidPrimeTwice(MLP):
    def derivative(self, i, c):
        z, a = c.z[i], c.a[i]
        return sigmoid(a) * (1 - sigmoid(a))  # sigmoid'(a): the sigmoid applied a second time


class TanhFromOutput(MLP):
    def derivative(self, i, c):
        z, a = c.z[i], c.a[i]
        return 1 - a**2


class TanhOneMinusA(MLP):
    def derivative(self, i, c):
        z, a = c.z[i], c.a[i]
        return 1 - a  # the square forgotten


class TanhOfActivation(MLP):
    def derivative(self, i, c):
        z, a = c.z[i], c.a[i]
        return 1 - np.tanh(a) ** 2  # tanh'(a): the formula for z, evaluated at a = tanh(z)


class ReluFromOutput(MLP):
    def derivative(self, i, c):
        z, a = c.z[i], c.a[i]
        return (a > 0).astype(a.dtype)


class ReluFromInputAtZero(MLP):
    def derivative(self, i, c):
        z, a = c.z[i], c.a[i]
        return (z >= 0).astype(z.dtype)  # relu'(0) = 1 here, 0 above: both are subgradients


class LeakyRelu(MLP):
    def derivative(self, i, c):
        z, a = c.z[i], c.a[i]
        return np.where(z > 0, 1.0, LEAKY_ALPHA)


class LeakyReluSwapped(MLP):
    def derivative(self, i, c):
        z, a = c.z[i], c.a[i]
        return np.where(z > 0, LEAKY_ALPHA, 1.0)  # the two slopes swapped


class EluFromOutput(MLP):
    def derivative(self, i, c):
        z, a = c.z[i], c.a[i]
        return np.where(z > 0, 1.0, a + ELU_ALPHA)  # alpha exp(z) = a + alpha for z <= 0


class EluWithoutExp(MLP):
    def derivative(self, i, c):
        z, a = c.z[i], c.a[i]
        return np.where(z > 0, 1.0, ELU_ALPHA)  # d/dz alpha (exp(z) - 1) without the exp


class SoftplusPrime(MLP):
    def derivative(self, i, c):
        z, a = c.z[i], c.a[i]
        return sigmoid(z)


class SoftplusPrimeOfOutput(MLP):
    def derivative(self, i, c):
        z, a = c.z[i], c.a[i]
        return sigmoid(a)  # softplus' = sigmoid, but of z, not of a = softplus(z)


class SwishPrime(MLP):
    def derivative(self, i, c):
        z, a = c.z[i], c.a[i]
        s = sigmoid(z)
        return s + z * s * (1 - s)


class SwishProductRuleDropped(MLP):
    def derivative(self, i, c):
        z, a = c.z[i], c.a[i]
        s = sigmoid(z)
        return z * s * (1 - s)  # d(z s)/dz = s + z s': the first term dropped


class GeluTanhPrime(MLP):
    def derivative(self, i, c):
        z, a = c.z[i], c.a[i]
        t = np.tanh(GELU_C * (z + 0.044715 * z**3))
        return 0.5 * (1 + t) + 0.5 * z * (1 - t**2) * GELU_C * (1 + 3 * 0.044715 * z**2)


class GeluInnerDerivativeDropped(MLP):
    def derivative(self, i, c):
        z, a = c.z[i], c.a[i]
        t = np.tanh(GELU_C * (z + 0.044715 * z**3))
        return 0.5 * (1 + t) + 0.5 * z * (1 - t**2)  # tanh(u)' = (1 - t^2) u': u' forgotten


# -- the loss gradient at the top of backward ------------------------------------------------------
class MSEDelta(MLP):
    def output_delta(self, c, y):
        out = c.a[-1]
        return 2 * (out - y) / len(out)


class MSEWithoutMean(MLP):
    def output_delta(self, c, y):
        out = c.a[-1]
        return 2 * (out - y)  # the loss is a mean over the batch; its gradient lost the 1/N


class MSEWithoutTwo(MLP):
    def output_delta(self, c, y):
        out = c.a[-1]
        return (out - y) / len(out)  # d(r^2)/dr = 2r: the 2 forgotten


class MSEMeanTwice(MLP):
    def output_delta(self, c, y):
        out = c.a[-1]
        return 2 * (out - y) / len(out) / len(out)  # 1/N here and again


class MSEOverNMinusOne(MLP):
    def output_delta(self, c, y):
        out = c.a[-1]
        return 2 * (out - y) / (len(out) - 1)  # the sample-variance habit: N - 1


class OriginDelta(MLP):
    def output_delta(self, c, y):
        out = c.a[-1]
        return (out - y) * out * (1 - out)


class OriginErrorSign(MLP):
    def output_delta(self, c, y):
        out = c.a[-1]
        return (y - out) * out * (1 - out)  # the origin document's error y - out is MINUS dL/dout


class SoftmaxCrossEntropy(MLP):
    def output_delta(self, c, y):
        z = c.z[-1]
        return (softmax(z) - y) / len(z)


class SoftmaxMissing(MLP):
    def output_delta(self, c, y):
        z = c.z[-1]
        return (z - y) / len(z)  # logits where the probabilities belong


class BCEWithLogits(MLP):
    def output_delta(self, c, y):
        z = c.z[-1]
        return (sigmoid(z) - y) / len(z)


class BCEWithoutSigmoid(MLP):
    def output_delta(self, c, y):
        z = c.z[-1]
        return (z - y) / len(z)  # the sigmoid of the logits forgotten


# -- the layer steps --------------------------------------------------------------------------------
class WeightGradTransposed(MLP):
    def weight_grad(self, i, params, c, dz):
        return dz.T @ c.a[i - 1]  # (fan_out, fan_in): runs only because W is square


class DeltaNotTransposed(MLP):
    def delta_down(self, i, params, c, dz):
        return dz @ params[f"W{i}"]  # .T missing: runs only because W is square


class SignFlippedInOneLayer(MLP):
    def weight_grad(self, i, params, c, dz):
        g = c.a[i - 1].T @ dz
        return -g if i == 2 else g  # layer 2 kept in the `W += lr * a.T @ delta` ascent convention


class BiasFromOneSample(MLP):
    def bias_grad(self, i, c, dz):
        return dz[0]  # the first sample's delta; the batch sum is missing


class BiasLoop(MLP):
    def bias_grad(self, i, c, dz):
        db = np.zeros(dz.shape[1], dtype=dz.dtype)
        for j in range(dz.shape[1]):
            db[j] = dz[:, j].sum()
        return db


class BiasLoopSkipsFirst(MLP):
    def bias_grad(self, i, c, dz):
        db = np.zeros(dz.shape[1], dtype=dz.dtype)
        for j in range(1, dz.shape[1]):  # starts at 1 (a 1-based habit)
            db[j] = dz[:, j].sum()
        return db


class StaleWeights(MLP):
    LR = 0.1

    def delta_down(self, i, params, c, dz):
        W = params[f"W{i}"] - self.LR * (c.a[i - 1].T @ dz)  # the SGD step taken before W is used
        return dz @ W.T


class WrongLayerWeights(MLP):
    def delta_down(self, i, params, c, dz):
        return dz @ params[f"W{self.depth}"].T  # copy-pasted from the output layer's line


class OffByOneLayer(MLP):
    def weight_grad(self, i, params, c, dz):
        return c.a[i].T @ dz  # a[i] is the layer's own output; its input is a[i - 1]


# -- dropout and weight decay ------------------------------------------------------------------------
class Dropout(MLP):
    """Inverted dropout on the hidden layers' outputs; the mask is drawn from a fixed seed per call,
    so the function the check differentiates is deterministic."""

    KEEP = 0.8

    def forward(self, params, X):
        c = Cache(z=[None], a=[np.asarray(X, dtype=self.dtype)])
        for i in range(1, self.depth + 1):
            c.z.append(c.a[i - 1] @ params[f"W{i}"] + params[f"b{i}"])
            c.a.append(self.act[i - 1].f(c.z[i]))
            if i < self.depth:
                c.mask[i] = np.random.default_rng(i).random(c.a[i].shape) < self.KEEP
                c.a[i] = c.a[i] * c.mask[i] / self.KEEP
        return c

    def delta_down(self, i, params, c, dz):
        return dz @ params[f"W{i}"].T * c.mask[i - 1] / self.KEEP


class DropoutScaleForgotten(Dropout):
    def delta_down(self, i, params, c, dz):
        return dz @ params[f"W{i}"].T * c.mask[i - 1]  # the mask, but not its 1/keep


class WeightDecay(MLP):
    """The loss plus (lambda / 2) * sum of every squared weight (biases are not decayed)."""

    LAMBDA = 0.1

    def loss_value(self, params, c, y):
        l2 = sum(np.sum(params[f"W{i}"] ** 2) for i in range(1, self.depth + 1))
        return self.loss_entry.value(c.a[-1], y) + 0.5 * self.LAMBDA * l2

    def weight_grad(self, i, params, c, dz):
        return c.a[i - 1].T @ dz + self.LAMBDA * params[f"W{i}"]


class WeightDecayMissing(WeightDecay):
    def weight_grad(self, i, params, c, dz):
        return c.a[i - 1].T @ dz  # the loss has the L2 term, the gradient does not


class WeightDecayDoubled(WeightDecay):
    def weight_grad(self, i, params, c, dz):
        return c.a[i - 1].T @ dz + 2 * self.LAMBDA * params[f"W{i}"]  # d/dW (lambda/2) W^2 = lambda W, not 2 lambda W


# -- state kept between calls ----------------------------------------------------------------------
class Monitored(MLP):
    """Also computes the outputs on a validation batch each call, for logging, as a training loop might."""

    def __init__(self, spec):
        super().__init__(spec)
        self.X_val = np.random.default_rng(7).standard_normal((spec.batch, spec.input_dim)).astype(spec.dtype)

    def __call__(self, params, X, y):
        self.cache = self.forward(params, X)
        loss = self.loss_value(params, self.cache, y)
        grads = self.backward(params, self.cache, y)
        self.val_out = self.forward(params, self.X_val).a[-1]
        return loss, grads


class StaleCache(Monitored):
    def __call__(self, params, X, y):
        self.cache = self.forward(params, X)
        loss = self.loss_value(params, self.cache, y)
        self.cache = self.forward(params, self.X_val)  # the logging forward overwrites the cache ...
        self.val_out = self.cache.a[-1]
        return loss, self.backward(params, self.cache, y)  # ... that backward then reads


class ZeroGrad(MLP):
    """Keeps ``.grad`` between calls, as frameworks do, and zeroes it at the start of each step."""

    def __init__(self, spec):
        super().__init__(spec)
        self.grad = {}

    def __call__(self, params, X, y):
        self.grad = {}  # zero_grad()
        c = self.forward(params, X)
        for k, g in self.backward(params, c, y).items():
            self.grad[k] = self.grad.get(k, 0) + g
        return self.loss_value(params, c, y), self.grad


class Accumulating(ZeroGrad):
    def __call__(self, params, X, y):
        c = self.forward(params, X)
        for k, g in self.backward(params, c, y).items():
            self.grad[k] = self.grad.get(k, 0) + g  # added to last call's .grad: zero_grad() forgotten
        return self.loss_value(params, c, y), self.grad
