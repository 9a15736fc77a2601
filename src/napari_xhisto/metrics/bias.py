"""Bias diagnostics from many patch heatmaps (seed 000).

- Centre bias (labels from the centre cell, no translation augmentation): mean |R| inside
  centred squares of growing size, as a share of the total, against the squares' area share.
  An unbiased (spatially uniform) model follows the identity line.
- Class-correlated artefacts (e.g. a small coloured square on every tumour patch): the mean
  heatmap per predicted class, and a scan for the window that holds far more relevance than
  its area share, wherever it is and whatever its size or sign.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import xlogy

from ._common import as_map, as_stack

__all__ = ["CentreBiasProfile", "Hotspot", "centre_bias_profile", "class_mean_heatmaps",
           "find_hotspot", "window_enrichment"]


def _summed_area(a: np.ndarray) -> np.ndarray:
    s = np.zeros((a.shape[0] + 1, a.shape[1] + 1))
    s[1:, 1:] = a.cumsum(0).cumsum(1)
    return s


@dataclass
class CentreBiasProfile:
    """Share of mean |R| inside centred squares against their share of the patch area.

    ``concentration`` is twice the area between the profile and the identity line (0 for a
    uniform map, towards 1 when all relevance sits at the centre, negative towards the
    borders); ``centre_enrichment`` is the relevance share of the centred square covering about
    ``centre_area`` of the patch divided by its area share (1 for a uniform map).
    """

    sides: np.ndarray
    area_share: np.ndarray
    relevance_share: np.ndarray
    concentration: float
    centre_enrichment: float
    centre_area: float
    n_patches: int

    def flag(self, *, min_enrichment: float = 2.0) -> str | None:
        """A plain-language warning when relevance concentrates at the centre, else None."""
        if not self.centre_enrichment >= min_enrichment:
            return None
        return (f"relevance concentrates at the patch centre: {self.centre_enrichment:.1f}x "
                f"uniform in the central {100 * self.centre_area:.0f}% of the area "
                f"(concentration {self.concentration:+.2f}; an unbiased model gives about 1x "
                f"and 0): labels may depend on the centre only; train with translations")

    def to_dict(self) -> dict:
        return {"sides": self.sides.tolist(), "area_share": self.area_share.tolist(),
                "relevance_share": self.relevance_share.tolist(),
                "concentration": self.concentration, "centre_enrichment": self.centre_enrichment,
                "centre_area": self.centre_area, "n_patches": self.n_patches, "flag": self.flag()}


def centre_bias_profile(heatmaps, *, normalize_each: bool = True,
                        centre_area: float = 0.1) -> CentreBiasProfile:
    """Centre-bias profile of many patch heatmaps.

    Parameters
    ----------
    heatmaps : (N, H, W) array or (H, W) mean map
        Patch heatmaps (signed or not: absolute values are used).
    normalize_each : bool
        Scale each patch's |R| to sum 1 first, so every patch counts the same.
    centre_area : float
        Area share of the centred square used for ``centre_enrichment``.

    Returns
    -------
    CentreBiasProfile
        Squares of side 1 .. min(H, W) (rectangles with the patch's aspect when not square).

    Examples
    --------
    >>> import numpy as np
    >>> flat = centre_bias_profile(np.ones((3, 20, 20)))
    >>> bool(np.allclose(flat.relevance_share, flat.area_share)), round(flat.concentration, 6)
    (True, 0.0)
    >>> yy, xx = np.mgrid[:20, :20]
    >>> peaked = centre_bias_profile(np.exp(-((yy - 9.5) ** 2 + (xx - 9.5) ** 2) / 20.0))
    >>> peaked.centre_enrichment > 3, peaked.flag() is not None
    (True, True)
    """
    stack = np.abs(as_stack(heatmaps))
    stack = np.where(np.isfinite(stack), stack, 0.0)
    if not 0 < centre_area <= 1:
        raise ValueError(f"centre_area must be in (0, 1], got {centre_area}")
    if normalize_each:
        sums = stack.sum(axis=(1, 2))
        stack = stack[sums > 0] / sums[sums > 0, None, None]
    n = stack.shape[0]
    H, W = stack.shape[1:]
    mean = stack.mean(axis=0) if n else np.zeros((H, W))
    total = mean.sum()
    if total <= 0:
        raise ValueError("all heatmaps are zero: no relevance to profile")
    sat = _summed_area(mean)
    short = min(H, W)
    sides = np.arange(1, short + 1)
    hs = sides if H == short else np.rint(sides * H / short).astype(int)
    ws = sides if W == short else np.rint(sides * W / short).astype(int)
    r0, c0 = (H - hs) // 2, (W - ws) // 2
    r1, c1 = r0 + hs, c0 + ws
    inside = sat[r1, c1] - sat[r0, c1] - sat[r1, c0] + sat[r0, c0]
    share = inside / total
    area = hs * ws / (H * W)
    x, y = np.r_[0.0, area], np.r_[0.0, share]
    concentration = float(2 * np.sum(np.diff(x) * ((y[1:] - x[1:]) + (y[:-1] - x[:-1])) / 2))
    k = int(np.argmin(np.abs(area - centre_area)))
    return CentreBiasProfile(sides, area, share, concentration, float(share[k] / area[k]),
                             float(area[k]), n)


def class_mean_heatmaps(heatmaps, predicted, *, class_names=None) -> dict[str, dict]:
    """Mean signed heatmap per predicted class.

    Parameters
    ----------
    heatmaps : (N, H, W) array
        One heatmap per patch (for its predicted class).
    predicted : (N,) int or str array
        Predicted class of each patch (indices into ``class_names`` when integers).

    Returns
    -------
    dict
        class name -> ``{"mean": (H, W) array, "count": int}``.

    Examples
    --------
    >>> import numpy as np
    >>> m = class_mean_heatmaps(np.stack([np.ones((2, 2)), 3 * np.ones((2, 2))]), [1, 1],
    ...                         class_names=["other", "tumour"])
    >>> m["tumour"]["count"], float(m["tumour"]["mean"][0, 0])
    (2, 2.0)
    """
    stack = as_stack(heatmaps)
    pred = np.asarray(predicted).ravel()
    if pred.size != stack.shape[0]:
        raise ValueError(f"{stack.shape[0]} heatmaps but {pred.size} predicted classes")
    if class_names is not None and np.issubdtype(pred.dtype, np.integer):
        names = np.asarray(class_names, dtype=str)
        if pred.size and (pred.min() < 0 or pred.max() >= names.size):
            raise ValueError(f"predicted indices must lie in 0..{names.size - 1}")
        pred = names[pred]
    pred = pred.astype(str)
    return {str(c): {"mean": np.nanmean(stack[pred == c], axis=0), "count": int(np.sum(pred == c))}
            for c in np.unique(pred)}


@dataclass
class Hotspot:
    """The square window holding the most relevance beyond its area share (scan statistic)."""

    row: int
    col: int
    size: int
    sign: str
    share: float
    area_share: float
    enrichment: float
    score: float
    label: str | None = None

    def flag(self, *, min_enrichment: float = 5.0, min_share: float = 0.01,
             max_area_share: float = 0.25) -> str | None:
        """A plain-language warning when the window is a strong, small hotspot, else None."""
        if not (self.enrichment >= min_enrichment and self.share >= min_share
                and self.area_share <= max_area_share):
            return None
        who = f"class '{self.label}': " if self.label else ""
        kind = "positive" if self.sign == "positive" else "negative"
        return (f"{who}{100 * self.share:.1f}% of the {kind} relevance sits in a "
                f"{self.size}x{self.size} px window at (row {self.row}, col {self.col}), "
                f"{100 * self.area_share:.2f}% of the patch: {self.enrichment:.0f}x its area "
                f"share; look for an artefact correlated with the class there")

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["flag"] = self.flag()
        return d


def find_hotspot(heatmap, *, sign: str = "both", sizes=None, label: str | None = None) -> Hotspot:
    """Find the square window whose relevance most exceeds its area share.

    Each window of side ``k`` at each position gets the share ``p`` of the map's positive (or
    negative) relevance it holds and its area share ``q``; the winner maximises the Bernoulli
    log-likelihood ratio ``p log(p/q) + (1-p) log((1-p)/(1-q))`` (Kulldorff's scan statistic),
    which balances enrichment against size, so a 5x5 artefact and a 60x60 one are both found.

    Parameters
    ----------
    heatmap : (H, W) array
        Usually a class mean heatmap from `class_mean_heatmaps`.
    sign : {"both", "positive", "negative"}
        Which relevance to scan; "both" returns the stronger.
    sizes : sequence of int or None
        Window sides to try; default 1 .. min(H, W) // 2.
    label : str or None
        Class name, used in the flag text.

    Examples
    --------
    >>> import numpy as np
    >>> heat = np.full((40, 40), 0.01); heat[30:35, 8:13] = 1.0
    >>> spot = find_hotspot(heat)
    >>> spot.row, spot.col, spot.size, spot.sign
    (30, 8, 5, 'positive')
    """
    h = as_map(heatmap)
    h = np.where(np.isfinite(h), h, 0.0)
    if sign not in ("both", "positive", "negative"):
        raise ValueError(f"sign must be 'both', 'positive' or 'negative', got {sign!r}")
    H, W = h.shape
    sizes = range(1, max(min(H, W) // 2, 1) + 1) if sizes is None else sizes
    best = None
    for s, part in (("positive", h), ("negative", -h)):
        if sign not in ("both", s):
            continue
        pos = np.maximum(part, 0.0)
        total = pos.sum()
        if total <= 0:
            continue
        sat = _summed_area(pos / total)
        for k in sizes:
            k = int(k)
            if not 1 <= k <= min(H, W):
                raise ValueError(f"window sizes must lie in 1..{min(H, W)}, got {k}")
            p = np.clip(sat[k:, k:] - sat[:-k, k:] - sat[k:, :-k] + sat[:-k, :-k], 0.0, 1.0)
            q = k * k / (H * W)
            llr = xlogy(p, p / q) + xlogy(1 - p, (1 - p) / (1 - q)) if q < 1 else 0 * p
            llr = np.where(p > q, llr, 0.0)
            i = int(np.argmax(llr))
            r, c = divmod(i, llr.shape[1])
            if best is None or llr[r, c] > best.score:
                share = float(p[r, c])
                best = Hotspot(r, c, k, s, share, q, share / q, float(llr[r, c]), label)
    if best is None:
        raise ValueError("the heatmap has no relevance of the requested sign")
    return best


def window_enrichment(heatmap, *, row: int, col: int, height: int, width: int | None = None,
                      sign: str = "positive") -> dict:
    """Share of a map's positive (or negative) relevance inside a known window, over its area share.

    The check of seed 000's class-correlated bias when the artefact's place is known (e.g. the
    5x5 square in the top-left corner): an unbiased map gives about 1.

    Examples
    --------
    >>> import numpy as np
    >>> heat = np.full((20, 20), 0.1); heat[:5, :5] = 1.0
    >>> out = window_enrichment(heat, row=0, col=0, height=5)
    >>> round(out["share"], 3), out["area_share"], round(out["enrichment"], 2)
    (0.4, 0.0625, 6.4)
    """
    h = as_map(heatmap)
    width = height if width is None else width
    H, W = h.shape
    if not (0 <= row < H and 0 <= col < W and height > 0 and width > 0):
        raise ValueError(f"window ({row}, {col}, {height} x {width}) is outside the {H} x {W} map")
    if sign not in ("positive", "negative"):
        raise ValueError(f"sign must be 'positive' or 'negative', got {sign!r}")
    part = np.maximum(np.where(np.isfinite(h), h if sign == "positive" else -h, 0.0), 0.0)
    total = part.sum()
    window = part[row:row + height, col:col + width]
    share = float(window.sum() / total) if total > 0 else float("nan")
    area = window.size / h.size
    return {"share": share, "area_share": area, "enrichment": share / area}
