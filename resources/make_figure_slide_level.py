"""README figure for slide-level NIC: slide, compressed RGB view, slide-level Grad-CAM, lesion.

Uses the cohort, encoders and codes cached by ``bench/nic_findings.py --work WORK``: trains the
slide-level CNN on every slide but a few held-out positives (codes of --kind), explains those,
and draws per slide: the slide with the hidden lesion outline (green), the codes' first three
principal components as RGB, and the Grad-CAM map over the slide with the same outline.

    PYTHONPATH=src .venv/bin/python resources/make_figure_slide_level.py --work /tmp/nicf
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/nic_findings")
    ap.add_argument("--kind", default="supervised")
    ap.add_argument("--show", type=int, default=2, help="held-out positives to draw")
    ap.add_argument("--out", default=str(Path(__file__).with_name("nic_slide_level.png")))
    ap.add_argument("--epochs", type=int, default=60)
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tifffile
    import torch
    from skimage.measure import find_contours

    from napari_xhisto.colormaps import heatmap_colormap_spec
    from napari_xhisto.nic.codes import pca_rgb
    from napari_xhisto.nic.slide_explain import evaluate_against_mask, explain_slide
    from napari_xhisto.nic.slide_train import (
        SlideTrainConfig,
        iter_train_slide_model,
        load_code_set,
    )
    from napari_xhisto.progress import run_to_end
    from napari_xhisto.synth.cohort import read_lesion_mask

    torch.set_num_threads(2)
    work = Path(args.work)
    cohort = work / "cohort"
    data = load_code_set(work / "codes" / args.kind, cohort / "labels.csv")
    rows = {r["slide"][:-4]: r for r in csv.DictReader(open(cohort / "labels.csv"))}
    # held out: the largest-lesion positives first (the figure shows what the map finds)
    pos = [i for i, k in enumerate(data.keys) if data.labels[i] == 1]
    pos.sort(key=lambda i: -float(rows[data.keys[i]]["lesion_fraction"]))
    test = pos[1:1 + args.show * 2:2][: args.show]
    train = [i for i in range(len(data.keys)) if i not in test]
    model, _ = run_to_end(iter_train_slide_model(
        [data.grids[i] for i in train], data.labels[train],
        SlideTrainConfig(epochs=args.epochs, width=32, hidden=32, val_fraction=0.0, seed=0)))

    spec = heatmap_colormap_spec()
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(np.asarray(spec["colors"])[len(spec["colors"]) // 2:])
    fig, axes = plt.subplots(len(test), 3, figsize=(10.5, 3.6 * len(test)), squeeze=False)
    for r, i in enumerate(test):
        key = data.keys[i]
        grid = data.grids[i]
        thumb = tifffile.imread(cohort / "slides" / f"{key}.svs")[::8, ::8]
        lesion = read_lesion_mask(cohort / "lesions" / f"{key}.lesion.tif")
        heat = explain_slide(model, grid)
        score = evaluate_against_mask(heat, lesion)
        rgb = np.asarray(pca_rgb(grid)[0])
        h, w = thumb.shape[:2]
        ext = (0, w * 8, h * 8, 0)
        outline = find_contours(lesion.mask.astype(float), 0.5)
        step = lesion.placement.step_row

        def draw_outline(ax, outline=outline, step=step):
            for c in outline:
                ax.plot((c[:, 1] + 0.5) * step, (c[:, 0] + 0.5) * step, color="lime", lw=1.5)

        pl = heat.placement
        hext = (pl.origin_col, pl.origin_col + heat.values.shape[1] * pl.step_col,
                pl.origin_row + heat.values.shape[0] * pl.step_row, pl.origin_row)
        gext = (grid.origin[1], grid.origin[1] + grid.shape[1] * grid.stride,
                grid.origin[0] + grid.shape[0] * grid.stride, grid.origin[0])
        axes[r, 0].imshow(thumb, extent=ext)
        draw_outline(axes[r, 0])
        axes[r, 0].set_title(f"{key}: lesion {float(rows[key]['lesion_fraction']):.0%} of tissue "
                             "(outline hidden from the model)", fontsize=8)
        axes[r, 1].imshow(rgb, extent=gext, interpolation="nearest")
        axes[r, 1].set_title(f"compressed: {grid.shape[0]}x{grid.shape[1]}x{grid.code_size} "
                             f"codes ({args.kind}), PCA RGB", fontsize=8)
        axes[r, 2].imshow(thumb, extent=ext)
        axes[r, 2].imshow(np.ma.masked_invalid(heat.values), extent=hext, cmap=cmap, vmin=0,
                          vmax=1, alpha=0.6, interpolation="nearest")
        draw_outline(axes[r, 2])
        axes[r, 2].set_title(f"slide-level Grad-CAM: p(present) = {heat.provenance['p_label']:.2f}, "
                             f"PxAP {score['pxap']:.2f}", fontsize=8)
        for ax in axes[r]:
            ax.set_xlim(0, w * 8)
            ax.set_ylim(h * 8, 0)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
