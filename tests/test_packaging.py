"""Packaging: the wheel's contents, and the wheel installed into a fresh venv, used from outside
the repository (library call, ``gradcheck`` command, sweep, pytest plugin). Also the checkout's
``reference`` alias of the installed ``gradcheck_reference``.

No network: the wheel is built with ``python -m build --wheel --no-isolation`` (this venv's
setuptools) from a copy of the sources in ``tmp_path``, and installed with ``pip --no-deps
--no-index`` into a venv made ``--without-pip``; that venv finds the *dependencies* (numpy, SymPy,
pytest, ...) through a ``.pth`` line naming this venv's site-packages, written after the install. A
``.pth`` line only adds a directory to ``sys.path`` (the ``.pth`` files inside it are not run), so
this venv's editable ``gradcheck`` stays invisible there: the tests check that ``gradcheck`` and
``gradcheck_reference`` are imported from the new venv's own site-packages.
"""
from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: what the wheel is built from (README.md is the long description, LICENSE the license file)
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "gradcheck", "reference")
JUNK = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".*")


def _version() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    project = text[text.index("[project]"):]
    return re.search(r'^version\s*=\s*"([^"]+)"', project, re.MULTILINE).group(1)


def _env() -> dict[str, str]:
    """The environment for the installed venv: nothing of this session's Python or pytest setup."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PYTHON", "PYTEST", "VIRTUAL_ENV", "PIP_", "HYPOTHESIS", "COV_CORE"))}


def _run(args: list, cwd: Path, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=kw.pop("env", _env()), capture_output=True,
                          text=True, timeout=timeout, check=False, **kw)


def _ok(args: list, cwd: Path, **kw) -> subprocess.CompletedProcess:
    done = _run(args, cwd, **kw)
    assert done.returncode == 0, f"{args}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done


def _dev_site_packages() -> list[str]:
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def _bare_venv(where: Path) -> Path:
    """A venv without pip whose ``sys.path`` ends with this venv's site-packages; its python."""
    _ok([sys.executable, "-m", "venv", "--without-pip", where], cwd=where.parent)
    python = where / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    return python


