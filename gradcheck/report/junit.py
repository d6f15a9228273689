"""JUnit XML for CI systems: one ``<testcase>`` per check, a ``<failure>`` carrying ``str(result)``.

The layout follows what pytest writes (``testsuites > testsuite > testcase``, per-case
``<properties>``), which GitLab, Jenkins and GitHub test-report actions read. Characters that XML
1.0 cannot hold (control characters from user-supplied names) are replaced by ``\\xNN`` escapes.
"""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

from gradcheck.report.records import Row

_INVALID_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: object) -> str:
    """``text`` with characters that XML 1.0 forbids written as ``\\xNN``/``\\uNNNN`` escapes."""
    return _INVALID_XML.sub(lambda m: repr(m.group(0))[1:-1], str(text))


def _seconds(x: float) -> str:
    return f"{x:.3f}" if math.isfinite(x) else "0.000"


def _dotted(path: str) -> str:
    """``tests/test_model.py`` -> ``tests.test_model`` (``.``/``..`` parts, a drive and the suffix dropped)."""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".", "..") and not p.endswith(":")]
    if parts:
        parts[-1] = parts[-1].rsplit(".", 1)[0] if "." in parts[-1].lstrip(".") else parts[-1]
    return ".".join(parts) or "gradcheck"


def _target_class(target: str) -> str:
    """The classname of a ``gradcheck check TARGET`` check: ``examples/model.py:make`` ->
    ``examples.model.make``; ``pkg.module:make`` -> ``pkg.module.make``."""
    where, sep, factory = target.rpartition(":")
    if not sep or not factory or "/" in factory or "\\" in factory or factory.endswith(".py"):
        where, factory = target, "factory"  # no factory given (or a Windows drive letter): the default
    file_like = where.endswith(".py") or "/" in where or "\\" in where
    module = _dotted(where) if file_like else where
    return f"{module}.{factory}"


def case_names(r: Row, meta: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """``(classname, name)`` of a check's ``<testcase>``, from the report's ``meta`` and the check:

    * pytest (``meta["source"] == "pytest"``, names ``path/test_x.py::test_y[::check]``): the test
      module in dotted form (``tests.test_model``) and the rest of the node id (``test_y::check``);
    * a sweep (``meta["command"]`` starts with ``gradcheck sweep``): ``sweep.<dtype>.<activation>.<loss>``;
    * ``gradcheck check TARGET`` (``meta["target"]``): the target, dotted (``examples.model.factory``);
    * otherwise ``gradcheck.<activation>.<loss>`` for a check with a network spec, else ``gradcheck``.
    """
    meta = meta or {}
    if meta.get("source") == "pytest" and "::" in r.name:
        path, _, rest = r.name.partition("::")
        return _dotted(path), rest
    if str(meta.get("command") or "").startswith("gradcheck sweep") and r.activation and r.loss:
        return f"sweep.{r.dtype}.{r.activation}.{r.loss}", r.name
    if meta.get("target"):
        return _target_class(str(meta["target"])), r.name
    if r.activation and r.loss:
        return f"gradcheck.{r.activation}.{r.loss}", r.name
    return "gradcheck", r.name


def junit_xml(rows: Sequence[Row], *, suite: str = "gradcheck", meta: Mapping[str, Any] | None = None) -> str:
    """The JUnit XML document (UTF-8 text with declaration); ``meta`` (the report's) tells where the
    checks come from, for the testcases' ``classname`` (:func:`case_names`)."""
    failures = sum(not r.passed for r in rows)
    total_time = sum(r.seconds for r in rows if math.isfinite(r.seconds))
    root = ET.Element("testsuites", name=xml_text(suite), tests=str(len(rows)), failures=str(failures),
                      errors="0", skipped="0", time=_seconds(total_time))
    ts = ET.SubElement(root, "testsuite", name=xml_text(suite), tests=str(len(rows)),
                       failures=str(failures), errors="0", skipped="0", time=_seconds(total_time))
    for r in rows:
        classname, name = case_names(r, meta)
        case = ET.SubElement(ts, "testcase", classname=xml_text(classname), name=xml_text(name),
                             time=_seconds(r.seconds))
        props = ET.SubElement(case, "properties")
        for key, value in (("max_rel_error", r.max_rel_error), ("tolerance", r.tolerance), ("margin", r.margin),
                           *((p, v) for p, v in r.errors.items() if v is not None),
                           ("dtype", r.dtype), ("worst_param", r.worst_param), ("spec", r.label)):
            if value is not None:
                ET.SubElement(props, "property", name=key, value=xml_text(_prop(value)))
        if not r.passed:
            text = r.explanation
            diag = r.data.get("diagnosis") or {}
            kind = f"gradcheck.{diag.get('pattern')}" if diag.get("pattern") else "gradcheck.GradientMismatch"
            fail = ET.SubElement(case, "failure", message=xml_text(text.splitlines()[0] if text else "failed"),
                                 type=xml_text(kind))
            fail.text = xml_text(text)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _prop(value: object) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else
                                                         ("inf" if value > 0 else "-inf"))
    return str(value)
