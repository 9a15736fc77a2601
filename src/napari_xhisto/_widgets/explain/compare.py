"""Side-by-side panels: each heatmap (or probability map) over the grey H&E of one region.

No Qt here: :func:`compare_panels` reads the slide layer and the result layers of a viewer and
returns one :class:`ComparePanel` per layer, each an RGB image composed exactly as napari draws
that layer (its colormap, contrast limits and opacity, translucent over the grey-scale H&E) and
a title (method, class, normalisation). The window (:mod:`.compare_window`) only shows them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...geometry import Placement, Region
from .. import layers as L
from . import naming

MAX_SIDE = 768  # panel pixels along the longer side


@dataclass
class ComparePanel:
    """One panel: ``rgb`` (H, W, 3) uint8 of ``region`` at ``downsample`` level-0 px per pixel."""

    title: str
    layer_name: str
    rgb: np.ndarray
    region: Region
    downsample: float


def slide_level_for(layer, region: Region, max_side: int) -> tuple[int, float]:
    """(pyramid level, its downsample) whose pixels show ``region`` in at most ``max_side``."""
    levels = layer.data if layer.multiscale else [layer.data]
    base = levels[0].shape[0]
    best = 0
    for k, level in enumerate(levels):
        ds = base / level.shape[0]
        best = k
        if max(region.height, region.width) / ds <= max_side:
            break
    return best, base / levels[best].shape[0]


def grey_region(layer, region: Region, *, max_side: int = MAX_SIDE) -> tuple[np.ndarray, float]:
    """Grey-scale (uint8) H&E of ``region`` from the slide layer's pyramid, and its downsample."""
    k, ds = slide_level_for(layer, region, max_side)
    level = layer.data[k] if layer.multiscale else layer.data
    r0, c0 = int(region.level0_row // ds), int(region.level0_col // ds)
    r1 = max(r0 + 1, int(math.ceil((region.level0_row + region.height) / ds)))
    c1 = max(c0 + 1, int(math.ceil((region.level0_col + region.width) / ds)))
    rgb = np.asarray(level[r0:r1, c0:c1])
    return L.luminance(rgb), ds


def values_on_grid(layer, region: Region, shape: tuple[int, int], ds: float) -> np.ndarray:
    """The layer's level-0 values at the centres of a ``shape`` grid over ``region`` (NaN outside)."""
    meta = layer.metadata["xhisto"]
    p = Placement.from_dict(meta["placement"])
    data = layer.data[0] if layer.multiscale else layer.data
    rows = region.level0_row + (np.arange(shape[0]) + 0.5) * ds
    cols = region.level0_col + (np.arange(shape[1]) + 0.5) * ds
    ri = np.floor((rows - p.origin_row) / p.step_row).astype(np.int64)
    ci = np.floor((cols - p.origin_col) / p.step_col).astype(np.int64)
    ok_r = (ri >= 0) & (ri < data.shape[0])
    ok_c = (ci >= 0) & (ci < data.shape[1])
    out = np.full(shape, np.nan, np.float32)
    if not ok_r.any() or not ok_c.any():
        return out
    r_lo, r_hi = int(ri[ok_r].min()), int(ri[ok_r].max()) + 1
    c_lo, c_hi = int(ci[ok_c].min()), int(ci[ok_c].max()) + 1
    block = np.asarray(data[r_lo:r_hi, c_lo:c_hi], np.float32)
    sub = block[np.ix_(ri[ok_r] - r_lo, ci[ok_c] - c_lo)]
    out[np.ix_(ok_r, ok_c)] = sub
    return out


def compose(grey: np.ndarray, values: np.ndarray, colormap, limits, opacity: float) -> np.ndarray:
    """RGB uint8 of ``values`` (colormap over ``limits``, alpha x ``opacity``) over ``grey``."""
    lo, hi = (float(v) for v in limits)
    t = (values.astype(np.float64) - lo) / ((hi - lo) or 1.0)
    t = np.where(np.isnan(t), np.nan, np.clip(t, 0.0, 1.0))
    rgba = np.asarray(colormap.map(t.ravel()), np.float64).reshape(*values.shape, 4)
    rgba = np.nan_to_num(rgba, nan=0.0)
    alpha = rgba[..., 3:4] * float(opacity)
    base = grey.astype(np.float64)[..., None]
    out = rgba[..., :3] * 255 * alpha + base * (1 - alpha)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def compare_layers(viewer, last_run: dict | None) -> tuple[list, Region | None, str]:
    """(result layers to compare, their region, slide layer name): the selected result layers
    when two or more are selected, else the layers of the latest run."""
    results = {ly.name: ly for ly in viewer.layers
               if ly.metadata.get("xhisto", {}).get("kind") in ("heatmap", "probability")}
    chosen = [ly for ly in viewer.layers.selection if ly.name in results]
    if len(chosen) < 2:
        names = (last_run or {}).get("layers", [])
        chosen = [results[n] for n in names if n in results]
    if not chosen:
        raise ValueError("nothing to compare yet: tick 'Compare methods', explain a region, "
                         "then press 'Side by side' (or select two heatmap layers)")
    region = (last_run or {}).get("region")
    slide = (last_run or {}).get("slide")
    return chosen, region, slide


def compare_panels(slide_layer, layers, region: Region | None, *,
                   max_side: int = MAX_SIDE) -> list[ComparePanel]:
    """One panel per layer of ``layers`` over the grey H&E of ``region`` (whole slide if None)."""
    shape0 = (slide_layer.data[0] if slide_layer.multiscale else slide_layer.data).shape[:2]
    region = region or Region(0, 0, int(shape0[0]), int(shape0[1]))
    grey, ds = grey_region(slide_layer, region, max_side=max_side)
    panels = []
    for layer in layers:
        values = values_on_grid(layer, region, grey.shape, ds)
        rgb = compose(grey, values, layer.colormap, layer.contrast_limits, layer.opacity)
        panels.append(ComparePanel(naming.panel_title(layer.metadata["xhisto"]), layer.name,
                                   rgb, region, ds))
    return panels
