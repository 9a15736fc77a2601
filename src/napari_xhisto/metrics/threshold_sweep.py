"""Threshold sweeps: PxAP and localisation-vs-threshold curves, as Choe et al.'s WSOL evaluator.

``wsolevaluation/evaluation.py`` (``MaskEvaluator``): each map is min-max scaled to [0, 1],
thresholds are ``np.arange(0, 1, step)`` with the reference ``step = 0.001`` (its
``cam_curve_interval``), histograms of positive and negative pixel scores (bins ``[t_k, t_k+1)``,
then ``[1, 2)``, ``[2, 3]``) are pooled over the whole set, and true/false positives are reverse
cumulative sums (score >= threshold). Before scaling, a signed map is read under a convention
(default ``"rectified"``, see `conventions`); NaN pixels (not computed) are ignored, as the
evaluator's ignore mask. Large maps are processed in row blocks (no full-size copy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import as_map
from .conventions import apply_convention, check_convention

__all__ = ["PxapResult", "REFERENCE_STEP", "THRESHOLDS", "confusion_from_histograms",
           "confusion_over_thresholds", "finite_range", "minmax_normalize", "pxap",
           "pxap_from_histograms", "threshold_grid", "threshold_histograms"]

REFERENCE_STEP = 0.001  # Choe et al.'s cam_curve_interval


def threshold_grid(step: float = REFERENCE_STEP) -> np.ndarray:
    """Thresholds ``np.arange(0, 1, step)`` (the WSOL evaluator's ``cam_threshold_list``).

    Examples
    --------
    >>> threshold_grid(0.25).tolist()
    [0.0, 0.25, 0.5, 0.75]
    """
    step = float(step)
    if not (0 < step <= 0.5):
        raise ValueError(f"threshold step must be in (0, 0.5], got {step} (reference: 0.001)")
    return np.arange(0, 1, step)


THRESHOLDS = threshold_grid()


def minmax_normalize(heatmap) -> np.ndarray:
    """Scale a map to [0, 1]; a constant map or one with NaN becomes all zeros (as PxAP does).

    This is the WSOL evaluator's ``normalize_scoremap``; the metrics here scale over the finite
    pixels instead and ignore NaN ones (see `threshold_histograms`).

    Examples
    --------
    >>> minmax_normalize([[2.0, 4.0], [6.0, 10.0]]).tolist()
    [[0.0, 0.25], [0.5, 1.0]]
    """
    h = as_map(heatmap)
    if not np.isfinite(h).all() or h.min() == h.max():
        return np.zeros_like(h)
    return (h - h.min()) / (h.max() - h.min())


def _map_list(maps, *, name: str) -> list:
    """One 2-D map, a (N, H, W) stack, or a sequence of 2-D maps of any shapes, as a list."""
    if isinstance(maps, np.ndarray):
        if maps.ndim == 2:
            return [maps]
        if maps.ndim == 3:
            return list(maps)
        raise ValueError(f"{name} must be 2-D maps, got an array of shape {maps.shape}")
    if isinstance(maps, list | tuple):
        if not maps:
            raise ValueError(f"{name} is empty")
        if np.ndim(maps[0]) == 2 or hasattr(maps[0], "shape") and len(maps[0].shape) == 2:
            return list(maps)
        return [np.asarray(maps)]  # a nested list holding one map
    return [maps]


def _pairs(maps, masks):
    maps, masks = _map_list(maps, name="maps"), _map_list(masks, name="masks")
    if len(maps) != len(masks):
        raise ValueError(f"need one mask per map, got {len(maps)} maps and {len(masks)} masks")
    for k, (m, g) in enumerate(zip(maps, masks)):
        m = np.asarray(m)
        if m.ndim != 2 or m.size == 0:
            raise ValueError(f"map {k} must be a non-empty 2-D array, got shape {m.shape}")
        if m.shape != np.shape(g):
            raise ValueError(f"map {k} has shape {m.shape} but its mask {np.shape(g)}")
        yield m, np.asarray(g, dtype=bool)


def _rows_per_block(width: int, block_pixels: int) -> int:
    return max(1, int(block_pixels) // max(int(width), 1))


def finite_range(heatmap, *, convention: str = "rectified", block_pixels: int = 1 << 22):
    """(min, max) of the finite values of ``heatmap`` read under ``convention``; NaNs when none.

    Works in row blocks, so a large map is never copied whole. An infinite value counts as a
    value (the map then has no finite range and is left out of the histograms).
    """
    h = np.asarray(heatmap)
    lo, hi = np.inf, -np.inf
    step = _rows_per_block(h.shape[1], block_pixels)
    raw = convention in ("rectified", "signed") and h.dtype.kind == "f"
    for r0 in range(0, h.shape[0], step):
        block = h[r0:r0 + step]
        v = block if raw else apply_convention(block, convention)
        lo = min(lo, float(np.fmin.reduce(v, axis=None)))
        hi = max(hi, float(np.fmax.reduce(v, axis=None)))
    if convention == "rectified" and raw and np.isfinite(lo):  # max(v, 0) of the raw range
        lo, hi = max(lo, 0.0), max(hi, 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return float("nan"), float("nan")
    return lo, hi


def _bin_index(v: np.ndarray, edges: np.ndarray, step: float) -> np.ndarray:
    """Bin ``k`` with ``edges[k] <= v < edges[k + 1]`` of scores in [0, 1] (np.histogram's bins).

    ``floor(v / step)`` is corrected against the edges themselves, so the result is exactly
    what ``np.histogram(v, bins=edges)`` counts, without its sort.
    """
    n_thr = edges.size - 3
    q = np.floor(v / step).astype(np.int64)
    np.clip(q, 0, n_thr, out=q)
    q -= v < edges[q]
    q += v >= edges[q + 1]
    return q


def _int_type(dtype):
    return np.int32 if np.dtype(dtype) == np.float32 else np.int64


def _ordinal(x: np.ndarray) -> np.ndarray:
    """Integers in the order of the floats ``x`` (-0.0 and 0.0 alike); `_from_ordinal` inverts."""
    bits = x.view(_int_type(x.dtype)).astype(np.int64)
    mag = bits & np.int64(np.iinfo(_int_type(x.dtype)).max)
    return np.where(bits < 0, -mag, mag)


def _from_ordinal(o: np.ndarray, dtype) -> np.ndarray:
    it = _int_type(dtype)
    bits = np.where(o < 0, (-o) | np.int64(np.iinfo(it).min), o).astype(it)
    return bits.view(dtype)


def _value_edges(lo: float, hi: float, edges: np.ndarray, step: float, dtype) -> np.ndarray:
    """``first[k - 1]``: the least value ``x`` of ``dtype`` whose score
    ``(float64(x) - lo) / (hi - lo)`` falls in bin ``k`` or above (`_bin_index`), for
    ``k = 1 .. len(edges) - 1``; ``inf`` where no value up to ``hi`` gets there.

    The scores are monotone in ``x``, so a bisection over the ordered values of ``dtype``
    finds each edge exactly; a value's bin is then ``#{k: first[k - 1] <= x}``.
    """
    scale = hi - lo
    n_bins = edges.size - 1
    lo_o = int(_ordinal(np.asarray([lo], dtype=dtype))[0])
    hi_o = int(_ordinal(np.asarray([hi], dtype=dtype))[0])
    k = np.arange(1, n_bins)
    a = np.full(k.size, lo_o - 1, dtype=np.int64)  # bin(a) < k (below the range)
    b = np.full(k.size, hi_o + 1, dtype=np.int64)  # bin(b) >= k, or past the range

    def reaches(o):
        v = (_from_ordinal(o, dtype).astype(np.float64) - lo) / scale
        return _bin_index(np.clip(v, 0.0, 3.0), edges, step) >= k

    while True:
        open_ = b - a > 1
        if not open_.any():
            break
        mid = a + (b - a) // 2
        up = reaches(np.clip(mid, lo_o, hi_o))
        b = np.where(open_ & up, mid, b)
        a = np.where(open_ & ~up, mid, a)
    first = _from_ordinal(np.minimum(b, hi_o), dtype)
    first[b > hi_o] = np.inf
    return first


class _Binner:
    """Exact threshold bins of a float map's values, read under a convention, in row blocks.

    A value's bin is ``floor(score)`` computed in the map's own precision and a little low
    (never above the exact bin, at most one below), then raised by one where the value
    reaches the next exact edge (`_value_edges`): what `_bin_index` gives on the float64
    scores, in a few operations per pixel into reused buffers. NaN pixels are read as a
    value just past the top of the range: they land in the last bin (``[2, 3]``), which no
    score reaches, and the caller empties it.
    """

    def __init__(self, lo, hi, edges, step, convention, dtype, shape):
        self.convention = convention
        self.dtype = np.dtype(dtype)
        n_thr = edges.size - 3
        self.first_next = _value_edges(lo, hi, edges, step, self.dtype)
        # a relative shift of 2^-20 outweighs the rounding of two float32 operations
        self.factor = self.dtype.type(n_thr / (hi - lo) * (1 - 2.0 ** -20))
        self.lo = self.dtype.type(lo)
        self.nan_value = self.dtype.type(lo + (n_thr + 1.5) / float(self.factor))
        self.v = np.empty(shape, self.dtype)
        self.f = np.empty(shape, self.dtype)
        self.q = np.empty(shape, np.int32)
        self.up = np.empty(shape, bool)

    def __call__(self, block):
        n = block.shape[0]
        v, f, q, up = self.v[:n], self.f[:n], self.q[:n], self.up[:n]
        if self.convention == "absolute":
            np.abs(block, out=v)
            np.maximum(v, self.lo, out=v)
        else:  # rectified: lo >= 0, so on finite values max(v, lo) is max(v, 0)
            np.maximum(block, self.lo, out=v)
        np.fmin(v, self.nan_value, out=v)  # NaN -> a value in the last bin
        np.subtract(v, self.lo, out=f)
        np.multiply(f, self.factor, out=f)
        np.copyto(q, f, casting="unsafe")
        np.take(self.first_next, q, out=f, mode="clip")  # "raise" would buffer
        np.greater_equal(v, f, out=up)
        q += up
        return q


def threshold_histograms(maps, masks, *, step: float = REFERENCE_STEP,
                         convention: str = "rectified", block_pixels: int = 1 << 22):
    """Pooled histograms of min-max scaled scores at ground-truth and background pixels.

    Parameters
    ----------
    maps : (H, W) array or sequence of 2-D arrays (shapes may differ)
        Heatmaps; each is read under ``convention`` and min-max scaled to [0, 1] over its
        finite pixels (a constant map scales to 0). NaN pixels are ignored.
    masks : (H, W) bool array or sequence of them
        Ground truth, one mask per map, of the map's shape.
    step : float
        Threshold step; the reference (WSOL evaluator) grid is 0.001.
    convention : str
        ``"rectified"`` (default), ``"signed"`` or ``"absolute"`` (see `conventions`).

    Returns
    -------
    positive, negative : (len(thresholds) + 2,) int64 arrays
        Counts per bin ``[t_0, t_1), ..., [t_last, 1), [1, 2), [2, 3]``.
    thresholds : ndarray
        ``threshold_grid(step)``.
    """
    check_convention(convention)
    thr = threshold_grid(step)
    edges = np.append(thr, [1.0, 2.0, 3.0])
    nb = edges.size - 1
    pos = np.zeros(nb, dtype=np.int64)
    total = np.zeros(nb, dtype=np.int64)
    for m, g in _pairs(maps, masks):
        lo, hi = finite_range(m, convention=convention, block_pixels=block_pixels)
        if not np.isfinite(lo):
            continue
        # small blocks: the buffers stay in cache
        rows = _rows_per_block(m.shape[1], min(block_pixels, 1 << 16))
        dtype = m.dtype if m.dtype in (np.float32, np.float64) else np.float64
        binner = None if hi == lo else _Binner(lo, hi, edges, step, convention, dtype,
                                               (min(rows, m.shape[0]), m.shape[1]))
        for r0 in range(0, m.shape[0], rows):
            block = np.asarray(m[r0:r0 + rows], dtype=dtype)
            gb = g[r0:r0 + rows].reshape(-1)
            if binner is None:  # a constant map scales to 0: every finite pixel in bin 0
                ok = np.isfinite(block).reshape(-1)
                total[0] += np.count_nonzero(ok)
                pos[0] += np.count_nonzero(gb & ok)
                continue
            q = binner(block).reshape(-1)
            total += np.bincount(q, minlength=nb)
            if gb.any():
                pos += np.bincount(q[gb], minlength=nb)
        total[-1] = pos[-1] = 0  # NaN pixels (no score reaches [2, 3])
    return pos, total - pos, thr


@dataclass
class PxapResult:
    """PxAP and the precision/recall at each threshold (score >= t), ascending thresholds."""

    pxap: float
    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    step: float = REFERENCE_STEP
    convention: str = "rectified"
    n_positive: int = 0
    n_negative: int = 0

    def to_dict(self, *, curve: bool = True) -> dict:
        d = {"pxap": self.pxap, "threshold_step": self.step, "convention": self.convention,
             "n_positive_pixels": self.n_positive, "n_negative_pixels": self.n_negative}
        if curve:
            d.update(thresholds=self.thresholds.tolist(), precision=self.precision.tolist(),
                     recall=self.recall.tolist())
        return d


def pxap_from_histograms(pos, neg, thresholds, *, step: float = REFERENCE_STEP,
                         convention: str = "rectified") -> PxapResult:
    """PxAP from `threshold_histograms` output: the WSOL evaluator's ``MaskEvaluator.compute``.

    ``sum_i precision_i * (recall_i - recall_{i-1})`` over thresholds from high to low, left
    out where nothing is predicted (``tp + fp == 0``); returned as a fraction (the evaluator
    reports percent).
    """
    pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    n_pos = pos.sum()
    if n_pos == 0:
        raise ValueError("PxAP needs at least one ground-truth pixel (inside the computed part of "
                         "the heatmap) in the masks")
    tp = np.cumsum(pos[::-1])  # thresholds 2, 1, t_last, ..., t_0
    fp = np.cumsum(neg[::-1])
    predicted = (tp + fp) != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
    recall = tp / n_pos
    value = float(np.sum((precision[1:] * np.diff(recall))[predicted[1:]]))
    k = len(thresholds)
    return PxapResult(value, np.asarray(thresholds).copy(), precision[::-1][:k].copy(),
                      recall[::-1][:k].copy(), float(step), convention, int(n_pos),
                      int(neg.sum()))


def pxap(maps, masks, *, step: float = REFERENCE_STEP, convention: str = "rectified") -> PxapResult:
    """Pixel average precision over the threshold sweep, pooled over a set of maps.

    Parameters
    ----------
    maps : (H, W) array or sequence of 2-D arrays
        Heatmaps; shapes may differ between maps (each map matches its own mask). Each is read
        under ``convention`` and min-max scaled on its own; NaN pixels are ignored.
    masks : (H, W) bool array or sequence of them
        Ground-truth masks, one per map.
    step : float
        Threshold step (``np.arange(0, 1, step)``); 0.001 is Choe et al.'s reference grid.
    convention : str
        How a signed map is read (``"rectified"``: evidence for the class only).

    Returns
    -------
    PxapResult
        ``pxap`` in [0, 1] is ``sum_i precision_i * (recall_i - recall_{i-1})`` with thresholds
        taken from high to low.

    Examples
    --------
    >>> import numpy as np
    >>> round(pxap(np.array([[0.0, 1.0], [0.5, 0.2]]), np.array([[0, 1], [1, 0]])).pxap, 6)
    1.0
    >>> small, large = np.eye(3), np.zeros((4, 5)); large[0, :2] = 1
    >>> round(pxap([small, large], [np.eye(3, dtype=bool), large > 0]).pxap, 6)
    1.0
    """
    pos, neg, thr = threshold_histograms(maps, masks, step=step, convention=convention)
    return pxap_from_histograms(pos, neg, thr, step=step, convention=convention)


def confusion_from_histograms(pos, neg, thresholds) -> dict:
    """TP/FN/FP/TN at each threshold, the rates, precision, IoU and Dice (localisation curves)."""
    pos, neg = np.asarray(pos), np.asarray(neg)
    k = len(thresholds)
    tp = np.cumsum(pos[::-1])[::-1][:k]
    fp = np.cumsum(neg[::-1])[::-1][:k]
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    fn, tn = n_pos - tp, n_neg - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = tp / n_pos if n_pos else np.full(k, np.nan)
        fpr = fp / n_neg if n_neg else np.full(k, np.nan)
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
        dice = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return {
        "thresholds": np.asarray(thresholds).tolist(),
        "tp": tp.astype(int).tolist(), "fn": fn.astype(int).tolist(),
        "fp": fp.astype(int).tolist(), "tn": tn.astype(int).tolist(),
        "n_positive_pixels": n_pos, "n_negative_pixels": n_neg,
        "mean_rates": {"tpr": float(np.mean(tpr)), "fnr": float(np.mean(1 - tpr)),
                       "fpr": float(np.mean(fpr)), "tnr": float(np.mean(1 - fpr))},
        "curve": {"precision": precision.tolist(), "recall": np.asarray(tpr).tolist(),
                  "iou": iou.tolist(), "dice": dice.tolist(), "tpr": np.asarray(tpr).tolist(),
                  "fpr": np.asarray(fpr).tolist(), "fnr": (1 - np.asarray(tpr)).tolist(),
                  "tnr": (1 - np.asarray(fpr)).tolist()},
    }


def confusion_over_thresholds(maps, masks, *, step: float = REFERENCE_STEP,
                              convention: str = "rectified") -> dict:
    """Pooled TP/FN/FP/TN at each threshold, their rates, and the rates averaged over thresholds.

    Also gives the localisation-vs-threshold curves (precision, recall, IoU, Dice and the four
    rates per threshold), the view of seed 003's finding that CAMs are threshold-sensitive.
    Same scaling, grid and conventions as `pxap`.

    Examples
    --------
    >>> import numpy as np
    >>> c = confusion_over_thresholds(np.array([[0.0, 1.0]]), np.array([[False, True]]), step=0.01)
    >>> c["tp"][0], c["fp"][0], c["fp"][1]
    (1, 1, 0)
    >>> round(c["mean_rates"]["fpr"], 2)
    0.01
    """
    pos, neg, thr = threshold_histograms(maps, masks, step=step, convention=convention)
    out = confusion_from_histograms(pos, neg, thr)
    out.update(threshold_step=float(step), convention=convention)
    return out
