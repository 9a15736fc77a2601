"""Temperature scaling studied on labelled logits: one validation/test split, or many (seed 002).

Pure numpy/scipy. The logits come from ``napari_xhisto.models.calibrate`` (the CLI and the
Evaluate widget share it). Every split is stratified by label and seeded: the temperature is
fitted on the validation part (:func:`.calibration.fit_temperature`, NLL) and ECE/MCE are
measured on the test part before (``T = 1``) and after, with equal-width bins and the
top-label convention (:mod:`.calibration`). Seed 002 draws the reliability bins as box plots
over repeated splits: :func:`repeated_splits` gives the per-bin accuracy of every split.
"""

from __future__ import annotations

import warnings

import numpy as np

from .calibration import apply_temperature, calibration_summary, fit_temperature

__all__ = ["check_calibration_data", "repeated_splits", "stratified_split", "temperature_report"]

MIN_PER_SPLIT = 5  # fewest patches a validation or test split may hold


def check_calibration_data(logits, labels, *, class_names=None) -> tuple[np.ndarray, np.ndarray]:
    """``(logits float64 (N, C), labels int (N,))``; ValueError with one line when unusable."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels).ravel()
    if z.ndim != 2 or z.shape[0] != y.size or z.shape[1] < 2:
        raise ValueError(f"logits must be (N, n_classes >= 2) with one label each, got "
                         f"{z.shape} and {y.size} labels")
    if not np.isfinite(z).all():
        raise ValueError("the logits hold NaN or infinite values: check the model")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0
                   or y.max() >= z.shape[1]):
        raise ValueError(f"labels must be class indices in 0..{z.shape[1] - 1}")
    if y.size < 2 * MIN_PER_SPLIT:
        raise ValueError(f"only {y.size} labelled patches: calibration needs at least "
                         f"{2 * MIN_PER_SPLIT} (annotate more tissue, or lower --min-cells)")
    present = np.unique(y)
    if present.size < 2:
        name = class_names[int(present[0])] if class_names is not None else int(present[0])
        raise ValueError(f"every labelled patch is of class {name!r}: calibration needs "
                         "patches of at least two classes (annotate the others too)")
    return z, y.astype(np.int64)


def stratified_split(labels, *, val_fraction: float = 0.5, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(validation, test)``: ``val_fraction`` of each class to validation, seeded.

    Examples
    --------
    >>> v, t = stratified_split([0, 0, 0, 0, 1, 1, 1, 1], val_fraction=0.5, seed=1)
    >>> len(v), len(t), sorted(set(v) | set(t)) == list(range(8))
    (4, 4, True)
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"the validation fraction must lie strictly between 0 and 1, got "
                         f"{val_fraction}")
    y = np.asarray(labels).ravel()
    rng = np.random.default_rng(seed)
    val = np.zeros(y.size, bool)
    for k in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == k))
        n_val = int(round(val_fraction * idx.size))
        if idx.size >= 2:
            n_val = min(max(n_val, 1), idx.size - 1)
        val[idx[:n_val]] = True
    return np.flatnonzero(val), np.flatnonzero(~val)


def _fit(z, y):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        t = fit_temperature(z, y)
    return t, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def _nll(probs, y) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(y.size), y], 1e-300, None))))


def temperature_report(logits, labels, *, val_fraction: float = 0.5, seed: int = 0,
                       n_bins: int = 10, class_names=None) -> dict:
    """Fit the temperature on a seeded validation split, score before/after on the test split.

    Returns
    -------
    dict
        ``temperature``, ``n_val``, ``n_test``, ``seed``, ``val_fraction``, ``before`` and
        ``after`` (:func:`.calibration.calibration_summary` of the test split plus ``nll`` and
        ``accuracy``), ``warnings`` (e.g. a temperature on its search bound).
    """
    z, y = check_calibration_data(logits, labels, class_names=class_names)
    val, test = stratified_split(y, val_fraction=val_fraction, seed=seed)
    if min(val.size, test.size) < MIN_PER_SPLIT:
        raise ValueError(f"the split leaves {val.size} validation and {test.size} test patches; "
                         f"each needs at least {MIN_PER_SPLIT}")
    t, notes = _fit(z[val], y[val])
    out = {"temperature": t, "n_val": int(val.size), "n_test": int(test.size), "seed": int(seed),
           "val_fraction": float(val_fraction), "n_bins": int(n_bins), "warnings": notes}
    for key, temp in (("before", 1.0), ("after", t)):
        p = apply_temperature(z[test], temp)
        s = calibration_summary(p, y[test], n_bins=n_bins, convention="top-label")
        s["nll"] = _nll(p, y[test])
        s["accuracy"] = float((p.argmax(1) == y[test]).mean())
        out[key] = s
    return out


def repeated_splits(logits, labels, *, n_splits: int = 20, val_fraction: float = 0.5,
                    seed: int = 0, n_bins: int = 10, class_names=None, progress=None) -> dict:
    """Temperature scaling over ``n_splits`` seeded validation/test splits.

    Parameters
    ----------
    progress : callable, optional
        Called with ``(done, total)`` after each split; returning True stops early (cancel).

    Returns
    -------
    dict
        ``edges`` (n_bins + 1), ``temperatures`` (S,), ``split_seeds`` (S,) and, for
        ``"before"`` and ``"after"``: ``accuracy`` and ``confidence`` (S, n_bins; NaN for an
        empty bin), ``count`` (S, n_bins), ``ece`` and ``mce`` (S,).
    """
    z, y = check_calibration_data(logits, labels, class_names=class_names)
    if int(n_splits) < 1:
        raise ValueError(f"the number of splits must be >= 1, got {n_splits}")
    seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, int(n_splits))
    out = {"edges": np.linspace(0, 1, n_bins + 1), "temperatures": [], "split_seeds": [],
           "n_bins": int(n_bins), "seed": int(seed), "val_fraction": float(val_fraction)}
    parts = {k: {"accuracy": [], "confidence": [], "count": [], "ece": [], "mce": []}
             for k in ("before", "after")}
    for s, split_seed in enumerate(seeds):
        val, test = stratified_split(y, val_fraction=val_fraction, seed=int(split_seed))
        t, _ = _fit(z[val], y[val])
        out["temperatures"].append(t)
        out["split_seeds"].append(int(split_seed))
        for key, temp in (("before", 1.0), ("after", t)):
            summ = calibration_summary(apply_temperature(z[test], temp), y[test], n_bins=n_bins,
                                       convention="top-label")
            b = summ["bins"]
            parts[key]["accuracy"].append(b["accuracy"])
            parts[key]["confidence"].append(b["confidence"])
            parts[key]["count"].append(b["count"])
            parts[key]["ece"].append(summ["ece"])
            parts[key]["mce"].append(summ["mce"])
        if progress is not None and progress(s + 1, len(seeds)):
            break
    out["temperatures"] = np.asarray(out["temperatures"])
    out["split_seeds"] = np.asarray(out["split_seeds"])
    for key, d in parts.items():
        out[key] = {k: np.asarray(v, dtype=np.int64 if k == "count" else np.float64)
                    for k, v in d.items()}
    return out
