"""Reference numpy backpropagation: activation and loss registries, networks built from a
:class:`gradcheck.spec.NetworkSpec`, and SGD training (including the origin document's XOR run).

One package, two names. ``pip install gradcheck`` installs this folder as ``gradcheck_reference``
(a generic top-level ``reference`` would collide with other distributions), and the library code
in ``gradcheck/`` imports it under that name. Inside a checkout of the repository the folder is
also importable as ``reference`` (the tests, examples and benchmarks use ``from reference import
...``); then this file makes ``reference`` and ``reference.<sub>`` *the same module objects* as
``gradcheck_reference`` and ``gradcheck_reference.<sub>`` -- so an activation registered through
``reference.activations.ACTIVATIONS`` is seen by the sweep, and classes, reprs and pickles carry
the installed name (``gradcheck_reference.activations.Activation``). Without an installed
``gradcheck_reference`` (or with one from a different folder), ``reference`` is simply a plain
package of its own.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import CodeType, ModuleType
from typing import Any

_INSTALLED = "gradcheck_reference"  # the distribution's name for this package
_CHECKOUT = "reference"  # the folder's name, importable from the repository root


class _CheckoutAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``reference.<sub>`` as the module ``gradcheck_reference.<sub>`` (one object, two
    names in :data:`sys.modules`). ``python -m reference.train`` runs that file as ``__main__``."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(_CHECKOUT + "."):
            return None
        real = importlib.util.find_spec(_INSTALLED + fullname[len(_CHECKOUT):])
        if real is None:
            return None
        spec = importlib.machinery.ModuleSpec(fullname, self, origin=real.origin,
                                              is_package=real.submodule_search_locations is not None)
        spec.has_location = real.has_location
        spec.loader_state = real
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(spec.loader_state.name)

    def exec_module(self, module: ModuleType) -> None:
        # the import system has just set the alias's spec on the module: give it back its own
        alias: Any = module.__spec__
        module.__spec__ = alias.loader_state

    def _real(self, fullname: str) -> Any:
        spec = self.find_spec(fullname)
        if spec is None:
            raise ImportError(f"no module named {fullname!r}", name=fullname)
        return spec.loader_state

    def get_code(self, fullname: str) -> CodeType | None:  # for runpy: python -m reference.<sub>
        real = self._real(fullname)
        return real.loader.get_code(real.name)

    def is_package(self, fullname: str) -> bool:
        return self._real(fullname).submodule_search_locations is not None


def _alias_checkout_to_installed() -> None:
    """Make ``reference`` (this module, being imported) the installed ``gradcheck_reference``."""
    try:
        installed = importlib.import_module(_INSTALLED)
    except ModuleNotFoundError as exc:
        if exc.name != _INSTALLED:
            raise
        return  # not installed: stay a plain package
    here = os.path.dirname(os.path.realpath(__file__))
    if [os.path.realpath(p) for p in getattr(installed, "__path__", [])] != [here]:
        return  # installed from elsewhere: ``reference`` keeps meaning this folder
    # The import system reads sys.modules back after running this file, so ``import reference``
    # binds the installed module; submodules already imported are aliased now, the rest on import.
    sys.modules[_CHECKOUT] = installed
    for name, module in list(sys.modules.items()):
        if name.startswith(_INSTALLED + "."):
            sys.modules.setdefault(_CHECKOUT + name[len(_INSTALLED):], module)
    finder = installed._CheckoutAlias  # the class of the module that stays (this one is dropped)
    if not any(isinstance(f, finder) for f in sys.meta_path):
        sys.meta_path.insert(0, finder())


if __name__ == _CHECKOUT:
    _alias_checkout_to_installed()

from .activations import ACTIVATIONS, Activation, get_activation  # noqa: E402 (after the aliasing above)
from .losses import LOSSES, Loss, get_loss  # noqa: E402 (after the aliasing above)
from .network import Network, build  # noqa: E402 (after the aliasing above)

__all__ = ["ACTIVATIONS", "LOSSES", "Activation", "Loss", "Network", "build", "get_activation", "get_loss"]
