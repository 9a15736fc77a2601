"""Meta-explanations, pure parts: bins, grouping, t-SNE + k-means purity, disagreements, labels."""

import numpy as np
import pytest

from napari_xhisto.annotations.model import CellPoints, RegionShape
from napari_xhisto.metrics.meta import (
    chance_purity,
    cluster_purity,
    confidence_bins,
    confident_disagreements,
    embed_and_cluster,
    mean_maps_by_confidence,
)
from napari_xhisto.metrics.meta_labels import class_index_map, patch_labels, points_in_ring


def _blob_maps(n_per_class: int, *, seed: int = 0, side: int = 16):
    """Class 0: a blob top-left; class 1: a blob bottom-right; noise on both."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    tl = np.exp(-((yy - 3) ** 2 + (xx - 3) ** 2) / 8.0)
    br = np.exp(-((yy - side + 4) ** 2 + (xx - side + 4) ** 2) / 8.0)
    maps = np.stack([tl + 0.15 * rng.random((side, side)) for _ in range(n_per_class)]
                    + [br + 0.15 * rng.random((side, side)) for _ in range(n_per_class)])
    labels = np.repeat([0, 1], n_per_class)
    return maps, labels, tl, br


def test_confidence_bins_edges_inclusive_above():
    edges = np.linspace(0.5, 1.0, 7)
    # an upper edge belongs to its bin; the lower end (and below) to bin 0; 1.0 to the last
    conf = np.concatenate([edges, edges[1:-1] + 1e-9, [0.2, 1.0000001]])
    got = confidence_bins(conf, n_bins=6, low=0.5)
    assert got[:7].tolist() == [0, 0, 1, 2, 3, 4, 5]
    assert got[7:12].tolist() == [1, 2, 3, 4, 5]
    assert got[12:].tolist() == [0, 5]
    # every value is in the bin whose (low, high] holds it
    rng = np.random.default_rng(0)
    c = rng.uniform(0.5, 1.0, 1000)
    b = confidence_bins(c, n_bins=6, low=0.5)
    assert np.all((c > edges[b]) & (c <= edges[b + 1]))
    with pytest.raises(ValueError, match="n_bins"):
        confidence_bins([0.5], n_bins=0)


def test_grouping_recovers_class_means_per_bin():
    maps, labels, tl, br = _blob_maps(30)
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.5, 1.0, len(maps))
    probs = np.where(labels[:, None] == 0, np.stack([conf, 1 - conf], 1),
                     np.stack([1 - conf, conf], 1))
    groups = mean_maps_by_confidence(maps, probs, n_bins=6, low=0.5, class_names=["a", "b"])
    assert sum(g["count"] for g in groups) == len(maps)
    bins = confidence_bins(conf, n_bins=6, low=0.5)
    for g in groups:
        k = ["a", "b"].index(g["class"])
        sel = (labels == k) & (bins == g["bin"])
        assert g["count"] == sel.sum()
        np.testing.assert_allclose(g["mean"], maps[sel].mean(0))
        # the mean map's peak is where that class's blob is
        peak = np.unravel_index(np.argmax(g["mean"]), g["mean"].shape)
        expected = np.unravel_index(np.argmax(tl if k == 0 else br), tl.shape)
        assert np.hypot(*np.subtract(peak, expected)) <= 2


def test_tsne_kmeans_purity_one_on_known_clusters_and_chance_when_shuffled():
    maps, labels, _, _ = _blob_maps(40)
    out = embed_and_cluster(maps, k=2, seed=0)
    assert out["embedding"].shape == (80, 2) and out["k"] == 2
    assert cluster_purity(out["clusters"], labels) == 1.0
    shuffled = np.random.default_rng(3).permutation(labels)
    p = cluster_purity(out["clusters"], shuffled)
    chance = chance_purity(out["clusters"], labels, n_permutations=50, seed=0)
    assert p < 0.7 and abs(chance - 0.55) < 0.1  # balanced classes: chance ~0.5 + small-n bias
    with pytest.raises(ValueError, match="at least 4"):
        embed_and_cluster(maps[:3], k=2)


def test_confident_disagreements_on_constructed_predictions():
    probs = np.array([[0.95, 0.05],   # label 1, predicted 0 at 0.95: listed
                      [0.85, 0.15],   # label 1, predicted 0 at 0.85: not confident
                      [0.02, 0.98],   # label 0, predicted 1 at 0.98: listed, first
                      [0.99, 0.01],   # label 0, agrees
                      [0.01, 0.99],   # unlabelled: never listed
                      [0.90, 0.10]])  # p == threshold: not above it
    labels = np.array([1, 1, 0, 0, -1, 1])
    got = confident_disagreements(probs, labels, threshold=0.9, class_names=["n", "t"])
    assert [d["index"] for d in got] == [2, 0]
    assert got[0] == {"index": 2, "label": "n", "predicted": "t", "p": 0.98, "p_label": 0.02}
    assert confident_disagreements(probs, np.full(6, -1)) == []
    with pytest.raises(ValueError, match="threshold"):
        confident_disagreements(probs, labels, threshold=1.0)


def test_patch_labels_cells_vote_then_region_then_none():
    names = ["non-tumour", "tumour"]
    cells = CellPoints(np.array([10., 12, 14, 16, 110, 112, 210, 212]),
                       np.array([10., 12, 14, 16, 110, 112, 210, 212]),
                       np.array(["tumour", "tumour", "stroma", "lymphocyte",   # 2 vs 2: tie -> +
                                 "stroma", "other",                            # all negative
                                 "tumour", "mitosis"]))                        # 1 vs 1 (mitosis
    square = np.array([[290., 290], [290, 410], [410, 410], [410, 290]])       # is negative too)
    hole = np.array([[340., 340], [340, 360], [360, 360], [360, 340]])
    regions = [RegionShape("tumour area", square, [hole])]
    centres = [[13, 13], [111, 111], [211, 211], [300, 300], [350, 350], [600, 600]]
    labels, source = patch_labels(centres, 20, names, cells=cells, regions=regions,
                                  positive="tumour")
    assert labels.tolist() == [1, 0, 1, 1, -1, -1]
    assert source.tolist() == ["cells", "cells", "cells", "region", "none", "none"]
    # no positive class: a tie stays unlabelled, unknown classes do not vote
    labels, source = patch_labels([[13, 13]], 20, ["stroma", "lymphocyte"], cells=cells)
    assert labels.tolist() == [-1] and source.tolist() == ["tie"]
    assert class_index_map(["Tumor area", "necrosis"], ["a", "tumour", "c"]) == {
        "Tumor area": 1, "necrosis": -1}


def test_points_in_ring_matches_matplotlib_path():
    from matplotlib.path import Path

    rng = np.random.default_rng(0)
    ring = np.array([[0, 0], [0, 50], [30, 60], [60, 20], [25, 25], [40, 5]], float)
    pts = rng.uniform(-5, 65, (500, 2))
    expected = Path(ring[:, ::-1]).contains_points(pts[:, ::-1])
    got = points_in_ring(pts[:, 0], pts[:, 1], ring)
    assert (got == expected).mean() > 0.995 and got.sum() > 50


def test_label_rule_examples_run():
    import doctest

    import napari_xhisto.metrics.meta_labels as module

    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 3 and result.failed == 0
