"""How well heatmaps localise annotated regions (seeds 003 and 001).

Threshold sweeps follow PxAP (Choe et al. 2020): each map is min-max normalised, thresholds
are ``np.arange(0, 1, 0.01)``, histograms of positive and negative pixel scores are pooled over
the whole set, and true/false positives are reverse cumulative sums (score >= threshold).
Binary comparisons at one threshold (Dice, IoU, Hausdorff, boxes, area) follow seed 001.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ._common import as_map

__all__ = ["PxapResult", "THRESHOLDS", "area_ratio", "confusion_over_thresholds", "dice_iou",
           "hausdorff_distance", "localization_at_percentiles", "minmax_normalize", "pxap",
           "weak_localization"]

THRESHOLDS = np.arange(0, 1, 0.01)
_EDGES = np.append(THRESHOLDS, [1.0, 2.0, 3.0])


def minmax_normalize(heatmap) -> np.ndarray:
    """Scale a map to [0, 1]; a constant map or one with NaN becomes all zeros (as PxAP does).

    Examples
    --------
    >>> minmax_normalize([[2.0, 4.0], [6.0, 10.0]]).tolist()
    [[0.0, 0.25], [0.5, 1.0]]
    """
    h = as_map(heatmap)
    if not np.isfinite(h).all() or h.min() == h.max():
        return np.zeros_like(h)
    return (h - h.min()) / (h.max() - h.min())


def _pairs(maps, masks):
    maps = [maps] if np.ndim(maps) == 2 else list(maps)
    masks = [masks] if np.ndim(masks) == 2 else list(masks)
    if len(maps) != len(masks) or not maps:
        raise ValueError(f"need one mask per map, got {len(maps)} maps and {len(masks)} masks")
    for k, (m, g) in enumerate(zip(maps, masks)):
        if np.shape(m) != np.shape(g):
            raise ValueError(f"map {k} has shape {np.shape(m)} but its mask {np.shape(g)}")
        yield minmax_normalize(m), np.asarray(g, dtype=bool)


def _pooled_histograms(maps, masks):
    pos = np.zeros(len(_EDGES) - 1)
    neg = np.zeros(len(_EDGES) - 1)
    for m, g in _pairs(maps, masks):
        pos += np.histogram(m[g], bins=_EDGES)[0]
        neg += np.histogram(m[~g], bins=_EDGES)[0]
    return pos, neg


@dataclass
class PxapResult:
    """PxAP and the precision/recall at each threshold of ``THRESHOLDS`` (score >= t)."""

    pxap: float
    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray

    def to_dict(self) -> dict:
        return {"pxap": self.pxap, "thresholds": self.thresholds.tolist(),
                "precision": self.precision.tolist(), "recall": self.recall.tolist()}


def pxap(maps, masks) -> PxapResult:
    """Pixel average precision over the threshold sweep, pooled over a set of maps.

    Parameters
    ----------
    maps : (H, W) array or sequence of arrays
        Heatmaps (min-max normalised here, each on its own).
    masks : (H, W) bool array or sequence of them
        Ground-truth masks, one per map.

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
    """
    pos, neg = _pooled_histograms(maps, masks)
    n_pos = pos.sum()
    if n_pos == 0:
        raise ValueError("PxAP needs at least one ground-truth pixel in the masks")
    tp = np.cumsum(pos[::-1])  # thresholds 2, 1, 0.99, ..., 0
    fp = np.cumsum(neg[::-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
    recall = tp / n_pos
    value = float(np.sum(precision[1:] * np.diff(recall)))
    k = len(THRESHOLDS)
    return PxapResult(value, THRESHOLDS.copy(), precision[::-1][:k].copy(), recall[::-1][:k].copy())


def confusion_over_thresholds(maps, masks) -> dict:
    """Pooled TP/FN/FP/TN at each threshold, their rates, and the rates averaged over thresholds.

    Also gives the localisation-vs-threshold curves (precision, recall, IoU, Dice per threshold).

    Examples
    --------
    >>> import numpy as np
    >>> c = confusion_over_thresholds(np.array([[0.0, 1.0]]), np.array([[False, True]]))
    >>> c["tp"][0], c["fp"][0], c["fp"][1]
    (1, 1, 0)
    >>> round(c["mean_rates"]["fpr"], 2)
    0.01
    """
    pos, neg = _pooled_histograms(maps, masks)
    k = len(THRESHOLDS)
    tp = np.cumsum(pos[::-1])[::-1][:k]
    fp = np.cumsum(neg[::-1])[::-1][:k]
    n_pos, n_neg = pos.sum(), neg.sum()
    fn, tn = n_pos - tp, n_neg - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = tp / n_pos if n_pos else np.full(k, np.nan)
        fpr = fp / n_neg if n_neg else np.full(k, np.nan)
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
        dice = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return {
        "thresholds": THRESHOLDS.tolist(),
        "tp": tp.astype(int).tolist(), "fn": fn.astype(int).tolist(),
        "fp": fp.astype(int).tolist(), "tn": tn.astype(int).tolist(),
        "mean_rates": {"tpr": float(np.mean(tpr)), "fnr": float(np.mean(1 - tpr)),
                       "fpr": float(np.mean(fpr)), "tnr": float(np.mean(1 - fpr))},
        "curve": {"precision": precision.tolist(), "recall": np.asarray(tpr).tolist(),
                  "iou": iou.tolist(), "dice": dice.tolist()},
    }


def dice_iou(prediction, truth) -> tuple[float, float]:
    """Dice and IoU of two binary masks (NaN when both are empty).

    Examples
    --------
    >>> import numpy as np
    >>> dice_iou(np.array([1, 1, 0, 0], bool), np.array([0, 1, 1, 0], bool))
    (0.5, 0.3333333333333333)
    """
    a, b = np.asarray(prediction, dtype=bool), np.asarray(truth, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    inter, union = np.sum(a & b), np.sum(a | b)
    if union == 0:
        return float("nan"), float("nan")
    return float(2 * inter / (a.sum() + b.sum())), float(inter / union)


def hausdorff_distance(prediction, truth, *, spacing=(1.0, 1.0)) -> float:
    """Symmetric Hausdorff distance between the pixels of two binary masks.

    ``spacing`` gives the pixel size per axis (e.g. the heatmap step in level-0 pixels).
    0 when both masks are empty, ``inf`` when only one is (as scikit-image).

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((5, 5), bool); a[0, 0] = True
    >>> b = np.zeros((5, 5), bool); b[3, 4] = True
    >>> hausdorff_distance(a, b)
    5.0
    """
    a, b = np.asarray(prediction, dtype=bool), np.asarray(truth, dtype=bool)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two 2-D masks of the same shape, got {a.shape} and {b.shape}")
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return float("inf")
    to_b = ndimage.distance_transform_edt(~b, sampling=spacing)
    to_a = ndimage.distance_transform_edt(~a, sampling=spacing)
    return float(max(to_b[a].max(), to_a[b].max()))


def _boxes(mask: np.ndarray) -> np.ndarray:
    """(K, 4) boxes (row0, col0, row1, col1), end exclusive, of 8-connected components."""
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    boxes = [(s[0].start, s[1].start, s[0].stop, s[1].stop) for s in ndimage.find_objects(labels)]
    return np.array(boxes, dtype=np.int64).reshape(-1, 4)


def _box_iou(box, others: np.ndarray) -> np.ndarray:
    """IoU of one box with each of ``others``."""
    ih = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    iw = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = ih * iw
    area = (box[2] - box[0]) * (box[3] - box[1])
    union = area + (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1]) - inter
    return inter / union


def weak_localization(prediction, truth, *, iou_threshold: float = 0.5) -> dict:
    """Bounding boxes of connected components (8-connected); a true box is hit when a
    predicted box overlaps it with IoU >= ``iou_threshold``.

    Returns ``hits``, ``n_true``, ``n_predicted``, ``hit_rate`` (NaN without true boxes) and
    the boxes as (row0, col0, row1, col1), end exclusive.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.zeros((10, 10), bool); t[1:4, 1:4] = True; t[6:9, 6:9] = True
    >>> p = np.zeros((10, 10), bool); p[1:4, 1:5] = True
    >>> w = weak_localization(p, t)
    >>> w["hits"], w["n_true"], w["hit_rate"]
    (1, 2, 0.5)
    """
    a, b = np.asarray(prediction, dtype=bool), np.asarray(truth, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    pred, true = _boxes(a), _boxes(b)
    hits = sum(bool(len(pred)) and bool(np.any(_box_iou(t, pred) >= iou_threshold)) for t in true)
    return {"hits": int(hits), "n_true": len(true), "n_predicted": len(pred),
            "hit_rate": hits / len(true) if len(true) else float("nan"),
            "true_boxes": true.tolist(), "predicted_boxes": pred.tolist()}


def area_ratio(prediction, truth=None) -> dict:
    """Share of the map that is switched on, and its size relative to the truth.

    Examples
    --------
    >>> import numpy as np
    >>> area_ratio(np.array([1, 1, 0, 0], bool), np.array([1, 0, 0, 0], bool))
    {'map_fraction': 0.5, 'to_truth': 2.0}
    """
    a = np.asarray(prediction, dtype=bool)
    out = {"map_fraction": float(a.mean())}
    if truth is not None:
        n = np.sum(np.asarray(truth, dtype=bool))
        out["to_truth"] = float(a.sum() / n) if n else float("nan")
    return out


def localization_at_percentiles(heatmap, truth, *, percentiles=(50, 75, 90),
                                iou_threshold: float = 0.5, spacing=(1.0, 1.0)) -> list[dict]:
    """Dice, IoU, Hausdorff, weak localisation and area at percentile thresholds of a map.

    A pixel is switched on when its value is strictly above the map's q-th percentile (so the
    zero background of a rectified map stays off). ``spacing`` scales Hausdorff distances.

    Examples
    --------
    >>> import numpy as np
    >>> heat = np.arange(16, dtype=float).reshape(4, 4)
    >>> out = localization_at_percentiles(heat, heat >= 8, percentiles=(50,))
    >>> out[0]["dice"], out[0]["hausdorff"]
    (1.0, 0.0)
    """
    h = as_map(heatmap)
    t = np.asarray(truth, dtype=bool)
    if t.shape != h.shape:
        raise ValueError(f"heatmap {h.shape} and truth mask {t.shape} differ in shape")
    finite = h[np.isfinite(h)]
    out = []
    for q in percentiles:
        thr = float(np.percentile(finite, q)) if finite.size else float("nan")
        pred = np.isfinite(h) & (h > thr)
        dice, iou = dice_iou(pred, t)
        weak = weak_localization(pred, t, iou_threshold=iou_threshold)
        out.append({"percentile": float(q), "threshold": thr, "dice": dice, "iou": iou,
                    "hausdorff": hausdorff_distance(pred, t, spacing=spacing),
                    "weak_hit_rate": weak["hit_rate"], "weak_hits": weak["hits"],
                    "weak_n_true": weak["n_true"], **area_ratio(pred, t)})
    return out
