"""Reliability diagrams of a temperature-scaling study: pure matplotlib (no Qt, no pyplot).

Drawn from the dicts of :mod:`napari_xhisto.metrics.calibration_study`: the test split of one
split (bars: accuracy per confidence bin, before and after the temperature) and, as seed 002
draws them, the per-bin accuracy over repeated splits as box plots. ``xhisto calibrate`` saves
the figure beside the calibrated spec; the Evaluate widget's Calibration tab shows the same one.
"""

from __future__ import annotations

import numpy as np

__all__ = ["draw_reliability", "draw_reliability_boxes", "reliability_figure"]

BEFORE, AFTER = "#d62728", "#1f77b4"


def _diagonal(ax) -> None:
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="confidence (top-class probability)",
           ylabel="accuracy")


def draw_reliability(ax, report: dict) -> None:
    """Accuracy per bin on the test split, before (T = 1) and after temperature scaling."""
    _diagonal(ax)
    edges = np.asarray(report["before"]["bins"]["edges"], float)
    centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    t = report["temperature"]
    for k, (key, color, label) in enumerate((("before", BEFORE, "before (T = 1)"),
                                             ("after", AFTER, f"after (T = {t:.3g})"))):
        s = report[key]
        acc = np.array([np.nan if v is None else v for v in s["bins"]["accuracy"]], float)
        ok = np.isfinite(acc)
        ax.bar(centres[ok] + (k - 0.5) * width[ok] * 0.42, acc[ok], width=width[ok] * 0.42,
               color=color, alpha=0.75, edgecolor="black", lw=0.4,
               label=f"{label}: ECE {s['ece']:.3f}, MCE {s['mce']:.3f}")
    ax.set_title(f"test split (n = {report['n_test']}), {len(centres)} bins", fontsize=8)
    ax.legend(fontsize=6, loc="upper left")


def draw_reliability_boxes(ax, study: dict) -> None:
    """Per-bin accuracy over repeated splits as box plots, before and after, side by side."""
    _diagonal(ax)
    edges = np.asarray(study["edges"], float)
    centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    n = len(study["temperatures"])
    handles = []
    for k, (key, color) in enumerate((("before", BEFORE), ("after", AFTER))):
        acc = np.asarray(study[key]["accuracy"], float)
        data, pos, wid = [], [], []
        for b in range(len(centres)):
            col = acc[:, b][np.isfinite(acc[:, b])]
            if col.size:
                data.append(col)
                pos.append(centres[b] + (k - 0.5) * width[b] * 0.42)
                wid.append(width[b] * 0.38)
        if not data:
            continue
        bp = ax.boxplot(data, positions=pos, widths=wid, patch_artist=True, manage_ticks=False,
                        showfliers=True, flierprops={"markersize": 2})
        for box in bp["boxes"]:
            box.set(facecolor=color, alpha=0.6, edgecolor="black", lw=0.5)
        for part in ("medians",):
            for line in bp[part]:
                line.set(color="black", lw=0.8)
        ece = np.asarray(study[key]["ece"], float)
        handles.append((bp["boxes"][0], f"{key}: ECE {np.mean(ece):.3f} ± {np.std(ece):.3f}"))
    ax.set_xticks(np.round(edges, 2))
    ax.tick_params(axis="x", labelsize=6)
    temps = np.asarray(study["temperatures"], float)
    ax.set_title(f"{n} seeded splits, T = {np.median(temps):.3g} "
                 f"[{temps.min():.3g}, {temps.max():.3g}]", fontsize=8)
    if handles:
        ax.legend([h for h, _ in handles], [lab for _, lab in handles], fontsize=6,
                  loc="upper left")


def reliability_figure(report: dict, study: dict | None = None, *, stacked: bool = False,
                       width: float | None = None, height: float | None = None,
                       dpi: int = 100):
    """A new Agg ``Figure``: the test-split diagram, and the box plots when ``study`` is given.

    ``stacked`` puts the two panels one above the other (a narrow dock) instead of side by side.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = 2 if study is not None else 1
    rows, cols = (panels, 1) if stacked else (1, panels)
    fig = Figure(figsize=(width or 3.8 * cols, height or 3.4 * rows), dpi=dpi)
    FigureCanvasAgg(fig)
    draw_reliability(fig.add_subplot(rows, cols, 1), report)
    if study is not None:
        draw_reliability_boxes(fig.add_subplot(rows, cols, 2), study)
    fig.tight_layout()
    return fig
