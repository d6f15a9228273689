"""A dense network built from a :class:`gradcheck.spec.NetworkSpec`: init, forward, backward.

``Network(spec).loss_and_grads(params, X, y) -> (loss, grads)`` is the checker's contract: a pure
function of its arguments (nothing is written into ``params``, ``X`` or ``y``). Parameters are
``W1, b1, W2, b2, ...``; ``W_i`` is ``(fan_in, fan_out)`` as in the origin document's ``X @ W + b``.

Other layer kinds (conv, pooling, normalization, embedding, attention, RNN/LSTM, dropout,
flatten; :mod:`gradcheck.layerspec`): each layer's op comes from the registry
:data:`reference.layers.LAYERS` (forward with a cache, hand-written backward), then the layer's
activation; residual edges add a layer's output to a later layer's result before its activation.
Such networks name their parameters ``conv1.W``, ``bn2.gamma``, ... (dense layers keep ``W{i}``).

Second order: :meth:`Network.hvp` is the exact Hessian-vector product of the loss by Pearlmutter's
R-operator, ``R{.} = d/dt (.)(theta + t v)`` at ``t = 0``, applied to every line of forward and
backward (one forward, one R-forward, one backward with its R-twin: about twice a gradient).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from gradcheck.spec import NetworkSpec

from .activations import Activation, get_activation
from .layers import Context, LayerKind, get_layer
from .layers.norm import batch_statistics, batchnorm_inference
from .losses import Loss, get_loss

Array = np.ndarray
Params = dict[str, Array]

# the last activation that can deliver what each loss reads
_OUTPUT_ACTIVATIONS = {"probability": {"sigmoid"}, "distribution": {"softmax"}}


@dataclass
class Cache:
    """What backward needs from forward: each layer's input and pre-activation, and the output."""

    inputs: list[Array]   # a_0 .. a_{L-1}
    pre: list[Array]      # z_1 .. z_L
    out: Array            # a_L
    ops: list | None = None  # other layer kinds: each layer's own cache


