"""Uncertainty of cell-level AUCs: bootstrap intervals, paired differences, DeLong's test.

- `auc_interval`: percentile bootstrap over cells, stratified (positives and negatives are
  resampled separately, so every resample keeps both groups at their sizes), seeded.
- `paired_auc_difference`: the same resamples applied to two heatmaps' scores of the same
  cells give an interval of ``AUC_b - AUC_a``.
- `delong_test`: DeLong, DeLong & Clarke-Pearson (1988) covariance of correlated AUCs in the
  fast midrank form of Sun & Xu (2014); z test of the difference, two-sided p-value.

AUCs count ties as one half (the Mann-Whitney statistic, = ``sklearn.metrics.roc_auc_score``).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm, rankdata

__all__ = ["auc_interval", "delong_covariance", "delong_test", "paired_auc_difference"]


def _groups(labels, *scores) -> tuple[np.ndarray, list[np.ndarray]]:
    """Boolean labels and score arrays restricted to cells finite in every score."""
    y = np.asarray(labels).ravel()
    if y.dtype != bool:
        if not np.isin(np.unique(y), [0, 1]).all():
            raise ValueError("labels must be boolean (True = positive) or 0/1")
        y = y.astype(bool)
    arrs = [np.asarray(s, dtype=np.float64).ravel() for s in scores]
    for s in arrs:
        if s.size != y.size:
            raise ValueError(f"{s.size} scores but {y.size} labels: give one label per cell")
    keep = np.ones(y.size, dtype=bool)
    for s in arrs:
        keep &= np.isfinite(s)
    y = y[keep]
    if y.all() or not y.any():
        raise ValueError(f"an AUC needs positive and negative cells with scores, got "
                         f"{int(y.sum())} positive and {int((~y).sum())} negative")
    return y, [s[keep] for s in arrs]


def _levels(s: np.ndarray) -> tuple[np.ndarray, int]:
    levels, inverse = np.unique(s, return_inverse=True)
    return inverse.ravel(), levels.size


def _resampled_aucs(lev_pos, lev_neg, n_levels, draws_pos, draws_neg) -> np.ndarray:
    """AUC of each resample (rows of the draw arrays), ties counted as one half."""
    b, m = draws_pos.shape
    n = draws_neg.shape[1]
    offs = (np.arange(b) * n_levels)[:, None]
    cnt = np.bincount((lev_neg[draws_neg] + offs).ravel(), minlength=b * n_levels)
    cnt = cnt.reshape(b, n_levels).astype(np.float64)
    below = np.cumsum(cnt, axis=1) - cnt  # negatives strictly below each level
    credit = (below + 0.5 * cnt).ravel()
    return credit[(lev_pos[draws_pos] + offs).ravel()].reshape(b, m).sum(axis=1) / (m * n)


def _bootstrap(y, scores, *, n_boot: int, seed: int, chunk: int = 25) -> np.ndarray:
    """(n_boot, len(scores)) AUCs on the same stratified resamples of the cells.

    Each resample's AUC is a Mann-Whitney count in O(cells): the drawn negatives are counted
    per rank of their score (cumulative counts), and each drawn positive looks up how many
    drawn negatives score below it and how many tie (ranks found once by binary search).
    """
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    m, n = pos.size, neg.size
    prepared = []
    for s in scores:
        sn = s[neg]
        order = np.argsort(sn, kind="stable")
        neg_rank = np.empty(n, dtype=np.int64)
        neg_rank[order] = np.arange(n)
        sorted_neg = sn[order]
        prepared.append((neg_rank, np.searchsorted(sorted_neg, s[pos], side="left"),
                         np.searchsorted(sorted_neg, s[pos], side="right")))
    out = np.empty((int(n_boot), len(scores)))
    sub = max(1, min(chunk, (1 << 17) // max(n, 1)))  # resamples counted at once (cache)
    cum = np.zeros((sub, n + 1), dtype=np.int64)
    offs = (np.arange(sub) * (n + 1))[:, None]
    for b0 in range(0, int(n_boot), chunk):  # the draws: chunk by chunk, as they always were
        b = min(chunk, int(n_boot) - b0)
        dp = rng.integers(0, m, (b, m))
        dn = rng.integers(0, n, (b, n))
        for c0 in range(0, b, sub):
            c = min(sub, b - c0)
            for k, (neg_rank, below, upto) in enumerate(prepared):
                # cum[r, j]: drawn negatives of resample r among the j lowest-scored ones
                counts = np.bincount((neg_rank[dn[c0:c0 + c]] + (offs[:c] + 1)).ravel(),
                                     minlength=c * (n + 1))
                cum[:c].ravel()[:] = counts
                np.cumsum(cum[:c], axis=1, out=cum[:c])
                flat = cum.ravel()
                d = dp[c0:c0 + c]
                twice_u = (flat[below[d] + offs[:c]] + flat[upto[d] + offs[:c]]).sum(axis=1)
                out[b0 + c0:b0 + c0 + c, k] = twice_u / (2.0 * m * n)
    return out


def _auc(y, s) -> float:
    """AUC of the cells as they are (every cell drawn once)."""
    lev, n_levels = _levels(s)
    m, n = int(y.sum()), int((~y).sum())
    return float(_resampled_aucs(lev[y], lev[~y], n_levels, np.arange(m)[None],
                                 np.arange(n)[None])[0])


def auc_interval(scores, labels, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """AUC with a percentile bootstrap interval over cells (stratified, seeded).

    Parameters
    ----------
    scores : (N,) array
        Cell scores; NaN cells are left out.
    labels : (N,) bool array
        True for positive cells.
    n_boot : int
        Bootstrap resamples.
    level : float
        Interval level (0.95: the 2.5th and 97.5th percentiles of the resampled AUCs).
    seed : int
        Seed of the resampling.

    Returns
    -------
    dict
        ``auc``, ``low``, ``high``, ``level``, ``n_boot``, ``seed``, ``method``,
        ``n_positive``, ``n_negative``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.random(400) < 0.5
    >>> ci = auc_interval(rng.normal(size=400) + y, y, n_boot=200)
    >>> bool(ci["low"] < ci["auc"] < ci["high"]), ci["n_boot"]
    (True, 200)
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    y, (s,) = _groups(labels, scores)
    boots = _bootstrap(y, [s], n_boot=n_boot, seed=seed)[:, 0]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(boots, [tail, 100 - tail])
    return {"auc": _auc(y, s), "low": float(low), "high": float(high), "level": float(level),
            "n_boot": int(n_boot), "seed": int(seed), "method": "percentile bootstrap over "
            "cells, positives and negatives resampled separately",
            "n_positive": int(y.sum()), "n_negative": int((~y).sum())}


