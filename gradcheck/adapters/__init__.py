"""Adapters: third-party backprop code -> the checker's contract ``fn(params, X, y) -> (loss, grads)``.

One module per framework, each importing its framework only when called, so ``import
gradcheck.adapters`` (and ``import gradcheck``) never pulls in torch or jax:

=====================================  ==============================================================
``gradcheck.adapters.torch``           ``as_fn(model, loss_fn)``, ``from_function(loss_fn, params)``;
                                       ``check_function(fn, *inputs, gradgrad=...)`` for operators
``gradcheck.adapters.jax``             ``as_fn(loss_fn, params)`` (``value_and_grad``; ``custom_vjp`` ok);
                                       ``check_vjp`` / ``check_jvp(fun, *args, order=...)``
``gradcheck.adapters.autograd``        ``as_fn(loss_fn, params)`` (HIPS autograd; ``defvjp`` ok)
``gradcheck.adapters.micrograd``       ``as_fn(model, loss_fn)`` (karpathy micrograd 0.1.0)
``gradcheck.adapters.numpy_style``     ``as_fn(layers, loss)`` for layer classes with forward/backward;
                                       ``from_update_step(step, loss)`` for ``W += lr * ...`` code
=====================================  ==============================================================

Each returns ``(fn, params)``: ``params`` a dict of numpy copies (float64 unless asked otherwise)
and ``fn`` an :class:`~gradcheck.adapters._common.AdaptedFn`, callable as the contract; its
``fn.loss(params, X, y)`` computes the loss alone (no backward pass), for
``gradcheck.check(fn, params, X, y, loss_fn=fn.loss)``, which halves the cost of the finite
differences. See ``docs/adapters.md``.
"""
from gradcheck.adapters._common import AdaptedFn, FrameworkMissing

__all__ = ["AdaptedFn", "FrameworkMissing"]