def _add_dependencies(python: Path) -> None:
    site = _ok([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=python.parent).stdout
    (Path(site.strip()) / "_gradcheck_test_dependencies.pth").write_text("\n".join(_dev_site_packages()) + "\n")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The source copy and the wheel built from it."""
    pytest.importorskip("build", reason="the 'build' package (dev extra) is needed to build the wheel")
    base = tmp_path_factory.mktemp("packaging")
    src = base / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=JUNK)
        else:
            shutil.copy2(ROOT / name, src / name)
    _ok([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", base / "dist", src], cwd=base,
        env={**_env(), "PIP_NO_INDEX": "1"}, timeout=120)
    wheels = list((base / "dist").glob("gradcheck-*.whl"))
    assert len(wheels) == 1, wheels
    return {"base": base, "src": src, "wheel": wheels[0]}


@pytest.fixture(scope="module")
def installed(built) -> dict[str, Path]:
    """A fresh venv with the wheel installed (no dependencies of its own: see the module doc)."""
    base = built["base"]
    python = _bare_venv(base / "venv")
    _ok([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--no-cache-dir",
         "--disable-pip-version-check", built["wheel"]], cwd=base, timeout=120)
    _add_dependencies(python)  # after the install: pip never sees this venv's gradcheck
    work = base / "work"  # the cwd of every command: outside the repository and the sources
    work.mkdir()
    return {"python": python, "bin": python.parent, "work": work, "src": built["src"]}


# -- the wheel ---------------------------------------------------------------------------------
def test_wheel_contents(built):
    names = zipfile.ZipFile(built["wheel"]).namelist()
    version = _version()
    info = f"gradcheck-{version}.dist-info"
    assert built["wheel"].name == f"gradcheck-{version}-py3-none-any.whl"
    assert {n.split("/")[0] for n in names} == {"gradcheck", "gradcheck_reference", info}, "top-level names"
    assert not [n for n in names if n.startswith("reference/")]
    # every file of gradcheck/ (code, py.typed, report templates and schema, teaching data), and
    # every module of reference/ as gradcheck_reference/
    src = built["src"]
    expected = {p.relative_to(src).as_posix() for p in (src / "gradcheck").rglob("*") if p.is_file()}
    expected |= {"gradcheck_reference/" + p.name for p in (src / "reference").glob("*.py")}
    assert expected - set(names) == set(), "missing from the wheel (a new subpackage: add it to pyproject.toml)"
    assert {"gradcheck/py.typed", "gradcheck/report/schema.json", "gradcheck/report/templates/report.html.j2",
            "gradcheck_reference/activations.py", "gradcheck_reference/train.py"} <= set(names)
    assert [n for n in names if n.startswith("gradcheck/teach/")], "the teaching package"
    assert f"{info}/licenses/LICENSE" in names or f"{info}/LICENSE" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_wheel_metadata(built):
    with zipfile.ZipFile(built["wheel"]) as whl:
        info = f"gradcheck-{_version()}.dist-info"
        meta = email.message_from_string(whl.read(f"{info}/METADATA").decode())
        top_level = whl.read(f"{info}/top_level.txt").decode().split()
        entry_points = whl.read(f"{info}/entry_points.txt").decode()
    assert meta["Name"] == "gradcheck" and meta["Version"] == _version()
    assert meta["License-Expression"] == "MIT" or meta["License"] == "MIT"
    classifiers = meta.get_all("Classifier")
    for c in ("Development Status :: 3 - Alpha", "Framework :: Pytest", "Typing :: Typed",
              "Programming Language :: Python :: 3.10", "Programming Language :: Python :: 3.13",
              "Topic :: Software Development :: Testing"):
        assert c in classifiers
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Documentation", "Changelog", "Source"} <= set(urls)
    assert all(u.startswith("https://") for u in urls.values())
    assert meta["Keywords"]
    assert sorted(top_level) == ["gradcheck", "gradcheck_reference"]
    assert "gradcheck = gradcheck.cli:main" in entry_points and "gradcheck = gradcheck.pytest_plugin" in entry_points


# -- the installed wheel, used from outside the repository ----------------------------------------
SMOKE = textwrap.dedent("""
    import importlib.metadata, sys
    from pathlib import Path
    import numpy as np
    import gradcheck, gradcheck_reference
    from gradcheck_reference.activations import ACTIVATIONS

    site = Path(sys.argv[1]).resolve()
    for module in (gradcheck, gradcheck_reference):
        assert site in Path(module.__file__).resolve().parents, module.__file__
    dist = importlib.metadata.distribution("gradcheck")
    assert site in Path(dist.locate_file("gradcheck")).resolve().parents, dist.locate_file("")
    assert gradcheck.__version__ == dist.version == sys.argv[2], (gradcheck.__version__, dist.version)
    assert "tanh" in ACTIVATIONS
    assert not [m for m in sys.modules if m.split(".")[0] == "reference"]
    try:
        import reference
    except ImportError:
        pass
    else:
        raise AssertionError(f"reference is importable: {reference}")

    def fn(params, X, y, d_tanh=lambda h: 1 - h ** 2):
        h = np.tanh(X @ params["W"] + params["b"])
        r = h - y
        d = r * d_tanh(h) / len(X)
        return 0.5 * np.mean(np.sum(r ** 2, axis=1)), {"W": X.T @ d, "b": d.sum(axis=0)}

    def fn_wrong(params, X, y):
        return fn(params, X, y, d_tanh=lambda h: 1 - h)  # bug: tanh' is 1 - tanh**2

    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((3, 2)) / 2, "b": np.zeros(2)}
    X, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    good, bad = gradcheck.check(fn, params, X, y), gradcheck.check(fn_wrong, params, X, y)
    print(good.passed, bad.passed)
