"""``gradcheck check TARGET``: check backprop code from outside a test suite.

``TARGET`` is ``path/to/file.py:factory`` or ``package.module:factory`` (``:factory`` may be left
out: the name ``factory`` is used). The factory takes no arguments and returns one of

* ``(fn, params, X, y)``;
* a dict with the keys ``fn``, ``params``, ``X``, ``y`` and optionally ``name`` (a label),
  ``spec`` (a :class:`gradcheck.NetworkSpec`, enables the symbolic oracle) and ``loss_fn``
  (loss-only function for cheaper finite differences; an adapter's ``fn.loss`` is used by
  default when ``fn`` comes from :mod:`gradcheck.adapters`);
* a list of such dicts (several checks in one run).

Exit status: 0 when every check passed, 1 when one failed, 2 for usage errors and targets that
cannot be loaded (no such file, module or factory; a factory that raises or returns something
else).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import math
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REQUIRED = ("fn", "params", "X", "y")
OPTIONAL = ("name", "spec", "loss_fn")
DEFAULT_FACTORY = "factory"


class TargetError(Exception):
    """The target could not be loaded or its factory's answer is not usable (exit status 2)."""


@dataclass
class Case:
    """One check to run: the contract's four arguments and the optional extras."""

    fn: Callable
    params: Any
    X: Any
    y: Any
    name: str | None = None
    spec: Any = None
    loss_fn: Callable | None = None


# -- loading the factory --------------------------------------------------------------------------
def split_target(target: str) -> tuple[str, str]:
    """``"a/b.py:make"`` -> ``("a/b.py", "make")``; without ``:name`` the factory is ``factory``."""
    where, sep, name = target.rpartition(":")
    if not sep or not name or "/" in name or "\\" in name or name.endswith(".py"):
        where, name = target, DEFAULT_FACTORY  # no factory given (or a Windows drive letter)
    if not where:
        raise TargetError(f"TARGET={target!r}: expected path/to/file.py:factory or package.module:factory")
    if not name.isidentifier():
        raise TargetError(f"TARGET={target!r}: {name!r} is not a Python name")
    return where, name


def _is_file(where: str) -> bool:
    return where.endswith(".py") or os.sep in where or "/" in where


def load_module(where: str) -> Any:
    """Import a file (its folder goes on ``sys.path`` first, as ``python file.py`` does) or a module."""
    if _is_file(where):
        path = Path(where).expanduser()
        if not path.is_file():
            raise TargetError(f"no such file: {str(path)!r}" + (" (it is a folder)" if path.is_dir() else ""))
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        name = f"_gradcheck_target_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise TargetError(f"cannot import {str(path)!r} as Python")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise TargetError(f"importing {str(path)!r} raised {type(exc).__name__}: {exc}\n{_user_trace(exc)}") from exc
        return module
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        if exc.name and (where == exc.name or where.startswith(exc.name + ".")):
            raise TargetError(f"no module named {where!r} (give a file path, or run from the folder that "
                              "contains the package)") from exc
        raise TargetError(f"importing {where!r} raised ModuleNotFoundError: {exc}") from exc
    except Exception as exc:
        raise TargetError(f"importing {where!r} raised {type(exc).__name__}: {exc}\n{_user_trace(exc)}") from exc


def _user_trace(exc: BaseException) -> str:
    """The last few frames of a traceback, indented (where in the user's code it went wrong)."""
    frames = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return "".join("  " + line for line in "".join(frames[-4:]).splitlines(True)).rstrip()


def load_factory(target: str) -> tuple[Callable[[], Any], str]:
    """The factory callable named by ``target`` and its display name."""
    where, name = split_target(target)
    module = load_module(where)
    if not hasattr(module, name):
        public = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                        and getattr(v, "__module__", None) == module.__name__)
        hint = f"; callables defined there: {', '.join(public)}" if public else ""
        raise TargetError(f"{where} has no {name!r}{hint}")
    factory = getattr(module, name)
    if not callable(factory):
        raise TargetError(f"{where}:{name} is not callable (type {type(factory).__name__}); it must be a "
                          "function returning (fn, params, X, y)")
    return factory, name


