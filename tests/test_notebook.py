"""examples/gradcheck_in_a_notebook.ipynb executed headless (nbclient, an ipykernel of this very Python),
then its outputs checked: no error, the passing card says passed, the failing card names the planted
tensor and the diagnosis, the lesson shows. The committed notebook carries no outputs.

Needs the ``notebook`` extra (nbclient, nbformat, ipykernel), which ``make test`` installs; skipped
with the reason when nbclient is missing.
"""
from __future__ import annotations

import json
import os
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "gradcheck_in_a_notebook.ipynb"
KERNEL = "gradcheck-test-python"  # a kernelspec of our own, written per test run: never a stale "python3"


class _Text(HTMLParser):
    """The visible text of an HTML fragment (style and script contents left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("style", "script")

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "script")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def visible(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return re.sub(r"\s+", " ", " ".join(parser.parts))


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook, run top to bottom in a kernel started with ``sys.executable`` (a kernelspec written
    to a temporary JUPYTER_PATH), plus one extra cell reporting the kernel's Python."""
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install -e '.[notebook]')")
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install -e '.[notebook]')")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install -e '.[notebook]')")
    home = tmp_path_factory.mktemp("jupyter")
    spec_dir = home / "data" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "gradcheck tests", "language": "python"}))
    saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR")}
    os.environ.update(JUPYTER_PATH=str(home / "data"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
                      IPYTHONDIR=str(home / "ipython"))
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
        client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=120,
                                         resources={"metadata": {"path": str(NOTEBOOK.parent)}})
        client.execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def _html_outputs(nb) -> list[str]:
    return [o["data"]["text/html"] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") in ("execute_result", "display_data") and "text/html" in o.get("data", {})]


def test_committed_notebook_is_clean():
    """No outputs or execution counts in the repository's copy (it is run here, not stored run)."""
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)


def test_runs_in_this_python_without_errors(executed):
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert [o for o in outputs if o.get("output_type") == "error"] == []
    # stderr may carry an environment's warnings (a font cache being built); never a traceback
    stderr = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
    last = executed.cells[-1].outputs[0]["text"].strip()
    assert os.path.realpath(last) == os.path.realpath(sys.executable)


def test_passing_card(executed):
    cards = [h for h in _html_outputs(executed) if 'data-gradcheck-card="passed"' in h]
    assert cards, "no passing card displayed"
    text = visible(cards[0])
    assert "PASSED" in text and "XOR backprop" in text
    assert "max relative error" in text and "margin" in text
    for name in ("W1", "b1", "W2", "b2"):
        assert name in text
    # the hand-written gradients equal the reference implementation's
    reference = [c for c in executed.cells if c.cell_type == "code" and "reference_grads" in c.source]
    assert reference[0].outputs[0]["data"]["text/plain"] == "True"


def test_failing_card_names_the_tensor_and_the_bug(executed):
    cards = [h for h in _html_outputs(executed) if h.lstrip().startswith("<div class=\"gck gck-failed\"")]
    assert len(cards) == 1, "exactly the planted bug's card fails at top level"
    text = visible(cards[0])
    assert "FAILED" in text and "(1 - h) left out" in text
    assert re.search(r"W1 is off by a relative error", text), text[:400]
    assert "Likely bug:" in text and "activation derivative" in text  # the diagnosis, hidden layer 1
    assert "Worst element" in text and "claimed (analytic)" in text
    assert "<svg" in cards[0] and "step-size curve" in cards[0]  # the chart, inline
    # the tensors the bug corrupts are marked failed, the output layer's are not
    failed = {name for status, name in re.findall(r'<tr class="(gck-failed|)"><td class="gck-mono">(\w+)</td>', cards[0])
              if status}
    assert failed == {"W1", "b1"}


def test_lesson_shows(executed):
    lessons = [h for h in _html_outputs(executed) if "data-gradcheck-lesson" in h]
    assert len(lessons) == 1
    text = visible(lessons[0])
    assert "LESSON" in text and "tanh' written as 1 - a" in text
    assert "return 1 - a" in text and "return 1 - a**2" in text  # wrong and right, side by side
    assert "The fix:" in text and "FAILED" in text and "✗" not in text  # caught, located, named


def test_html_of_every_output_is_one_self_contained_fragment(executed):
    for html in _html_outputs(executed):
        assert "<script" not in html.lower()
        assert not re.search(r"""(?:src|href)\s*=\s*["'](?:https?:)?//""", html)
        assert "<link" not in html.lower()
