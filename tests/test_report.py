"""The report: JSON (schema, round trip, no NaN literals), JUnit XML, HTML content and safety, charts,
atomic writes, the CLI. Results are real checks of the reference network, some with planted bugs."""
from __future__ import annotations

import json
import math
import os
import re
import xml.etree.ElementTree as ET
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import gradcheck
from gradcheck import report
from gradcheck.report import charts, records
from gradcheck.result import ORACLE_PAIRS, SECOND_ORDER_PAIRS, Result
from gradcheck.spec import Layer, NetworkSpec
from reference.network import Network

HOSTILE_SCRIPT = "<script>alert(1)</script>"
HOSTILE_IMG = '"><img src=x onerror=alert(1)>'

ACTS = ("tanh", "sigmoid", "relu", "softplus", "gelu", "elu")
LOSSES = ("mse", "huber", "bce", "softmax_cross_entropy")


def _spec(act: str, loss: str, dtype: str = "float64", seed: int = 0, batch: int = 4) -> NetworkSpec:
    out = {"bce": Layer(1, "sigmoid"), "softmax_cross_entropy": Layer(3, "identity")}.get(loss, Layer(2, "identity"))
    return NetworkSpec(3, (Layer(4, act), out), loss, batch=batch, dtype=dtype, seed=seed)


def _batch(spec: NetworkSpec, seed: int = 0):
    rng = np.random.default_rng(seed)
    dt = np.dtype(spec.dtype)
    X = rng.standard_normal((spec.batch, spec.input_dim)).astype(dt)
    out = spec.output_dim
    if spec.loss == "bce":
        y = rng.uniform(0.1, 0.9, (spec.batch, out)).astype(dt)
    elif spec.loss == "softmax_cross_entropy":
        y = np.eye(out, dtype=dt)[rng.integers(0, out, spec.batch)]
    else:
        y = rng.standard_normal((spec.batch, out)).astype(dt)
    return X, y


def _check(fn, spec: NetworkSpec, name: str, params=None, X=None, y=None) -> Result:
    net = Network(spec)
    params = net.init_params() if params is None else params
    if X is None:
        X, y = _batch(spec, spec.seed)
    # symbolic=False keeps these tests independent of the SymPy oracle; the spec is still recorded
    return gradcheck.check(fn, params, X, y, name=name, spec=spec, symbolic=False)


def _wrap(net: Network, change):
    """The reference network with ``change(grads, params, X, y)`` applied to its gradient: a planted bug."""
    def fn(params, X, y):
        loss, grads = net.loss_and_grads(params, X, y)
        grads = {k: np.array(v, copy=True) for k, v in grads.items()}
        change(grads, params, X, y)
        return loss, grads
    return fn


def _set(key, ix, value):
    def change(g, *_):
        g[key][ix] = value
    return change


def _hostile_fn(net: Network):
    """The reference network with parameters renamed to hostile strings, and W1's gradient halved."""
    names = {"W1": HOSTILE_SCRIPT, "b1": HOSTILE_IMG}

    def fn(params, X, y):
        inner = {k: params[names.get(k, k)] for k in ("W1", "b1", "W2", "b2")}
        loss, grads = net.loss_and_grads(inner, X, y)
        grads = {names.get(k, k): np.array(v, copy=True) for k, v in grads.items()}
        grads[HOSTILE_SCRIPT] *= 0.5
        return loss, grads
    return fn