def cases_from(value: Any, label: str) -> list[Case]:
    """Validate what a factory returned (see the module docstring) and turn it into cases."""
    shape = ("expected (fn, params, X, y), a dict with keys fn, params, X, y (optional: name, spec, "
             "loss_fn), or a list of such dicts")
    if isinstance(value, Mapping):
        return [_case(value, label)]
    if isinstance(value, tuple) and len(value) == 4 and callable(value[0]):
        return [_case(dict(zip(REQUIRED, value)), label)]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) for v in value):
        return [_case(v, f"{label}[{i}]") for i, v in enumerate(value)]
    what = f"a {type(value).__name__}" + (f" of length {len(value)}" if isinstance(value, (list, tuple)) else "")
    raise TargetError(f"{label}() returned {what}: {shape}")


def _case(d: Mapping[str, Any], label: str) -> Case:
    missing = [k for k in REQUIRED if k not in d]
    unknown = [k for k in d if k not in REQUIRED + OPTIONAL]
    if missing or unknown:
        raise TargetError(f"{label}() returned a dict " + (f"without {missing}" if missing else "")
                          + ("; " if missing and unknown else "") + (f"with unknown keys {unknown}" if unknown else "")
                          + f" (keys: {', '.join(REQUIRED)}; optional: {', '.join(OPTIONAL)})")
    if not callable(d["fn"]):
        raise TargetError(f"{label}(): fn is not callable (type {type(d['fn']).__name__}); expected "
                          "fn(params, X, y) -> (loss, grads)")
    if d.get("loss_fn") is not None and not callable(d["loss_fn"]):
        raise TargetError(f"{label}(): loss_fn is not callable (type {type(d['loss_fn']).__name__})")
    loss_fn = d.get("loss_fn")
    if loss_fn is None:
        from gradcheck.adapters import AdaptedFn  # noqa: PLC0415
        if isinstance(d["fn"], AdaptedFn):
            loss_fn = d["fn"].loss
    return Case(d["fn"], d["params"], d["X"], d["y"], d.get("name") or label, d.get("spec"), loss_fn)


def load_cases(target: str) -> list[Case]:
    """Load ``target``, call its factory, return the checks it asks for (TargetError if unusable)."""
    factory, name = load_factory(target)
    try:
        inspect.signature(factory).bind()
    except TypeError:
        raise TargetError(f"{name}{inspect.signature(factory)} needs arguments; gradcheck calls the factory "
                          "with none (give defaults, or wrap it in a function without parameters)") from None
    except ValueError:  # no signature to read (a builtin): just call it
        pass
    try:
        value = factory()
    except Exception as exc:
        raise TargetError(f"{name}() raised {type(exc).__name__}: {exc}\n{_user_trace(exc)}") from exc
    return cases_from(value, name)


