"""Region relevance against direct masks built with matplotlib's point-in-polygon."""

import numpy as np
import pytest
from matplotlib.path import Path

from napari_xhisto.annotations import RegionShape
from napari_xhisto.geometry import Placement
from napari_xhisto.metrics import compare_region_relevance, region_mask, region_relevance


def direct_mask(region, shape, placement):
    p = placement
    ii, jj = np.mgrid[: shape[0], : shape[1]]
    r = p.origin_row + ii * p.step_row + (p.step_row - 1) / 2
    c = p.origin_col + jj * p.step_col + (p.step_col - 1) / 2
    pts = np.stack([r.ravel(), c.ravel()], 1)
    inside = Path(region.exterior).contains_points(pts)
    for hole in region.holes:
        inside &= ~Path(hole).contains_points(pts)
    return inside.reshape(shape)


REGIONS = [
    RegionShape("necrosis", np.array([[10.3, 12.1], [10.3, 70.7], [55.2, 90.3], [60.9, 20.6]]),
                holes=[np.array([[25.1, 30.2], [25.1, 45.3], [40.4, 45.3], [40.4, 30.2]])]),
    RegionShape("artefact", np.array([[70.2, 5.3], [95.8, 5.3], [82.6, 40.1]]), name="fold"),
    RegionShape("vessel", np.array([[500.1, 500.1], [510.2, 500.1], [505.3, 520.4]])),  # off map
]


@pytest.mark.parametrize("placement", [Placement(), Placement(3.0, -7.0, 2.0, 2.0),
                                       Placement(0.0, 0.0, 4.0, 2.0)])
def test_region_relevance_matches_direct_mask_means(placement):
    rng = np.random.default_rng(0)
    heat = rng.normal(size=(60, 70))
    out = region_relevance(heat, REGIONS, placement=placement)
    for region, res in zip(REGIONS, out):
        m = direct_mask(region, heat.shape, placement)
        np.testing.assert_array_equal(region_mask(region, heat.shape, placement=placement), m)
        assert res.n_pixels == m.sum()
        if m.any():
            assert res.mean == pytest.approx(heat[m].mean())
            assert res.total == pytest.approx(heat[m].sum())
            assert res.mean_positive == pytest.approx(np.maximum(heat[m], 0).mean())
            assert res.area_level0 == m.sum() * placement.step_row * placement.step_col
        else:
            assert np.isnan(res.mean)
    assert out[1].name == "fold" and out[0].cls == "necrosis"


def test_hole_is_cut_out():
    m = region_mask(REGIONS[0], (100, 100))
    assert not m[30:38, 33:43].any() and m[15, 40]


def test_compare_flags_sampling_bias_on_necrosis_only():
    rng = np.random.default_rng(1)
    clean = rng.normal(-0.1, 0.05, (100, 100))
    biased = clean.copy()
    nec = region_mask(REGIONS[0], clean.shape)
    biased[nec] = rng.normal(0.4, 0.05, nec.sum())
    cmp = compare_region_relevance(clean, biased, REGIONS, label_a="clean", label_b="no-necrosis")
    assert cmp.per_class["necrosis"]["mean_no-necrosis"] == pytest.approx(biased[nec].mean())
    assert cmp.per_class["necrosis"]["fraction_b_above_a"] == 1.0
    assert len(cmp.flags) == 1 and cmp.flags[0].startswith("necrosis: model no-necrosis")
    assert "vessel" not in cmp.per_class  # off the map: no pixels
    rows = cmp.rows()
    assert rows[0]["difference"] == pytest.approx(biased[nec].mean() - clean[nec].mean())


def test_scanline_fill_equals_skimage_polygon_on_random_polygons():
    from skimage.draw import polygon

    from napari_xhisto.metrics.regions import fill_polygon

    rng = np.random.default_rng(0)
    for k in range(200):
        n = int(rng.integers(3, 12))
        if k % 2:  # self-intersecting vertex soup, partly off the array
            r, c = rng.uniform(-5, 45, n), rng.uniform(-5, 35, n)
        else:  # star-shaped, non-convex
            t = np.sort(rng.uniform(0, 2 * np.pi, n))
            rad = rng.uniform(3, 18, n)
            r, c = 20 + rad * np.sin(t), 15 + rad * np.cos(t)
        want = np.zeros((40, 30), bool)
        rr, cc = polygon(r, c, shape=want.shape)
        want[rr, cc] = True
        np.testing.assert_array_equal(fill_polygon(r, c, (40, 30)), want)
