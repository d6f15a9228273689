"""The documentation site builds: ``mkdocs build --strict`` (warnings are errors: a broken link,
a docstring mkdocstrings cannot parse, a page missing from the nav), offline, with the API
reference generated from the docstrings. ``make docs`` runs the same build into site/."""
from __future__ import annotations

import html
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings_handlers.python")
pytest.importorskip("material")


def _text(page: Path) -> str:
    """A page's visible text: tags dropped, entities decoded, whitespace collapsed."""
    raw = re.sub(r"<script\b.*?</script>", " ", page.read_text(encoding="utf-8"), flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", raw)).split())


def test_docs_build(tmp_path):
    """One build (under pytest-xdist a module fixture could build once per worker)."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"

    # the API reference is generated from the docstrings
    import gradcheck

    first_line = inspect.getdoc(gradcheck.check).splitlines()[0].replace("`", "")
    assert first_line in _text(tmp_path / "api" / "index.html"), "gradcheck.check's docstring is not in api/"

    # every page of docs/ is built (and so is in the nav: --strict warns about pages left out)
    for stem in sorted(p.stem for p in (ROOT / "docs").glob("*.md")):
        built = tmp_path / "index.html" if stem == "index" else tmp_path / stem / "index.html"
        assert built.exists(), f"docs/{stem}.md was not built"

    # no web fonts or CDN assets: the pages render offline (material's theme.font: false)
    external = set()
    for page in tmp_path.rglob("*.html"):
        external.update(re.findall(r'<(?:link|script|img)\b[^>]*?(?:href|src)="(https?://[^"]+)"',
                                   page.read_text(encoding="utf-8")))
    assert not external, f"pages load from the network: {sorted(external)}"
