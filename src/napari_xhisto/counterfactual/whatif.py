""""What if this region were healthy?": inpaint a region of a slide and re-score its patches.

``what_if_healthy`` is a generator of ``(done, total)`` returning a :class:`WhatIf`: the region
(a polygon in level-0 pixels) is filled patch by patch at the model's scale by the inpainter,
each patch conditioned on a context window around it (already filled patches count as known
tissue, so large regions fill from their border inwards), and the classifier scores every patch
of the grid the region touches before and after.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelError
from ..geometry import Placement, Region
from .inpainter import Inpainter, load_inpainter


@dataclass
class WhatIf:
    """Result of :func:`what_if_healthy`.

    Attributes
    ----------
    before, after : ndarray (h, w, 3) uint8
        The window at the model's scale, as read and with the region inpainted.
    hole : ndarray (h, w) bool
        The region rasterised on that window.
    placement : Placement
        Where ``before``/``after``/``hole`` lie on level 0.
    p_before, p_after : ndarray (gh, gw) float
        p(class) of each grid patch (NaN where the region does not touch the patch).
    grid_placement : Placement
        Where the (gh, gw) grid lies on level 0 (one cell = one patch).
    patches : list of dict
        One per touched patch: ``row``, ``col`` (grid cell), ``level0_row``, ``level0_col``,
        ``size`` (level-0 px), ``hole_fraction``, ``p_before``, ``p_after``.
    class_name : str
    provenance : dict
    """

    before: np.ndarray
    after: np.ndarray
    hole: np.ndarray
    placement: Placement
    p_before: np.ndarray
    p_after: np.ndarray
    grid_placement: Placement
    patches: list
    class_name: str
    provenance: dict = field(default_factory=dict)

    def summary(self) -> dict:
        pb = np.array([p["p_before"] for p in self.patches])
        pa = np.array([p["p_after"] for p in self.patches])
        return {"class": self.class_name, "n_patches": len(self.patches),
                "mean_p_before": float(pb.mean()) if len(pb) else float("nan"),
                "mean_p_after": float(pa.mean()) if len(pa) else float("nan"),
                "max_p_before": float(pb.max()) if len(pb) else float("nan"),
                "max_p_after": float(pa.max()) if len(pa) else float("nan")}


def polygon_mask(polygon, shape, *, origin=(0.0, 0.0), step: float = 1.0) -> np.ndarray:
    """Pixels of an (h, w) grid whose centres lie inside ``polygon`` ((k, 2) level-0 row, col)."""
    from skimage.draw import polygon2mask

    poly = (np.asarray(polygon, np.float64) - np.asarray(origin, np.float64)) / step - 0.5
    return polygon2mask(tuple(shape), poly)


def what_if_healthy(slide, polygon, model, inpainter="demo", *, target=None, context: int | None = None,
                    batch_size: int = 64):
    """Inpaint ``polygon`` of ``slide`` with healthy tissue and re-score the patches it touches.

    Parameters
    ----------
    slide : Slide
        Needs ``mpp``, ``dimensions`` and ``read_scaled(region, out_h, out_w)``.
    polygon : array (k, 2)
        Vertices (row, col) in level-0 pixel-edge coordinates (a rectangle is 4 vertices).
    model : LoadedModel
    inpainter : Inpainter, str or Path
        Default the bundled demo inpainter; it must match the model's patch size and µm/px.
    target : int or str, optional
        Class scored (default the model's positive class).
    context : int, optional
        Context margin around each patch in model pixels (default half a patch).

    Yields ``(done, total)``; returns a :class:`WhatIf`.
    """
    from ..explain.tiling import resolve_target

    spec = model.spec
    inp = inpainter if isinstance(inpainter, Inpainter) else load_inpainter(inpainter, "cpu")
    inp.check_scale(spec.patch_size, spec.mpp, what=f"the model {spec.name!r}")
    if slide.mpp is None:
        raise ModelError("the slide has no µm/px; open it with a known mpp so patches match "
                         "the model")
    poly = np.asarray(polygon, np.float64)
    if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 3:
        raise ValueError(f"the region must be a polygon of at least 3 (row, col) vertices, got "
                         f"shape {poly.shape}")
    index = resolve_target(model, target)
    ps = int(spec.patch_size)
    ctx = int(ps // 2 if context is None else context)
    step = float(spec.mpp) / float(slide.mpp)  # level-0 px per model px
    foot = ps * step
    h0, w0 = slide.dimensions
    r_lo, c_lo = max(0.0, poly[:, 0].min()), max(0.0, poly[:, 1].min())
    r_hi, c_hi = min(float(h0), poly[:, 0].max()), min(float(w0), poly[:, 1].max())
    if r_hi <= r_lo or c_hi <= c_lo:
        raise ValueError("the region lies outside the slide")
    gh = max(1, math.ceil((r_hi - r_lo) / foot - 1e-9))
    gw = max(1, math.ceil((c_hi - c_lo) / foot - 1e-9))
    # window = patch grid + context on every side, in model pixels
    o_r, o_c = r_lo - ctx * step, c_lo - ctx * step
    H, W = gh * ps + 2 * ctx, gw * ps + 2 * ctx
    region = Region(int(math.floor(o_r)), int(math.floor(o_c)),
                    max(1, int(round(H * step))), max(1, int(round(W * step))))
    o_r, o_c = float(region.level0_row), float(region.level0_col)
    total = gh * gw + 2
    yield 0, total
    before = slide.read_scaled(region, H, W)
    hole = polygon_mask(poly, (H, W), origin=(o_r, o_c), step=step)
    # nothing outside the slide is tissue to keep: never fill it, never use it as context
    yy = o_r + (np.arange(H) + 0.5) * step
    xx = o_c + (np.arange(W) + 0.5) * step
    inside = (yy[:, None] >= 0) & (yy[:, None] < h0) & (xx[None] >= 0) & (xx[None] < w0)
    hole &= inside
    after = before.copy()
    known = ~hole
    cells = [(i, j) for i in range(gh) for j in range(gw)
             if hole[ctx + i * ps:ctx + (i + 1) * ps, ctx + j * ps:ctx + (j + 1) * ps].any()]
    done = 1
    yield done, total
    pending = list(cells)
    while pending:  # fill the patch with the most known context first
        def known_share(cell):
            i, j = cell
            return known[i * ps:(i + 1) * ps + 2 * ctx, j * ps:(j + 1) * ps + 2 * ctx].mean()

        pending.sort(key=known_share, reverse=True)
        i, j = pending.pop(0)
        sl = (slice(i * ps, (i + 1) * ps + 2 * ctx), slice(j * ps, (j + 1) * ps + 2 * ctx))
        win, win_hole = after[sl], ~known[sl]
        filled = inp.inpaint(win, win_hole)
        centre = (slice(ctx + i * ps, ctx + (i + 1) * ps), slice(ctx + j * ps, ctx + (j + 1) * ps))
        fill_here = ~known[centre]
        after[centre][fill_here] = filled[ctx:ctx + ps, ctx:ctx + ps][fill_here]
        known[centre] |= fill_here
        done += 1
        yield done, total
    p_before = np.full((gh, gw), np.nan)
    p_after = np.full((gh, gw), np.nan)
    patches = []
    if cells:
        crops_b = np.stack([before[ctx + i * ps:ctx + (i + 1) * ps, ctx + j * ps:ctx + (j + 1) * ps]
                            for i, j in cells])
        crops_a = np.stack([after[ctx + i * ps:ctx + (i + 1) * ps, ctx + j * ps:ctx + (j + 1) * ps]
                            for i, j in cells])
        pb = model.predict_proba(crops_b, batch_size=batch_size)[:, index]
        pa = model.predict_proba(crops_a, batch_size=batch_size)[:, index]
        for k, (i, j) in enumerate(cells):
            p_before[i, j], p_after[i, j] = pb[k], pa[k]
            h_frac = float(hole[ctx + i * ps:ctx + (i + 1) * ps, ctx + j * ps:ctx + (j + 1) * ps]
                           .mean())
            patches.append({"row": i, "col": j, "level0_row": o_r + (ctx + i * ps) * step,
                            "level0_col": o_c + (ctx + j * ps) * step, "size": foot,
                            "hole_fraction": h_frac, "p_before": float(pb[k]),
                            "p_after": float(pa[k])})
    yield total, total
    prov = {"kind": "what-if-healthy", "inpainter": inp.provenance(),
            "target": index, "target_class": spec.class_names[index], "context_px": ctx,
            "region_polygon": poly.tolist(), "patch_px": ps, "model_mpp": float(spec.mpp)}
    if hasattr(model, "provenance"):
        prov["model"] = model.provenance()
    return WhatIf(before, after, hole, Placement(o_r, o_c, step, step), p_before, p_after,
                  Placement(o_r + ctx * step, o_c + ctx * step, foot, foot), patches,
                  spec.class_names[index], prov)
