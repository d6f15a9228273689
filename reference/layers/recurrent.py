"""Vanilla RNN and LSTM over ``(B, T, D)``, outputs every hidden state ``(B, T, H)``; backward by
hand through time.

* rnn: ``h_t = tanh(x_t Wx + h_{t-1} Wh + b)``; ``Wx (D, H)``, ``Wh (H, H)``, ``b (H,)``.
* lstm: ``[i f g o] = x_t Wx + h_{t-1} Wh + b`` in torch's gate order along the ``4H`` axis
  (``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)``), ``c_t = s(f) c_{t-1} + s(i) tanh(g)``,
  ``h_t = s(o) tanh(c_t)`` with ``s`` the sigmoid.

``h_0 = c_0 = 0``. One bias (torch's ``bias_ih + bias_hh`` folded into ``b``).

Backpropagation through time: walking ``t = T-1 .. 0``, the gradient reaching ``h_t`` is
``dy[:, t]`` (its own output) plus what step ``t+1`` sends back through ``h_t Wh``; in an LSTM the
cell gradient ``dc_t`` is likewise what ``h_t = s(o) tanh(c_t)`` contributes plus what step
``t+1`` sends back through its forget gate, ``dc_{t+1} * s(f_{t+1})``. Each step's local
derivative is one small function (``_rnn_step_backward``, ``_lstm_step_backward``) so it reads
alone against the formulas above. The parameter gradients sum every step's contribution.

Numerics: the sigmoid is evaluated as ``1 / (1 + e)`` or ``e / (1 + e)`` with ``e = exp(-|z|)``,
never ``exp`` of a large positive number: no overflow for any input. Every formula is analytic
(no ``abs``, no casts), so both layers accept complex inputs and gradcheck's ``auto`` scheme can
use the complex step on them. float32 in, float32 out.
"""
from __future__ import annotations

import numpy as np

from .base import Context, LayerKind, bias, weight


def _sigmoid(z):
    """``1 / (1 + exp(-z))`` where ``Re z >= 0``, ``exp(z) / (1 + exp(z))`` elsewhere: the same
    function, each form where its ``exp`` is at most 1 (it underflows to 0, never overflows). The
    form is chosen on the real part only, so a complex ``z`` (the checker's complex step) goes
    through one analytic formula: no ``abs``."""
    pos = np.real(z) >= 0
    e = np.exp(np.where(pos, -z, z))
    return np.where(pos, 1.0 / (1.0 + e), e / (1.0 + e))


def _check(kind, x):
    if x.ndim != 3:
        raise ValueError(f"{kind} takes a batch of sequences (batch, length, features), got shape {x.shape}")


def _shifted(hs):
    """``h_{t-1}`` for every t: ``hs`` moved one step later along time, ``h_0 = 0`` in front."""
    out = np.zeros_like(hs)
    out[:, 1:] = hs[:, :-1]
    return out


def _param_grads(x, h_prev, dz):
    """Gradients of ``z_t = x_t Wx + h_{t-1} Wh + b`` summed over the batch and every step."""
    rows = dz.reshape(-1, dz.shape[-1])
    return {"Wx": x.reshape(-1, x.shape[-1]).T @ rows,
            "Wh": h_prev.reshape(-1, h_prev.shape[-1]).T @ rows,
            "b": rows.sum(axis=0)}


# -- rnn -------------------------------------------------------------------------------------------
def _rnn_init(node, in_shape, rng, scheme, dtype):
    d, h = in_shape[-1], node.hidden
    return {"Wx": weight(rng, (d, h), d, h, scheme, dtype), "Wh": weight(rng, (h, h), h, h, scheme, dtype),
            "b": bias(rng, (h,), dtype)}


def rnn_forward(node, params, x, ctx: Context):
    _check("rnn", x)
    batch, steps = x.shape[:2]
    xw = x @ params["Wx"] + params["b"]  # every step's input term at once
    h = np.zeros((batch, node.hidden), dtype=xw.dtype)
    hs = np.empty((batch, steps, node.hidden), dtype=xw.dtype)
    for t in range(steps):
        h = np.tanh(xw[:, t] + h @ params["Wh"])
        hs[:, t] = h
    return hs, (x, hs)


def _rnn_step_backward(dh, h, Wh):
    """One step: ``dz_t`` from the total ``dh_t`` through ``h_t = tanh(z_t)``, and ``dh_{t-1} = dz_t Wh^T``."""
    dz = dh * (1.0 - h * h)
    return dz, dz @ Wh.T


