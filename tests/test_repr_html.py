"""The notebook card (gradcheck.report.card, ``Result._repr_html_``, ``Outcome._repr_html_``): passing,
failing, operator and fast-mode results; hostile names stay text; the CSS is scoped; the card and the
report's failure section come from one template; and, in a real headless Chromium, a page with a
passing and a failing card (under a notebook-like stylesheet) shows the right text without a console
error (screenshot: /tmp/card.png).
"""
from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import gradcheck
from gradcheck.report import card
from gradcheck.teach import get_lesson, run_lesson
from gradcheck_reference.network import Network
from gradcheck_reference.train import XOR_SPEC, XOR_X, XOR_Y

HOSTILE = ("<script>alert(1)</script>", '"><img src=x onerror=alert(2)>', "W&amp;<b>")


class Parsed(HTMLParser):
    """Tags, attributes and visible text of a fragment (style contents left out of the text)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.parts: list[str] = []
        self._style = 0
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._style += tag == "style"

    def handle_endtag(self, tag):
        self._style -= tag == "style"

    def handle_data(self, data):
        if not self._style:
            self.parts.append(data)

    @property
    def text(self) -> str:
        return re.sub(r"\s+", " ", " ".join(self.parts))

    def classes(self) -> set[str]:
        return {c for _, a in self.tags for c in (a.get("class") or "").split()}


# -- results ---------------------------------------------------------------------------------------------
def _xor():
    net = Network(XOR_SPEC)
    return net, net.init_params()


def passing():
    net, params = _xor()
    return gradcheck.check(net.loss_and_grads, params, XOR_X, XOR_Y, name="XOR, reference")


def failing():
    net, params = _xor()

    def doubled(p, X, y):
        loss, grads = net.loss_and_grads(p, X, y)
        return loss, dict(grads, W2=2 * grads["W2"])
    return gradcheck.check(doubled, params, XOR_X, XOR_Y, name="XOR, W2 doubled")


def _layer(inp):
    return {"y": np.tanh(inp["x"]) * inp["w"]}


def _layer_vjp(inp, ct, scale=1.0):
    t = np.tanh(inp["x"])
    return {"x": ct["y"] * (1 - t ** 2) * inp["w"] * scale, "w": ct["y"] * t}


def _inputs():
    rng = np.random.default_rng(0)
    return {"x": rng.normal(size=(3,)), "w": rng.normal(size=(3,))}


def _small_net():
    from gradcheck.spec import Layer, NetworkSpec
    spec = NetworkSpec(input_dim=5, layers=(Layer(6, "tanh"), Layer(2, "identity")), loss="mse", batch=4)
    net = Network(spec)
    rng = np.random.default_rng(1)
    return net, net.init_params(), rng.normal(size=(4, 5)), rng.normal(size=(4, 2))


def hostile_results():
    """A check whose name and parameter names are HTML, passing and failing."""
    rng = np.random.default_rng(2)
    params = {name: rng.normal(size=(2,)) for name in HOSTILE}

    def fn(p, X, y, bug=False):
        loss = sum(float(np.sum(v ** 2)) for v in p.values())
        grads = {k: 2 * v for k, v in p.items()}
        if bug:
            grads[HOSTILE[1]] = -grads[HOSTILE[1]]
        return loss, grads
    ok = gradcheck.check(fn, params, np.zeros(1), None, name="<script>alert('name')</script>")
    bad = gradcheck.check(lambda p, X, y: fn(p, X, y, bug=True), params, np.zeros(1), None,
                          name='"><svg onload=alert(3)>')
    return ok, bad


# -- passing and failing -----------------------------------------------------------------------------------
def test_passing_card_is_compact():
    r = passing()
    html = r._repr_html_()
    doc = Parsed(html)
    assert 'data-gradcheck-card="passed"' in html
    assert "PASSED" in doc.text and "XOR, reference" in doc.text
    assert f"max relative error {gradcheck.result.fmt_error(r.max_rel_error)}" in doc.text
    assert "margin" in doc.text and "Per tensor" in doc.text
    for name in r.tensors:
        assert name in doc.text
    assert "Worst element" not in doc.text and "<svg" not in html  # a pass shows no failure detail
    assert "Full explanation" in doc.text and str(r).splitlines()[0] in doc.text


def test_failing_card_shows_the_failure_in_full():
    r = failing()
    html = card.render_card(r)
    doc = Parsed(html)
    assert 'data-gradcheck-card="failed"' in html
    assert "FAILED" in doc.text and "XOR, W2 doubled" in doc.text
    assert "W2 is off by a relative error of" in doc.text
    assert "Likely bug:" in doc.text and r.diagnosis is not None and r.diagnosis.message in doc.text
    assert "Worst element" in doc.text and "claimed (analytic)" in doc.text and "numerical" in doc.text
    w = r.worst
    assert w is not None and f"{w.claimed:.9g}" in doc.text and f"{w.numerical:.9g}" in doc.text
    assert "Step-size curve" in doc.text and 'class="gck-chart"' in html  # the SVG, inline
    assert "Per parameter" in doc.text
    failed_rows = re.findall(r'<tr class="gck-failed"><td class="gck-mono">([^<]+)</td>', html)
    assert failed_rows == ["W2"]


def test_a_dict_renders_like_the_result():
    r = failing()
    a = card.render_card(r, key="k")
    b = card.render_card(r.to_dict(), key="k")
    assert Parsed(a).text == Parsed(b).text
    with pytest.raises(TypeError, match="gradcheck.Result"):
        card.render_card("not a result")


def test_chart_ids_differ_between_cards():
    r = failing()
    ids = [set(re.findall(r'\sid="([^"]+)"', card.render_card(r))) for _ in range(2)]
    assert ids[0] and ids[1] and not ids[0] & ids[1]


# -- operator checks and fast mode -------------------------------------------------------------------------
def test_operator_vjp_card():
    r = gradcheck.check_vjp(_layer, lambda i, c: _layer_vjp(i, c, 1.5), _inputs(), name="tanh layer")
    doc = Parsed(card.render_card(r))
    assert not r.passed and "FAILED" in doc.text and "check_vjp" in doc.text
    assert "vjp check of outputs y (3,)" in doc.text  # what was checked
    assert "d y[0] / d x[0]" in doc.text  # the Jacobian entry, as it reads
    assert "blocks" in doc.text and "entries" in doc.text


def test_operator_jvp_and_hvp_cards_pass():
    def jvp(inp, tan):
        t = np.tanh(inp["x"])
        return {"y": tan["x"] * (1 - t ** 2) * inp["w"] + tan["w"] * t}
    r = gradcheck.check_jvp(_layer, jvp, _inputs(), name="tanh layer jvp")
    doc = Parsed(card.render_card(r))
    assert r.passed and "PASSED" in doc.text and "check_jvp" in doc.text and "jvp check" in doc.text
    net, params, X, y = _small_net()
    h = gradcheck.check_hvp(net.loss_and_grads, net.hvp, params, X, y, name="hvp")
    doc = Parsed(card.render_card(h))
    assert h.passed and "PASSED" in doc.text and "check_hvp" in doc.text and "hvp check" in doc.text


def test_fast_mode_cards():
    net, params, X, y = _small_net()
    ok = gradcheck.check(net.loss_and_grads, params, X, y, mode="fast", name="fast")
    html = card.render_card(ok)
    doc = Parsed(html)
    assert ok.passed and "PASSED" in doc.text and "fast mode" in doc.text
    assert "random directional derivatives" in doc.text
    assert ">nan<" not in html  # unmeasured per-tensor errors read "–", not nan

    def flipped(p, X, y):
        loss, grads = net.loss_and_grads(p, X, y)
        return loss, dict(grads, b1=-grads["b1"])
    bad = gradcheck.check(flipped, params, X, y, mode="fast", name="fast, b1 flipped")
    doc = Parsed(card.render_card(bad))
    assert not bad.passed and "FAILED" in doc.text and "b1 is off by a relative error" in doc.text
    assert "Worst element" in doc.text and "bisection" in doc.text


def test_budgeted_check_says_what_it_covered():
    if "coverage" not in {f.name for f in dataclasses.fields(gradcheck.Result)}:
        pytest.skip("no budgeted checks (Result.coverage) in this version")
    net, params, X, y = _small_net()
    r = gradcheck.check(net.loss_and_grads, params, X, y, max_calls=60, name="budgeted")
    if not r.coverage or r.coverage.get("complete"):
        pytest.skip("the full check fit in max_calls")
    doc = Parsed(card.render_card(r))
    assert "coverage: checked" in doc.text and "max_calls 60" in doc.text


def test_a_problem_is_the_headline_once():
    def raises(params, X, y):
        raise RuntimeError("backward not implemented")
    r = gradcheck.check(raises, {"W": np.ones(2)}, np.zeros(1), None, name="raises")
    doc = Parsed(card.render_card(r))
    assert "FAILED" in doc.text and "stopped before comparing gradients" in doc.text
    assert doc.text.count("backward not implemented") == 2  # the problem list and the full explanation


# -- safety ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", [0, 1])
def test_hostile_names_are_text(which):
    r = hostile_results()[which]
    html = card.render_card(r)
    doc = Parsed(html)
    tags = [t for t, _ in doc.tags]
    assert "script" not in tags and "img" not in tags
    assert tags.count("svg") == (0 if r.passed else 1)  # the chart only, never a name
    assert not [(t, k) for t, a in doc.tags for k in a if k.lower().startswith("on")]
    for name in HOSTILE:
        assert name in doc.text  # shown, as text
    assert r.name in doc.text


def test_fragment_is_self_contained_and_scoped():
    html = card.render_card(failing())
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)
    assert "@import" not in html and "url(http" not in html
    doc = Parsed(html)
    assert all(c.startswith("gck") for c in doc.classes()), sorted(c for c in doc.classes() if not c.startswith("gck"))
    # every CSS selector is under the card's root class
    css = re.sub(r"/\*.*?\*/", "", card.card_style(), flags=re.S)
    for block in re.findall(r"([^{}]+)\{[^{}]*\}", css):
        for selector in block.split(","):
            selector = selector.strip()
            assert re.match(r"^(\[data-jp-theme-light=\"false\"\] |\.vscode-dark )?\.gck\b", selector), selector


def test_one_template_for_the_card_and_the_report(tmp_path):
    """The report's failure section and the card come from the same macros: same worst-element rows."""
    r = failing()
    page = gradcheck.report.write([r], tmp_path, title="one template", junit=False).read_text(encoding="utf-8")
    section = page[page.index('<article class="failure"'):page.index("</article>")]

    def kv(html: str, prefix: str) -> list[str]:
        table = re.search(rf'<table class="{prefix}kv">(.*?)</table>', html, re.S)
        assert table is not None
        return re.findall(r"<tr><th>([^<]+)</th><td[^>]*>([^<]*)</td></tr>", table.group(1))
    assert kv(section, "") == kv(card.render_card(r), "gck-") != []


