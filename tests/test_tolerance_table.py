"""One table of the tolerance model's constants: the docs quote it verbatim and the explanation
text reads it, so changing a constant cannot leave either saying something else."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

import gradcheck
from gradcheck import tolerance
from gradcheck.compare import ANALYTIC_ULPS, SAFETY

DOCS = Path(__file__).resolve().parents[1] / "docs" / "checker.md"


def test_docs_quote_the_table_verbatim():
    assert tolerance.markdown_table() in DOCS.read_text(), (
        "docs/checker.md must contain gradcheck.tolerance.markdown_table() verbatim; regenerate it with\n"
        "python -c 'from gradcheck.tolerance import markdown_table; print(markdown_table())'")


def test_every_constant_says_why():
    for f in dataclasses.fields(tolerance.Constants):
        assert len(f.metadata.get("why", "")) > 20, f.name


def test_the_metric_reads_the_table():
    assert SAFETY == tolerance.MODEL.safety and ANALYTIC_ULPS == tolerance.MODEL.analytic_ulps


def test_the_explanation_quotes_the_constants_in_force(monkeypatch):
    model = dataclasses.replace(tolerance.MODEL, safety=7.0, analytic_ulps=3.0)
    from gradcheck import result as result_module
    monkeypatch.setattr(result_module, "MODEL", model)

    def wrong(p, X, y):
        return float(np.sum(p["w"] ** 2)), {"w": 3 * p["w"]}
    r = gradcheck.check(wrong, {"w": np.array([1.0, 2.0])}, np.zeros(1), None)
    text = str(r)
    assert "7 x the estimate's error bound" in text and "3 ulp of float64" in text, text

