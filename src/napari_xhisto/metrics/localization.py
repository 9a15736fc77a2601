"""How well heatmaps localise annotated regions (seeds 003 and 001).

Threshold sweeps (PxAP, confusion and Dice/IoU curves over thresholds) live in
`threshold_sweep` and are re-exported here. Binary comparisons at one threshold (Dice, IoU,
Hausdorff, boxes, area) follow seed 001.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._common import as_map
from .conventions import apply_convention
from .threshold_sweep import (
    REFERENCE_STEP,
    THRESHOLDS,
    PxapResult,
    confusion_from_histograms,
    confusion_over_thresholds,
    finite_range,
    minmax_normalize,
    pxap,
    pxap_from_histograms,
    threshold_grid,
    threshold_histograms,
)

__all__ = ["PxapResult", "REFERENCE_STEP", "THRESHOLDS", "area_ratio",
           "confusion_from_histograms", "confusion_over_thresholds", "dice_iou", "finite_range",
           "hausdorff_distance", "localization_at_percentiles", "minmax_normalize", "pxap",
           "pxap_from_histograms", "threshold_grid", "threshold_histograms", "weak_localization"]


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
                                iou_threshold: float = 0.5, spacing=(1.0, 1.0),
                                convention: str = "rectified", mpp: float | None = None) -> list[dict]:
    """Dice, IoU, Hausdorff, weak localisation and area at percentile thresholds of a map.

    The map is read under ``convention`` (default rectified: negative evidence is never "on");
    a pixel is switched on when its value is strictly above the q-th percentile of the finite
    values (so the zero background of a rectified map stays off). NaN pixels are left out of
    the prediction and of the truth. ``spacing`` is the pixel size per axis in level-0 pixels
    (Hausdorff in level-0 pixels); with ``mpp`` (µm per level-0 pixel) ``hausdorff_um`` is
    given too.

    Examples
    --------
    >>> import numpy as np
    >>> heat = np.arange(16, dtype=float).reshape(4, 4)
    >>> out = localization_at_percentiles(heat, heat >= 8, percentiles=(50,), mpp=0.5)
    >>> out[0]["dice"], out[0]["hausdorff"], out[0]["hausdorff_um"]
    (1.0, 0.0, 0.0)
    """
    h = apply_convention(as_map(heatmap), convention)
    t = np.asarray(truth, dtype=bool)
    if t.shape != h.shape:
        raise ValueError(f"heatmap {h.shape} and truth mask {t.shape} differ in shape")
    valid = np.isfinite(h)
    t = t & valid
    finite = h[valid]
    out = []
    for q in percentiles:
        thr = float(np.percentile(finite, q)) if finite.size else float("nan")
        pred = valid & (h > thr)
        dice, iou = dice_iou(pred, t)
        weak = weak_localization(pred, t, iou_threshold=iou_threshold)
        hd = hausdorff_distance(pred, t, spacing=spacing)
        row = {"percentile": float(q), "threshold": thr, "convention": convention, "dice": dice,
               "iou": iou, "hausdorff": hd, "hausdorff_unit": "level-0 px"}
        if mpp:
            row["hausdorff_um"] = hd * float(mpp)
        row.update({"weak_hit_rate": weak["hit_rate"], "weak_hits": weak["hits"],
                    "weak_n_true": weak["n_true"], **area_ratio(pred[valid], t[valid])})
        out.append(row)
    return out
