"""ECE, MCE and reliability bins against direct loops; temperature scaling recovers a scale."""

import numpy as np
import pytest

from napari_xhisto.metrics import (
    apply_temperature,
    calibration_summary,
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
    assert expected_calibration_error(p1, y, convention="top-label") == pytest.approx(
        expected_calibration_error(np.stack([1 - p1, p1], 1), y))
    with pytest.raises(ValueError, match="labels"):
        expected_calibration_error(p1, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="two-class"):
        expected_calibration_error(np.full((3, 3), 1 / 3), y, convention="binary")
    with pytest.raises(ValueError, match="convention"):
        expected_calibration_error(p1, y, convention="classwise")


def _binary_data(n, seed):
    rng = np.random.default_rng(seed)
    p = rng.beta(0.7, 0.7, n)  # positive-class probabilities
    y = (rng.random(n) < np.clip(p + 0.12, 0, 1)).astype(int)  # under-predicts class 1
    return p, y


@pytest.mark.parametrize("n_bins", [10, 15])
def test_binary_convention_equals_torchmetrics_binary(n_bins):
    import torch
    from torchmetrics.functional.classification import binary_calibration_error

    p, y = _binary_data(5000, seed=n_bins)
    s = calibration_summary(p, y, n_bins=n_bins)
    assert s["convention"] == "binary"
    ref = binary_calibration_error(torch.tensor(p), torch.tensor(y), n_bins=n_bins, norm="l1")
    assert s["ece"] == pytest.approx(float(ref), abs=1e-9)
    ref_max = binary_calibration_error(torch.tensor(p), torch.tensor(y), n_bins=n_bins, norm="max")
    assert s["mce"] == pytest.approx(float(ref_max), abs=1e-9)
    # top-label on the same data folds p and 1 - p into one bin, where this bias cancels:
    # a much smaller number, named as such
    top = calibration_summary(p, y, n_bins=n_bins, convention="top-label")
    assert top["convention"] == "top-label" and top["ece"] < s["ece"] / 2


@pytest.mark.parametrize("n_classes", [2, 4])
def test_top_label_convention_equals_torchmetrics_multiclass(n_classes):
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    logits, y = _calibrated(4000, n_classes, seed=n_classes)
    p = apply_temperature(logits, 0.6)
    s = calibration_summary(p, y, n_bins=15)
    assert s["convention"] == "top-label"
    ref = multiclass_calibration_error(torch.tensor(p), torch.tensor(y), num_classes=n_classes,
                                       n_bins=15, norm="l1")
    assert s["ece"] == pytest.approx(float(ref), abs=2e-6)  # torchmetrics works in float32


def test_fit_temperature_beyond_old_bounds_and_warns_on_bound():
    logits, y = _calibrated(6000, 3, seed=7)
    t = fit_temperature(logits / 39.0, y)  # over-smoothed by 39: the optimum is 1/39
    assert t == pytest.approx(1 / 39, rel=0.1)
    # the optimum found equals a dense grid search of the NLL
    from scipy.special import log_softmax
    grid = np.exp(np.linspace(np.log(t) - 0.2, np.log(t) + 0.2, 2001))
    nll = [-np.mean(log_softmax(logits / 39.0 / g, axis=1)[np.arange(y.size), y]) for g in grid]
    assert t == pytest.approx(grid[int(np.argmin(nll))], rel=1e-3)
    t_big = fit_temperature(39.0 * logits, y)
    assert t_big == pytest.approx(39.0, rel=0.1)  # was clipped to 20 before
    with pytest.warns(RuntimeWarning, match="bound"):
        fit_temperature(39.0 * logits, y, bounds=(0.1, 20.0))
