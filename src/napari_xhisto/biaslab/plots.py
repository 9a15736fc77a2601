"""Figures of the bias lab (matplotlib, Agg backend; PNGs kept small)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .evaluate import TUMOUR, mosaic, predict_and_explain, with_square

DPI = 80


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _grey(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255


def _overlay(ax, rgb, heat, vmax):
    """Heatmap over a grey-scale version of the H&E (seed 000): red for, blue against."""
    ax.imshow(_grey(rgb), cmap="gray", vmin=0, vmax=1)
    ax.imshow(np.ma.masked_invalid(heat), cmap="bwr", vmin=-vmax, vmax=vmax, alpha=0.6)
    ax.set_xticks([])
    ax.set_yticks([])


def _display_max(maps) -> float:
    """Colour-scale limit for display: the 99.5th percentile of |R| over all maps shown."""
    a = np.abs(np.asarray(maps, np.float64))
    a = a[np.isfinite(a)]
    v = float(np.percentile(a, 99.5)) if a.size else 0.0
    return v if v > 0 else 1.0


def _box(ax, row, col, size, color, style="-"):
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((col - 0.5, row - 0.5), size, size, fill=False, ec=color, lw=1.5,
                           ls=style))


def class_mean_figure(path, squares: dict) -> Path:
    """Per-class mean heatmaps of each square model and of the clean model on the same images."""
    plt = _plt()
    rows = [(name, who) for name in squares for who in ("biased", "clean")]
    fig, axes = plt.subplots(len(rows), 2, figsize=(5.2, 2.5 * len(rows)), squeeze=False)
    for i, (name, who) in enumerate(rows):
        res = squares[name][who]
        sq = squares[name]["square"]
        for j, cls in enumerate(("non-tumour", "tumour")):
            ax = axes[i, j]
            m = res["mean_maps"].get(cls)
            if m is None:
                ax.set_axis_off()
                ax.set_title(f"no patch predicted {cls}", fontsize=7)
                continue
            v = float(np.nanmax(np.abs(m))) or 1.0
            ax.imshow(m, cmap="bwr", vmin=-v, vmax=v)
            ax.set_xticks([])
            ax.set_yticks([])
            _box(ax, *sq["position"], sq["size"], "black", ":")
            title = f"{'model ' + name if who == 'biased' else 'clean model'}\nmean, predicted {cls}"
            if cls == "tumour" and res.get("hotspot"):
                hs = res["hotspot"]
                _box(ax, hs["row"], hs["col"], hs["size"], "lime" if res["flagged"] else "orange")
                title += f"\n{res['enrichment']:.0f}x in square, hotspot {hs['enrichment']:.0f}x"
            ax.set_title(title, fontsize=7)
    fig.suptitle("Mean LRP map of each patch's predicted class (red = for it)\n"
                 "dotted = true square, box = hotspot found (green: flagged)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return Path(path)


def centre_profile_figure(path, centre: dict) -> Path:
    """Centre-bias profiles (clean vs centre-label) and their mean |R| maps."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
    ax = axes[0]
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="uniform (no bias)")
    for name, color in (("clean", "tab:blue"), ("centre-label", "tab:red")):
        p = centre[name]["profile"]
        ax.plot(p["area_share"], p["relevance_share"], color=color,
                label=f"{name}: concentration {p['concentration']:+.2f}, "
                      f"centre {p['centre_enrichment']:.1f}x")
    ax.set_xlabel("area share of centred square")
    ax.set_ylabel("share of mean |R|")
    ax.legend(fontsize=6, loc="lower right")
    ax.set_title("Centre-bias profile", fontsize=9)
    for ax, name in zip(axes[1:], ("clean", "centre-label")):
        im = ax.imshow(centre[name]["mean_abs_map"], cmap="magma")
        ax.set_title(f"mean |R| per patch, {name}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return Path(path)


def necrosis_figure(path, fields, heat: dict, necrosis: dict, ps: int) -> Path:
    """Mean relevance per necrosis region (clean vs no-necrosis) and the first field's maps."""
    plt = _plt()
    fig = plt.figure(figsize=(11, 3.6))
    ax = fig.add_subplot(1, 3, 1)
    rows = necrosis.get("comparison", {}).get("regions", [])
    x = np.arange(len(rows))
    a = [r["mean_clean"] for r in rows]
    b = [r["mean_no-necrosis"] for r in rows]
    ax.bar(x - 0.2, a, 0.4, label="A: clean", color="tab:blue")
    ax.bar(x + 0.2, b, 0.4, label="B: necrosis excluded", color="tab:red")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, [f"N{k + 1}" for k in x], fontsize=7)
    ax.set_ylabel("mean tumour relevance (/ global max)")
    ax.set_title("Necrosis regions", fontsize=9)
    ax.legend(fontsize=7)
    maps, regions, offsets = mosaic(fields[:1], {k: v[:1] for k, v in heat.items()}, ps)
    for k, (name, label) in enumerate((("clean", "A: clean"), ("no-necrosis", "B: no necrosis"))):
        axk = fig.add_subplot(1, 3, 2 + k)
        m = maps[name]
        _overlay(axk, fields[0].rgb, m, _display_max(m))
        for r in regions:
            ring = np.vstack([r.exterior, r.exterior[:1]])
            axk.plot(ring[:, 1], ring[:, 0], color="black", lw=1)
        axk.set_title(f"{label}: tumour relevance (black = necrosis)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return Path(path)


def examples_figure(path, models: dict, test, n: int = 4) -> Path:
    """Tumour-class heatmaps of a few test patches for every model, over grey-scale H&E."""
    plt = _plt()
    labels = np.asarray(test.labels)
    pick = list(np.flatnonzero(labels == TUMOUR)[:n // 2]) + list(
        np.flatnonzero(labels != TUMOUR)[:n - n // 2])
    names = list(models)
    fig, axes = plt.subplots(len(pick), len(names) + 1,
                             figsize=(1.35 * (len(names) + 1), 1.45 * len(pick)), squeeze=False)
    for i, k in enumerate(pick):
        axes[i, 0].imshow(test.images[k])
        axes[i, 0].set_xticks([])
        axes[i, 0].set_yticks([])
        axes[i, 0].set_ylabel("tumour" if labels[k] == TUMOUR else "non-tumour", fontsize=7)
    if len(pick):
        axes[0, 0].set_title("H&E", fontsize=7)
    for j, name in enumerate(names):
        m = models[name]
        images = with_square(test, m.square)[pick] if m.square else test.images[pick]
        probs, maps = predict_and_explain(m, images, target=TUMOUR)
        v = _display_max(maps)  # one scale per model over its patches
        for i in range(len(pick)):
            _overlay(axes[i, j + 1], images[i], maps[i], v)
            axes[i, j + 1].set_xlabel(f"p(tumour) {probs[i, TUMOUR]:.2f}", fontsize=6)
        axes[0, j + 1].set_title(name, fontsize=7)
    fig.suptitle("LRP (epsilon-plus) for 'tumour' over grey H&E: red = for, blue = against",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=64)  # photographic content: keep the PNG small
    plt.close(fig)
    return Path(path)


def write_figures(out_dir, *, cfg, models, data, squares, centre, fields, heat,
                  necrosis) -> list[Path]:
    """All figures of a run; returns their paths."""
    out_dir = Path(out_dir)
    return [class_mean_figure(out_dir / "class_mean_heatmaps.png", squares),
            centre_profile_figure(out_dir / "centre_bias_profiles.png", centre),
            necrosis_figure(out_dir / "necrosis_relevance.png", fields, heat, necrosis,
                            cfg.patch_size),
            examples_figure(out_dir / "example_heatmaps.png", models, data["test"])]