""")


def test_installed_library(installed):
    py, work = installed["python"], installed["work"]
    site = Path(installed["python"]).parent.parent
    purelib = _ok([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=work).stdout.strip()
    assert Path(purelib).resolve().is_relative_to(site.resolve())
    out = _ok([py, "-c", SMOKE, purelib, _version()], cwd=work).stdout.split()
    assert out[-2:] == ["True", "False"], f"the correct gradient must pass, the wrong one fail: {out}"


def test_installed_command(installed):
    exe = installed["bin"] / ("gradcheck.exe" if os.name == "nt" else "gradcheck")
    assert exe.exists(), "console script"
    work = installed["work"]
    assert _ok([exe, "-V"], cwd=work).stdout.strip() == f"gradcheck {_version()}"
    out = work / "sweep"
    done = _ok([exe, "sweep", "--activations", "tanh", "--losses", "mse", "--out", out, "--quiet"], cwd=work,
               timeout=120)
    assert (out / "index.html").is_file() and (out / "gradcheck.json").is_file(), done.stdout
    assert _ok([installed["python"], "-m", "gradcheck_reference.train", "--xor", "--epochs", "10"],
               cwd=work).stdout.startswith("Output after training:")


def test_installed_pytest_plugin(installed):
    work = installed["work"] / "plugin"
    work.mkdir()
    (work / "test_grads.py").write_text(textwrap.dedent("""
        import numpy as np

        def fn(params, X, y):
            r = X @ params["W"] - y
            return 0.5 * np.sum(r ** 2), {"W": X.T @ r}

        def test_linear(gradcheck):
            rng = np.random.default_rng(1)
            gradcheck(fn, {"W": rng.standard_normal((3, 2))}, rng.standard_normal((5, 3)),
                      rng.standard_normal((5, 2)), name="linear")
    """))
    done = _ok([installed["python"], "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_grads.py"], cwd=work,
               timeout=120)
    assert "1 passed" in done.stdout and "gradient check" in done.stdout, done.stdout


# -- the checkout's ``reference``: one set of modules with the installed ``gradcheck_reference`` ------
ALIAS = textwrap.dedent("""
    import sys, pickle
    import reference, gradcheck_reference
    from reference.activations import ACTIVATIONS, Activation
    import reference.network
    import gradcheck_reference.activations as ga, gradcheck_reference.losses as gl
    assert reference is gradcheck_reference and ACTIVATIONS is ga.ACTIVATIONS
    import reference.losses
    assert reference.losses is gl and reference.losses.LOSSES is gl.LOSSES
    assert reference.network is sys.modules["gradcheck_reference.network"]
    import reference.train as rt
    import gradcheck_reference.train as gt
    assert rt is gt and rt.__name__ == rt.__spec__.name == "gradcheck_reference.train", rt.__spec__
    assert Activation.__module__ == "gradcheck_reference.activations"
    assert pickle.loads(pickle.dumps(Activation)) is Activation
    for name in ("activations", "losses", "network", "train"):
        assert sys.modules["reference." + name] is sys.modules["gradcheck_reference." + name], name
    try:
        import reference.no_such_module
    except ModuleNotFoundError as exc:
        assert "reference.no_such_module" in str(exc), exc
    else:
        raise AssertionError("imported reference.no_such_module")
""")


def test_checkout_reference_is_the_installed_package():
    """In this repository (the dev venv's editable install), ``reference`` is ``gradcheck_reference``."""
    _ok([sys.executable, "-W", "error", "-c", ALIAS], cwd=ROOT, env=os.environ)
    # ``python -m reference.train``, as the README shows it: no runpy warning about sys.modules
    done = _ok([sys.executable, "-W", "error", "-m", "reference.train", "--xor", "--epochs", "10"], cwd=ROOT,
               env=os.environ)
    assert done.stdout.startswith("Output after training:") and not done.stderr, done


def test_registration_through_reference_is_seen_by_the_library(monkeypatch):
    import gradcheck_reference.activations
    import reference.activations
    from gradcheck.strategies import _registries
    assert reference.activations is gradcheck_reference.activations
    registry = {"tanh": reference.activations.ACTIVATIONS["tanh"]}
    monkeypatch.setattr(reference.activations, "ACTIVATIONS", registry)
    assert _registries()[0] is registry


def test_checkout_reference_falls_back_to_a_plain_package(installed, tmp_path):
    """``reference`` stays a package of its own when ``gradcheck_reference`` comes from another
    folder (the wheel's, run from the copied sources) or is not installed at all."""
    src = installed["src"]
    code = ("import reference, gradcheck_reference, sys; assert reference is not gradcheck_reference; "
            "assert reference.__name__ == 'reference' and reference.Activation.__module__ == 'reference.activations'; "
            "assert sys.modules['reference.network'].__name__ == 'reference.network'")
    _ok([installed["python"], "-c", code], cwd=src)
    python = _bare_venv(tmp_path / "venv")  # neither gradcheck nor gradcheck_reference installed
    _add_dependencies(python)
    code = ("import importlib.util, reference, reference.train; assert reference.__name__ == 'reference'; "
            "assert importlib.util.find_spec('gradcheck_reference') is None; "
            "assert reference.train.Network.__module__ == 'reference.network'")
    _ok([python, "-c", code], cwd=src)
