"""Cell scores (exact disc integral) and cell-level ROC against slow references and sklearn."""

import numpy as np
import pytest
from scipy.integrate import quad
from sklearn.metrics import roc_auc_score, roc_curve

from napari_xhisto.annotations import CellPoints
from napari_xhisto.geometry import Placement
from napari_xhisto.metrics import baseline_aucs, cell_roc, cell_scores, per_tile_roc


def _chord_area(y0, y1, x0, x1, cy, cx, r):
    """Area of the disc ((cy, cx), r) inside the rectangle [y0, y1] x [x0, x1], by quad over y."""
    lo, hi = max(y0, cy - r), min(y1, cy + r)
    if hi <= lo:
        return 0.0

    def width(yy):
        s = np.sqrt(max(r * r - (yy - cy) ** 2, 0.0))
        return max(0.0, min(x1, cx + s) - max(x0, cx - s))

    # the integrand has kinks where the circle crosses the rectangle's sides: split there
    kinks = [cy + sg * np.sqrt(r * r - (x - cx) ** 2) for x in (x0, x1) for sg in (-1, 1)
             if abs(x - cx) < r]
    pts = sorted({lo, hi, *(k for k in kinks if lo < k < hi)})
    return sum(quad(width, a, b, epsabs=1e-13, epsrel=1e-12, limit=200)[0]
               for a, b in zip(pts[:-1], pts[1:]))


def slow_disc_integral(heat, rows, cols, *, radius, placement, rectify=True):
    """One cell, one map pixel at a time: sum(value * area(disc ∩ pixel)) / sum(area) over
    the finite pixels, pixel (i, j) covering [origin - 0.5 + i * step, ... + step) per axis."""
    p = placement
    H, W = heat.shape
    out = []
    for cy, cx in zip(rows, cols):
        total = area = 0.0
        for i in range(H):
            y0 = p.origin_row - 0.5 + i * p.step_row
            if y0 > cy + radius or y0 + p.step_row < cy - radius:
                continue
            for j in range(W):
                x0 = p.origin_col - 0.5 + j * p.step_col
                if x0 > cx + radius or x0 + p.step_col < cx - radius or np.isnan(heat[i, j]):
                    continue
                w = _chord_area(y0, y0 + p.step_row, x0, x0 + p.step_col, cy, cx, radius)
                v = max(heat[i, j], 0.0) if rectify else heat[i, j]
                total, area = total + w * v, area + w
        out.append(total / area if area > 0 else np.nan)
    return np.array(out)


def supersampled_disc_mean(heat, cy, cx, *, radius, placement, n=1200, rectify=True):
    """The disc mean by brute force: n x n sample points over the disc's bounding box."""
    p = placement
    g = (np.arange(n) + 0.5) / n
    yy, xx = np.meshgrid(cy - radius + 2 * radius * g, cx - radius + 2 * radius * g, indexing="ij")
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    i = np.floor((yy - p.origin_row + 0.5) / p.step_row).astype(int)
    j = np.floor((xx - p.origin_col + 0.5) / p.step_col).astype(int)
    on = inside & (i >= 0) & (i < heat.shape[0]) & (j >= 0) & (j < heat.shape[1])
    v = np.full(yy.shape, np.nan)
    v[on] = heat[i[on], j[on]]
    v = np.maximum(v, 0.0) if rectify else v
    return np.nanmean(v) if np.isfinite(v).any() else np.nan


CASES = [
    (Placement(), 3.0, True),
    (Placement(origin_row=100, origin_col=37, step_row=4, step_col=4), 9.0, True),
    (Placement(origin_row=-5, origin_col=12, step_row=2, step_col=3), 4.0, False),
    (Placement(origin_row=0, origin_col=0, step_row=16, step_col=16), 6.0, True),  # coarse
    (Placement(origin_row=0, origin_col=0, step_row=8, step_col=8), 0.5, True),
]


