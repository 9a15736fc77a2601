"""Map similarity for the randomisation sanity check, against scipy and scikit-image."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.stats import pearsonr, spearmanr
from skimage.metrics import structural_similarity

from napari_xhisto.metrics import map_similarity, randomization_flag


def test_similarity_matches_references():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 50))
    b = 0.6 * a + 0.4 * rng.normal(size=(40, 50))
    s = map_similarity(a, b, top_fraction=0.2)
    assert s["spearman"] == pytest.approx(spearmanr(a.ravel(), b.ravel())[0])
    assert s["spearman_abs"] == pytest.approx(spearmanr(np.abs(a).ravel(), np.abs(b).ravel())[0])
    assert s["pearson"] == pytest.approx(pearsonr(a.ravel(), b.ravel())[0])
    ref = structural_similarity(np.abs(a) / np.abs(a).max(), np.abs(b) / np.abs(b).max(),
                                data_range=1.0, win_size=7)
    assert s["ssim"] == pytest.approx(ref)
    ta = np.abs(a).ravel() >= np.quantile(np.abs(a), 0.8)
    tb = np.abs(b).ravel() >= np.quantile(np.abs(b), 0.8)
    assert s["top_overlap"] == pytest.approx(np.sum(ta & tb) / np.sum(ta | tb), abs=0.01)


def test_randomised_noise_versus_edge_map():
    rng = np.random.default_rng(1)
    image = np.zeros((64, 64))
    image[20:44, 20:44] = 1.0
    edges = gaussian_filter(np.abs(np.gradient(image)[0]) + np.abs(np.gradient(image)[1]), 2)
    edges /= edges.max()
    trained = edges + 0.05 * rng.normal(size=edges.shape)
    randomised_edges = edges + 0.05 * rng.normal(size=edges.shape)  # shows the input again
    noise = rng.normal(size=edges.shape)
    survives = map_similarity(trained, randomised_edges)
    destroyed = map_similarity(trained, noise)
    assert survives["spearman_abs"] > 0.3 > abs(destroyed["spearman_abs"])
    assert survives["top_overlap"] > 0.3 > destroyed["top_overlap"]
    assert randomization_flag(map_similarity(trained, edges)) is not None
    assert randomization_flag(destroyed) is None


def test_nan_and_shape_errors():
    a = np.arange(16, dtype=float).reshape(4, 4)
    with pytest.raises(ValueError, match="shape"):
        map_similarity(a, np.zeros((3, 3)))
    assert np.isnan(map_similarity(a, np.ones((4, 4)))["spearman"])
