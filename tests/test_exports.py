"""The top-level ``gradcheck`` namespace: every public name resolves, including the exceptions a
caller catches (``FunctionFault``, ``SpecMismatch``, ``SymbolicSkipped``), and ``import gradcheck``
stays lazy (nothing heavy is imported until a name is used)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import gradcheck

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", gradcheck.__all__)
def test_every_public_name_resolves(name):
    assert getattr(gradcheck, name) is not None
    assert name in dir(gradcheck)


@pytest.mark.parametrize(("name", "module"), [("FunctionFault", "gradcheck.numerical"),
                                              ("SpecMismatch", "gradcheck.structured"),
                                              ("SymbolicSkipped", "gradcheck.symbolic")])
def test_user_facing_exceptions_are_exported(name, module):
    assert name in gradcheck.__all__
    exc = getattr(gradcheck, name)
    assert isinstance(exc, type) and issubclass(exc, Exception)
    # the same class as where it is raised, so `except gradcheck.<name>` catches it
    assert exc is getattr(__import__(module, fromlist=[name]), name)


def test_symbolic_skipped_is_caught_through_the_top_level_name():
    from gradcheck.spec import Layer, NetworkSpec
    from gradcheck.symbolic import compile_gradient

    spec = NetworkSpec(100, (Layer(100, "tanh"), Layer(10, "identity")), "mse")
    with pytest.raises(gradcheck.SymbolicSkipped, match="too large"):
        compile_gradient(spec)


def test_import_stays_lazy():
    """``import gradcheck`` (and the pytest plugin with it) must not pull in SymPy or the checker."""
    code = ("import sys, gradcheck; "
            "heavy = [m for m in ('sympy', 'gradcheck.checker', 'gradcheck.structured') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_loading_the_pytest_plugin_imports_no_numpy():
    """pytest loads the plugin in every session of a project that has gradcheck installed: that must
    stay cheap (numpy, the checker and SymPy load on the first check)."""
    import subprocess
    import sys
    code = ("import sys, gradcheck.pytest_plugin; "
            "print(sorted(m for m in ('numpy', 'sympy', 'gradcheck.checker') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
