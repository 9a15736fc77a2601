"""Relevance inside annotated regions, and model A against model B (seed 000 sampling bias).

A region (``RegionShape``: exterior ring and holes in level-0 (row, col) pixels) is rasterised on
the heatmap grid: a heatmap pixel belongs to it when its centre lies inside the exterior and
outside every hole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import as_map, as_placement, level0_to_map

__all__ = ["RegionComparison", "RegionRelevance", "compare_region_relevance", "fill_polygon",
           "region_mask", "region_relevance", "region_window"]


def _ring(points, *, what: str) -> np.ndarray:
    ring = np.asarray(points, dtype=np.float64)
    if ring.ndim != 2 or ring.shape[1] != 2 or ring.shape[0] < 3:
        raise ValueError(f"{what} must be a (K >= 3, 2) array of (row, col) vertices, "
                         f"got shape {ring.shape}")
    return ring


def fill_polygon(r, c, shape) -> np.ndarray:
    """Pixels of a ``shape`` array whose centres lie inside the polygon (even-odd rule).

    A scanline fill: for every pixel row, the crossings of the polygon's edges with the row
    (each edge counted on ``[min row, max row)`` so a vertex is crossed once) toggle
    "inside" from the first pixel centre beyond each crossing. Memory is one boolean and one
    small counter array of ``shape``; time grows with rows x edges, not with the area.

    Examples
    --------
    >>> import numpy as np
    >>> fill_polygon(np.array([0.5, 0.5, 3.5, 3.5]), np.array([0.5, 2.5, 2.5, 0.5]),
    ...              (4, 4)).astype(int)
    array([[0, 0, 0, 0],
           [0, 1, 1, 0],
           [0, 1, 1, 0],
           [0, 1, 1, 0]])
    """
    H, W = (int(v) for v in shape)
    r = np.asarray(r, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    mask = np.zeros((H, W), dtype=bool)
    if r.size < 3 or H == 0 or W == 0:
        return mask
    ra, ca, rb, cb = r, c, np.roll(r, -1), np.roll(c, -1)
    lo, hi = np.minimum(ra, rb), np.maximum(ra, rb)
    first = np.maximum(np.ceil(lo), 0).astype(np.int64)  # rows y with lo <= y < hi
    last = np.minimum(np.ceil(hi) - 1, H - 1).astype(np.int64)
    n = np.maximum(last - first + 1, 0)
    n[hi == lo] = 0  # horizontal edges cross no row
    if not n.any():
        return mask
    edge = np.repeat(np.arange(r.size), n)
    y = first[edge] + (np.arange(edge.size) - np.repeat(np.cumsum(n) - n, n))
    x = ca[edge] + (y - ra[edge]) * (cb[edge] - ca[edge]) / (rb[edge] - ra[edge])
    col = np.clip(np.floor(x).astype(np.int64) + 1, 0, W)  # first pixel centre beyond x
    toggles = np.zeros((H, W + 1), dtype=bool)
    np.logical_xor.at(toggles, (y, col), True)  # two crossings at one pixel cancel
    np.logical_xor.accumulate(toggles, axis=1, out=toggles)
    mask[:] = toggles[:, :W]
    return mask


def region_window(region, shape, *, placement=None):
    """The region's bounding box on the heatmap and its mask there (never a full-size mask).

    Returns ``(rows, cols, mask)``: slices of the heatmap and a boolean array of their shape
    holding the pixels whose centres lie inside the exterior and outside every hole; empty
    slices when the region misses the heatmap.
    """
    if len(shape) != 2:
        raise ValueError(f"shape must be (rows, cols), got {shape}")
    H, W = (int(s) for s in shape)
    p = as_placement(placement)
    exterior = getattr(region, "exterior", region)
    holes = getattr(region, "holes", None) or []
    ring = _ring(exterior, what="region exterior")
    r, c = level0_to_map(ring[:, 0], ring[:, 1], p)
    r0, r1 = max(int(np.floor(r.min())), 0), min(int(np.ceil(r.max())) + 1, H)
    c0, c1 = max(int(np.floor(c.min())), 0), min(int(np.ceil(c.max())) + 1, W)
    if r1 <= r0 or c1 <= c0:
        return slice(0, 0), slice(0, 0), np.zeros((0, 0), dtype=bool)
    mask = fill_polygon(r - r0, c - c0, (r1 - r0, c1 - c0))
    for k, hole in enumerate(holes):
        ring = _ring(hole, what=f"hole {k}")
        hr, hc = level0_to_map(ring[:, 0], ring[:, 1], p)
        mask &= ~fill_polygon(hr - r0, hc - c0, mask.shape)
    return slice(r0, r1), slice(c0, c1), mask


def region_mask(region, shape, *, placement=None) -> np.ndarray:
    """Boolean mask of the heatmap pixels whose centres lie inside a region.

    Parameters
    ----------
    region : RegionShape or (K, 2) array
        Polygon in level-0 (row, col) pixels; a RegionShape's holes are cut out.
    shape : (int, int)
        Heatmap shape.
    placement : Placement, dict or None
        Where the heatmap lies on level 0.

    Examples
    --------
    >>> import numpy as np
    >>> square = np.array([[0.5, 0.5], [0.5, 3.5], [3.5, 3.5], [3.5, 0.5]])
    >>> region_mask(square, (5, 5)).astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 0, 0, 0]])
    """
    rows, cols, local = region_window(region, shape, placement=placement)
    mask = np.zeros(tuple(int(s) for s in shape), dtype=bool)
    mask[rows, cols] = local
    return mask


@dataclass
class RegionRelevance:
    """Relevance statistics of one region on one heatmap (NaN means when no pixel is inside)."""

    index: int
    cls: str
    name: str | None
    id: str | None
    n_pixels: int
    area_level0: float
    mean: float
    total: float
    mean_positive: float
    fraction_positive: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _stats(h, rows: slice, cols: slice, mask: np.ndarray, *, block_pixels: int = 1 << 22):
    """(n, mean, total, mean of positives-or-0, fraction > 0) of the finite values under
    ``mask`` in the window ``h[rows, cols]``, in row blocks (no full-size float64 copy)."""
    n = 0
    total = positive = above = 0.0
    step = max(1, block_pixels // max(mask.shape[1], 1))
    for a in range(0, mask.shape[0], step):
        m = mask[a:a + step]
        v = np.asarray(h[rows.start + a:rows.start + a + m.shape[0], cols], dtype=np.float64)[m]
        v = v[np.isfinite(v)]
        n += v.size
        total += float(v.sum())
        positive += float(np.maximum(v, 0).sum())
        above += float(np.count_nonzero(v > 0))
    if n == 0:
        return 0, float("nan"), 0.0, float("nan"), float("nan")
    return n, total / n, total, positive / n, above / n


def region_relevance(heatmap, regions, *, placement=None, windows=None) -> list[RegionRelevance]:
    """Mean and total relevance of each annotated region.

    Parameters
    ----------
    heatmap : (H, W) array
        Signed relevance (NaN pixels ignored).
    regions : sequence of RegionShape or (K, 2) arrays
        Regions in level-0 (row, col) pixels.
    placement : Placement, dict or None
        Where the heatmap lies on level 0.
    windows : sequence or None
        ``region_window(region, shape, placement=placement)`` of each region, when the caller
        already has them (they are rasterised once for several metrics).

    Returns
    -------
    list of RegionRelevance
        In the order of ``regions``: ``mean`` and ``total`` of the signed values over the
        region's pixels, ``mean_positive`` of the rectified values, ``fraction_positive`` of
        pixels above zero, ``area_level0`` in level-0 pixels.

    Examples
    --------
    >>> import numpy as np
    >>> heat = np.zeros((5, 5)); heat[1:4, 1:4] = 2.0
    >>> square = np.array([[0.5, 0.5], [0.5, 3.5], [3.5, 3.5], [3.5, 0.5]])
    >>> r = region_relevance(heat, [square])[0]
    >>> r.n_pixels, r.mean, r.total
    (9, 2.0, 18.0)
    """
    h = np.asarray(heatmap)
    if h.dtype.kind != "f":
        h = as_map(h)
    elif h.ndim != 2 or h.size == 0:
        as_map(h)  # raises the shape error
    p = as_placement(placement)
    out = []
    for k, region in enumerate(regions):
        rows, cols, local = (region_window(region, h.shape, placement=p) if windows is None
                             else windows[k])
        n, mean, total, mean_pos, frac = _stats(h, rows, cols, local)
        out.append(RegionRelevance(k, str(getattr(region, "cls", "region")),
                                   getattr(region, "name", None), getattr(region, "id", None),
                                   n, n * p.step_row * p.step_col, mean, total, mean_pos, frac))
    return out


@dataclass
class RegionComparison:
    """Region relevance on two heatmaps (model A, model B), per region and per class."""

    label_a: str
    label_b: str
    a: list[RegionRelevance]
    b: list[RegionRelevance]
    per_class: dict[str, dict]
    flags: list[str]

    def rows(self) -> list[dict]:
        """One row per region: class, name, mean A, mean B, B minus A."""
        return [{"index": ra.index, "cls": ra.cls, "name": ra.name, "id": ra.id,
                 f"mean_{self.label_a}": ra.mean, f"mean_{self.label_b}": rb.mean,
                 "difference": rb.mean - ra.mean}
                for ra, rb in zip(self.a, self.b)]

    def to_dict(self) -> dict:
        return {"label_a": self.label_a, "label_b": self.label_b, "regions": self.rows(),
                "per_class": self.per_class, "flags": self.flags}


def compare_region_relevance(heatmap_a, heatmap_b, regions, *, placement_a=None,
                             placement_b=None, label_a: str = "A", label_b: str = "B",
                             classes=None) -> RegionComparison:
    """Mean relevance per region on two heatmaps, and a flag where their signs disagree.

    The sampling-bias test of seed 000: a model that never saw necrosis in training gives
    necrosis positive (tumour) relevance where a model trained with it does not. Per class the
    mean of the region means is reported for both, with the share of regions where B > A.

    Parameters
    ----------
    heatmap_a, heatmap_b : (H, W) arrays
        Heatmaps of the same tissue from two models (each with its own placement).
    regions : sequence of RegionShape
        Annotated regions (level-0 pixels).
    classes : sequence of str or None
        Region classes to summarise and flag; ``None`` means all.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.full((6, 6), -0.2); b = np.full((6, 6), 0.5)
    >>> sq = np.array([[0.5, 0.5], [0.5, 4.5], [4.5, 4.5], [4.5, 0.5]])
    >>> cmp = compare_region_relevance(a, b, [sq], label_a="clean", label_b="biased")
    >>> cmp.per_class["region"]["mean_biased"], len(cmp.flags)
    (0.5, 1)
    """
    ra = region_relevance(heatmap_a, regions, placement=placement_a)
    rb = region_relevance(heatmap_b, regions, placement=placement_b)
    per_class, flags = {}, []
    names = sorted({r.cls for r in ra})
    if classes is not None:
        names = [n for n in names if n in set(classes)]
    for name in names:
        ma = np.array([r.mean for r in ra if r.cls == name])
        mb = np.array([r.mean for r in rb if r.cls == name])
        both = np.isfinite(ma) & np.isfinite(mb)
        if not both.any():
            continue
        mean_a, mean_b = float(ma[both].mean()), float(mb[both].mean())
        per_class[name] = {"n_regions": int(both.sum()), f"mean_{label_a}": mean_a,
                           f"mean_{label_b}": mean_b,
                           "fraction_b_above_a": float(np.mean(mb[both] > ma[both]))}
        if (mean_a > 0) != (mean_b > 0):
            up, down = (label_b, label_a) if mean_b > 0 else (label_a, label_b)
            flags.append(
                f"{name}: model {up} gives positive mean relevance "
                f"({max(mean_a, mean_b):+.3g}) where model {down} does not "
                f"({min(mean_a, mean_b):+.3g}), over {int(both.sum())} region(s): "
                f"possible sampling bias (class missing from {up}'s training?)")
    return RegionComparison(label_a, label_b, ra, rb, per_class, flags)