# -- lessons -----------------------------------------------------------------------------------------------
def test_network_lesson_displays():
    outcome = run_lesson(get_lesson("tanh-one-minus-a"))
    html = outcome._repr_html_()
    doc = Parsed(html)
    assert 'data-gradcheck-lesson="tanh-one-minus-a"' in html
    assert "LESSON" in doc.text and "tanh' written as 1 - a" in doc.text
    assert "wrong" in doc.text and "right" in doc.text
    assert "return 1 - a # the square forgotten" in doc.text and "return 1 - a**2" in doc.text
    assert "The fix:" in doc.text and "hidden_layer_derivative" in doc.text
    assert doc.text.count("✓") == 3 and "✗" not in doc.text
    assert html.count("<style>") == 1 and html.count('data-gradcheck-card="failed"') == 1


def test_lesson_with_its_fix_and_a_passing_lesson():
    lesson = get_lesson("relu-kink")
    html = card.render_lesson(run_lesson(lesson), run_lesson(lesson, fixed=True))
    doc = Parsed(html)
    assert "one way" in doc.text and "the other" in doc.text  # not "wrong": the code is correct
    assert html.count('data-gradcheck-card="passed"') == 2
    assert "Kinks left out of the verdict" in doc.text


def test_operator_lesson_displays():
    outcome = run_lesson(get_lesson("linear-bias-first-sample"))
    doc = Parsed(outcome._repr_html_())
    assert "LESSON" in doc.text and "check_vjp" in doc.text and "float64" in doc.text
    assert "FAILED" in doc.text


