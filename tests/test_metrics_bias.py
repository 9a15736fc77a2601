"""Centre-bias profile and hotspot scan on synthetic patch heatmaps with known structure."""

import numpy as np
import pytest

from napari_xhisto.metrics import (
    centre_bias_profile,
    class_mean_heatmaps,
    find_hotspot,
    window_enrichment,
)


def _patches(n, size, seed, *, centre_sigma=None):
    rng = np.random.default_rng(seed)
    maps = rng.normal(0, 1, (n, size, size))
    if centre_sigma is not None:
        yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
        maps *= np.exp(-(yy**2 + xx**2) / (2 * centre_sigma**2))
    return maps


def test_uniform_profile_is_identity_and_no_flag():
    prof = centre_bias_profile(_patches(200, 48, seed=0))
    np.testing.assert_allclose(prof.relevance_share, prof.area_share, atol=0.02)
    assert abs(prof.concentration) < 0.02
    assert prof.centre_enrichment == pytest.approx(1.0, abs=0.1)
    assert prof.flag() is None
    assert prof.relevance_share[-1] == pytest.approx(1.0)


def test_centre_peaked_profile_is_steeper_and_flags():
    flat = centre_bias_profile(_patches(100, 48, seed=1))
    peaked = centre_bias_profile(_patches(100, 48, seed=1, centre_sigma=6))
    assert peaked.concentration > flat.concentration + 0.4
    assert np.all(peaked.relevance_share >= peaked.area_share - 1e-9)
    assert peaked.centre_enrichment > 3
    msg = peaked.flag()
    assert msg is not None and "patch centre" in msg and f"{peaked.centre_enrichment:.1f}x" in msg


def test_profile_direct_squares():
    rng = np.random.default_rng(2)
    maps = rng.random((5, 10, 10))
    prof = centre_bias_profile(maps, normalize_each=False)
    mean = maps.mean(0)
    for side, share in zip(prof.sides, prof.relevance_share):
        r0 = (10 - side) // 2
        assert share == pytest.approx(mean[r0:r0 + side, r0:r0 + side].sum() / mean.sum())


def test_class_mean_heatmaps_groups_by_prediction():
    maps = np.random.default_rng(3).normal(size=(9, 4, 5))
    pred = np.array([0, 1, 1, 0, 1, 1, 0, 0, 1])
    out = class_mean_heatmaps(maps, pred, class_names=["other", "tumour"])
    np.testing.assert_allclose(out["tumour"]["mean"], maps[pred == 1].mean(0))
    assert out["other"]["count"] == 4


@pytest.mark.parametrize("row, col, size, sign", [
    (0, 0, 5, 1.0), (70, 90, 5, 1.0), (40, 3, 12, -1.0), (100, 100, 28, 1.0), (10, 60, 2, -1.0),
])
def test_hotspot_finds_planted_square(row, col, size, sign):
    rng = np.random.default_rng(row * 1000 + col)
    # a class mean heatmap: tissue relevance broadly spread plus a planted artefact square
    heat = np.abs(rng.normal(0, 0.1, (128, 128))) * rng.choice([1, -1], (128, 128))
    heat[row:row + size, col:col + size] = sign * 3.0
    spot = find_hotspot(heat, label="tumour")
    assert (spot.row, spot.col, spot.size) == (row, col, size)
    assert spot.sign == ("positive" if sign > 0 else "negative")
    pos = np.maximum(sign * heat, 0)
    share = pos[row:row + size, col:col + size].sum() / pos.sum()
    assert spot.share == pytest.approx(share)
    assert spot.enrichment == pytest.approx(share / (size * size / 128**2))
    assert spot.flag() is not None and "tumour" in spot.flag()


def test_hotspot_on_noise_does_not_flag():
    rng = np.random.default_rng(5)
    maps = rng.normal(0, 1, (50, 64, 64))
    spot = find_hotspot(maps.mean(0))
    assert spot.flag() is None


def test_window_enrichment_direct():
    rng = np.random.default_rng(6)
    heat = rng.normal(size=(50, 60))
    out = window_enrichment(heat, row=3, col=40, height=5, width=7)
    pos = np.maximum(heat, 0)
    share = pos[3:8, 40:47].sum() / pos.sum()
    assert out["share"] == pytest.approx(share)
    assert out["enrichment"] == pytest.approx(share / (35 / 3000))
    neg = window_enrichment(heat, row=3, col=40, height=5, width=7, sign="negative")
    assert neg["share"] == pytest.approx(np.maximum(-heat, 0)[3:8, 40:47].sum() / np.maximum(-heat, 0).sum())
    with pytest.raises(ValueError, match="outside"):
        window_enrichment(heat, row=60, col=0, height=5)
