"""Evaluate's plots as matplotlib figures on the Agg canvas (drawn in the worker thread).

A figure drawn on the GUI thread (``FigureCanvasQTAgg``) costs 30-80 ms there; drawn here it
reaches the widget as an RGBA picture and the figure is kept for "Save plots".
"""

from __future__ import annotations

import numpy as np

WIDTH_IN, HEIGHT_IN, DPI = 3.7, 2.6, 100  # 370 x 260 px: fits a 400 px dock


def _figure(width: float = WIDTH_IN, height: float = HEIGHT_IN):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def rgba(fig) -> np.ndarray:
    """The figure drawn, as an ``(H, W, 4)`` uint8 array."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).copy()


def roc_figure(result: dict):
    fig = _figure()
    ax = fig.add_subplot(111)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="chance (AUC 0.5)")
    if "roc" in result:
        roc = result["roc"]
        ax.plot(roc["fpr"], roc["tpr"], color="C3",
                label=f"heatmap AUC {roc['auc']:.3f} ({roc['n_positive']} + / {roc['n_negative']} -)")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def localisation_figure(result: dict):
    fig = _figure()
    ax = fig.add_subplot(111)
    shown = False
    for name, loc in result.get("localization", {}).items():
        curve = loc.get("curve")
        if not curve:
            continue
        for key, style in (("iou", "-"), ("dice", "--"), ("precision", ":"), ("recall", "-.")):
            ax.plot(curve["thresholds"], curve[key], style, label=f"{name}: {key}")
            shown = True
    ax.set(xlabel="threshold (share of the map's range)", ylabel="score", xlim=(0, 1), ylim=(0, 1))
    if shown:
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def bias_figure(profile, class_means: dict, hotspots: dict):
    from matplotlib.patches import Rectangle

    n = 1 + len(class_means)
    fig = _figure(height=HEIGHT_IN if n <= 2 else HEIGHT_IN * 0.9)
    if profile is None:
        fig.text(0.5, 0.5, "centre bias not computed", ha="center", va="center", fontsize=8)
        return fig
    ax = fig.add_subplot(1, n, 1)
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8, label="even spread")
    ax.plot(profile.area_share, profile.relevance_share, color="C3",
            label=f"{profile.n_patches} patches")
    ax.set_xlabel("share of patch area\n(centred square)", fontsize=7)
    ax.set_ylabel("share of relevance", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6)
    for k, (name, entry) in enumerate(class_means.items()):
        ax = fig.add_subplot(1, n, k + 2)
        m = float(np.nanmax(np.abs(entry["mean"]))) or 1.0
        ax.imshow(entry["mean"], cmap="bwr", vmin=-m, vmax=m)
        ax.set_title(f"{name} ({entry['count']})", fontsize=7)
        ax.set_axis_off()
        spot = hotspots.get(name)
        if spot is not None:
            s = spot.spot
            ax.add_patch(Rectangle((s.col - 0.5, s.row - 0.5), s.size, s.size, fill=False,
                                   ec="k", lw=1.2))
    fig.tight_layout()
    return fig


def all_figures(out) -> dict:
    """The three figures of an :class:`~.core.EvaluateOutcome`."""
    return {"roc": roc_figure(out.result), "localisation": localisation_figure(out.result),
            "bias": bias_figure(out.profile, out.class_means, out.hotspots)}
