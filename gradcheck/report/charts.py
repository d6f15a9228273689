"""Charts as inline SVG strings, drawn with matplotlib without pyplot (no GUI backend is touched).

Output is deterministic (``svg.hashsalt`` per chart, no date) and inlinable: no XML prolog, no
comments or metadata, text as ``<text>`` (``svg.fonttype = none``, so it stays searchable), ids
prefixed per chart so several charts in one page never collide, and axis/text colour set to
``currentColor`` so the page's light or dark theme colours them. matplotlib is imported on first
use only, keeping ``import gradcheck`` fast.
"""
from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from gradcheck.report.records import PAIR_TITLES, Cell, Row

#: drawn in this colour, then replaced by ``currentColor`` (text, axes, ticks follow the page theme)
_INK = "#010203"
#: the log10 error range of the heatmap colour scale (values outside are clipped to the ends)
LOG_MIN, LOG_MAX = -16.0, 0.0
FAIL_COLOR = "#c0262d"
SERIES_COLORS = {"float64": "#3b6fb6", "float32": "#e07b24"}
_OTHER_COLORS = ("#5a9e4b", "#8e5ea2", "#b5651d", "#6c757d")


def available() -> bool:
    """True when matplotlib can be imported (charts are optional; tables carry the same numbers)."""
    try:
        import matplotlib  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def _rc(key: str) -> dict[str, Any]:
    return {"svg.hashsalt": f"gradcheck-{key}", "svg.fonttype": "none", "font.size": 9,
            "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"],
            "text.color": _INK, "axes.edgecolor": _INK, "axes.labelcolor": _INK,
            "xtick.color": _INK, "ytick.color": _INK, "axes.facecolor": "none",
            "figure.facecolor": "none", "savefig.facecolor": "none", "savefig.edgecolor": "none",
            "axes.spines.top": False, "axes.spines.right": False, "path.simplify": True}


@contextmanager
def _chart(key: str, size: tuple[float, float],
           layout: Literal["constrained", "compressed", "tight"] | None = "constrained") -> Iterator[Any]:
    """A Figure on an SVG canvas, built and saved under this module's style (rcParams are read when
    artists are created, so the whole chart is drawn inside the context)."""
    import matplotlib  # noqa: PLC0415
    from matplotlib.backends.backend_svg import FigureCanvasSVG  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    # ignore: matplotlib's stubs type rc keys as a Literal of every rcParam name; these are all valid
    with matplotlib.rc_context(_rc(key)):  # type: ignore[arg-type]
        fig = Figure(figsize=size, layout=layout)
        FigureCanvasSVG(fig)
        yield fig


def _render(fig, key: str, label: str) -> str:
    """The figure as an inlinable SVG element (call inside :func:`_chart`; see the module docstring)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    return clean_svg(buf.getvalue().decode("utf-8"), key, label)


_ID_RE = re.compile(r'\sid="([^"]+)"')
_REF_RE = re.compile(r'(xlink:href="#|href="#|url\(#)([^")]+)')


def clean_svg(svg: str, key: str, label: str) -> str:
    """Strip prolog, comments, metadata and the global ``*`` style; keep only referenced ids,
    prefixed with ``key``; theme colour; responsive size; an accessible name."""
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = re.sub(r'\s*<style type="text/css">.*?</style>', "", svg, flags=re.S)
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", key)
    referenced = {m.group(2) for m in _REF_RE.finditer(svg)}

    def rename(m: re.Match) -> str:
        return f' id="{prefix}-{m.group(1)}"' if m.group(1) in referenced else ""

    svg = _ID_RE.sub(rename, svg)
    svg = _REF_RE.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", svg)
    svg = svg.replace(_INK, "currentColor")
    svg = re.sub(r"\n\s*", "\n", svg).strip()
    m = re.match(r'<svg([^>]*?) width="([\d.]+)pt" height="([\d.]+)pt"', svg)
    if m:
        width = float(m.group(2))
        svg = (f'<svg{m.group(1)} class="chart" role="img" aria-label="{_attr(label)}" '
               f'style="width:{width:g}pt"' + svg[m.end():])
    return svg


def _attr(text: str) -> str:
    return (text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;"))


def _tick(text: str, limit: int = 28) -> str:
    """A label safe for matplotlib (no mathtext: ``$`` escaped) and short enough for an axis."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def _log10(value: float) -> float:
    """log10 of an error; 0 maps to LOG_MIN - 1 (below the scale), inf to +inf, nan stays nan."""
    if math.isnan(value):
        return math.nan
    if value <= 0:
        return LOG_MIN - 1
    return math.log10(value)


