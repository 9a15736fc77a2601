"""Inputs of ``bench/uncertainty.py``: the out-of-distribution patch sets and the MC std per
ground-truth artefact of the synthetic slide."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def noise_patches(n, s, rng):
    return rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8)


def texture_patches(n, s, rng):
    from skimage import data
    from skimage.transform import resize

    images = [data.brick(), data.grass(), data.gravel()]
    out = []
    for k in range(n):
        im = images[k % 3]
        side = int(rng.integers(s, min(im.shape[:2]) // 2))
        r, c = (int(rng.integers(0, d - side)) for d in im.shape[:2])
        crop = resize(im[r:r + side, c:c + side].astype(np.float32), (s, s), anti_aliasing=True)
        grey = np.clip(crop, 0, 255)
        tint = rng.uniform(0.6, 1.0, 3)  # coloured, so it is not told apart by greyness alone
        out.append(np.clip(grey[..., None] * tint, 0, 255).astype(np.uint8))
    return np.stack(out)


def blurred(images, sigma=3.0):
    from scipy.ndimage import gaussian_filter

    return np.stack([gaussian_filter(im.astype(np.float32), (sigma, sigma, 0))
                     for im in images]).round().clip(0, 255).astype(np.uint8)


def pen_marked(images, rng):
    """A broad pen stroke (the synth inks, Beer-Lambert) across each patch."""
    from napari_xhisto.synth.stain import INK_VECTORS

    n, s = images.shape[:2]
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    out = []
    inks = list(INK_VECTORS.values())
    for k, im in enumerate(images):
        ang = rng.uniform(0, np.pi)
        off = rng.uniform(-0.15, 0.15) * s
        d = np.abs((yy - s / 2) * np.cos(ang) - (xx - s / 2) * np.sin(ang) - off)
        conc = 1.1 * np.clip(0.3 * s - d + 0.5, 0, 1)
        od = conc[..., None] * inks[k % len(inks)][None, None]
        out.append(np.clip(im * np.exp(-od), 0, 255).astype(np.uint8))
    return np.stack(out)


def std_by_artefact(geojson, umap, std) -> dict:
    """Mean MC std of the cells whose centre lies in each artefact polygon of the synthetic
    slide's ground truth (pen, fold, blur, bubble), and of the cells in none of them."""
    from matplotlib.path import Path as MplPath

    pl = umap.mean.placement
    ii, jj = np.nonzero(np.isfinite(std))
    rows = pl.origin_row + (ii + 0.5) * pl.step_row
    cols = pl.origin_col + (jj + 0.5) * pl.step_col
    rest = np.ones(len(ii), bool)
    out = {}
    for f in json.loads(Path(geojson).read_text())["features"]:
        if f["properties"].get("classification", {}).get("name") != "artefact":
            continue
        inside = MplPath(np.asarray(f["geometry"]["coordinates"][0])).contains_points(
            np.c_[cols, rows])  # GeoJSON is (x, y)
        rest &= ~inside
        out[f["properties"].get("name", "artefact")] = {
            "n_cells": int(inside.sum()),
            "mean_std": float(std[ii[inside], jj[inside]].mean()) if inside.any() else None}
    out["elsewhere"] = {"n_cells": int(rest.sum()), "mean_std": float(std[ii[rest], jj[rest]]
                                                                        .mean())}
    return out