def rnn_backward(node, params, cache, dy):
    x, hs = cache
    dz = np.empty_like(hs)
    dh_next = np.zeros_like(hs[:, 0])  # nothing comes back from beyond the last step
    for t in reversed(range(hs.shape[1])):
        dz[:, t], dh_next = _rnn_step_backward(dy[:, t] + dh_next, hs[:, t], params["Wh"])
    return dz @ params["Wx"].T, _param_grads(x, _shifted(hs), dz)


RNN = LayerKind("rnn", _rnn_init, rnn_forward, rnn_backward,
                conventions="h_t = tanh(x_t Wx + h_{t-1} Wh + b), h_0 = 0, one bias (torch's bias_ih + "
                            "bias_hh); outputs every h_t")


# -- lstm ------------------------------------------------------------------------------------------
def _lstm_init(node, in_shape, rng, scheme, dtype):
    d, h = in_shape[-1], node.hidden
    return {"Wx": weight(rng, (d, 4 * h), d, h, scheme, dtype), "Wh": weight(rng, (h, 4 * h), h, h, scheme, dtype),
            "b": bias(rng, (4 * h,), dtype)}


def lstm_forward(node, params, x, ctx: Context):
    _check("lstm", x)
    batch, steps = x.shape[:2]
    H = node.hidden
    xw = x @ params["Wx"] + params["b"]
    h = np.zeros((batch, H), dtype=xw.dtype)
    c = np.zeros((batch, H), dtype=xw.dtype)
    hs = np.empty((batch, steps, H), dtype=xw.dtype)
    cs = np.empty_like(hs)
    tcs = np.empty_like(hs)
    acts = np.empty((batch, steps, 4 * H), dtype=xw.dtype)  # s(i), s(f), tanh(g), s(o)
    for t in range(steps):
        z = xw[:, t] + h @ params["Wh"]
        a = np.concatenate([_sigmoid(z[:, :2 * H]), np.tanh(z[:, 2 * H:3 * H]), _sigmoid(z[:, 3 * H:])], axis=1)
        i, f, g, o = np.split(a, 4, axis=1)
        c = f * c + i * g
        tc = np.tanh(c)
        h = o * tc
        hs[:, t], cs[:, t], tcs[:, t], acts[:, t] = h, c, tc, a
    return hs, (x, hs, cs, tcs, acts)


def _lstm_step_backward(dh, dc, a, c_prev, tc, Wh):
    """One step, from the total ``dh_t`` and the ``dc_t`` sent back by step t+1: the gate
    pre-activation gradients ``dz_t`` (i, f, g, o), ``dh_{t-1} = dz_t Wh^T`` and ``dc_{t-1}``."""
    i, f, g, o = np.split(a, 4, axis=1)
    dc = dc + dh * o * (1.0 - tc * tc)  # c_t's total gradient: through h_t, and from step t+1
    dz = np.concatenate([dc * g * i * (1.0 - i),        # i: c_t = ... + s(i) tanh(g)
                         dc * c_prev * f * (1.0 - f),   # f: c_t = s(f) c_{t-1} + ...
                         dc * i * (1.0 - g * g),        # g
                         dh * tc * o * (1.0 - o)],      # o: h_t = s(o) tanh(c_t)
                        axis=1)
    return dz, dz @ Wh.T, dc * f


def lstm_backward(node, params, cache, dy):
    x, hs, cs, tcs, acts = cache
    c_prev = _shifted(cs)
    dz = np.empty_like(acts)
    dh_next = np.zeros_like(hs[:, 0])
    dc_next = np.zeros_like(hs[:, 0])
    for t in reversed(range(hs.shape[1])):
        dz[:, t], dh_next, dc_next = _lstm_step_backward(dy[:, t] + dh_next, dc_next, acts[:, t], c_prev[:, t],
                                                         tcs[:, t], params["Wh"])
    return dz @ params["Wx"].T, _param_grads(x, _shifted(hs), dz)


LSTM = LayerKind("lstm", _lstm_init, lstm_forward, lstm_backward,
                 conventions="gates i, f, g, o (torch's order) along the 4*hidden axis of Wx (D, 4H), Wh (H, 4H), "
                             "b (4H,), one bias (torch's bias_ih + bias_hh); c_t = s(f) c_{t-1} + s(i) tanh(g), "
                             "h_t = s(o) tanh(c_t), h_0 = c_0 = 0; outputs every h_t")