@lru_cache(maxsize=1)
def sample_results() -> tuple[Result, ...]:
    """About 35 real checks: a 6 x 4 grid of correct networks, float32, a relu kink, planted bugs
    (sign flip, factor 2, one wrong element, batch factor, nan gradient, a raising fn) and hostile
    check and parameter names."""
    out = []
    for act in ACTS:
        for loss in LOSSES:
            spec = _spec(act, loss, seed=len(out))
            out.append(_check(Network(spec), spec, f"{act} x {loss}"))
    spec = _spec("tanh", "mse", "float32", seed=3)
    out.append(_check(Network(spec), spec, "tanh x mse float32"))
    # relu at a kink: zero biases and a zero input row put every hidden pre-activation at 0
    spec = _spec("relu", "mse", seed=5)
    net = Network(spec)
    params = {k: (np.zeros_like(v) if k.startswith("b") else v) for k, v in net.init_params().items()}
    X, y = _batch(spec, 5)
    X[0] = 0.0
    out.append(_check(net, spec, "relu x mse at a kink", params, X, y))
    # the same kink with a sign bug in the output layer: fails, kinks still listed
    out.append(_check(_wrap(net, lambda g, *_: g.__setitem__("W2", -g["W2"])), spec,
                      "relu x mse at a kink, W2 sign flipped", params, X, y))
    bugs = [
        ("tanh", "mse", "sign flip in W1", lambda g, *_: g.__setitem__("W1", -g["W1"])),
        ("sigmoid", "bce", "factor 2 in b2", lambda g, *_: g.__setitem__("b2", 2 * g["b2"])),
        ("relu", "huber", "one wrong element", _set("W1", (1, 2), 0.123)),
        ("gelu", "softmax_cross_entropy", "gradient not averaged over the batch",
         lambda g, p, X, y: [g.__setitem__(k, v * len(X)) for k, v in list(g.items())]),
        ("elu", "mse", "nan in the gradient", _set("b1", (0,), math.nan)),
        ("softplus", "huber", "off by 1e-6 relative", lambda g, *_: g.__setitem__("W2", g["W2"] * (1 + 1e-6))),
    ]
    for act, loss, what, change in bugs:
        spec = _spec(act, loss, seed=len(out))
        out.append(_check(_wrap(Network(spec), change), spec, f"{act} x {loss}: {what}"))
    spec = _spec("tanh", "mse", seed=11)

    def raises(params, X, y):
        raise RuntimeError("backward not implemented for this layer")
    r = gradcheck.check(raises, Network(spec).init_params(), *_batch(spec), name="user code that raises")
    out.append(r)  # no spec: grouped under its name only
    spec = _spec("tanh", "mse", seed=12)
    net = Network(spec)
    names = {"W1": HOSTILE_SCRIPT, "b1": HOSTILE_IMG}
    params = {names.get(k, k): v for k, v in net.init_params().items()}
    out.append(_check(_hostile_fn(net), spec, HOSTILE_SCRIPT, params))
    out.append(_check(Network(spec), spec, HOSTILE_IMG))
    return tuple(out)


def sample_dicts() -> list[dict]:
    return [r.to_dict() for r in sample_results()]


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    report.write(list(sample_results()), out, title="sample report",
                 meta={"seed": 7, "command": "pytest tests/test_report.py", "duration": 1.5})
    return out


# -- the sample itself is what the tests below claim it is ----------------------------------------
def test_sample_has_the_planted_outcomes():
    rs = sample_results()
    by_name = {r.name: r for r in rs}
    assert all(by_name[f"{a} x {l}"].passed for a in ACTS for l in LOSSES)
    assert by_name["relu x mse at a kink"].passed and by_name["relu x mse at a kink"].kinks
    assert not by_name["tanh x mse: sign flip in W1"].passed
    assert by_name["tanh x mse: sign flip in W1"].step_curve
    assert math.isnan(by_name["elu x mse: nan in the gradient"].max_rel_error) or \
        not by_name["elu x mse: nan in the gradient"].passed
    assert not by_name["user code that raises"].passed and by_name["user code that raises"].spec is None
    assert not by_name[HOSTILE_SCRIPT].passed and HOSTILE_SCRIPT in by_name[HOSTILE_SCRIPT].tensors


# -- JSON ------------------------------------------------------------------------------------------
def _strict_json(text: str):
    def no_constants(name):
        raise AssertionError(f"JSON literal {name} in gradcheck.json (nan/inf must be strings)")
    return json.loads(text, parse_constant=no_constants)


def test_json_is_versioned_and_has_no_nan_literals(written):
    doc = _strict_json((written / "gradcheck.json").read_text(encoding="utf-8"))
    assert doc["schema"] == report.SCHEMA_ID == "gradcheck-report/2"
    assert doc["summary"]["checks"] == len(sample_results())
    assert doc["summary"]["failed"] == sum(not r.passed for r in sample_results())
    assert doc["meta"] == {"seed": 7, "command": "pytest tests/test_report.py", "duration": 1.5}
    assert {"gradcheck", "python", "numpy", "sympy", "hypothesis"} <= set(doc["environment"])
    nan_case = next(r for r in doc["results"] if r["name"] == "elu x mse: nan in the gradient")
    assert "nan" in json.dumps(nan_case)  # encoded as the string "nan"


