"""Sanity checks of explanation methods: does the map change when the model is randomised?

Seed 001: randomising the classifier's weights must turn the maps into noise. The check
compares maps of the trained and the randomised model (Adebayo et al. 2018 use the same
measures): Spearman rank correlation (signed and of |R|), SSIM and the overlap of the top
pixels. High similarity means the method shows the input (edges, stain), not the model.
"""

from __future__ import annotations

import numpy as np

from ._common import as_map

__all__ = ["map_similarity", "randomization_flag"]


def _top_mask(values: np.ndarray, fraction: float) -> np.ndarray:
    k = max(1, int(round(fraction * values.size)))
    order = np.argsort(values.ravel(), kind="stable")[::-1][:k]
    mask = np.zeros(values.size, dtype=bool)
    mask[order] = True
    return mask


def map_similarity(map_a, map_b, *, top_fraction: float = 0.1) -> dict:
    """How alike two heatmaps of the same input are.

    Parameters
    ----------
    map_a, map_b : (H, W) arrays
        E.g. the map of the trained model and of the weight-randomised one.
    top_fraction : float
        Share of pixels (highest |R|) compared by ``top_overlap``.

    Returns
    -------
    dict
        ``spearman`` (signed values), ``spearman_abs`` (of |R|), ``pearson``, ``ssim`` (on
        |R| scaled to [0, 1] each) and ``top_overlap`` (intersection over union of the top
        pixels by |R|). Correlations are NaN for a constant map.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.arange(64, dtype=float).reshape(8, 8)
    >>> s = map_similarity(a, 3 * a)
    >>> round(s["spearman"], 6), round(s["ssim"], 6), s["top_overlap"]
    (1.0, 1.0, 1.0)
    """
    from scipy.stats import pearsonr, spearmanr  # slow to import; only needed here
    from skimage.metrics import structural_similarity

    a, b = as_map(map_a, name="map_a"), as_map(map_b, name="map_b")
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} vs {b.shape}")
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        raise ValueError("need at least 3 pixels with finite values in both maps")
    va, vb = a[ok], b[ok]

    def corr(fn, x, y):
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            return float("nan")
        return float(fn(x, y)[0])

    abs_a, abs_b = np.abs(np.where(ok, a, 0)), np.abs(np.where(ok, b, 0))
    ssim_a = abs_a / abs_a.max() if abs_a.max() > 0 else abs_a
    ssim_b = abs_b / abs_b.max() if abs_b.max() > 0 else abs_b
    win = min(7, *(s if s % 2 else s - 1 for s in a.shape))
    ssim = (float(structural_similarity(ssim_a, ssim_b, data_range=1.0, win_size=win))
            if win >= 3 else float("nan"))
    top_a, top_b = _top_mask(np.abs(va), top_fraction), _top_mask(np.abs(vb), top_fraction)
    return {"spearman": corr(spearmanr, va, vb), "spearman_abs": corr(spearmanr, np.abs(va), np.abs(vb)),
            "pearson": corr(pearsonr, va, vb), "ssim": ssim,
            "top_overlap": float(np.sum(top_a & top_b) / np.sum(top_a | top_b))}


def randomization_flag(similarity: dict, *, max_spearman_abs: float = 0.5) -> str | None:
    """A plain-language warning when a map survives weight randomisation, else None.

    Examples
    --------
    >>> randomization_flag({"spearman_abs": 0.83, "ssim": 0.7}) is not None
    True
    >>> randomization_flag({"spearman_abs": 0.05, "ssim": 0.1}) is None
    True
    """
    rho = similarity.get("spearman_abs", float("nan"))
    if not rho > max_spearman_abs:
        return None
    return (f"the map barely changes when the model's weights are randomised (Spearman of |R| "
            f"{rho:.2f}, SSIM {similarity.get('ssim', float('nan')):.2f}): it shows the image "
            f"more than what the model learned")
