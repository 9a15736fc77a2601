"""Cell scores and cell-level ROC against slow obvious implementations and scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from napari_xhisto.annotations import CellPoints
from napari_xhisto.geometry import Placement
from napari_xhisto.metrics import baseline_aucs, cell_roc, cell_scores, per_tile_roc


def slow_cell_scores(heat, rows, cols, *, radius_um, mpp, placement, rectify=True):
    """One cell at a time, one pixel at a time: the definition in cell_scores' docstring."""
    p = placement
    H, W = heat.shape
    rr = radius_um / mpp / p.step_row
    rc = radius_um / mpp / p.step_col
    out = []
    for r, c in zip(rows, cols):
        fi = (r - p.origin_row - (p.step_row - 1) / 2) / p.step_row
        fj = (c - p.origin_col - (p.step_col - 1) / 2) / p.step_col
        i, j = int(np.floor(fi + 0.5)), int(np.floor(fj + 0.5))
        if not (0 <= i < H and 0 <= j < W) or np.isnan(heat[i, j]):
            out.append(np.nan)
            continue
        vals = []
        for a in range(H):
            for b in range(W):
                di, dj = a - i, b - j
                inside = (di == 0 and dj == 0) or (
                    rr > 0 and rc > 0 and (di / rr) ** 2 + (dj / rc) ** 2 <= 1 + 1e-9)
                if inside and np.isfinite(heat[a, b]):
                    vals.append(max(heat[a, b], 0.0) if rectify else heat[a, b])
        out.append(np.mean(vals) if vals else np.nan)
    return np.array(out)


@pytest.mark.parametrize("placement, radius_um, rectify", [
    (Placement(), 3.0, True),
    (Placement(origin_row=100, origin_col=37, step_row=4, step_col=4), 9.0, True),
    (Placement(origin_row=-5, origin_col=12, step_row=2, step_col=3), 4.0, False),
    (Placement(origin_row=0, origin_col=0, step_row=8, step_col=8), 0.5, True),
])
def test_cell_scores_match_slow_loop(placement, radius_um, rectify):
    rng = np.random.default_rng(1)
    heat = rng.normal(size=(23, 31))
    heat[3, 4] = np.nan
    heat[10:12, 20:23] = np.nan
    p = placement
    rows = p.origin_row + rng.uniform(-10, 23 * p.step_row + 10, 60)
    cols = p.origin_col + rng.uniform(-10, 31 * p.step_col + 10, 60)
    fast = cell_scores(heat, CellPoints(rows, cols, np.array(["x"] * 60)), radius_um=radius_um,
                       mpp=0.5, placement=p, rectify=rectify, block_rows=5)
    slow = slow_cell_scores(heat, rows, cols, radius_um=radius_um, mpp=0.5, placement=p,
                            rectify=rectify)
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(slow))
    assert np.isnan(slow).sum() > 0  # some cells fall outside
    np.testing.assert_allclose(fast[~np.isnan(fast)], slow[~np.isnan(slow)], rtol=1e-10, atol=1e-12)


def test_cell_scores_array_input_and_errors():
    heat = np.arange(25, dtype=float).reshape(5, 5)
    assert cell_scores(heat, np.array([[2.0, 2.0]]), radius_um=0, mpp=1)[0] == 12.0
    holed = heat.copy()
    holed[2, 2] = np.nan  # not computed at the cell itself: no score, even if neighbours are
    both = cell_scores(holed, np.array([[2.0, 2.0], [2.0, 3.0]]), radius_um=1, mpp=1)
    assert np.isnan(both[0]) and both[1] == np.mean([8.0, 14.0, 18.0, 13.0])
    with pytest.raises(ValueError, match="2-D"):
        cell_scores(np.zeros(5), np.array([[0.0, 0.0]]), radius_um=1, mpp=1)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        cell_scores(heat, np.zeros((3, 3)), radius_um=1, mpp=1)
    with pytest.raises(ValueError, match="mpp"):
        cell_scores(heat, np.zeros((1, 2)), radius_um=1, mpp=0)