# -- in a browser ----------------------------------------------------------------------------------------
#: what a notebook's own stylesheet does to tables and text (JupyterLab's rendered-HTML rules, roughly)
NOTEBOOK_CSS = """
body { font-family: serif; font-size: 15px; color: #222; }
table { border-collapse: collapse; table-layout: fixed; margin-left: auto; margin-right: auto; font-size: 10px; }
td, th { text-align: right; padding: 0.5em; border: 1px solid black; }
tbody tr:nth-child(odd) { background: #f5f5f5; } tbody tr:hover { background: rgb(66 165 245 / 20%); }
pre { background: yellow; } .chart { display: none; } .mono { color: green; } .failed { display: none; }
"""
SHOT = Path("/tmp/card.png")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    from tests.test_report_browser import CHROMIUM_ARGS, _chromium

    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium found at /usr/bin/chromium or on PATH (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.mark.browser
def test_cards_in_chromium(browser, tmp_path):
    ok, bad = passing(), failing()
    page_html = ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
                 "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; "
                 "img-src data:\"><title>cards</title>"
                 f"<style>{NOTEBOOK_CSS}</style></head><body>"
                 f"<div class='output'>{ok._repr_html_()}</div><div class='output'>{bad._repr_html_()}</div>"
                 f"<div class='output'>{card.render_card(hostile_results()[1])}</div></body></html>")
    path = tmp_path / "cards.html"
    path.write_text(page_html, encoding="utf-8")
    errors: list[str] = []
    dialogs: list[str] = []
    requests: list[str] = []
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: requests.append(r.url) if not r.url.startswith("file:") else None)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    cards = page.locator("div.gck")
    assert cards.count() == 3
    first, second = cards.nth(0).inner_text(), cards.nth(1).inner_text()  # as rendered (small headings in capitals)
    assert "PASSED" in first and "XOR, reference" in first and "PER TENSOR" in first.upper()
    assert "FAILED" in second and "W2 is off by a relative error" in second and "Likely bug:" in second
    assert "WORST ELEMENT" in second.upper() and "STEP-SIZE CURVE" in second.upper()
    # the notebook's rules do not reach inside: the chart and the failed row stay visible, cells left-aligned
    assert cards.nth(1).locator("svg.gck-chart").is_visible()
    assert cards.nth(1).locator("tr.gck-failed").first.is_visible()
    align = cards.nth(1).locator("table.gck-kv td").first.evaluate("e => getComputedStyle(e).textAlign")
    assert align in ("left", "start")
    layout = cards.nth(1).locator("table.gck-params").first.evaluate("e => getComputedStyle(e).tableLayout")
    assert layout == "auto"
    # the explanation opens without any script
    cards.nth(1).locator("summary").click()
    assert "tolerance =" in cards.nth(1).locator("pre.gck-pre").inner_text()
    # hostile names: shown as text, nothing ran
    third = cards.nth(2).inner_text()
    assert HOSTILE[0] in third and HOSTILE[1] in third
    assert page.locator("img").count() == 0 and page.locator("body script").count() == 0
    cards.nth(1).locator("summary").click()  # closed again for the screenshot
    page.screenshot(path=str(SHOT), full_page=True)
    context.close()
    assert errors == [] and dialogs == [] and requests == []
