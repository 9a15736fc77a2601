"""AUC intervals and DeLong's test against sklearn, a direct DeLong and a hand-computed case."""

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from napari_xhisto.metrics.uncertainty import (
    _bootstrap,
    auc_interval,
    delong_covariance,
    delong_test,
    paired_auc_difference,
)


def direct_delong(score_sets, y):
    """DeLong et al. (1988) written out: psi(X, Y) = 1, 1/2, 0; V10_i = mean_j psi(X_i, Y_j),
    V01_j = mean_i psi(X_i, Y_j); S = S10 / m + S01 / n with (m - 1), (n - 1) denominators."""
    y = np.asarray(y, bool)
    v10s, v01s, aucs = [], [], []
    for s in score_sets:
        s = np.asarray(s, float)
        x, z = s[y], s[~y]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        aucs.append(psi.mean())
        v10s.append(psi.mean(axis=1))
        v01s.append(psi.mean(axis=0))
    m, n = y.sum(), (~y).sum()
    k = len(score_sets)
    cov = np.zeros((k, k))
    for a in range(k):
        for b in range(k):
            s10 = np.sum((v10s[a] - aucs[a]) * (v10s[b] - aucs[b])) / (m - 1)
            s01 = np.sum((v01s[a] - aucs[a]) * (v01s[b] - aucs[b])) / (n - 1)
            cov[a, b] = s10 / m + s01 / n
    return np.array(aucs), cov


def test_delong_small_case_by_hand():
    # positives X, negatives Y.  A: X = .9 .6 .4, Y = .5 .3  ->  psi rows [1 1] [1 1] [0 1]
    #   AUC 5/6; V10 = 1, 1, 1/2 -> S10 = ((1/6)^2 + (1/6)^2 + (1/3)^2) / 2 = 1/12
    #   V01 = 2/3, 1 -> S01 = ((1/6)^2 + (1/6)^2) / 1 = 1/18;  var = (1/12)/3 + (1/18)/2 = 1/18
    # B: X = .2 .7 .8, Y = .5 .1  ->  psi rows [0 1] [1 1] [1 1]: AUC 5/6, V10 = 1/2, 1, 1,
    #   V01 = 2/3, 1;  cov10 = (-1/18 + 1/36 - 1/18) / 2 = -1/24, cov01 = 1/18,
    #   cov(A, B) = (-1/24)/3 + (1/18)/2 = 1/72;  var(B - A) = 1/18 + 1/18 - 2/72 = 1/12
    y = np.array([1, 1, 1, 0, 0], bool)
    a = np.array([0.9, 0.6, 0.4, 0.5, 0.3])
    b = np.array([0.2, 0.7, 0.8, 0.5, 0.1])
    aucs, cov = delong_covariance([a, b], y)
    np.testing.assert_allclose(aucs, [5 / 6, 5 / 6])
    np.testing.assert_allclose(cov, [[1 / 18, 1 / 72], [1 / 72, 1 / 18]], atol=1e-15)
    t = delong_test(a, b, y)
    assert t["se"] ** 2 == pytest.approx(1 / 12) and t["p_value"] == 1.0
    ref_aucs, ref_cov = direct_delong([a, b], y)
    np.testing.assert_allclose(ref_cov, cov, atol=1e-15)


@pytest.mark.parametrize("seed", [0, 1])
def test_delong_equals_direct_implementation_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(300) < 0.4
    a = np.round(rng.normal(size=300) + 0.8 * y, 1)  # ties
    b = np.round(0.6 * a + rng.normal(size=300) * 0.8 + 0.3 * y, 1)
    aucs, cov = delong_covariance([a, b], y)
    ref_aucs, ref_cov = direct_delong([a, b], y)
    np.testing.assert_allclose(aucs, ref_aucs, atol=1e-12)
    np.testing.assert_allclose(aucs, [roc_auc_score(y, a), roc_auc_score(y, b)], atol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-10, atol=1e-15)
    t = delong_test(a, b, y)
    z = (ref_aucs[1] - ref_aucs[0]) / np.sqrt(ref_cov[0, 0] + ref_cov[1, 1] - 2 * ref_cov[0, 1])
    assert t["z"] == pytest.approx(z) and t["p_value"] == pytest.approx(2 * norm.sf(abs(z)))


def test_bootstrap_resample_aucs_equal_sklearn_on_the_resampled_cells():
    rng = np.random.default_rng(3)
    y = rng.random(120) < 0.5
    s = np.round(rng.normal(size=120) + y, 1)
    boots = _bootstrap(y, [s], n_boot=7, seed=11)[:, 0]
    # redraw the same resamples: the generator draws positives then negatives per chunk
    g = np.random.default_rng(11)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    dp = g.integers(0, pos.size, (7, pos.size))
    dn = g.integers(0, neg.size, (7, neg.size))
    for k in range(7):
        idx = np.concatenate([pos[dp[k]], neg[dn[k]]])
        assert boots[k] == pytest.approx(roc_auc_score(y[idx], s[idx]), abs=1e-12)


def test_auc_interval_is_seeded_covers_and_reports_n():
    rng = np.random.default_rng(4)
    y = rng.random(500) < 0.3
    s = rng.normal(size=500) + y
    s[:5] = np.nan
    ci = auc_interval(s, y, n_boot=300, seed=2)
    ok = np.isfinite(s)
    assert ci["auc"] == pytest.approx(roc_auc_score(y[ok], s[ok]))
    assert ci["low"] < ci["auc"] < ci["high"] and ci["n_boot"] == 300 and ci["level"] == 0.95
    assert ci["n_positive"] + ci["n_negative"] == ok.sum()
    assert auc_interval(s, y, n_boot=300, seed=2) == ci  # seeded
    # the bootstrap SE agrees with DeLong's SE on a large sample
    big_y = rng.random(4000) < 0.5
    big_s = rng.normal(size=4000) + 0.7 * big_y
    boots = _bootstrap(big_y, [big_s], n_boot=400, seed=0)[:, 0]
    _, cov = delong_covariance([big_s], big_y)
    assert boots.std() == pytest.approx(np.sqrt(cov[0, 0]), rel=0.15)
    with pytest.raises(ValueError, match="positive and negative"):
        auc_interval(s, np.zeros(500, bool))


def test_paired_difference_interval_and_delong_p():
    rng = np.random.default_rng(5)
    y = rng.random(800) < 0.5
    base = rng.normal(size=800)
    a = base + 0.5 * y
    b = base + 0.5 * y + 0.3 * rng.normal(size=800)  # noisier copy: slightly worse
    d = paired_auc_difference(a, b, y, n_boot=300, seed=0)
    assert d["difference"] == pytest.approx(roc_auc_score(y, b) - roc_auc_score(y, a))
    assert d["low"] < d["difference"] < d["high"]
    assert d["delong_p"] == pytest.approx(delong_test(a, b, y)["p_value"])
    same = paired_auc_difference(a, a, y, n_boot=50)
    assert same["low"] == same["high"] == 0.0 and same["delong_p"] == 1.0
