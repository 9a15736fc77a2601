"""ECE, MCE and reliability bins against direct loops; temperature scaling recovers a scale."""

import numpy as np
import pytest

from napari_xhisto.metrics import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    maximum_calibration_error,
    reliability_bins,
)


def _calibrated(n, c, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, c))
    p = apply_temperature(logits, 1.0)
    y = (rng.random((n, 1)) > p.cumsum(1)).sum(1)
    return logits, np.minimum(y, c - 1)


def test_ece_mce_against_direct_loop():
    logits, y = _calibrated(3000, 4, seed=0)
    p = apply_temperature(logits, 0.5)  # over-confident
    conf, correct = p.max(1), p.argmax(1) == y
    gaps, weights = [], []
    for lo in np.arange(10) / 10:
        m = (conf > lo) & (conf <= lo + 0.1) if lo > 0 else (conf <= 0.1)
        if m.any():
            gaps.append(abs(correct[m].mean() - conf[m].mean()))
            weights.append(m.mean())
    assert expected_calibration_error(p, y) == pytest.approx(np.dot(gaps, weights))
    assert maximum_calibration_error(p, y) == pytest.approx(max(gaps))
    b = reliability_bins(p, y)
    assert sum(b["count"]) == 3000 and len(b["edges"]) == 11


def test_temperature_scaling_recovers_scale_and_lowers_ece():
    logits, y = _calibrated(5000, 3, seed=1)
    t = fit_temperature(2.5 * logits, y)
    assert t == pytest.approx(2.5, rel=0.1)
    before = expected_calibration_error(apply_temperature(2.5 * logits, 1.0), y)
    after = expected_calibration_error(apply_temperature(2.5 * logits, t), y)
    assert after < before / 2


def test_binary_vector_and_errors():
    p1 = np.array([0.9, 0.2, 0.6])
    y = np.array([1, 0, 0])
    assert expected_calibration_error(p1, y) == pytest.approx(
        expected_calibration_error(np.stack([1 - p1, p1], 1), y))
    with pytest.raises(ValueError, match="labels"):
        expected_calibration_error(p1, np.array([0, 1, 2]))