def test_json_validates_against_the_schema(written):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (dev extra) not installed: "
                                     "schema validation of gradcheck.json skipped")
    schema = json.loads(report.SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    doc = _strict_json((written / "gradcheck.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(doc)
    # the schema can fail: a NaN smuggled in as a JSON number, a wrong version, a missing field
    validator = jsonschema.Draft202012Validator(schema)
    bad = json.loads(json.dumps(doc))
    bad["results"][0]["max_rel_error"] = "huge"
    assert not validator.is_valid(bad)
    assert not validator.is_valid({**doc, "schema": "gradcheck-report/3"})
    # schema 2's new fields are there and typed: a margin must be a number
    assert {"margin", "normwise", "n_below_resolution", "closest"} <= set(doc["results"][0])
    assert {"margin", "normwise", "n_below_resolution", "n_unsettled"} <= set(next(iter(doc["results"][0]["tensors"].values())))
    assert doc["summary"]["closest"]["margin"] == max(r["margin"] for r in doc["results"] if r["margin"] != "nan")
    bad = json.loads(json.dumps(doc))
    bad["results"][0]["margin"] = "small"
    assert not validator.is_valid(bad)
    bad = json.loads(json.dumps(doc))
    bad["results"][0]["closest"]["resolved"] = "yes"
    assert not validator.is_valid(bad)
    assert not validator.is_valid({k: v for k, v in doc.items() if k != "results"})


def test_load_round_trips_and_rerenders_identically(written, tmp_path):
    saved = report.load(written / "gradcheck.json")
    assert saved.title == "sample report" and saved.meta["seed"] == 7
    assert saved.results == sample_dicts()
    # Result.from_dict restores every result exactly
    assert [Result.from_dict(d).to_dict() for d in saved.results] == saved.results
    # re-rendering the saved file (the CLI path) reproduces the page byte for byte
    from gradcheck.report import _write
    _write(saved.results, tmp_path, title=saved.title, meta=saved.meta, environment=saved.environment)
    assert (tmp_path / "index.html").read_bytes() == (written / "index.html").read_bytes()
    assert (tmp_path / "junit.xml").read_bytes() == (written / "junit.xml").read_bytes()


def test_dicts_and_results_give_the_same_report(tmp_path):
    a = report.write(list(sample_results())[:8], tmp_path / "a")
    b = report.write(sample_dicts()[:8], tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / "a/gradcheck.json").read_bytes() == (tmp_path / "b/gradcheck.json").read_bytes()


def test_load_rejects_other_files(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"schema": "gradcheck-report/9", "results": []}))
    with pytest.raises(ValueError, match="version 9"):
        report.load(p)
    p.write_text(json.dumps({"results": []}))
    with pytest.raises(ValueError, match="schema=None"):
        report.load(p)
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        report.load(p)
    with pytest.raises(FileNotFoundError, match="json_path="):
        report.load(tmp_path / "missing.json")


def test_write_validates_its_arguments(tmp_path):
    with pytest.raises(TypeError, match="results must be a list"):
        report.write(sample_results()[0], tmp_path)
    with pytest.raises(TypeError, match=r"results\[1\] must be a gradcheck.Result"):
        report.write([sample_results()[0], 3.0], tmp_path)
    with pytest.raises(ValueError, match=r"results\[0\] is a dict without"):
        report.write([{"name": "x"}], tmp_path)
    with pytest.raises(TypeError, match="meta must be a dict"):
        report.write([], tmp_path, meta=[1])
    assert not list(tmp_path.iterdir())  # nothing written on bad input


def test_meta_with_numpy_and_nonfinite_values_serializes(tmp_path):
    report.write(list(sample_results())[:2], tmp_path,
                 meta={"seed": np.int64(3), "worst": math.inf, "ratio": np.float32(0.5), "path": Path("/x")})
    doc = _strict_json((tmp_path / "gradcheck.json").read_text())
    assert doc["meta"] == {"seed": 3, "worst": "inf", "ratio": 0.5, "path": "/x"}


# -- JUnit ---------------------------------------------------------------------------------------------
def test_junit_has_one_testcase_per_check_and_failures_carry_the_explanation(written):
    root = ET.parse(written / "junit.xml").getroot()
    assert root.tag == "testsuites"
    cases = root.findall("./testsuite/testcase")
    rs = sample_results()
    assert len(cases) == len(rs)
    assert root.get("tests") == str(len(rs)) and root.get("failures") == str(sum(not r.passed for r in rs))
    for case, r in zip(cases, rs):
        assert case.get("name") == r.name
        failure = case.find("failure")
        assert (failure is None) == r.passed
        if failure is not None:
            assert failure.text == str(r)
            assert failure.get("message") == str(r).splitlines()[0]
    sign = next(c for c in cases if c.get("name") == "tanh x mse: sign flip in W1")
    assert sign.find("failure").get("type") == "gradcheck.sign_flip"
    assert sign.get("classname") == "gradcheck.tanh.mse"


def test_junit_survives_control_characters_in_names(tmp_path):
    d = sample_dicts()[0]
    d["name"] = "bell\x07 and nul\x00 name"
    report.write([d], tmp_path)
    case = ET.parse(tmp_path / "junit.xml").getroot().find("./testsuite/testcase")
    assert case.get("name") == "bell\\x07 and nul\\x00 name"


# -- HTML ---------------------------------------------------------------------------------------------
class _Page(HTMLParser):
    """Collects the tags, attributes and scripts of a page (the browser's view of its structure)."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def _page(path: Path) -> tuple[str, _Page]:
    html = path.read_text(encoding="utf-8")
    p = _Page()
    p.feed(html)
    return html, p


def test_html_escapes_hostile_names(written):
    html, page = _page(written / "index.html")
    assert HOSTILE_SCRIPT not in html and HOSTILE_IMG not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown as text (check and parameter name)
    assert len(page.scripts) == 1  # only the page's own script
    assert not [t for t, a in page.tags if t == "img"]
    assert not [a for _, attrs in page.tags for a in attrs if a.startswith("on")]  # no event handlers
    # the parameter-name table of the hostile check lists both hostile names as text
    section = html[html.index('id="fail-check-'):]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section and "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in section


def test_html_is_self_contained(written):
    html, page = _page(written / "index.html")
    for tag, attrs in page.tags:
        for key in ("src", "href", "xlink:href", "action"):
            value = attrs.get(key)
            assert value is None or value.startswith("#") or value.startswith("data:"), (tag, key, value)
    assert "http://" not in re.sub(r'xmlns(:\w+)?="http://www\.w3\.org/[^"]*"', "", html)
    assert "https://" not in html
    csp = next(a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp


def test_csp_hash_matches_the_script(written):
    import base64
    import hashlib
    _, page = _page(written / "index.html")
    csp = next(a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    digest = base64.b64encode(hashlib.sha256(page.scripts[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp


def test_html_ids_are_unique(written):
    _, page = _page(written / "index.html")
    ids = [a["id"] for _, a in page.tags if "id" in a]
    dup = {i for i in ids if ids.count(i) > 1}
    assert not dup


def test_html_shows_summary_table_and_failure_details(written):
    html, page = _page(written / "index.html")
    rs = sample_results()
    rows = [a for t, a in page.tags if t == "tr" and "data-status" in a]
    assert len(rows) == len(rs)
    assert [a["data-status"] for a in rows] == ["passed" if r.passed else "failed" for r in rs]
    assert {a["data-activation"] for a in rows} == set(ACTS) | {""}
    failures = [a["id"] for t, a in page.tags if t == "article"]
    assert len(failures) == sum(not r.passed for r in rs)
    sign = html[html.index("sign flip in W1</h3>"):]
    sign = sign[: sign.index("</article>")]
    assert "sign flipped" in sign  # the diagnosis
    assert "W1[" in sign and "Step-size curve" in sign
    assert ("<svg" in sign) == charts.available()  # without matplotlib the curve is a table of numbers
    assert "spec = NetworkSpec(input_dim=3" in sign  # the reproduction line
    kink = html[html.index("at a kink, W2 sign flipped</h3>"):]
    assert "Kinks left out of the verdict" in kink[: kink.index("</article>")]
    assert "seed" in html and "pytest tests/test_report.py" in html and "1.5 s" in html
    # the reproduction line is Python that rebuilds the spec
    d = next(r for r in rs if r.name == "tanh x mse: sign flip in W1")
    ns = {}
    exec(records.reproduction(d.to_dict()), ns)
    assert ns["spec"] == NetworkSpec.from_dict(d.spec)


def test_one_heatmap_per_oracle_pair_with_failures_marked(written):
    pytest.importorskip("matplotlib", reason="matplotlib not installed: the heatmaps are tables")
    html, page = _page(written / "index.html")
    figures = [a["id"] for t, a in page.tags if t == "figure" and a.get("id", "").startswith("heatmap-")]
    # symbolic oracle off in these samples: one pair; one map per dtype, float64 first; the float32
    # map would be a single cell (one float32 check): a 1 x 1 map is not drawn
    assert figures == ["heatmap-analytic_vs_numerical-float64"]
    heat = html[html.index('id="heatmap-analytic_vs_numerical-float64"'):]
    heat = heat[: heat.index("</figure>")]
    # 6 activations x 4 losses; failing cells marked with a cross; nan shown as text
    for name in ACTS + LOSSES:
        assert f">{name}</text>" in heat
    assert heat.count("✗") == len({(r.spec["layers"][0]["activation"], r.spec["loss"])
                                    for r in sample_results() if not r.passed and r.spec})
    assert ">✗ inf</text>" in heat  # the nan gradient: the check failed with an infinite error
    assert "worst margin" in heat  # coloured by margin, split at 1


def test_three_oracle_pairs_give_three_heatmaps(tmp_path):
    ds = sample_dicts()[:6]
    for k, d in enumerate(ds):  # numbers standing in for the symbolic oracle: the report only renders them
        d["oracles"]["analytic_vs_symbolic"] = 10.0 ** (-14 + k)
        d["oracles"]["numerical_vs_symbolic"] = 10.0 ** (-10 + k) if k else "nan"
    html = report.write(ds, tmp_path).read_text()
    for pair in ORACLE_PAIRS:
        assert f'id="heatmap-{pair}-float64"' in html
    for pair in SECOND_ORDER_PAIRS:   # no second-order results in these records: no heatmap for them
        assert f'id="heatmap-{pair}-float64"' not in html
    heat = html[html.index('id="heatmap-numerical_vs_symbolic-float64"'):]
    # a nan error renders as a grey "nan" cell (or a "nan" table cell without matplotlib)
    assert (">nan</text>" if charts.available() else '<td class="mono">nan</td>') in heat[: heat.index("</figure>")]
    summary = json.loads((tmp_path / "gradcheck.json").read_text())["summary"]
    assert summary["worst"]["numerical_vs_symbolic"]["value"] == "nan"  # nan is the worst outcome
    assert summary["worst"]["analytic_vs_symbolic"]["value"] == 1e-9


def test_second_order_pairs_get_their_own_heatmaps(tmp_path):
    """Records of ``gradcheck sweep --order 2`` carry hvp_vs_numerical (and hvp_vs_symbolic where
    SymPy ran): the report shows each as its own heatmap, titled as second order."""
    ds = sample_dicts()[:6]
    for k, d in enumerate(ds):
        d["oracles"]["hvp_vs_numerical"] = 10.0 ** (-9 + k)
        if k % 2 == 0:
            d["oracles"]["hvp_vs_symbolic"] = 10.0 ** (-15 + k)
    html = report.write(ds, tmp_path).read_text()
    for pair in SECOND_ORDER_PAIRS:
        assert f'id="heatmap-{pair}-float64"' in html
    assert "second order: hvp vs numerical" in html
    summary = json.loads((tmp_path / "gradcheck.json").read_text())["summary"]
    assert summary["worst"]["hvp_vs_numerical"]["value"] == 1e-4


def test_activation_label_choice():
    spec = lambda layers: {"layers": [{"width": 2, "activation": a} for a in layers], "loss": "mse"}
    assert records.activation_label(spec(["tanh", "relu", "tanh", "sigmoid"])) == "tanh+relu"
    assert records.activation_label(spec(["relu"])) == "relu"
    assert records.activation_label(spec(["gelu", "gelu", "identity"])) == "gelu"
    assert records.activation_label(None) is None


def test_charts_are_deterministic_and_salted_per_chart(tmp_path):
    from gradcheck.report import charts
    pytest.importorskip("matplotlib")
    curve = [[0.1, 2.0], [0.01, 2.0], [0.001, 2.0]]
    a = charts.step_curve(curve, 1e-8, key="step-a")
    assert a == charts.step_curve(curve, 1e-8, key="step-a")
    b = charts.step_curve(curve, 1e-8, key="step-b")
    ids_a = set(re.findall(r' id="([^"]+)"', a))
    ids_b = set(re.findall(r' id="([^"]+)"', b))
    assert ids_a and not ids_a & ids_b
    assert a.startswith("<svg") and "<?xml" not in a and "<!--" not in a and "DOCTYPE" not in a
    assert "<text" in a  # svg.fonttype none: text stays text
    assert "currentColor" in a  # axes follow the page's light/dark theme


def test_chart_labels_with_dollar_signs_do_not_crash_mathtext():
    from gradcheck.report import charts
    pytest.importorskip("matplotlib")
    cells = [records.Cell("a$b$c", "lo$ss", 1e-3, 1, 1), records.Cell("<x>", "mse", math.inf, 1, 0)]
    svg = charts.heatmap(cells, "analytic_vs_numerical")
    assert "a$b$c" in svg and "&lt;x&gt;" in svg


def test_report_without_spec_or_results(tmp_path):
    html = report.write([], tmp_path / "empty").read_text()
    assert "no checks" in html
    r = sample_results()
    raising = [x for x in r if x.name == "user code that raises"]
    html = report.write(raising, tmp_path / "nospec").read_text()
    assert "heatmap-" not in html
    assert "user code that raises" in html and "backward not implemented" in html


def test_size_of_a_500_check_report(tmp_path):
    """500 checks (the sample repeated: 123 failures shown in detail, the 40 worst with a step-size
    chart) stay under 3 MB; measured 1.5 MB HTML, 2.0 MB JSON."""
    ds = sample_dicts()
    many = []
    for k in range(500):
        d = json.loads(json.dumps(ds[k % len(ds)]))
        d["name"] = f"{d.get('name')} #{k}"
        many.append(d)
    path = report.write(many, tmp_path)
    size = path.stat().st_size
    assert size < 3e6, size
    if charts.available():
        from gradcheck.report.html import MAX_STEP_CHARTS
        # the float64 heatmap (the float32 one is 1 x 1: not drawn), histogram, step curves
        assert path.read_text().count("<svg") == 1 + 1 + MAX_STEP_CHARTS
    assert (tmp_path / "gradcheck.json").stat().st_size < 3e6


# -- atomic writes -----------------------------------------------------------------------------------------
def test_interrupted_write_keeps_the_previous_report(tmp_path, monkeypatch):
    first = report.write(list(sample_results())[:3], tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def boom(*a, **k):
        raise KeyboardInterrupt
    import gradcheck.report as rep
    real_replace = os.replace
    calls = []

    def replace_then_die(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # interrupted between two files: the second is never replaced
            raise KeyboardInterrupt
        real_replace(src, dst)
    monkeypatch.setattr(rep.os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        report.write(list(sample_results())[:5], tmp_path)
    monkeypatch.setattr(rep.os, "replace", real_replace)
    # every file is either the old or the new complete version; no temporary file is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)
    assert (tmp_path / "junit.xml").read_bytes() == before["junit.xml"]
    assert first.read_bytes() == before["index.html"]
    json.loads((tmp_path / "gradcheck.json").read_text())  # complete (the new one)
    # a failure while rendering touches nothing
    monkeypatch.setattr("gradcheck.report.html.render", boom)
    with pytest.raises(KeyboardInterrupt):
        report.write(list(sample_results())[:5], tmp_path)
    assert (tmp_path / "index.html").read_bytes() == before["index.html"]


# -- CLI ----------------------------------------------------------------------------------------------------
def test_cli_rerenders_from_json(written, tmp_path, capsys):
    from gradcheck.cli import main
    assert main(["report", str(written / "gradcheck.json"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "index.html").read_bytes() == (written / "index.html").read_bytes()
    assert "checks" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    assert main(["report", str(bad)]) == 2
    assert "expected a JSON object" in capsys.readouterr().err


def test_without_matplotlib_the_report_uses_tables(tmp_path, monkeypatch):
    monkeypatch.setattr(charts, "available", lambda: False)
    html = report.write(list(sample_results()), tmp_path).read_text()
    assert "<svg" not in html
    assert "Charts need matplotlib" in html
    heat = html[html.index('id="heatmap-analytic_vs_numerical-float64"'):]
    heat = heat[: heat.index("</figure>")]
    assert "<td>relu</td><td>huber</td><td>2</td><td>1</td>" in heat  # the cell as a table row: 2 checks, 1 failed


def test_plugin_style_dicts_with_float_nan(tmp_path):
    """The pytest plugin sends plain dicts whose floats may be nan (not yet the "nan" string)."""
    d = sample_dicts()[0]
    d.update(max_rel_error=math.nan, passed=False, name="tests/test_x.py::test_grad[case]::W")
    d["oracles"] = {"analytic_vs_numerical": math.nan}
    report.write([d], tmp_path)
    doc = _strict_json((tmp_path / "gradcheck.json").read_text())
    assert doc["results"][0]["max_rel_error"] == "nan"
    assert "nan" in (tmp_path / "index.html").read_text()


# -- schema 2: margins, the closest call, old files, a scannable page ---------------------------------------
_V2_RESULT = ("margin", "normwise", "n_below_resolution", "closest", "scale")
_V2_TENSOR = ("margin", "normwise", "n_below_resolution", "n_unsettled", "claimed_noise")
_V2_ELEMENT = ("margin", "resolved", "claimed_noise")


def _as_schema_1(d: dict) -> dict:
    """A result dict as gradcheck-report/1 wrote it (no margins)."""
    d = {k: v for k, v in json.loads(json.dumps(d)).items() if k not in _V2_RESULT}
    d["tensors"] = {k: {f: x for f, x in t.items() if f not in _V2_TENSOR} for k, t in d["tensors"].items()}
    for key in ("failures", "kinks"):
        d[key] = [{f: x for f, x in e.items() if f not in _V2_ELEMENT} for e in d[key]]
    if d.get("worst"):
        d["worst"] = {f: x for f, x in d["worst"].items() if f not in _V2_ELEMENT}
    return d


def test_schema_1_files_still_load_and_render(written, tmp_path, capsys):
    from gradcheck.cli import main
    doc = json.loads((written / "gradcheck.json").read_text())
    old = {**doc, "schema": "gradcheck-report/1", "results": [_as_schema_1(d) for d in doc["results"]]}
    for key in ("closest", "worst_by_dtype", "margins", "verdict"):
        old["summary"].pop(key)
    src = tmp_path / "old" / "gradcheck.json"
    src.parent.mkdir()
    src.write_text(json.dumps(old))
    saved = report.load(src)
    assert saved.schema == "gradcheck-report/1" and len(saved.results) == len(doc["results"])
    assert main(["report", str(src), "--out", str(tmp_path / "new")]) == 0
    html = (tmp_path / "new/index.html").read_text()
    assert 'id="closest-call"' in html  # margins derived from the per-tensor errors and tolerances
    assert json.loads((tmp_path / "new/gradcheck.json").read_text())["schema"] == "gradcheck-report/2"
    rows = records.make_rows(saved.results)
    for row, r in zip(rows, sample_results()):
        if r.passed and r.tensors:
            assert row.margin < 1, row.name
        if not r.passed and r.tensors and not any(math.isnan(t.max_rel_error) for t in r.tensors.values()):
            assert row.margin >= 1 or r.problems, row.name


def test_summary_leads_with_verdict_closest_call_and_worst_per_dtype(written):
    html = (written / "index.html").read_text()
    doc = json.loads((written / "gradcheck.json").read_text())
    s = doc["summary"]
    assert s["verdict"] == "failed"
    assert set(s["worst_by_dtype"]) == {"float32", "float64"}
    closest = html[html.index('id="closest-call"'):]
    closest = closest[: closest.index("</div>")]
    assert "× tolerance" in closest and f'href="#{s["closest"]["anchor"]}"' in closest
    summary = html[html.index('id="summary"'):html.index("</section>")]
    assert summary.index("closest-call") < summary.index("worst max relative error, float64") < summary.index("seed")
    # the tolerance row is gone (its max was the absolute floor of unresolved entries): margins instead
    assert "tolerance, float64" not in summary and "margin, float64" in summary


def test_no_one_by_one_heatmap_for_a_single_check_or_a_lesson(tmp_path):
    rs = sample_results()
    one = [next(r for r in rs if r.name == "tanh x mse: sign flip in W1")]
    assert "heatmap-" not in report.write(one, tmp_path / "one").read_text()
    lesson = [one[0], next(r for r in rs if r.name == "tanh x mse")]  # bug and fix: one cell
    assert "heatmap-" not in report.write(lesson, tmp_path / "lesson", title="gradcheck lesson: sign-flip").read_text()


def test_exact_zero_is_annotated_exact():
    pytest.importorskip("matplotlib")
    cells = [records.Cell("tanh", "mse", 0.0, 1, 0, 0.0), records.Cell("relu", "mse", 2.5e-9, 1, 0, 0.01),
             records.Cell("tanh", "bce", 1e-3, 2, 1, 40.0)]
    svg = charts.heatmap(cells, "analytic_vs_symbolic", "float64")
    assert ">exact</text>" in svg and ">0</text>" not in svg
    assert ">2.5e\u22129</text>" in svg and ">✗ 1.0e\u22123</text>" in svg


def test_margin_colours_split_at_one():
    pytest.importorskip("matplotlib")
    from matplotlib.colors import Normalize
    cmap, norm = charts.margin_cmap(), Normalize(charts.MARGIN_LOG_MIN, charts.MARGIN_LOG_MAX)
    for m in (1e-6, 1e-3, 0.1, 0.5, 0.99):  # passing: calm blues
        r, g, b, _ = cmap(norm(math.log10(m)))
        assert b > r, m
    for m in (1.0, 1.5, 10, 1e6):  # at or above the tolerance: red
        r, g, b, _ = cmap(norm(min(math.log10(m), charts.MARGIN_LOG_MAX)))
        assert r > 0.35 and r > 2 * b and r > 2 * g, m


def test_activation_and_loss_columns_only_for_records_with_a_spec(tmp_path, written):
    rs = sample_results()
    nospec = [r for r in rs if r.spec is None] + [Result.from_dict({**rs[0].to_dict(), "spec": None, "name": "t.py::test_a[2]"})]
    html = report.write(nospec, tmp_path).read_text()
    assert ">Activation</th>" not in html and ">Loss</th>" not in html and 'name="activation"' not in html
    full = (written / "index.html").read_text()
    assert ">Activation</th>" in full and ">Loss</th>" in full


def test_natural_sort_key_and_collapsed_passing_rows(written):
    from gradcheck.report import html as h
    names = ["net [16]", "net [2]", "net [2] b", "Net [1]"]
    assert sorted(names, key=h.natural_key) == ["Net [1]", "net [2]", "net [2] b", "net [16]"]
    page = (written / "index.html").read_text()
    assert 'id="show-passing"' in page and "collapse-passing" in page  # > 20 checks: passing collapsed
    assert '"000000".slice(d.length) + d' in page  # report.js pads digit runs to 6 like natural_key


def test_reproduce_is_a_runnable_command_when_one_is_known():
    d = sample_results()[0].to_dict()
    cmd = records.rerun_command(d, {"command": "gradcheck sweep --examples 1", "seed": 3, "examples per cell": 1})
    assert cmd == ("gradcheck sweep --activations tanh --losses mse --dtype float64 --seed 3 --examples 1 "
                   "--out reports/rerun")
    assert records.rerun_command(d, {"command": "gradcheck check ex.py:factory --seed 1"}) == "gradcheck check ex.py:factory --seed 1"
    assert records.rerun_command(d, {}, "gradcheck lesson: sign-one-layer") == "gradcheck teach sign-one-layer"
    assert records.rerun_command({**d, "spec": None, "name": "tests/t.py::test_g[a b]"}) == \
        "python -m pytest 'tests/t.py::test_g[a b]'"
    assert records.rerun_command({**d, "spec": None, "name": "my layer"}) is None


def test_a_minimal_record_without_a_spec_renders(tmp_path):
    """A hand-made failing record with only passed and a null error: the page renders (no crash)."""
    from gradcheck import report
    page = report.write([{"passed": False, "max_rel_error": None}], tmp_path)
    assert page.exists() and "FAILED" in page.read_text(encoding="utf-8").upper()
