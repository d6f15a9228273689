"""``[tool.gradcheck]`` in ``pyproject.toml``: project defaults for the CLI and the pytest plugin.

.. code-block:: toml

    [tool.gradcheck]
    scheme = "central"          # finite-difference scheme (gradcheck.checker.SCHEME_CHOICES)
    rtol = 1e-6                 # loosen every check's tolerance to at least this
    report_dir = "reports/gradcheck"   # relative to the folder of this pyproject.toml

    [tool.gradcheck.sweep]      # defaults of `gradcheck sweep`
    examples = 3
    seed = 0
    activations = ["tanh", "relu"]
    losses = ["mse"]
    dtypes = ["float64"]
    max_params = 200
    jobs = 2
    symbolic_max_size = 120
    out = "reports/sweep"       # relative to the folder of this pyproject.toml

Precedence, strongest first: an explicit argument (``gradcheck(..., rtol=...)`` in a test) >
a command-line option (``--rtol``, ``--gradcheck-rtol``) > an ini option (``gradcheck_report_dir``)
> this table > the library default.

Which file: the pytest plugin reads ``config.inipath`` when it is a ``pyproject.toml``, else the
rootdir's ``pyproject.toml``; the command line walks up from the working directory to the first
``pyproject.toml``, stopping at a folder that holds ``.git`` (the repository root) or at the
filesystem root. A file without the table gives :class:`Settings` with every value None.

Every key and value is validated: a problem raises :class:`ConfigError`, whose message is one line
naming the file, the key and what is expected (an unknown key gets a "did you mean").
"""
from __future__ import annotations

import difflib
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib  # Python >= 3.11
except ModuleNotFoundError:  # pragma: no cover - Python 3.10: tomli is the same parser (pytest needs it there)
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None  # the table is skipped with a warning

PYPROJECT = "pyproject.toml"
TABLE = "tool.gradcheck"
SWEEP_TABLE = "tool.gradcheck.sweep"
#: the check schemes (``gradcheck.checker.SCHEME_CHOICES``; a test keeps them equal)
SCHEMES = ("auto", "forward", "central", "central4", "richardson", "complex")
DTYPES = ("float64", "float32")
#: the keys of ``[tool.gradcheck]`` (``sweep`` is the subtable ``[tool.gradcheck.sweep]``)
KEYS = ("scheme", "rtol", "report_dir", "sweep")
#: the keys of ``[tool.gradcheck.sweep]``: the ``gradcheck sweep`` options of the same names
#: (``dtypes`` is ``--dtype``)
SWEEP_KEYS = ("examples", "seed", "activations", "losses", "dtypes", "max_params", "jobs",
              "symbolic_max_size", "out", "layers", "scheduler")


class ConfigError(ValueError):
    """An invalid ``[tool.gradcheck]`` table (or ``pyproject.toml``): a one-line message naming the
    file, the key and the expected value."""


@dataclass(frozen=True)
class Settings:
    """The validated table. None (or a missing sweep key) means "not set": the caller's own default
    applies. Paths are absolute or relative to the working directory (resolved from the
    pyproject's folder)."""

    #: the pyproject.toml read (None: none found)
    path: Path | None = None
    scheme: str | None = None
    rtol: float | None = None
    report_dir: Path | None = None
    #: the keys of ``[tool.gradcheck.sweep]`` that are set: ints, tuples of names, ``out`` a str path
    sweep: Mapping[str, Any] = field(default_factory=dict)

    def check_options(self) -> dict[str, Any]:
        """``scheme``/``rtol`` as keyword arguments of :func:`gradcheck.check` (only those set)."""
        return {k: v for k, v in (("scheme", self.scheme), ("rtol", self.rtol)) if v is not None}


# -- finding and reading the file -----------------------------------------------------------------
def find_pyproject(start: str | os.PathLike | None = None) -> Path | None:
    """The first ``pyproject.toml`` in ``start`` (default: the working directory) or a folder above
    it; the walk stops at a folder holding ``.git`` (after looking there) and at the filesystem root."""
    folder = Path(start if start is not None else os.getcwd()).resolve()
    for here in (folder, *folder.parents):
        candidate = here / PYPROJECT
        if candidate.is_file():
            return candidate
        if (here / ".git").exists():
            return None
    return None


def load(path: str | os.PathLike | None) -> Settings:
    """The settings of ``path`` (a pyproject.toml); empty settings for None or a file without the table."""
    if path is None:
        return Settings()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return from_text(text, path)