@pytest.mark.parametrize("placement, radius_um, rectify", CASES)
def test_cell_scores_equal_slow_exact_disc_integral(placement, radius_um, rectify):
    rng = np.random.default_rng(1)
    heat = rng.normal(size=(23, 31))
    heat[3, 4] = np.nan
    heat[10:12, 20:23] = np.nan
    p = placement
    m = 2 * radius_um / 0.5 + 6  # some discs miss the map, some only touch it
    rows = p.origin_row + rng.uniform(-m, 23 * p.step_row + m, 40)
    cols = p.origin_col + rng.uniform(-m, 31 * p.step_col + m, 40)
    fast, cover = cell_scores(heat, CellPoints(rows, cols, np.array(["x"] * 40)),
                              radius_um=radius_um, mpp=0.5, placement=p, rectify=rectify,
                              block_pixels=5 * 31, return_coverage=True)
    slow = slow_disc_integral(heat, rows, cols, radius=radius_um / 0.5, placement=p, rectify=rectify)
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(slow))
    assert np.isnan(slow).sum() > 0  # some discs miss the map
    assert ((cover > 0) & (cover < 1)).sum() > 0  # and some only touch it
    np.testing.assert_allclose(fast[~np.isnan(fast)], slow[~np.isnan(slow)], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("mode", ["window", "prefix"])
@pytest.mark.parametrize("placement, radius_um, rectify", CASES[:4])
def test_both_summing_modes_equal_slow_exact_disc_integral(placement, radius_um, rectify, mode):
    # windows read around the cells (memmaps, few cells) and per-row cumulative sums (many
    # cells per pixel), for float32 maps with NaN pixels, discs crossing every border and
    # lazy row blocks as well as one view of the whole map
    from napari_xhisto.metrics.conventions import apply_convention
    from napari_xhisto.metrics.disc import disc_means, values_transform

    rng = np.random.default_rng(21)
    heat = rng.normal(size=(29, 37)).astype(np.float32)
    heat[4, 5] = heat[12:15, 20:24] = np.nan
    heat[:, 0] = np.nan
    p = placement
    r = radius_um / 0.5
    rows = p.origin_row + rng.uniform(-r - 3, 29 * p.step_row + r + 3, 60)
    cols = p.origin_col + rng.uniform(-r - 3, 37 * p.step_col + r + 3, 60)
    slow = slow_disc_integral(heat.astype(np.float64), rows, cols, radius=r, placement=p,
                              rectify=rectify)
    conv = "rectified" if rectify else "signed"
    for views, block_pixels in ((True, 1 << 22), (False, 6 * 37)):
        got, cover = disc_means(lambda a, b: heat[a:b], heat.shape, p, rows, cols, r,
                                transform=values_transform(conv), views=views,
                                block_pixels=block_pixels, chunk_pixels=500, mode=mode)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(slow))
        np.testing.assert_allclose(got[~np.isnan(got)], slow[~np.isnan(slow)], rtol=1e-8,
                                   atol=1e-10)
    assert np.isnan(slow).sum() > 0 and ((cover > 0) & (cover < 1)).sum() > 0
    assert apply_convention(heat, conv).dtype == np.float32  # summed in float64 all the same


@pytest.mark.parametrize("placement, radius_um, rectify", CASES[1:4])
def test_cell_scores_converge_to_supersampled_disc(placement, radius_um, rectify):
    rng = np.random.default_rng(11)
    heat = rng.normal(size=(23, 31))
    heat[5:9, 5:9] = np.nan
    p = placement
    rows = p.origin_row + rng.uniform(0, 23 * p.step_row, 4)
    cols = p.origin_col + rng.uniform(0, 31 * p.step_col, 4)
    fast = cell_scores(heat, np.stack([rows, cols], 1), radius_um=radius_um, mpp=0.5,
                       placement=p, rectify=rectify)
    brute = [supersampled_disc_mean(heat, r, c, radius=radius_um / 0.5, placement=p,
                                    rectify=rectify) for r, c in zip(rows, cols)]
    np.testing.assert_allclose(fast, brute, atol=3e-3)


def test_coarse_map_cells_near_edge_are_kept_and_weighted_by_area():
    # a step-32 map: a disc of radius 10 px straddling pixels gets their area-weighted mean
    heat = np.array([[0.0, 1.0], [2.0, 3.0]])
    p = Placement(0, 0, 32, 32)
    pts = np.array([[15.5, 31.5],   # on the vertical edge: half 0, half 1
                    [31.5, 31.5],   # on the corner: a quarter of each
                    [-5.0, 10.0],   # centre above the map, disc overlaps it
                    [-20.0, 10.0]])  # disc wholly off the map
    s, cover = cell_scores(heat, pts, radius_um=10, mpp=1, placement=p, return_coverage=True)
    assert s[0] == pytest.approx(0.5, abs=1e-12) and s[1] == pytest.approx(1.5, abs=1e-12)
    assert s[2] == pytest.approx(0.0) and 0 < cover[2] < 0.5 and np.isnan(s[3])
    assert cover[0] == pytest.approx(1.0, abs=1e-12)  # the weights add up to the disc area
    assert np.isnan(cell_scores(heat, pts, radius_um=10, mpp=1, placement=p, min_coverage=0.5)[2])