# -- heatmap ---------------------------------------------------------------------------------------------
#: the log10 margin range of the heatmap colour scale: 1e-4 .. 1e4, split at 1 (the tolerance). The
#: range is symmetric so the split falls exactly between two of the colormap's 256 levels: a margin
#: of 0.997 is the last blue, 1.0 the first red.
MARGIN_LOG_MIN, MARGIN_LOG_MAX = -4.0, 4.0


def margin_cmap():
    """Diverging at margin 1 (= the tolerance), with a jump there rather than a blend: passing cells
    in a calm sequential blue-green (paler the further below the tolerance), every cell at or above
    the tolerance in reds (darker the further above). Blue/red stays distinct for colour-blind viewers."""
    from matplotlib.colors import LinearSegmentedColormap  # noqa: PLC0415

    span = MARGIN_LOG_MAX - MARGIN_LOG_MIN
    at = lambda v: (v - MARGIN_LOG_MIN) / span  # noqa: E731
    one = at(0.0)
    stops = [(0.0, "#f3f8fb"), (at(-2), "#d4e7f1"), (at(-1), "#a8cfe0"), (one - 1e-6, "#5f9fc2"),
             (one, "#e0403a"), (at(2), "#b5171d"), (1.0, "#6d0a0e")]
    return LinearSegmentedColormap.from_list("gradcheck_margin", stops)