def test_cell_roc_matches_sklearn_with_ties_and_nan():
    rng = np.random.default_rng(2)
    n = 500
    classes = rng.choice(["tumour", "lymphocyte", "stroma", "other"], n)
    scores = np.round(rng.normal(size=n) + (classes == "tumour"), 1)  # many ties
    scores[:7] = np.nan
    roc = cell_roc(scores, classes, positive="tumour")
    keep = np.isfinite(scores)
    y = classes[keep] == "tumour"
    assert roc.auc == pytest.approx(roc_auc_score(y, scores[keep]), abs=1e-12)
    fpr, tpr, thr = roc_curve(y, scores[keep], drop_intermediate=False)
    np.testing.assert_allclose(roc.fpr, fpr)
    np.testing.assert_allclose(roc.tpr, tpr)
    np.testing.assert_allclose(roc.thresholds[1:], thr[1:])
    assert roc.n_excluded == 7 and roc.n_positive == y.sum() and roc.n_negative == (~y).sum()


def test_cell_roc_negative_subset_matches_sklearn():
    rng = np.random.default_rng(3)
    classes = rng.choice(["tumour", "lymphocyte", "stroma", "other"], 300)
    scores = rng.random(300) + 0.3 * (classes == "tumour")
    roc = cell_roc(scores, classes, positive=("tumour",), negative=("lymphocyte",))
    m = np.isin(classes, ["tumour", "lymphocyte"])
    assert roc.auc == pytest.approx(roc_auc_score(classes[m] == "tumour", scores[m]))
    with pytest.raises(ValueError, match="both groups"):
        cell_roc(scores, classes, positive="mitosis")


def _synthetic_cells(n, size, seed):
    rng = np.random.default_rng(seed)
    rows, cols = rng.uniform(0, size, n), rng.uniform(0, size, n)
    classes = np.where(rng.random(n) < 0.5, "tumour", "stroma")
    return CellPoints(rows, cols, classes)


def test_baselines_zero_one_random():
    cells = _synthetic_cells(20000, 400, seed=4)
    b = baseline_aucs((400, 400), cells, radius_um=1.0, mpp=0.5, n_random=5, seed=0)
    assert b["all_zero"] == 0.5 and b["all_one"] == 0.5
    assert abs(b["random_mean"] - 0.5) < 0.01
    assert all(abs(a - 0.5) < 0.02 for a in b["random_aucs"])


def test_informative_heatmap_beats_baseline():
    cells = _synthetic_cells(2000, 200, seed=5)
    heat = np.zeros((200, 200))
    tum = cells.classes == "tumour"
    r, c = (np.clip(np.floor(v[tum] + 0.5).astype(int), 0, 199) for v in (cells.rows, cells.cols))
    heat[r, c] = 1
    roc = cell_roc(cell_scores(heat, cells, radius_um=1, mpp=1), cells)
    assert roc.auc > 0.9


def test_per_tile_roc_matches_sklearn_per_tile():
    cells = _synthetic_cells(3000, 300, seed=6)
    rng = np.random.default_rng(7)
    tum = cells.classes == "tumour"
    # the left half separates tumour well, the right half is inverted (a failure tile column)
    good = np.where(tum, 1.0, 0.0) + rng.normal(0, 0.5, tum.size)
    scores = np.where(cells.cols < 150, good, -good)
    tiles = per_tile_roc(scores, cells, tile_size=150)
    assert len(tiles) == 4
    for t in tiles:
        m = ((cells.rows // 150) == t.tile_row) & ((cells.cols // 150) == t.tile_col)
        assert t.auc == pytest.approx(roc_auc_score(tum[m], scores[m]))
        assert t.n_positive == tum[m].sum()
        assert (t.auc > 0.7) == (t.tile_col == 0)


def test_float32_heatmap_long_rows_keeps_precision():
    rng = np.random.default_rng(8)
    heat = rng.random((40, 30000)).astype(np.float32)
    pts = np.array([[20.0, 29990.0], [5.0, 15000.0]])
    rr, cc = np.mgrid[:40, :30000]
    expected = [heat.astype(np.float64)[(rr - r) ** 2 + (cc - c) ** 2 <= 16].mean() for r, c in pts]
    np.testing.assert_allclose(cell_scores(heat, pts, radius_um=4, mpp=1), expected, rtol=1e-12)
