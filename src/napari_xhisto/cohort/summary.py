"""Headline numbers of a study: AUC intervals (cells of a slide, slides of a study).

Intervals are `napari_xhisto.metrics.auc_interval`'s stratified percentile bootstraps:
positives and negatives are resampled separately (their counts stay fixed, as in pROC's
default), 1000 replicates, seeded; the same numbers as ``xhisto evaluate``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["auc_interval", "binary_labels", "study_auc"]

_POSITIVE_WORDS = {"1", "true", "yes", "y", "positive", "pos", "tumour", "tumor", "malignant",
                   "cancer", "metastasis"}


def auc_interval(scores, classes, *, positive=("tumour",), negative=None, level: float = 0.95,
                 n_boot: int = 1000, seed: int = 0) -> dict:
    """AUC of ``positive`` against ``negative`` classes with a stratified bootstrap interval.

    The classes pick the two groups; the interval is `napari_xhisto.metrics.auc_interval`'s
    (the one ``xhisto evaluate`` reports), so a study's numbers equal the single-slide ones.

    Parameters
    ----------
    scores : (N,) array
        One score per item (cell or slide); NaN scores are left out.
    classes : (N,) array of str
        The class of each item.
    positive, negative : str or sequence of str
        Classes of each group (``negative=None``: every class not positive).
    level : float
        Coverage of the interval.
    n_boot : int
        Bootstrap replicates.
    seed : int
        Seed of the resampling.

    Returns
    -------
    dict
        ``auc``, ``low``, ``high``, ``level``, ``n_boot``, ``seed``, ``n_positive``,
        ``n_negative``, ``method``; ``auc`` is None without items in both groups, and
        ``low``/``high`` are None with fewer than two items in a group.

    Examples
    --------
    >>> r = auc_interval([0.9, 0.8, 0.3, 0.1], ["tumour", "stroma", "tumour", "stroma"])
    >>> r["auc"], r["n_positive"]
    (0.75, 2)
    """
    from ..metrics.uncertainty import _auc
    from ..metrics.uncertainty import auc_interval as metrics_auc_interval

    s = np.asarray(scores, dtype=np.float64).ravel()
    c = np.asarray(classes).astype(str).ravel()
    pos = (positive,) if isinstance(positive, str) else tuple(positive)
    is_pos = np.isin(c, pos)
    is_neg = ~is_pos if negative is None else (np.isin(c, (negative,) if isinstance(negative, str)
                                                       else tuple(negative)) & ~is_pos)
    keep = (is_pos | is_neg) & np.isfinite(s)
    n_pos, n_neg = int((is_pos & keep).sum()), int((is_neg & keep).sum())
    out = {"auc": None, "low": None, "high": None, "level": level, "n_boot": int(n_boot),
           "seed": seed, "n_positive": n_pos, "n_negative": n_neg,
           "method": "stratified percentile bootstrap"}
    if n_pos == 0 or n_neg == 0:
        return out
    if n_pos < 2 or n_neg < 2 or n_boot < 1:
        out["auc"] = _auc(is_pos[keep], s[keep])
        return out
    return {**out, **metrics_auc_interval(s[keep], is_pos[keep], n_boot=n_boot, level=level,
                                          seed=seed)}


def binary_labels(labels, *, positive_class: str | None = None) -> tuple[str, str] | None:
    """``(positive, negative)`` label values when the labels are two recognisable values.

    The positive value is one of 1/true/yes/positive/tumour/... or the model's positive class
    (case-insensitive); None when there are not exactly two values or neither is recognised.
    """
    values = sorted({str(v).strip() for v in labels if v is not None and str(v).strip()})
    if len(values) != 2:
        return None
    words = _POSITIVE_WORDS | ({positive_class.lower()} if positive_class else set())
    hits = [v for v in values if v.lower() in words]
    if len(hits) != 1:
        return None
    pos = hits[0]
    return pos, next(v for v in values if v != pos)


def study_auc(rows: list[dict], *, score: str = "mean_p", positive_class: str | None = None
              ) -> dict | None:
    """Slide-level AUC of ``score`` against the slides' labels (finished rows), with interval."""
    done = [r for r in rows if r.get("status") == "ok" and r.get(score) is not None
            and r.get("label") not in (None, "")]
    pair = binary_labels([r["label"] for r in done], positive_class=positive_class)
    if pair is None:
        return None
    labels = np.array([str(r["label"]).strip() for r in done])
    result = auc_interval([r[score] for r in done], labels, positive=(pair[0],),
                          negative=(pair[1],))
    return {"score": score, "positive_label": pair[0], "negative_label": pair[1], **result}
