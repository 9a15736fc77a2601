"""Meta-explanations: grouping by class and confidence bin, clusters and purity."""

import numpy as np
import pytest

from napari_xhisto.metrics import cluster_purity, explanation_clusters, mean_maps_by_confidence


def test_mean_maps_by_confidence_direct():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(200, 6, 5))
    logits = rng.normal(0, 2, (200, 3))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    groups = mean_maps_by_confidence(maps, probs, n_bins=6, class_names=["a", "b", "c"])
    assert sum(g["count"] for g in groups) == 200
    pred, conf = probs.argmax(1), probs.max(1)
    for g in groups:
        m = (pred == ["a", "b", "c"].index(g["class"])) & (conf > g["low"]) & (conf <= g["high"])
        assert g["count"] == m.sum()
        np.testing.assert_allclose(g["mean"], maps[m].mean(0))


def test_cluster_purity_and_clusters():
    assert cluster_purity([0, 1, 2], ["a", "a", "a"]) == 1.0
    assert cluster_purity([0, 0, 0, 0], ["a", "b", "a", "b"]) == 0.5
    rng = np.random.default_rng(1)
    protos = [np.roll(np.eye(10), s, axis=1) for s in (0, 3, 6)]
    maps = np.stack([protos[i % 3] + 0.2 * rng.normal(size=(10, 10)) for i in range(60)])
    labels = np.array(["a", "b", "c"])[np.arange(60) % 3]
    out = explanation_clusters(maps, labels)
    assert out["k"] == 3 and out["purity"] == 1.0
    shuffled = explanation_clusters(maps, rng.permutation(labels))
    assert shuffled["purity"] < 0.7
    with pytest.raises(ValueError, match="labels"):
        explanation_clusters(maps, labels[:5])