def paired_auc_difference(scores_a, scores_b, labels, *, n_boot: int = 1000,
                          level: float = 0.95, seed: int = 0) -> dict:
    """``AUC_b - AUC_a`` on the same cells with a paired bootstrap interval and DeLong's p.

    Only cells scored by both heatmaps count. Each resample draws the same cells for both.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> y = rng.random(600) < 0.5
    >>> a, b = rng.normal(size=600) + 0.5 * y, rng.normal(size=600) + 1.5 * y
    >>> d = paired_auc_difference(a, b, y, n_boot=200)
    >>> bool(d["low"] > 0), bool(d["delong_p"] < 0.001)
    (True, True)
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    y, (a, b) = _groups(labels, scores_a, scores_b)
    boots = _bootstrap(y, [a, b], n_boot=n_boot, seed=seed)
    diff = boots[:, 1] - boots[:, 0]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(diff, [tail, 100 - tail])
    dl = delong_test(a, b, y)
    return {"auc_a": dl["auc_a"], "auc_b": dl["auc_b"], "difference": dl["difference"],
            "low": float(low), "high": float(high), "level": float(level), "n_boot": int(n_boot),
            "seed": int(seed), "method": "paired percentile bootstrap over cells (stratified)",
            "delong_z": dl["z"], "delong_p": dl["p_value"], "delong_se": dl["se"],
            "n_positive": int(y.sum()), "n_negative": int((~y).sum())}


def delong_covariance(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of K score vectors on the same cells and DeLong's (K, K) covariance of them.

    Midrank form (Sun & Xu 2014): with ``m`` positives and ``n`` negatives, the structural
    components are ``V10_i = (rank of X_i among all - rank among positives) / n`` and
    ``V01_j = 1 - (rank of Y_j among all - rank among negatives) / m``;
    ``S = cov(V10) / m + cov(V01) / n`` (sample covariances, ``ddof = 1``).

    Examples
    --------
    >>> aucs, cov = delong_covariance([[0.9, 0.6, 0.4, 0.5, 0.3]], [1, 1, 1, 0, 0])
    >>> round(float(aucs[0]), 4), round(float(cov[0, 0]), 4)  # 5/6 and 1/18
    (0.8333, 0.0556)
    """
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    y, rows = _groups(labels, *s)
    s = np.stack(rows)
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        raise ValueError(f"DeLong's covariance needs at least 2 positive and 2 negative cells, "
                         f"got {m} and {n}")
    x, z = s[:, y], s[:, ~y]
    tx = rankdata(x, axis=1)
    tz = rankdata(z, axis=1)
    t_all = rankdata(np.concatenate([x, z], axis=1), axis=1)
    aucs = (t_all[:, :m].sum(axis=1) / m - (m + 1) / 2) / n
    v10 = (t_all[:, :m] - tx) / n
    v01 = 1.0 - (t_all[:, m:] - tz) / m
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def delong_test(scores_a, scores_b, labels) -> dict:
    """DeLong's test of two correlated AUCs (two heatmaps, same cells): z and two-sided p.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([1, 1, 1, 0, 0])
    >>> t = delong_test([0.9, 0.6, 0.4, 0.5, 0.3], [0.2, 0.7, 0.8, 0.5, 0.1], y)
    >>> t["difference"], round(t["se"] ** 2, 4), t["p_value"]  # variance 1/12 by hand
    (0.0, 0.0833, 1.0)
    """
    aucs, cov = delong_covariance([scores_a, scores_b], labels)
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = float(aucs[1] - aucs[0])
    se = float(np.sqrt(max(var, 0.0)))
    if se == 0:
        z = 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    else:
        z = diff / se
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "difference": diff, "se": se,
            "z": z, "p_value": float(2 * norm.sf(abs(z))), "var_a": float(cov[0, 0]),
            "var_b": float(cov[1, 1]), "covariance": float(cov[0, 1])}