# -- the subcommand -------------------------------------------------------------------------------
def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``gradcheck check``."""
    from gradcheck.checker import MODES, SCHEME_CHOICES  # noqa: PLC0415 - light (numpy only)

    parser.add_argument("target", metavar="TARGET",
                        help="path/to/file.py:factory or package.module:factory; the factory returns "
                             "(fn, params, X, y) or a dict with those keys (optional: name, spec, loss_fn)")
    parser.add_argument("--scheme", choices=SCHEME_CHOICES, default=None,
                        help="finite-difference scheme (default: [tool.gradcheck] scheme in pyproject.toml, else "
                             "auto = complex step where the code allows, else central differences)")
    parser.add_argument("--rtol", type=_nonneg_float, default=None,
                        help="loosen the computed tolerance to at least this relative error (never tightens it; "
                             "default: [tool.gradcheck] rtol in pyproject.toml, else none)")
    parser.add_argument("--mode", choices=MODES, default="full",
                        help="full: every element (default); fast: random directions, then localization")
    parser.add_argument("--seed", type=int, default=0, help="seed of the checker's random probes (default 0)")
    parser.add_argument("--budget", type=_positive_float, default=None, metavar="SECONDS",
                        help="wall-clock budget: the full check when it fits, else a stratified sample of "
                             "elements plus random directions, with the coverage stated")
    parser.add_argument("--max-calls", type=_positive_int, default=None, metavar="N",
                        help="like --budget, in calls of the loss (reproducible for a seed)")
    parser.add_argument("--no-kinks", dest="detect_kinks", action="store_false",
                        help="judge elements at non-differentiable points too")
    parser.add_argument("--report", metavar="DIR", default=None,
                        help="also write index.html, gradcheck.json and junit.xml into DIR (default: "
                             "[tool.gradcheck] report_dir in pyproject.toml, else no report)")
    parser.add_argument("--json", action="store_true",
                        help="print Result.to_dict() as JSON (a list when the factory gives several checks)")


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _nonneg_float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Run the checks of ``args.target``; 0 all passed, 1 one failed, 2 usage or load error.

    ``--scheme``, ``--rtol`` and ``--report`` left out come from ``[tool.gradcheck]`` in the
    pyproject.toml found from the working directory (:mod:`gradcheck.config`)."""
    from gradcheck import config  # noqa: PLC0415
    from gradcheck.checker import check  # noqa: PLC0415

    try:
        settings = config.for_directory()
    except config.ConfigError as exc:
        return _usage_error(str(exc))
    if args.scheme is None:
        args.scheme = settings.scheme or "auto"
    if args.rtol is None:
        args.rtol = settings.rtol
    if not args.report and settings.report_dir is not None:
        from gradcheck.cli import writable_folder  # noqa: PLC0415

        args.report = str(settings.report_dir)
        why = writable_folder(args.report)
        if why:
            return _usage_error(f"[tool.gradcheck] report_dir: {why}")
    saved_path = list(sys.path)
    try:
        try:
            cases = load_cases(args.target)
        except TargetError as exc:
            return _usage_error(str(exc))
        writer: Callable[..., Path] | None = None  # gradcheck.report.write, with --report
        if args.report:
            try:
                from gradcheck.report import write as writer  # noqa: PLC0415
            except ImportError as exc:
                return _usage_error(f"--report: the report writer is not available ({exc})")
        results = []
        for case in cases:
            try:
                results.append(check(case.fn, case.params, case.X, case.y, scheme=args.scheme, rtol=args.rtol,
                                     name=case.name, spec=case.spec, loss_fn=case.loss_fn, mode=args.mode,
                                     seed=args.seed, detect_kinks=args.detect_kinks,
                                     budget=args.budget, max_calls=args.max_calls))
            except (TypeError, ValueError) as exc:  # misuse of the harness: the factory's arguments
                return _usage_error(f"{case.name}: {exc}")
    finally:
        sys.path[:] = saved_path
    if args.json:
        docs = [r.to_dict() for r in results]
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
    else:
        _print_results(results)
    if writer is not None:
        command = " ".join(["gradcheck", "check", args.target] + _flags(args))
        path = writer(results, args.report, title=f"gradcheck check {args.target}",
                      meta={"command": command, "target": args.target, "seed": args.seed})
        print(f"report: {path}", file=sys.stderr if args.json else sys.stdout)
    return 0 if all(r.passed for r in results) else 1


def _flags(args: argparse.Namespace) -> list[str]:
    out = []
    if args.scheme != "auto":
        out += ["--scheme", args.scheme]
    if args.rtol is not None:
        out += ["--rtol", f"{args.rtol:g}"]
    if args.mode != "full":
        out += ["--mode", args.mode]
    if args.seed:
        out += ["--seed", str(args.seed)]
    if not args.detect_kinks:
        out.append("--no-kinks")
    if args.budget is not None:
        out += ["--budget", f"{args.budget:g}"]
    if args.max_calls is not None:
        out += ["--max-calls", str(args.max_calls)]
    return out


def _usage_error(message: str) -> int:
    print(f"gradcheck check: error: {message}", file=sys.stderr)
    return 2


def _print_results(results: list) -> None:
    """The explanations, with a coloured verdict when ``rich`` is installed (plain text otherwise)."""
    try:
        from rich.console import Console  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415
    except ImportError:
        for r in results:
            print(str(r))
        if len(results) > 1:
            print(_summary(results))
        return
    console = Console(highlight=False, soft_wrap=True)
    for r in results:
        head, _, rest = str(r).partition("\n")
        verdict, _, tail = head.partition(":")
        text = Text(verdict, style="bold green" if r.passed else "bold red")
        text.append(":" + tail if tail else "")
        console.print(text)
        if rest:
            console.print(Text(rest))
    if len(results) > 1:
        console.print(Text(_summary(results), style="bold"))


def _summary(results: list) -> str:
    failed = [r.name or "?" for r in results if not r.passed]
    return (f"{len(results) - len(failed)} of {len(results)} checks passed"
            + (f"; failed: {', '.join(failed)}" if failed else ""))


__all__ = ["configure", "run", "load_cases", "load_factory", "cases_from", "split_target", "Case", "TargetError"]