def _short(value: float) -> str:
    """A cell's annotation: the resolved max relative error as ``2.9e−14``; ``exact`` for 0."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf"
    if value == 0:
        return "exact"
    mant, exp = f"{value:.1e}".split("e")
    return f"{mant}e{int(exp)}".replace("-", "\u2212")


def _plural(word: str) -> str:
    return word + ("es" if word.endswith("s") else "s")


def heatmap(cells: Sequence[Cell], pair: str, dtype: str = "", *, rows: str = "activation",
            columns: str = "loss") -> str:
    """Activation (rows) x loss (columns) for one oracle pair, coloured by the worst margin (error /
    tolerance) of the cell's checks on a scale split at 1, annotated with the max relative error over
    resolved elements; failing cells outlined in red and marked with a cross; nan cells grey."""
    import numpy as np  # noqa: PLC0415
    from matplotlib.colors import Normalize  # noqa: PLC0415
    from matplotlib.patches import Rectangle  # noqa: PLC0415

    acts = sorted({c.activation for c in cells})
    losses = sorted({c.loss for c in cells})
    key = f"heat-{pair}-{dtype}" + ("" if rows == "activation" else f"-{rows}")
    longest = max(len(_tick(a)) for a in acts)
    width = min(1.9 + 0.07 * longest + 0.85 * len(losses), 13.0)
    height = min(max(2.6, 1.7 + 0.36 * len(acts)), 11.0)
    with _chart(key, (width, height)) as fig:
        ax = fig.add_subplot()
        grid = np.full((len(acts), len(losses)), np.nan)
        for c in cells:
            m = c.margin
            grid[acts.index(c.activation), losses.index(c.loss)] = (
                math.nan if m is None or math.isnan(m) else (MARGIN_LOG_MIN if m <= 0 else math.log10(m)))
        cmap = margin_cmap()
        norm = Normalize(MARGIN_LOG_MIN, MARGIN_LOG_MAX, clip=True)
        for c in cells:
            i, j = acts.index(c.activation), losses.index(c.loss)
            if c.failed and not math.isnan(grid[i, j]):  # a failed check (e.g. oracles disagree) is red too
                grid[i, j] = max(grid[i, j], 0.0)
        mesh = ax.pcolormesh(np.ma.masked_invalid(np.clip(grid, MARGIN_LOG_MIN, MARGIN_LOG_MAX)), cmap=cmap,
                             norm=norm, edgecolors="white", linewidth=1.5)
        fs = 7 if len(losses) > 10 or len(acts) > 18 else 8
        for c in cells:
            i, j = acts.index(c.activation), losses.index(c.loss)
            v = grid[i, j]
            text = _short(c.value)
            if math.isnan(v):
                ax.add_patch(Rectangle((j, i), 1, 1, facecolor="#a3a3a3", edgecolor="white", linewidth=1.5))
                ink = "black"
            else:
                r, g, b, _ = cmap(norm(min(max(v, MARGIN_LOG_MIN), MARGIN_LOG_MAX)))
                ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
            if c.failed:
                ax.add_patch(Rectangle((j + 0.05, i + 0.07), 0.9, 0.86, fill=False, edgecolor="#2b0000",
                                       linewidth=2.2))
                text = "\u2717 " + text
            ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", color=ink, fontsize=fs,
                    fontweight="bold" if c.failed else "normal").set_in_layout(False)  # inside the axes
        ax.set_xticks(np.arange(len(losses)) + 0.5, [_tick(s) for s in losses], rotation=30, ha="right",
                      rotation_mode="anchor")
        ax.set_yticks(np.arange(len(acts)) + 0.5, [_tick(s) for s in acts])
        ax.set_xlim(0, len(losses))
        ax.set_ylim(len(acts), 0)
        ax.tick_params(length=0)
        for side in ax.spines:
            ax.spines[side].set_visible(False)
        ax.set_xlabel(columns)
        ax.set_ylabel(rows)
        ticks = list(range(int(MARGIN_LOG_MIN), int(MARGIN_LOG_MAX) + 1, 2))
        bar = fig.colorbar(mesh, ax=ax, shrink=0.85, aspect=22, pad=0.02, ticks=ticks)
        bar.ax.set_yticklabels(["1" if t == 0 else pow10_label(10.0 ** t) for t in ticks])
        bar.ax.axhline(0.0, color=_INK, linewidth=1.2)
        bar.set_label("worst margin: error / tolerance (fails at \u2265 1)")
        bar.outline.set_visible(False)
        bar.ax.tick_params(length=2)
        return _render(fig, key, f"heatmap of the worst margin (error / tolerance), {PAIR_TITLES.get(pair, pair)} "
                                 f"{dtype}, {len(acts)} {_plural(rows)} x {len(losses)} {_plural(columns)}, annotated with the "
                                 "max relative error over resolved elements")


# -- histogram --------------------------------------------------------------------------------------------
def _series_color(dtype: str, k: int) -> str:
    return SERIES_COLORS.get(dtype, _OTHER_COLORS[k % len(_OTHER_COLORS)])


def histogram(rows: Sequence[Row], pairs: Sequence[str]) -> str:
    """Distribution of log10 errors, one panel per oracle pair, one series per dtype; dashed lines at
    the median tolerance per dtype (analytic vs numerical). Exact zeros go in the leftmost bin;
    nan and inf are counted in the panel title."""
    import numpy as np  # noqa: PLC0415

    dtypes = sorted({r.dtype for r in rows})
    key = "hist"
    bins = np.arange(LOG_MIN - 1, 1.5 + 1e-9, 0.5)
    width = 7.5 if len(pairs) == 1 else min(4.2 * len(pairs), 12.5)
    with _chart(key, (width, 2.7)) as fig:
        axes = fig.subplots(1, len(pairs), sharey=True, squeeze=False)[0]
        for ax, pair in zip(axes, pairs):
            nonfinite = 0
            for k, dt in enumerate(dtypes):
                vals = [e for r in rows if r.dtype == dt and (e := r.errors.get(pair)) is not None]
                finite = [min(max(_log10(v), bins[0]), bins[-1] - 1e-9) for v in vals if math.isfinite(v)]
                nonfinite += len(vals) - len(finite)
                color = _series_color(dt, k)
                if finite:
                    ax.hist(finite, bins=bins, histtype="stepfilled", alpha=0.5, color=color, edgecolor=color,
                            linewidth=1.2, label=f"{dt} ({len(vals)} check{'s' if len(vals) != 1 else ''})")
                if pair == "analytic_vs_numerical":
                    tols = sorted(r.tolerance for r in rows if r.dtype == dt and math.isfinite(r.tolerance)
                                  and r.tolerance > 0)
                    if tols:
                        ax.axvline(math.log10(tols[len(tols) // 2]), color=color, linestyle="--", linewidth=1.1,
                                   label=f"median tolerance {dt}")
            title = PAIR_TITLES.get(pair, pair) + (f"   (+{nonfinite} nan/inf)" if nonfinite else "")
            ax.set_title(title, fontsize=9, loc="left")
            ax.set_xlabel("log10 max relative error")
            ax.set_xlim(bins[0], bins[-1])
            ax.set_xticks(range(int(LOG_MIN), 2, 2))
            ax.grid(axis="y", color=_INK, alpha=0.12, linewidth=0.6)
        axes[0].set_ylabel("checks")
        from matplotlib.ticker import MaxNLocator  # noqa: PLC0415
        axes[0].yaxis.set_major_locator(MaxNLocator(integer=True))
        if axes[0].get_legend_handles_labels()[0]:
            axes[0].legend(frameon=False, fontsize=7.5, loc="upper left")
        return _render(fig, key, "histogram of log10 max relative errors per dtype; dashed lines: median tolerance")


# -- step-size curve --------------------------------------------------------------------------------------
def step_curve(curve: Sequence[Sequence[float | None]], tolerance: float | None, key: str, title: str = "") -> str:
    """Relative error of the claimed value against finite differences at step h (log-log) for the worst
    element; the dashed line is its tolerance. A bug shows a flat curve far above the tolerance;
    correct code a V (truncation error to the right, rounding to the left) dipping below it. Points
    with a missing (None), non-finite or non-positive step or error are left out."""
    pts = [(float(h), float(e)) for h, e in curve if h is not None and e is not None and _positive(h) and _positive(e)]
    with _chart(key, (4.2, 2.5), layout=None) as fig:  # fixed margins: 2x faster than constrained
        fig.subplots_adjust(left=0.16, right=0.97, bottom=0.19, top=0.88)
        ax = fig.add_subplot()
        if pts:
            hs, es = zip(*pts)
            ax.loglog(hs, es, "o-", color=SERIES_COLORS["float64"], markersize=3.5, linewidth=1.3,
                      label="claimed vs finite difference at h")
        else:
            ax.set_xscale("log")
            ax.set_yscale("log")
        if tolerance is not None and _positive(tolerance):
            ax.axhline(tolerance, color=FAIL_COLOR, linestyle="--", linewidth=1.0, label="tolerance")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(frameon=False, fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2,
                      borderaxespad=0.2)
        _log_ticks(ax.xaxis)
        _log_ticks(ax.yaxis)
        ax.set_xlabel("step h")
        ax.set_ylabel("relative error")
        ax.grid(color=_INK, alpha=0.12, linewidth=0.6, which="major")
        return _render(fig, key, f"step-size curve: relative error vs step h {title}".strip())


_SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


def pow10_label(x: float, _pos: Any = None) -> str:
    """``10⁻¹²`` in Unicode superscripts (plain text, no mathtext: several times faster to lay out)."""
    if not (x > 0 and math.isfinite(x)):
        return ""
    e = math.log10(x)
    if abs(e - round(e)) > 1e-9:
        return ""
    return "10" + str(int(round(e))).translate(_SUPERSCRIPT)


def _log_ticks(axis) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator  # noqa: PLC0415

    axis.set_major_locator(LogLocator(base=10, numticks=7))
    axis.set_major_formatter(FuncFormatter(pow10_label))
    axis.set_minor_locator(NullLocator())


def _positive(x: Any) -> bool:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return False
    return math.isfinite(x) and x > 0