def test_cell_scores_array_input_and_errors():
    heat = np.arange(25, dtype=float).reshape(5, 5)
    assert cell_scores(heat, np.array([[2.0, 2.0]]), radius_um=0, mpp=1)[0] == 12.0
    holed = heat.copy()
    holed[2, 2] = np.nan  # not computed at the cell itself: the rest of its disc scores it
    both = cell_scores(holed, np.array([[2.0, 2.0], [2.0, 3.0]]), radius_um=1, mpp=1)
    ref = slow_disc_integral(holed, [2.0, 2.0], [2.0, 3.0], radius=1, placement=Placement())
    np.testing.assert_allclose(both, ref, rtol=1e-10)
    assert np.isnan(cell_scores(holed, np.array([[2.0, 2.0]]), radius_um=0, mpp=1)[0])
    with pytest.raises(ValueError, match="2-D"):
        cell_scores(np.zeros(5), np.array([[0.0, 0.0]]), radius_um=1, mpp=1)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        cell_scores(heat, np.zeros((3, 3)), radius_um=1, mpp=1)
    with pytest.raises(ValueError, match="mpp"):
        cell_scores(heat, np.zeros((1, 2)), radius_um=1, mpp=0)
    with pytest.raises(ValueError, match="convention"):
        cell_scores(heat, np.zeros((1, 2)), radius_um=1, mpp=1, convention="positive")


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
    expected = [slow_disc_integral(heat[:, int(c) - 10:int(c) + 10].astype(np.float64), [r], [10.0],
                                   radius=4, placement=Placement())[0] for r, c in pts]
    np.testing.assert_allclose(cell_scores(heat, pts, radius_um=4, mpp=1), expected, rtol=1e-10)


def test_random_baseline_scores_only_pixels_valid_in_the_heatmap():
    from napari_xhisto.metrics.disc import RandomMap

    heat = np.zeros((60, 60))
    heat[:, 30:] = np.nan  # the right half was not computed
    rnd = RandomMap(heat.shape, seed=(0, 1), nan_like=heat)
    rows = rnd[0:60]
    assert np.isnan(rows[:, 30:]).all() and np.isfinite(rows[:, :30]).all()
    np.testing.assert_array_equal(rnd[17:41], rows[17:41])  # any window gives the same rows
    cells = _synthetic_cells(400, 60, seed=9)
    s = cell_scores(rnd, cells, radius_um=2, mpp=1)
    real = cell_scores(heat, cells, radius_um=2, mpp=1)
    np.testing.assert_array_equal(np.isnan(s), np.isnan(real))
    from napari_xhisto.metrics.disc import ConstantMap  # constant baselines: the same cells
    const = cell_scores(ConstantMap(heat.shape, 1.0, nan_like=heat), cells, radius_um=2, mpp=1)
    np.testing.assert_array_equal(np.isnan(const), np.isnan(real))
    b = baseline_aucs(heat.shape, cells, radius_um=2, mpp=1, n_random=2, nan_like=heat)
    assert b["random_aucs"][1] == pytest.approx(cell_roc(s, cells.classes).auc)


def test_discs_on_one_value_tie_exactly():
    """Cells on a constant patch score exactly its value, whatever their sub-pixel position
    (a patch-level probability map: rounding must not break the ties the ROC counts)."""
    from napari_xhisto.metrics.disc import disc_means

    rng = np.random.default_rng(3)
    blocks = rng.random((8, 8)).astype(np.float32) / 3.0  # values with long mantissas
    heat = np.kron(blocks, np.ones((64, 64), np.float32))  # 512 x 512, constant 64 px patches
    n = 4000
    rows, cols = rng.uniform(0, 512, n), rng.uniform(0, 512, n)
    placement = Placement(origin_row=0.0, origin_col=0.0, step_row=1.0, step_col=1.0)
    for views in (False, True):
        means, _ = disc_means(lambda a, b: heat[a:b], heat.shape, placement, rows, cols, 6.3,
                              views=views)
        # discs wholly inside one patch: exactly the patch's value
        inside = ((rows % 64 > 7.5) & (rows % 64 < 56.5) & (cols % 64 > 7.5)
                  & (cols % 64 < 56.5))
        want = blocks[(rows // 64).astype(int), (cols // 64).astype(int)].astype(np.float64)
        assert inside.sum() > 1000
        assert np.array_equal(means[inside], want[inside])
