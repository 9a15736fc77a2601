"""Figures of evaluation results, pure matplotlib (no Qt): for the HTML report and the widget.

Each ``draw_*`` function draws into a matplotlib ``Axes`` it is given (the Evaluate widget passes
an axes of its own canvas figure); each ``*_figure`` function returns a new
``matplotlib.figure.Figure`` (no pyplot, no display). Inputs are the dicts ``xhisto evaluate``
writes (one heatmap, or several under ``heatmaps``); `sweeps_of` and `threshold_curves_of`
pull the relevant parts out of either shape.
"""

from __future__ import annotations

import numpy as np

__all__ = ["draw_radius_sweep", "draw_rate_curves", "draw_threshold_curves", "per_heatmap",
           "radius_sweep_figure", "sweeps_of", "threshold_curves_figure", "threshold_curves_of"]

_RATES = (("tpr", "TP rate", "-"), ("fpr", "FP rate", "--"), ("fnr", "FN rate", ":"),
          ("tnr", "TN rate", "-."))


def per_heatmap(metrics: dict, label: str = "heatmap") -> dict:
    """``{label: metrics}`` for each heatmap of an ``xhisto evaluate`` dict (one or several)."""
    if "heatmaps" in metrics and isinstance(metrics["heatmaps"], dict):
        return dict(metrics["heatmaps"])
    return {label: metrics}


def sweeps_of(metrics: dict, label: str = "heatmap") -> dict:
    """``{label: radius sweep entries}`` of the heatmaps that have a radius sweep."""
    return {k: m["radius_sweep"] for k, m in per_heatmap(metrics, label).items()
            if m.get("radius_sweep")}


def threshold_curves_of(metrics: dict, region_class: str | None = None,
                        label: str = "heatmap") -> tuple[str | None, dict]:
    """``(region class, {label: curve})`` of the localisation curves (first class by default)."""
    curves, chosen = {}, region_class
    for k, m in per_heatmap(metrics, label).items():
        loc = m.get("localization") or {}
        if chosen is None and loc:
            chosen = next(iter(loc))
        curve = (loc.get(chosen) or {}).get("curve")
        if curve:
            curves[k] = curve
    return chosen, curves


def _finite(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def draw_radius_sweep(ax, sweeps: dict, *, level: float | None = None) -> None:
    """Cell AUC against disc radius, one line per heatmap with its interval as a band."""
    for k, (label, entries) in enumerate(sweeps.items()):
        ok = [e for e in entries if e.get("auc") is not None]
        if not ok:
            continue
        r = np.array([e["radius_um"] for e in ok], float)
        auc = _finite([e["auc"] for e in ok])
        lo, hi = _finite([e.get("low") for e in ok]), _finite([e.get("high") for e in ok])
        ax.plot(r, auc, marker="o", ms=3, color=f"C{k}", label=label)
        ax.fill_between(r, lo, hi, color=f"C{k}", alpha=0.18, lw=0)
        level = level or ok[0].get("level")
    ax.axhline(0.5, color="0.6", ls="--", lw=0.8)
    ax.set_xlabel("disc radius (µm)")
    ax.set_ylabel("cell AUC")
    band = f"; bands: {100 * level:.0f}% bootstrap intervals" if level else ""
    ax.set_title(f"AUC against disc radius{band}", fontsize=9)
    if sweeps:
        ax.legend(fontsize=7, loc="lower right")


def draw_threshold_curves(ax, curves: dict, *, metric: str = "dice") -> None:
    """One localisation curve (``dice``, ``iou``, ``precision``, ``tpr`` ...) per heatmap."""
    for k, (label, curve) in enumerate(curves.items()):
        ax.plot(curve["thresholds"], _finite(curve[metric]), color=f"C{k}", label=label)
    ax.set_xlabel("threshold (map scaled to [0, 1])")
    ax.set_ylabel(metric if metric in ("dice", "iou") else metric.upper())
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(f"{metric} against threshold", fontsize=9)
    if curves:
        ax.legend(fontsize=7)


def draw_rate_curves(ax, curves: dict) -> None:
    """TP, FP, FN and TN rates against the threshold: colour per heatmap, style per rate."""
    for k, (label, curve) in enumerate(curves.items()):
        for key, name, style in _RATES:
            if key in curve:
                ax.plot(curve["thresholds"], _finite(curve[key]), ls=style, color=f"C{k}",
                        label=f"{label}: {name}")
    ax.set_xlabel("threshold (map scaled to [0, 1])")
    ax.set_ylabel("rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title("TP / FP / FN / TN rates against threshold", fontsize=9)
    if curves:
        ax.legend(fontsize=6, ncol=2)


def radius_sweep_figure(sweeps: dict, *, size=(5.0, 3.6)):
    """A new Figure with `draw_radius_sweep`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    draw_radius_sweep(fig.add_subplot(1, 1, 1), sweeps)
    fig.tight_layout()
    return fig


def threshold_curves_figure(curves: dict, *, region_class: str | None = None, size=(9.0, 3.6)):
    """A new Figure: Dice against threshold (left) and the four rates (right), all heatmaps."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    draw_threshold_curves(left, curves, metric="dice")
    draw_rate_curves(right, curves)
    if region_class:
        fig.suptitle(f"localisation of '{region_class}'", fontsize=10)
    fig.tight_layout()
    return fig
