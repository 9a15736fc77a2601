"""Evaluate's plots as matplotlib figures on the Agg canvas (drawn in the compute process).

A figure drawn on the GUI thread (``FigureCanvasQTAgg``) costs 30-80 ms there; drawn here it
reaches the widget as an RGBA picture and the figure is kept for "Save plots". The radius
sweep and the localisation curves use the report's pure figure functions
(:mod:`napari_xhisto.export.figures`), one curve per heatmap.
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


def per_heatmap(result: dict) -> dict:
    """``{name: metrics}`` of the evaluated heatmap and those it was compared with."""
    name = (result.get("heatmap") or {}).get("layer") or "heatmap"
    return {name: result, **(result.get("compared") or {})}


def _auc_label(name: str, m: dict) -> str:
    roc, ci = m["roc"], m["roc"].get("ci") or {}
    interval = f" [{ci['low']:.3f}, {ci['high']:.3f}]" if "low" in ci else ""
    return f"{name}: {roc['auc']:.3f}{interval}"


def roc_figure(result: dict):
    """ROC of every heatmap on the same cells; the legend gives each AUC with its interval."""
    fig = _figure()
    ax = fig.add_subplot(111)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="chance (AUC 0.5)")
    level = None
    for k, (name, m) in enumerate(per_heatmap(result).items()):
        if "roc" not in m or "fpr" not in m["roc"]:
            continue
        ax.plot(m["roc"]["fpr"], m["roc"]["tpr"], color=f"C{k}", label=_auc_label(name, m))
        level = level or (m["roc"].get("ci") or {}).get("level")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1))
    if level:
        ax.set_title(f"cell ROC; AUC [{100 * level:.0f}% interval]", fontsize=8)
    elif (result.get("cells") or {}).get("roc_skipped"):  # the reason is under the table
        ax.set_title("no cell ROC: the cells scored are all of one group", fontsize=8)
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    return fig


def radius_figure(result: dict):
    """Cell AUC against the neighbourhood radius, one curve per heatmap, interval bands."""
    from ...export.figures import draw_radius_sweep, sweeps_of

    fig = _figure()
    ax = fig.add_subplot(111)
    sweeps = sweeps_of({"heatmaps": per_heatmap(result)})
    if not sweeps:
        fig.text(0.5, 0.5, "no radius sweep (tick it, with cell layers)", ha="center",
                 va="center", fontsize=8)
        ax.set_axis_off()
        return fig
    draw_radius_sweep(ax, sweeps)
    # the AUCs' own range (the chance line at 0.5 would squeeze them flat)
    lows = [e.get("low", e.get("auc")) for v in sweeps.values() for e in v]
    highs = [e.get("high", e.get("auc")) for v in sweeps.values() for e in v]
    lows, highs = [v for v in lows if v is not None], [v for v in highs if v is not None]
    if lows and highs:
        pad = max(0.01, 0.1 * (max(highs) - min(lows)))
        ax.set_ylim(max(0.0, min(lows) - pad), min(1.0, max(highs) + pad))
    ax.legend(fontsize=6, loc="best")
    ax.set_xlabel("cell neighbourhood radius (µm)", fontsize=8)
    ax.title.set_fontsize(7)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def threshold_label(result: dict) -> str:
    """The x label of the localisation curves: the map as the metrics read it."""
    conv = ((result.get("conventions") or {}).get("localization") or {}).get("map", "rectified")
    return f"threshold ({conv} map, min-max scaled to [0, 1])"


def _compact_rate_legend(ax, names) -> None:
    """One legend entry per heatmap (colour) and per rate (line style), below the axes: the
    full legend of heatmaps x rates would cover the curves."""
    from matplotlib.lines import Line2D

    from ...export.figures import _RATES

    handles = [Line2D([], [], color=f"C{k}", label=name) for k, name in enumerate(names)]
    handles += [Line2D([], [], color="0.3", ls=style, label=label)
                for _, label, style in _RATES]
    ax.legend(handles=handles, fontsize=6, ncol=2, loc="upper center",
              bbox_to_anchor=(0.5, -0.2), frameon=False)


def localisation_figures(result: dict, region_class: str | None = None) -> dict:
    """Dice against the threshold (``"dice"``) and the TP/FP/FN/TN rates (``"rates"``) of
    every heatmap, for one region class (the first localised by default)."""
    from ...export.figures import draw_rate_curves, draw_threshold_curves, threshold_curves_of

    chosen, curves = threshold_curves_of({"heatmaps": per_heatmap(result)}, region_class)
    dice, rates = _figure(), _figure(height=HEIGHT_IN * 1.6)
    for fig, draw in ((dice, draw_threshold_curves), (rates, draw_rate_curves)):
        ax = fig.add_subplot(111)
        if not curves:
            fig.text(0.5, 0.5, "no localisation (pick a region class to outline)",
                     ha="center", va="center", fontsize=8)
            ax.set_axis_off()
            continue
        draw(ax, curves)
        if draw is draw_rate_curves:
            _compact_rate_legend(ax, list(curves))
        ax.set_xlabel(threshold_label(result), fontsize=7)
        ax.set_title(f"{ax.get_title()}: {chosen}", fontsize=7)
        ax.tick_params(labelsize=7)
        fig.tight_layout()
    return {"dice": dice, "rates": rates}


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
    """The figures of an :class:`~.core.EvaluateOutcome`: ``roc``, ``radius``, ``dice``,
    ``rates`` and ``bias``."""
    return {"roc": roc_figure(out.result), "radius": radius_figure(out.result),
            **localisation_figures(out.result),
            "bias": bias_figure(out.profile, out.class_means, out.hotspots)}