class Network:
    """A network of ``spec``; call it (or :meth:`loss_and_grads`) as ``fn(params, X, y)``."""

    def __init__(self, spec: NetworkSpec,
                 activations: Mapping[str, Activation] | None = None,
                 losses: Mapping[str, Loss] | None = None,
                 layers: Mapping[str, LayerKind] | None = None) -> None:
        """``activations``/``losses``/``layers`` replace registry entries by name (e.g. a planted
        bug in one activation, loss or layer kind's backward)."""
        self.spec = spec
        acts = dict(activations or {})
        self.activations: list[Activation] = []
        for i, layer in enumerate(spec.layers):
            try:
                self.activations.append(acts.get(layer.activation) or get_activation(layer.activation))
            except ValueError as e:
                raise ValueError(f"NetworkSpec.layers[{i}].activation={layer.activation!r}: {e}") from None
        try:
            self.loss_fn: Loss = dict(losses or {}).get(spec.loss) or get_loss(spec.loss)
        except ValueError as e:
            raise ValueError(f"NetworkSpec.loss={spec.loss!r}: {e}") from None
        if spec.output_dim < self.loss_fn.min_outputs:
            raise ValueError(
                f"NetworkSpec.layers[-1].width={spec.output_dim}: loss {spec.loss!r} needs at least "
                f"{self.loss_fn.min_outputs} outputs")
        needs = self.loss_fn.output
        last = spec.layers[-1].activation
        if needs in _OUTPUT_ACTIVATIONS and last not in _OUTPUT_ACTIVATIONS[needs]:
            raise ValueError(
                f"NetworkSpec.layers[-1].activation={last!r}: loss {spec.loss!r} reads {needs} outputs; "
                f"use one of {sorted(_OUTPUT_ACTIVATIONS[needs])} as the last activation")
        self.dtype = np.dtype(spec.dtype)
        self._skips_into: dict[int, list[int]] = {}
        for s, t in spec.skips:
            self._skips_into.setdefault(t, []).append(s)
        kinds = dict(layers or {})
        self._kinds = None if spec.is_dense and not kinds else [
            kinds.get(layer.kind) or get_layer(layer.kind) for layer in spec.layers]
        #: batch normalization's running statistics, ``bn{i}.running_mean`` / ``.running_var``:
        #: state of this network object, changed only by :meth:`update_running_stats` (training)
        self.running: Params = {}
        for i, layer in enumerate(spec.layers, start=1):
            if layer.kind == "batchnorm":
                channels = spec.shapes[i - 1][0]
                self.running[f"bn{i}.running_mean"] = np.zeros(channels, self.dtype)
                self.running[f"bn{i}.running_var"] = np.ones(channels, self.dtype)

    # -- parameters -------------------------------------------------------------------------
    def init_params(self) -> Params:
        """Fresh parameters, deterministic from ``spec.seed`` (see NetworkSpec for the schemes)."""
        spec, shapes = self.spec, self.spec.param_shapes()
        params: Params = {}
        if self._kinds is not None:  # each kind draws its own, layer by layer, from one generator
            rng = np.random.default_rng(spec.seed)
            in_shapes = spec.shapes
            for i, (layer, kind) in enumerate(zip(spec.layers, self._kinds), start=1):
                local = kind.init(layer, in_shapes[i - 1], rng, spec.init, self.dtype)
                names = spec.param_names(i)
                params.update({names[k]: v for k, v in local.items()})
        elif spec.init == "uniform":  # the origin document: legacy RNG, weights first, then biases
            rs = np.random.RandomState(spec.seed)
            for name in [n for n in shapes if n.startswith("W")] + [n for n in shapes if n.startswith("b")]:
                params[name] = rs.rand(*shapes[name])
        else:
            rng = np.random.default_rng(spec.seed)
            for name, shape in shapes.items():
                if name.startswith("W"):
                    fan_in, fan_out = shape
                    var = {"normal": 1 / fan_in, "xavier": 2 / (fan_in + fan_out), "he": 2 / fan_in}[spec.init]
                    params[name] = rng.normal(0.0, np.sqrt(var), size=shape)
                else:
                    params[name] = rng.normal(0.0, 0.1, size=shape)
        return {name: params[name].astype(self.dtype) for name in shapes}

    # -- forward and backward ---------------------------------------------------------------
    def forward(self, params: Mapping[str, Array], X) -> tuple[Array, Cache]:
        """The output ``a_L`` and the cache for :meth:`backward`."""
        if self._kinds is not None:
            return self._forward_graph(params, X)
        a = np.asarray(X, dtype=self.dtype)
        if a.ndim == 1:
            a = a.reshape(1, -1)
        outputs, inputs, pre = [a], [], []
        for i, act in enumerate(self.activations, start=1):
            z = a @ params[f"W{i}"]
            if f"b{i}" in params:
                z = z + params[f"b{i}"]
            for s in self._skips_into.get(i, ()):
                z = z + outputs[s]
            inputs.append(a)
            pre.append(z)
            a = act.f(z)
            outputs.append(a)
        return a, Cache(inputs, pre, a)

    def backward(self, params: Mapping[str, Array], cache: Cache, y) -> Params:
        """Gradient of the loss with respect to every parameter, by the chain rule, last layer first."""
        if self._kinds is not None:
            return self._backward_graph(params, cache, y)
        L = len(self.activations)
        grads: Params = {}
        # dL/da_i for every layer output; skips add contributions to earlier outputs
        d_out: dict[int, Array] = {L: self.loss_fn.grad(cache.out, y)}
        for i in range(L, 0, -1):
            dz = self.activations[i - 1].vjp(cache.pre[i - 1], d_out.pop(i))
            grads[f"W{i}"] = cache.inputs[i - 1].T @ dz
            if f"b{i}" in params:
                grads[f"b{i}"] = dz.sum(axis=0)
            for s in self._skips_into.get(i, ()):
                d_out[s] = d_out.get(s, 0) + dz
            if i > 1:
                d_out[i - 1] = d_out.get(i - 1, 0) + dz @ params[f"W{i}"].T
        return {name: grads[name].astype(self.dtype, copy=False) for name in params}

    def hvp(self, params: Mapping[str, Array], X, y, v: Mapping[str, Array]) -> Params:
        """Hessian of the loss w.r.t. the parameters times ``v`` (a dict like ``params``): exact.

        Pearlmutter's R-operator, ``R{x} = d/dt x(theta + t v)`` at 0. Forward:
        ``R{z_i} = R{a_{i-1}} W_i + a_{i-1} V_i + Vb_i (+ R{a_s} per skip)``, ``R{a_i} = act.jvp(z_i,
        R{z_i})``, ``R{a_0} = 0``. Loss: ``R{dL/da_L} = loss.hvp(a_L, y, R{a_L})``. Backward, the R of
        each line of :meth:`backward`: ``R{dz_i} = act.vjp_r(z_i, g_i, R{z_i}, R{g_i})``,
        ``R{dW_i} = R{a_{i-1}}^T dz_i + a_{i-1}^T R{dz_i}``, ``R{db_i} = sum R{dz_i}``,
        ``R{g_{i-1}} += R{dz_i} W_i^T + dz_i V_i^T`` (skips add ``R{dz_i}`` to ``R{g_s}``).
        Pure (nothing is written into the arguments); the network's dtype; kinks take the
        activations' and loss's conventions (their ``convention`` and ``kinks``).
        """
        if self._kinds is not None:
            raise ValueError(f"Network.hvp: second order is implemented for dense networks; this one has "
                             f"{', '.join(self.spec.layer_kinds)} layers")
        if set(v) != set(params):
            raise ValueError(f"v: keys {sorted(v)} do not match params' {sorted(params)}")
        for name in params:
            if np.shape(v[name]) != np.shape(params[name]):
                raise ValueError(f"v[{name!r}] has shape {np.shape(v[name])}; params[{name!r}] has {np.shape(params[name])}")
        dt = self.dtype
        V = {name: np.asarray(v[name], dtype=dt) for name in params}
        out, cache = self.forward(params, X)
        L = len(self.activations)
        # R-forward: tangents of every layer output (the input X does not move)
        R_out: list[Array] = [np.zeros_like(cache.inputs[0])]
        R_pre: list[Array] = []
        for i, act in enumerate(self.activations, start=1):
            Rz = R_out[i - 1] @ params[f"W{i}"] + cache.inputs[i - 1] @ V[f"W{i}"]
            if f"b{i}" in params:
                Rz = Rz + V[f"b{i}"]
            for s in self._skips_into.get(i, ()):
                Rz = Rz + R_out[s]
            R_pre.append(Rz)
            R_out.append(act.jvp(cache.pre[i - 1], Rz))
        # backward and its R-twin, line by line
        d_out: dict[int, Array] = {L: self.loss_fn.grad(out, y)}
        R_d_out: dict[int, Array] = {L: self.loss_fn.hvp(out, y, R_out[L])}
        hv: Params = {}
        for i in range(L, 0, -1):
            act, z, g, Rg = self.activations[i - 1], cache.pre[i - 1], d_out.pop(i), R_d_out.pop(i)
            dz = act.vjp(z, g)
            Rdz = act.vjp_r(z, g, R_pre[i - 1], Rg)
            hv[f"W{i}"] = R_out[i - 1].T @ dz + cache.inputs[i - 1].T @ Rdz
            if f"b{i}" in params:
                hv[f"b{i}"] = Rdz.sum(axis=0)
            for s in self._skips_into.get(i, ()):
                d_out[s] = d_out.get(s, 0) + dz
                R_d_out[s] = R_d_out.get(s, 0) + Rdz
            if i > 1:
                d_out[i - 1] = d_out.get(i - 1, 0) + dz @ params[f"W{i}"].T
                R_d_out[i - 1] = R_d_out.get(i - 1, 0) + Rdz @ params[f"W{i}"].T + dz @ V[f"W{i}"].T
        return {name: hv[name].astype(dt, copy=False) for name in params}

    # -- other layer kinds -------------------------------------------------------------------
    def _input(self, X) -> Array:
        spec = self.spec
        if spec.input_is_integer:
            x = np.asarray(X)
            if x.dtype.kind not in "iu":
                raise ValueError(f"X has dtype {x.dtype}; an Embedding first layer takes integer indices")
        else:
            x = np.asarray(X, dtype=self.dtype)
        if x.shape[1:] != spec.input_shape:
            if x.shape == spec.input_shape:  # one example
                return x[None]
            raise ValueError(f"X has shape {x.shape}; expected (batch,) + {spec.input_shape}")
        return x

    def _forward_graph(self, params: Mapping[str, Array], X, training: bool = True) -> tuple[Array, Cache]:
        spec, assert_kinds = self.spec, self._kinds
        assert assert_kinds is not None
        a = self._input(X)
        outputs, inputs, pre, ops = [a], [], [], []
        for i, (layer, kind, act) in enumerate(zip(spec.layers, assert_kinds, self.activations), start=1):
            local = {k: params[n] for k, n in spec.param_names(i).items()}
            if not training and layer.kind == "batchnorm":
                z, op_cache = batchnorm_inference(layer, local, a, self.running[f"bn{i}.running_mean"],
                                                  self.running[f"bn{i}.running_var"]), None
            else:
                z, op_cache = kind.forward(layer, local, a, Context(spec.seed, i))
            for s in self._skips_into.get(i, ()):
                z = z + outputs[s]
            inputs.append(a)
            pre.append(z)
            ops.append(op_cache)
            a = z if act.name == "identity" else act.f(z)
            outputs.append(a)
        return a, Cache(inputs, pre, a, ops)

    def _backward_graph(self, params: Mapping[str, Array], cache: Cache, y) -> Params:
        spec, kinds = self.spec, self._kinds
        assert kinds is not None and cache.ops is not None
        L = len(kinds)
        grads: Params = {}
        d_out: dict[int, Array] = {L: self.loss_fn.grad(cache.out, y)}
        for i in range(L, 0, -1):
            layer, act = spec.layers[i - 1], self.activations[i - 1]
            g = d_out.pop(i)
            dz = g if act.name == "identity" else act.vjp(cache.pre[i - 1], g)
            for s in self._skips_into.get(i, ()):
                d_out[s] = d_out.get(s, 0) + dz
            local = {k: params[n] for k, n in spec.param_names(i).items()}
            dx, local_grads = kinds[i - 1].backward(layer, local, cache.ops[i - 1], dz)
            for k, n in spec.param_names(i).items():
                grads[n] = local_grads[k]
            if i > 1 and dx is not None:
                d_out[i - 1] = d_out.get(i - 1, 0) + dx
        return {name: np.asarray(grads[name]).astype(self.dtype, copy=False) for name in params}

    def loss(self, params: Mapping[str, Array], X, y) -> float:
        """The loss only (no backward): what finite differences need."""
        out, _ = self.forward(params, X)
        return self.loss_fn.value(out, y)

    def loss_and_grads(self, params: Mapping[str, Array], X, y) -> tuple[float, Params]:
        """``(loss, grads)``: the checker's contract."""
        out, cache = self.forward(params, X)
        return self.loss_fn.value(out, y), self.backward(params, cache, y)

    __call__ = loss_and_grads

    def predict(self, params: Mapping[str, Array], X, *, training: bool = True) -> Array:
        """The network's output; ``training=False`` is evaluation mode (batch normalization with its
        running statistics instead of the batch's)."""
        if not training and self._kinds is not None:
            return self._forward_graph(params, X, training=False)[0]
        return self.forward(params, X)[0]

    def update_running_stats(self, cache: Cache) -> None:
        """One training step's update of the running statistics from a training forward's cache
        (torch's rule: ``(1 - momentum) * running + momentum * batch``, unbiased variance). The
        checker's contract (:meth:`loss_and_grads`) never calls it: a check leaves them as they are."""
        for i, layer in enumerate(self.spec.layers, start=1):
            if layer.kind != "batchnorm":
                continue
            mean, var = batch_statistics(cache.inputs[i - 1])
            m = layer.momentum  # type: ignore[attr-defined]
            for key, batch in (("running_mean", mean), ("running_var", var)):
                name = f"bn{i}.{key}"
                self.running[name] = ((1 - m) * self.running[name] + m * batch).astype(self.dtype)


def build(spec: NetworkSpec) -> Network:
    """The reference network for ``spec``."""
    return Network(spec)
