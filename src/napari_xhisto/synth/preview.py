"""Pictures of what the generator makes: a region and the same region with its ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .layout import CODE, classify_points
from .render import SynthWorld
from .tissue import jpeg_roundtrip, world_cells, world_regions


def pick_window(world: SynthWorld, side: int, *, stride: int = 256) -> tuple[int, int]:
    """Top-left of the ``side`` px window showing the most tissue types (coarse estimate)."""
    best, best_rc = -1.0, (0, 0)
    rr, cc = np.meshgrid(np.arange(0, side, 32) + 16.0, np.arange(0, side, 32) + 16.0,
                         indexing="ij")
    for r0 in range(0, max(world.height - side, 0) + 1, stride):
        for c0 in range(0, max(world.width - side, 0) + 1, stride):
            codes = classify_points(world.layout, world.tex, (rr + r0).ravel(), (cc + c0).ravel())
            frac = np.bincount(codes, minlength=6)[:5] / codes.size
            score = (frac[CODE["tumour"]] > 0.15) + (frac[CODE["stroma"]] > 0.15) \
                + 1.5 * (frac[CODE["necrosis"]] > 0.05) + 0.5 * (frac[CODE["vessel"]] > 0) \
                + (frac[CODE["background"]] < 0.05) - np.abs(frac[CODE["tumour"]] - 0.35)
            if score > best:
                best, best_rc = score, (r0, c0)
    return best_rc


def save_previews(region_png, overlay_png, *, seed: int = 0, slide_size: int = 6144,
                  side: int = 1024, mpp: float = 0.5, necrosis="classic") -> dict:
    """Save a ``side`` px region of a synthetic slide and its ground-truth overlay as PNGs.

    ``necrosis`` is the look of necrosis (``napari_xhisto.synth.necrosis``); the previews in
    ``resources/`` use the default.

    Returns a dict with the window (row, col), cell counts and region classes shown.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from ..annotations import DEFAULT_COLORS
    from .render import blas_one_thread

    world = SynthWorld(slide_size, slide_size, seed=seed, mpp=mpp, layout="slide",
                       necrosis=necrosis)
    with blas_one_thread():
        r0, c0 = pick_window(world, side)
    rgb, _ = world.render(r0, c0, side, side)
    rgb = jpeg_roundtrip(rgb, 85)
    cells = world_cells(world, r0, c0, side, side)
    regions = world_regions(world, r0, c0, side, side)
    plt.imsave(region_png, rgb)

    dpi = 100
    fig = plt.figure(figsize=(side / dpi, side / dpi), dpi=dpi)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(rgb)
    ax.set_axis_off()
    for reg in regions:
        color = np.array(DEFAULT_COLORS.get(reg.cls, (0, 0, 0))) / 255
        for ring in [reg.exterior, *reg.holes]:
            closed = np.vstack([ring, ring[:1]])
            ax.plot(closed[:, 1], closed[:, 0], color=color, lw=2.2,
                    ls="--" if ring is not reg.exterior else "-")
    handles = []
    for cls in ("tumour", "lymphocyte", "stroma", "other"):
        m = cells.classes == cls
        color = np.array(DEFAULT_COLORS[cls]) / 255
        ax.scatter(cells.cols[m], cells.rows[m], s=9, c=[color], edgecolors="white",
                   linewidths=0.4)
        handles.append(Line2D([], [], marker="o", ls="", color=color, label=f"{cls} ({m.sum()})"))
    for cls in dict.fromkeys(r.cls for r in regions):
        color = np.array(DEFAULT_COLORS.get(cls, (0, 0, 0))) / 255
        handles.append(Line2D([], [], color=color, lw=2.2, label=f"{cls} (region)"))
    ax.legend(handles=handles, loc="lower right", fontsize=9, framealpha=0.85)
    ax.set_xlim(0, side)
    ax.set_ylim(side, 0)
    fig.savefig(overlay_png, dpi=dpi)
    plt.close(fig)
    return {"window": [int(r0), int(c0), side, side], "cells": cells.counts(),
            "regions": sorted({r.cls for r in regions}), "paths": [str(Path(region_png)),
                                                                 str(Path(overlay_png))]}


def save_necrosis_styles(png, *, seed: int = 0, slide_size: int = 6144, side: int = 1024,
                         crop=(420, 80, 360), mpp: float = 0.5) -> dict:
    """Save the same necrosis (the preview region's) in each ``NECROSIS_STYLES`` side by side.

    ``crop`` is (row, col, side) inside the preview window of ``save_previews``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .necrosis import NECROSIS_STYLES
    from .render import blas_one_thread

    r, c, s = crop
    crops = []
    for name in NECROSIS_STYLES:
        world = SynthWorld(slide_size, slide_size, seed=seed, mpp=mpp, layout="slide",
                           necrosis=name)
        with blas_one_thread():
            r0, c0 = pick_window(world, side)
        rgb, _ = world.render(r0 + r, c0 + c, s, s)
        crops.append((name, jpeg_roundtrip(rgb, 85)))
    fig, axes = plt.subplots(1, len(crops), figsize=(4.2 * len(crops), 4.5), dpi=100)
    for ax, (name, rgb) in zip(axes, crops):
        ax.imshow(rgb)
        ax.set_title(f'necrosis="{name}"', fontsize=10)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return {"window_offset": [r, c, s], "styles": [n for n, _ in crops], "path": str(png)}
