"""Confidence calibration of a classifier (seed 002): ECE, MCE, reliability bins, temperature.

Two conventions, named in every summary (`calibration_summary`):

``"top-label"``
    confidence is the top-class probability, "accuracy" is top class == label (torchmetrics'
    multiclass calibration error). The default for (N, C) probabilities.
``"binary"``
    confidence is the probability of class 1, "accuracy" is the share of label 1 in the bin
    (torchmetrics' and netcal's binary calibration error). The default for (N,) positive-class
    probabilities; for a binary problem it is up to a few times larger than top-label ECE on
    the same data, so the two must not be compared.

Bins are equal width on [0, 1], ``(e_k, e_k+1]`` with the first bin closed on the left
(torchmetrics closes bins on the left instead: the two differ only for a confidence exactly on
an inner edge).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

__all__ = ["CALIBRATION_CONVENTIONS", "apply_temperature", "calibration_summary",
           "expected_calibration_error", "fit_temperature", "maximum_calibration_error",
           "reliability_bins"]

CALIBRATION_CONVENTIONS = {
    "top-label": "confidence = top-class probability, accuracy = (top class == label)",
    "binary": "confidence = probability of class 1, accuracy = share of label 1 in the bin",
}


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


def resolve_convention(probs, convention: str | None) -> str:
    """The calibration convention: ``convention`` checked, or the default for ``probs``' shape."""
    if convention is None:
        return "binary" if np.ndim(probs) == 1 else "top-label"
    if convention not in CALIBRATION_CONVENTIONS:
        raise ValueError(f"calibration convention must be one of "
                         f"{sorted(CALIBRATION_CONVENTIONS)}, got {convention!r}")
    return convention


def _confidence_outcome(probs, labels, convention) -> tuple[np.ndarray, np.ndarray, str]:
    conv = resolve_convention(probs, convention)
    p, y = _probs_labels(probs, labels)
    if conv == "binary":
        if p.shape[1] != 2:
            raise ValueError(f"the binary convention needs a two-class problem, got {p.shape[1]} "
                             "classes: use convention='top-label'")
        return p[:, 1], (y == 1).astype(np.float64), conv
    return p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64), conv


def reliability_bins(probs, labels, *, n_bins: int = 10, convention: str | None = None) -> dict:
    """Accuracy, mean confidence and count per confidence bin.

    Parameters
    ----------
    probs : (N, C) array, or (N,) positive-class probabilities of a binary problem
    labels : (N,) int array
    n_bins : int
        Number of equal-width bins on [0, 1].
    convention : {"top-label", "binary"} or None
        See the module notes; ``None``: binary for (N,) input, top-label for (N, C).

    Examples
    --------
    >>> import numpy as np
    >>> b = reliability_bins(np.array([[0.1, 0.9], [0.2, 0.8], [0.7, 0.3]]), [1, 0, 0], n_bins=5)
    >>> b["count"], b["accuracy"][4]
    ([0, 0, 0, 2, 1], 1.0)
    """
    conf, correct, conv = _confidence_outcome(probs, labels, convention)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(which, weights=correct, minlength=n_bins) / count
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / count
    return {"edges": edges.tolist(), "count": count.tolist(), "accuracy": acc.tolist(),
            "confidence": mean_conf.tolist(), "convention": conv}


def expected_calibration_error(probs, labels, *, n_bins: int = 10,
                               convention: str | None = None) -> float:
    """ECE: count-weighted mean |accuracy - confidence| over bins (``convention`` as
    `reliability_bins`; use `calibration_summary` to get the convention named with it).

    Examples
    --------
    >>> import numpy as np
    >>> round(expected_calibration_error(np.array([[0.1, 0.9], [0.2, 0.8]]), [1, 0]), 6)
    0.45
    """
    b = reliability_bins(probs, labels, n_bins=n_bins, convention=convention)
    count = np.asarray(b["count"], dtype=float)
    gap = np.abs(np.asarray(b["accuracy"]) - np.asarray(b["confidence"]))
    return float(np.nansum(count * gap) / count.sum())


def maximum_calibration_error(probs, labels, *, n_bins: int = 10,
                              convention: str | None = None) -> float:
    """MCE: largest |accuracy - confidence| over non-empty bins.

    Examples
    --------
    >>> import numpy as np
    >>> round(maximum_calibration_error(np.array([[0.1, 0.9], [0.2, 0.8]]), [1, 0]), 6)
    0.8
    """
    b = reliability_bins(probs, labels, n_bins=n_bins, convention=convention)
    gap = np.abs(np.asarray(b["accuracy"]) - np.asarray(b["confidence"]))
    return float(np.nanmax(gap))


def calibration_summary(probs, labels, *, n_bins: int = 10, convention: str | None = None) -> dict:
    """ECE, MCE and the reliability bins, with the convention used named.

    Examples
    --------
    >>> import numpy as np
    >>> s = calibration_summary(np.array([0.9, 0.8, 0.3]), [1, 0, 0], n_bins=5)
    >>> s["convention"], round(s["ece"], 4)
    ('binary', 0.4)
    """
    b = reliability_bins(probs, labels, n_bins=n_bins, convention=convention)
    count = np.asarray(b["count"], dtype=float)
    gap = np.abs(np.asarray(b["accuracy"]) - np.asarray(b["confidence"]))
    return {"ece": float(np.nansum(count * gap) / count.sum()), "mce": float(np.nanmax(gap)),
            "convention": b["convention"], "definition": CALIBRATION_CONVENTIONS[b["convention"]],
            "n_bins": int(n_bins), "n": int(count.sum()), "bins": b}


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


def fit_temperature(logits, labels, *, bounds=(1e-3, 1e3)) -> float:
    """Temperature minimising the negative log-likelihood on a validation set.

    The search runs over ``log T`` within ``bounds`` (bounded Brent). An optimum on a bound
    means the best temperature lies outside them (logits nearly constant, or a perfectly
    separated set); a `RuntimeWarning` says so.

    Parameters
    ----------
    logits : (N, C) array
    labels : (N,) int array
    bounds : (float, float)
        Search range of the temperature (default 0.001 to 1000).

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
    lo, hi = (float(b) for b in bounds)
    if not 0 < lo < hi:
        raise ValueError(f"bounds must be 0 < low < high, got {bounds}")
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"logits must be (N, n_classes), got shape {z.shape}")
    _, y = _probs_labels(softmax(z, axis=-1), labels)

    def nll(log_t):
        return -np.mean(log_softmax(z / np.exp(log_t), axis=1)[np.arange(y.size), y])

    res = minimize_scalar(nll, bounds=(np.log(lo), np.log(hi)), method="bounded",
                          options={"xatol": 1e-7})
    t = float(np.exp(res.x))
    if res.x - np.log(lo) < 1e-3 or np.log(hi) - res.x < 1e-3:
        warnings.warn(f"the best temperature lies on the search bound ({t:.4g} in [{lo:g}, {hi:g}]): "
                      "the logits may be nearly constant or perfectly separated; widen bounds= "
                      "or check the validation set", RuntimeWarning, stacklevel=2)
    return t