def from_text(text: str, path: str | os.PathLike = PYPROJECT) -> Settings:
    """The settings of a pyproject.toml's text (``path`` names it in messages and anchors relative paths)."""
    path = Path(path)
    if tomllib is None:  # pragma: no cover - Python 3.10 without tomli
        if "tool.gradcheck" in text:
            warnings.warn(f"{path}: [{TABLE}] ignored: reading TOML on Python 3.10 needs the tomli package "
                          "(pip install tomli)", stacklevel=2)
        return Settings(path=path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    tool = doc.get("tool", {})
    table = tool.get("gradcheck") if isinstance(tool, Mapping) else None
    if table is None:
        return Settings(path=path)
    return parse_table(table, path)


def for_directory(start: str | os.PathLike | None = None) -> Settings:
    """The settings of the pyproject.toml that :func:`find_pyproject` finds from ``start``."""
    return load(find_pyproject(start))


# -- validation -----------------------------------------------------------------------------------
def shown(value: Any) -> str:
    """``value`` written as in TOML (strings in double quotes, true/false, inf/nan, arrays)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {shown(v)}" for k, v in value.items()) + "}"
    return str(value)


def _did_you_mean(word: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word.replace("-", "_"), list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Where:
    """Builds the one-line messages for one table of one file."""

    def __init__(self, path: Path, table: str):
        self.path, self.table = path, table

    def bad(self, key: str, value: Any, expected: str) -> ConfigError:
        return ConfigError(f"{self.path}: [{self.table}] {key} = {shown(value)}: expected {expected}")

    def unknown(self, key: str, known: tuple[str, ...]) -> ConfigError:
        return ConfigError(f"{self.path}: [{self.table}] unknown key {key!r}{_did_you_mean(key, known)}; "
                           f"expected one of: {', '.join(known)}")


def _integer(where: _Where, key: str, value: Any, minimum: int | None) -> int:
    expected = "an integer" + (f" >= {minimum}" if minimum is not None else "")
    if isinstance(value, bool) or not isinstance(value, int):
        raise where.bad(key, value, expected)
    if minimum is not None and value < minimum:
        raise where.bad(key, value, expected)
    return int(value)


def _path(where: _Where, key: str, value: Any, base: Path) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise where.bad(key, value, f"a folder path (a string, relative to {base})")
    return base / Path(value).expanduser()


def _names(where: _Where, key: str, value: Any, known: tuple[str, ...], what: str) -> tuple[str, ...]:
    """A list of names (or one comma-separated string, as on the command line), each one of ``known``."""
    expected = f"a list of {what} names from: {', '.join(known)}"
    if isinstance(value, str):
        names = [n.strip() for n in value.split(",") if n.strip()]
    elif isinstance(value, list) and all(isinstance(n, str) for n in value):
        names = [n.strip() for n in value]
    else:
        raise where.bad(key, value, expected)
    if not names or not all(names):
        raise where.bad(key, value, expected)
    for n in names:
        if n not in known:
            raise ConfigError(f"{where.path}: [{where.table}] {key} = {shown(value)}: unknown {what} "
                              f"{n!r}{_did_you_mean(n, known)}; expected names from: {', '.join(known)}")
    return tuple(dict.fromkeys(names))


def parse_table(table: Any, path: str | os.PathLike = PYPROJECT) -> Settings:
    """Validate a parsed ``[tool.gradcheck]`` table (a dict) from the file ``path``."""
    path = Path(path)
    base = path.parent
    if not isinstance(table, Mapping):
        raise ConfigError(f"{path}: tool.gradcheck = {shown(table)}: expected a table ([{TABLE}])")
    where = _Where(path, TABLE)
    for key in table:
        if key not in KEYS:
            raise where.unknown(key, KEYS)
    scheme = table.get("scheme")
    if scheme is not None and scheme not in SCHEMES:
        raise where.bad("scheme", scheme, f"one of {', '.join(shown(s) for s in SCHEMES)}")
    rtol = table.get("rtol")
    if rtol is not None:
        if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not (math.isfinite(rtol) and rtol >= 0):
            raise where.bad("rtol", rtol, "a finite number >= 0")
        rtol = float(rtol)
    report_dir = _path(where, "report_dir", table["report_dir"], base) if "report_dir" in table else None
    sweep = _sweep(table.get("sweep", {}), path)
    return Settings(path=path, scheme=scheme, rtol=rtol, report_dir=report_dir, sweep=sweep)


def _sweep(table: Any, path: Path) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise _Where(path, TABLE).bad("sweep", table, f"a table ([{SWEEP_TABLE}])")
    where = _Where(path, SWEEP_TABLE)
    for key in table:
        if key not in SWEEP_KEYS:
            raise where.unknown(key, SWEEP_KEYS)
    out: dict[str, Any] = {}
    for key, minimum in (("examples", 1), ("seed", None), ("max_params", 1), ("jobs", 1),
                         ("symbolic_max_size", 0)):
        if key in table:
            out[key] = _integer(where, key, table[key], minimum)
    if "activations" in table or "losses" in table:
        from reference.activations import ACTIVATIONS  # noqa: PLC0415 - the registries: only when named
        from reference.losses import LOSSES  # noqa: PLC0415

        for key, known, what in (("activations", ACTIVATIONS, "activation"), ("losses", LOSSES, "loss")):
            if key in table:
                out[key] = _names(where, key, table[key], tuple(known), what)
    if "dtypes" in table:
        out["dtypes"] = _names(where, "dtypes", table["dtypes"], DTYPES, "dtype")
    if "layers" in table:
        from gradcheck.layerspec import LAYER_KINDS  # noqa: PLC0415
        out["layers"] = _names(where, "layers", table["layers"], LAYER_KINDS, "layer kind")
    if "out" in table:
        out["out"] = str(_path(where, "out", table["out"], path.parent))
    if "scheduler" in table:
        out["scheduler"] = _scheduler(where, table["scheduler"])
    return out


def _scheduler(where: _Where, value: Any) -> str:
    """``local:N`` (N >= 1) or a Dask scheduler address (:func:`gradcheck.executors.parse_scheduler`)."""
    from gradcheck.executors import parse_scheduler  # noqa: PLC0415 - no Dask import: a string check

    expected = "local:N (N >= 1) or a Dask scheduler address such as tcp://host:8786"
    if not isinstance(value, str):
        raise where.bad("scheduler", value, expected)
    try:
        parse_scheduler(value)
    except ValueError:
        raise where.bad("scheduler", value, expected) from None
    return value


__all__ = ["Settings", "ConfigError", "find_pyproject", "load", "from_text", "for_directory", "parse_table",
           "KEYS", "SWEEP_KEYS", "SCHEMES", "PYPROJECT"]
