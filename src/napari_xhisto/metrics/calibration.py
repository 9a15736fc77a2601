"""Confidence calibration of a classifier (seed 002): ECE, MCE, reliability bins, temperature.

Confidence is the top-class probability, correctness is top class == label; bins are equal
width on [0, 1] (first bin closed on the left).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

__all__ = ["apply_temperature", "expected_calibration_error", "fit_temperature",
           "maximum_calibration_error", "reliability_bins"]


def _probs_labels(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels).ravel()
    if p.ndim == 1:  # probability of the positive class of a binary problem
        p = np.stack([1 - p, p], axis=1)
    if p.ndim != 2 or p.shape[0] != y.size:
        raise ValueError(f"probs must be (N, n_classes) with one label per row, got {p.shape} "
                         f"and {y.size} labels")
    if not np.issubdtype(y.dtype, np.integer) or (y.size and (y.min() < 0 or y.max() >= p.shape[1])):
        raise ValueError(f"labels must be class indices in 0..{p.shape[1] - 1}")
    return p, y


def reliability_bins(probs, labels, *, n_bins: int = 10) -> dict:
    """Accuracy, mean confidence and count per confidence bin.

    Parameters
    ----------
    probs : (N, C) array, or (N,) positive-class probabilities of a binary problem
    labels : (N,) int array
    n_bins : int
        Number of equal-width bins on [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> b = reliability_bins(np.array([[0.1, 0.9], [0.2, 0.8], [0.7, 0.3]]), [1, 0, 0], n_bins=5)
    >>> b["count"], b["accuracy"][4]
    ([0, 0, 0, 2, 1], 1.0)
    """
    p, y = _probs_labels(probs, labels)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(which, weights=correct, minlength=n_bins) / count
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / count
    return {"edges": edges.tolist(), "count": count.tolist(), "accuracy": acc.tolist(),
            "confidence": mean_conf.tolist()}


def expected_calibration_error(probs, labels, *, n_bins: int = 10) -> float:
    """ECE: count-weighted mean |accuracy - confidence| over bins.

    Examples
    --------
    >>> import numpy as np
    >>> round(expected_calibration_error(np.array([[0.1, 0.9], [0.2, 0.8]]), [1, 0]), 6)
    0.45
    """
    b = reliability_bins(probs, labels, n_bins=n_bins)
    count = np.asarray(b["count"], dtype=float)
    gap = np.abs(np.asarray(b["accuracy"]) - np.asarray(b["confidence"]))
    return float(np.nansum(count * gap) / count.sum())


def maximum_calibration_error(probs, labels, *, n_bins: int = 10) -> float:
    """MCE: largest |accuracy - confidence| over non-empty bins.

    Examples
    --------
    >>> import numpy as np
    >>> round(maximum_calibration_error(np.array([[0.1, 0.9], [0.2, 0.8]]), [1, 0]), 6)
    0.8
    """
    b = reliability_bins(probs, labels, n_bins=n_bins)
    gap = np.abs(np.asarray(b["accuracy"]) - np.asarray(b["confidence"]))
    return float(np.nanmax(gap))


def apply_temperature(logits, temperature: float) -> np.ndarray:
    """Softmax of ``logits / temperature``.

    Examples
    --------
    >>> apply_temperature([[0.0, 2.0]], 2.0).round(4).tolist()
    [[0.2689, 0.7311]]
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=-1)


def fit_temperature(logits, labels, *, bounds=(0.05, 20.0)) -> float:
    """Temperature minimising the negative log-likelihood on a validation set.

    Parameters
    ----------
    logits : (N, C) array
    labels : (N,) int array

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> logits = rng.normal(0, 2, (4000, 3))  # calibrated: labels drawn from softmax(logits)
    >>> p = apply_temperature(logits, 1.0)
    >>> y = (rng.random((4000, 1)) > p.cumsum(1)).sum(1)
    >>> 2.7 < fit_temperature(3 * logits, y) < 3.3
    True
    """
    z = np.asarray(logits, dtype=np.float64)
    _, y = _probs_labels(softmax(z, axis=-1) if z.ndim == 2 else z, labels)

    def nll(log_t):
        return -np.mean(log_softmax(z / np.exp(log_t), axis=1)[np.arange(y.size), y])

    res = minimize_scalar(nll, bounds=np.log(bounds), method="bounded")
    return float(np.exp(res.x))
