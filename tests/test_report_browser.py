"""The report in a real headless Chromium: offline (every non-file request is blocked and counted),
no console errors, the table filter and sort work, hostile names stay text and open no dialog.

Needs the ``playwright`` package and a Chromium binary (Debian's ``/usr/bin/chromium``; ``playwright
install`` is not used). Run: ``python -m pytest tests/test_report_browser.py -p no:cacheprovider``.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gradcheck import report

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: where the screenshots go (also kept for a human to look at)
SHOTS = Path(__file__).resolve().parents[1] / "reports"


def _chromium() -> str | None:
    for candidate in (os.environ.get("GRADCHECK_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium found at /usr/bin/chromium or on PATH (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def report_url(tmp_path_factory) -> str:
    from tests.test_report import sample_results  # the same real checks as the unit tests

    out = tmp_path_factory.mktemp("browser-report")
    path = report.write(list(sample_results()), out, title="gradcheck browser test",
                        meta={"seed": 0, "command": "pytest tests/test_report_browser.py"})
    return path.resolve().as_uri()


class Watched:
    """A page whose requests, console errors and dialogs are recorded."""

    def __init__(self, browser, url: str, scheme: str = "light"):
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=scheme)
        self.page = self.context.new_page()
        self.page.route("**/*", self._route)
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)
        self.page.goto(url)
        self.page.wait_for_load_state("load")

    def _route(self, route):
        url = route.request.url
        if url.startswith("file:"):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def _dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def visible_rows(self) -> list[str]:
        return self.page.eval_on_selector_all(
            "#checks-table tbody tr", "rows => rows.filter(r => !r.hidden).map(r => r.dataset.status)")

    def show_passing(self, on: bool = True):
        box = self.page.locator("#show-passing")
        if box.is_checked() != on:
            self.page.click("label[for=show-passing]")

    def close(self):
        self.context.close()


@pytest.fixture()
def watched(browser, report_url):
    w = Watched(browser, report_url)
    yield w
    w.close()


def test_offline_no_console_errors_no_dialogs(watched):
    from tests.test_report import sample_results

    page = watched.page
    assert page.title().startswith("gradcheck browser test")
    failed = sum(not r.passed for r in sample_results())
    assert watched.visible_rows() == ["failed"] * failed  # passing checks collapsed by default
    page.wait_for_timeout(200)
    assert watched.blocked == []
    assert watched.errors == []
    assert watched.dialogs == []
    # the inline charts rendered (one heatmap, the histogram, step curves); the float32 map would
    # be a single cell (one float32 check) and is not drawn
    assert page.locator("#heatmaps svg.chart").count() == 1
    assert page.locator("#distribution svg.chart").count() == 1
    assert page.locator(".failure svg.chart").count() >= 5
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "report-browser-test.png"), full_page=False)


def test_hostile_names_are_text(watched):
    from tests.test_report import HOSTILE_IMG, HOSTILE_SCRIPT

    page = watched.page
    # the check names appear as text in the table and as failure headings
    names = page.locator("#checks-table td.name").all_inner_texts()
    assert any(HOSTILE_SCRIPT in t for t in names) and any(HOSTILE_IMG in t for t in names)
    # the parameter names appear as text in the per-parameter table of the hostile check
    params = page.locator("table.params td.mono").all_inner_texts()
    assert HOSTILE_SCRIPT in params and HOSTILE_IMG in params
    # nothing was injected: one script (ours), no img element, no inline handlers, no dialog
    assert page.locator("script").count() == 1
    assert page.locator("img").count() == 0
    assert page.evaluate("() => [...document.querySelectorAll('*')].filter("
                         "e => [...e.attributes].some(a => a.name.startsWith('on'))).length") == 0
    page.wait_for_timeout(200)
    assert watched.dialogs == [] and watched.errors == [] and watched.blocked == []


def test_filter_failed_activation_loss_and_name(watched):
    from tests.test_report import sample_results

    page = watched.page
    rs = sample_results()
    failed = sum(not r.passed for r in rs)
    # passing checks are collapsed by default: only the failures are listed
    assert watched.visible_rows() == ["failed"] * failed
    assert page.locator("#shown").inner_text() == f"{failed} of {len(rs)} checks shown"
    watched.show_passing()
    assert len(watched.visible_rows()) == len(rs)
    page.select_option("#filters select[name=activation]", "relu")
    relu = [r for r in rs if r.spec and r.spec["layers"][0]["activation"] == "relu"]
    assert len(watched.visible_rows()) == len(relu)
    page.select_option("#filters select[name=loss]", "huber")
    assert len(watched.visible_rows()) == sum(r.spec["loss"] == "huber" for r in relu)
    page.select_option("#filters select[name=activation]", "")
    page.select_option("#filters select[name=loss]", "")
    page.fill("#filters input[name=q]", "SIGN FLIP")
    assert len(watched.visible_rows()) == sum("sign flip" in r.name.lower() for r in rs)
    page.fill("#filters input[name=q]", "")
    assert len(watched.visible_rows()) == len(rs)
    assert watched.errors == []


def test_sort_by_error_column(watched):
    page = watched.page
    header = page.locator("#checks-table thead th", has_text="analytic vs numerical")
    col = header.evaluate("th => th.cellIndex")

    def column():
        return page.eval_on_selector_all(
            "#checks-table tbody tr", f"rows => rows.map(r => r.cells[{col}].dataset.sort)")

    def as_float(v):
        return float("inf") if v == "Infinity" else float(v)

    header.locator("button").click()  # numeric columns sort largest first
    values = [as_float(v) for v in column() if v != ""]
    assert values == sorted(values, reverse=True) and values[0] == float("inf")
    assert header.get_attribute("aria-sort") == "descending"
    header.locator("button").click()
    values = [as_float(v) for v in column() if v != ""]
    assert values == sorted(values)
    assert header.get_attribute("aria-sort") == "ascending"
    # sorting by name (text) works too, in natural order ([2] before [16]), and keeps every row
    from gradcheck.report.html import natural_key
    name = page.locator("#checks-table thead th", has_text="Check")
    name.locator("button").click()
    names = page.eval_on_selector_all("#checks-table tbody tr",
                                      "rows => rows.map(r => r.cells[1].querySelector('.nm').textContent.trim())")
    assert names == sorted(names, key=natural_key) and len(names) == len(column())
    assert watched.errors == []


def test_usable_without_javascript(browser, report_url):
    from tests.test_report import sample_results

    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(report_url)
    rs = sample_results()
    rows = page.locator("#checks-table tbody tr")
    assert rows.count() == len(rs)
    # the "show passing" checkbox is pure CSS: passing rows hidden by default, shown when ticked
    assert page.locator("#checks-table tbody tr:visible").count() == sum(not r.passed for r in rs)
    page.click("label[for=show-passing]")
    assert page.locator("#checks-table tbody tr:visible").count() == len(rs)
    assert not page.locator("#filters").is_visible()  # controls appear only when they work
    context.close()


def test_dark_mode_and_print_render(browser, report_url):
    w = Watched(browser, report_url, scheme="dark")
    bg = w.page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert bg != "rgb(255, 255, 255)" and bg != "rgb(247, 247, 245)"  # the dark palette is in use
    SHOTS.mkdir(exist_ok=True)
    w.page.evaluate("() => document.getElementById('heatmaps').scrollIntoView()")
    w.page.screenshot(path=str(SHOTS / "report-browser-test-dark.png"))
    rows = w.page.locator("#checks-table tbody tr")
    w.page.select_option("#filters select[name=loss]", "mse")
    assert w.page.locator("#checks-table tbody tr:visible").count() < rows.count()
    w.page.emulate_media(media="print")
    # printing shows every row, even the filtered-out and the collapsed passing ones, and hides the filter bar
    assert w.page.locator("#checks-table tbody tr:visible").count() == rows.count()
    assert not w.page.locator("#filters").is_visible()
    pdf = w.page.pdf()
    assert pdf[:4] == b"%PDF" and len(pdf) > 10_000
    assert w.errors == [] and w.blocked == []
    w.close()


def test_scannable_at_1280_px(watched):
    """At 1280 px: the table fits its container, the closest call is shown, passing checks are hidden
    until "show passing" is ticked, and no passing check is drawn in failure colours."""
    from tests.test_report import sample_results

    page = watched.page
    rs = sample_results()
    closest = page.locator("#closest-call")
    assert closest.is_visible() and "× tolerance" in closest.inner_text()
    anchor = closest.locator("a.where").get_attribute("href")
    assert page.locator(f"#checks-table tbody tr{anchor}").count() == 1
    assert page.locator("#checks-table tbody tr.passed:visible").count() == 0
    watched.show_passing()
    assert page.locator("#checks-table tbody tr.passed:visible").count() == sum(r.passed for r in rs)
    width = page.evaluate("() => { const t = document.getElementById('checks-table');"
                          " return [t.scrollWidth, t.parentElement.clientWidth]; }")
    assert width[0] <= width[1], width  # no horizontal scrolling
    for col in ("margin", "worst param", "kinks"):  # the right-hand columns are inside the viewport
        box = page.locator("#checks-table thead th", has_text=col).first.bounding_box()
        assert box["x"] + box["width"] <= 1280, col
    colours = page.evaluate("""() => {
        const style = (e) => getComputedStyle(e);
        const bad = style(document.querySelector('#checks-table tr.failed')).backgroundColor;
        const badInk = style(document.querySelector('#checks-table tr.failed .pill')).color;
        return [...document.querySelectorAll('#checks-table tr.passed')].map(r => [
          style(r).backgroundColor === bad,
          [...r.querySelectorAll('td, .pill')].some(c => style(c).color === badInk)]); }""")
    assert colours and not any(a or b for a, b in colours)
    assert watched.errors == []
