"""Heatmap layer helpers without a viewer: placement, limits, canvas, grey-scale, legend, coords."""

import numpy as np
import pytest

from napari_xhisto._widgets import layers as L
from napari_xhisto.geometry import Placement, Region


def test_symmetric_limits_centre_zero_on_largest_magnitude():
    values = np.array([[-0.25, 0.1], [0.7, np.nan]], np.float32)
    assert L.symmetric_limits(values) == pytest.approx((-0.7, 0.7))
    assert L.symmetric_limits(np.array([[-3.0, 1.0]])) == (-3.0, 3.0)
    assert L.symmetric_limits(np.zeros((2, 2))) == (-1.0, 1.0)
    spiky = np.r_[np.full(999, 0.1), 50.0]
    assert L.symmetric_limits(spiky, percentile=99.0) == pytest.approx((-0.1, 0.1))


def test_heatmap_layer_data_places_pixels_on_slide_centres():
    values = np.arange(12, dtype=np.float64).reshape(3, 4) - 5
    placement = Placement(100, 40, 4, 4)
    prov = {"method": "saliency", "region": [100, 40, 12, 16]}
    data, kwargs, kind = L.heatmap_layer_data(values, placement, mpp=0.5, provenance=prov,
                                              name="h", slide_path="/x/s.svs")
    assert kind == "image" and data.dtype == np.float32
    np.testing.assert_array_equal(data, values.astype(np.float32))
    # heat pixel (i, j) covers level-0 rows 100+4i .. 100+4i+3: centre 100+4i+1.5 px -> µm
    i, j = 2, 3
    world = np.asarray(kwargs["translate"]) + np.asarray(kwargs["scale"]) * (i, j)
    assert world == pytest.approx(((100 + 4 * i + 1.5) * 0.5, (40 + 4 * j + 1.5) * 0.5))
    assert kwargs["contrast_limits"] == pytest.approx(
        tuple(np.array([-1, 1]) * np.percentile(np.abs(values), L.DISPLAY_PERCENTILE)))
    # red for the class, blue against, transparent at zero so the H&E shows through
    rgba = kwargs["colormap"].map(np.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(rgba[0], [0, 0, 1, 1], atol=1e-6)
    np.testing.assert_allclose(rgba[2], [1, 0, 0, 1], atol=1e-6)
    assert rgba[1, 3] == 0.0
    meta = kwargs["metadata"]["xhisto"]
    assert meta["kind"] == "heatmap" and meta["mpp"] == 0.5 and meta["slide_path"] == "/x/s.svs"
    assert Placement.from_dict(meta["placement"]) == placement
    assert meta["provenance"] == prov


def test_probability_layer_data_takes_one_class():
    probs = np.random.default_rng(0).random((5, 6, 3)).astype(np.float32)
    data, kwargs, _ = L.probability_layer_data(probs, Placement(0, 0, 8, 8), class_index=2,
                                               class_names=["a", "b", "c"], mpp=1.0,
                                               provenance={}, name="p")
    np.testing.assert_array_equal(data, probs[..., 2])
    assert kwargs["contrast_limits"] == (0.0, 1.0)
    assert kwargs["metadata"]["xhisto"]["class_name"] == "c"
    assert kwargs["metadata"]["xhisto"]["kind"] == "probability"


def test_canvas_pastes_read_back_normalised_by_global_max():
    canvas = L.SparseCanvas((3000, 2000), step=2, tile=64)
    assert canvas.shape == (1500, 1000)
    rng = np.random.default_rng(1)
    a = rng.normal(size=(100, 130)).astype(np.float32)
    b = 5 * rng.normal(size=(40, 50)).astype(np.float32)
    canvas.paste(a, Placement(20, 60, 2, 2))       # canvas pixels (10, 30)
    canvas.paste(b, Placement(400, 1000, 2, 2))    # canvas pixels (200, 500)
    dense = np.full(canvas.shape, np.nan, np.float32)  # never explained: NaN (transparent)
    dense[10:110, 30:160] = a
    dense[200:240, 500:550] = b
    gmax = np.nanmax(np.abs(dense))
    assert canvas.scale_value == pytest.approx(gmax)
    np.testing.assert_allclose(canvas.read(slice(0, 300), slice(0, 600)), dense[:300, :600] / gmax)
    np.testing.assert_array_equal(canvas.read(slice(5, 50), slice(25, 99), normalised=False),
                                  dense[5:50, 25:99])
    # only touched tiles are stored
    assert canvas.nbytes < dense.nbytes / 20
    # a peak given by the caller (e.g. the largest patch map before stitching) sets the scale
    canvas.paste(np.ones((2, 2), np.float32), Placement(0, 0, 2, 2), peak=2 * gmax)
    assert canvas.scale_value == pytest.approx(2 * gmax)
    assert canvas.read(slice(0, 2), slice(0, 2)) == pytest.approx(0.5 / gmax)
    # overlapping paste overwrites
    canvas.paste(np.full((4, 4), 0.5, np.float32), Placement(20, 60, 2, 2))
    assert canvas.read(slice(10, 14), slice(30, 34), normalised=False) == pytest.approx(0.5)


def test_canvas_levels_are_array_likes_for_napari():
    canvas = L.SparseCanvas((5000, 3000), step=1, tile=256)
    v = np.arange(64 * 64, dtype=np.float32).reshape(64, 64) - 1000
    canvas.paste(v, Placement(1000, 2000, 1, 1))
    levels = canvas.levels(coarsest=1024)
    assert [lv.shape for lv in levels] == [(5000, 3000), (2500, 1500), (1250, 750), (625, 375)]
    full = np.full((5000, 3000), np.nan, np.float32)
    full[1000:1064, 2000:2064] = v / np.abs(v).max()
    np.testing.assert_array_equal(levels[0][990:1070, 1990:2070], full[990:1070, 1990:2070])
    np.testing.assert_array_equal(levels[2][240:270, 490:520], full[::4, ::4][240:270, 490:520])
    np.testing.assert_array_equal(np.asarray(levels[3]), full[::8, ::8])
    assert levels[1][500, 1000] == full[1000, 2000]
    np.testing.assert_array_equal(levels[1][500], full[1000, ::2])


def test_canvas_refuses_other_grids():
    canvas = L.SparseCanvas((100, 100), step=4)
    with pytest.raises(ValueError, match="step"):
        canvas.paste(np.ones((2, 2)), Placement(0, 0, 2, 2))
    with pytest.raises(ValueError, match="grid"):
        canvas.paste(np.ones((2, 2)), Placement(2, 0, 4, 4))


def test_luminance_numpy_and_dask_agree_with_bt601():
    import dask.array as da

    rgb = np.random.default_rng(2).integers(0, 256, size=(40, 30, 3), dtype=np.uint8)
    expected = np.round(rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114)
    grey = L.luminance(rgb)
    assert grey.dtype == np.uint8
    np.testing.assert_allclose(grey, expected, atol=1)
    lazy = L.luminance(da.from_array(rgb, chunks=(16, 16, 3)))
    assert isinstance(lazy, da.Array) and lazy.chunks[:2] == ((16, 16, 8), (16, 14))
    np.testing.assert_allclose(lazy.compute(), expected, atol=1)


def test_canvas_records_each_paste_extent_for_outlines():
    canvas = L.SparseCanvas((1000, 1000), step=4)
    canvas.paste(np.ones((10, 20), np.float32), Placement(40, 80, 4, 4))
    canvas.paste(np.ones((50, 50), np.float32), Placement(900, 900, 4, 4))  # cut at the edge
    assert [p["extent"] for p in canvas.pastes] == [[40, 80, 40, 80], [900, 900, 100, 100]]


def test_colormaps_clear_where_nothing_is_to_see():
    heat = L.heatmap_colormap()
    rgba = heat.map(np.array([0.0, 0.5, 0.5 + 0.35 / 2, 1.0, np.nan]))
    np.testing.assert_allclose(rgba[0], [0, 0, 1, 1], atol=1e-6)  # blue: against
    np.testing.assert_allclose(rgba[3], [1, 0, 0, 1], atol=1e-6)  # red: for
    assert rgba[1, 3] == 0 and rgba[2, 3] == pytest.approx(1.0, abs=0.02)  # clear at 0, opaque at 35 %
    assert rgba[4, 3] == 0  # NaN (never explained) is transparent
    prob = L.probability_colormap()
    p = np.array([0.0, 0.05, 0.1, 0.3, 0.5, 0.9, np.nan])
    alpha = prob.map(p)[:, 3]
    np.testing.assert_allclose(alpha[:6], [0, 0, 0, 0.5, 1, 1], atol=0.02)
    assert alpha[6] == 0


def test_probability_layer_masks_background():
    probs = np.full((4, 5, 2), 0.5, np.float32)
    mask = np.ones((4, 5), bool)
    mask[0, :] = False
    data, kwargs, _ = L.probability_layer_data(probs, Placement(0, 0, 8, 8), class_index=1,
                                               class_names=["a", "b"], mpp=1.0, provenance={},
                                               name="p", tissue_mask=mask)
    assert np.isnan(data[0]).all() and (data[1:] == 0.5).all()
    assert kwargs["colormap"].name == "xhisto-probability"
    with pytest.raises(ValueError, match="tissue mask"):
        L.probability_layer_data(probs, Placement(0, 0, 8, 8), class_index=1, class_names="ab",
                                 mpp=1.0, provenance={}, name="p", tissue_mask=mask[:2])


def test_world_to_level0_inverts_layer_transform():
    placement = Placement()
    tf = placement.layer_transform(0.25)
    # the centre of level-0 pixel (7, 11) is at its pixel-edge coordinate (7.5, 11.5)
    world = np.asarray(tf["translate"]) + np.asarray(tf["scale"]) * (7, 11)
    assert L.world_to_level0(world, **tf) == pytest.approx((7.5, 11.5))
    assert L.world_to_level0((0, 3, 4), scale=(1, 2, 2), translate=(0, 1, 1)) == (1.5, 2.0)


def test_region_centred_at_snaps_and_stays_inside():
    assert L.region_centred_at(500, 600, 100, 200, slide_shape=(1000, 1000)) == Region(450, 500, 100, 200)
    # snapped to multiples of 8
    r = L.region_centred_at(503, 611, 64, 64, slide_shape=(1000, 1000), snap=8)
    assert (r.level0_row % 8, r.level0_col % 8) == (0, 0)
    assert abs(r.level0_row + 32 - 503) <= 4 and abs(r.level0_col + 32 - 611) <= 4
    # near the edge: shifted inside, size kept
    assert L.region_centred_at(5, 995, 100, 100, slide_shape=(1000, 1000)) == Region(0, 900, 100, 100)
    # bigger than the slide: cut
    assert L.region_centred_at(50, 50, 500, 80, slide_shape=(200, 300)) == Region(0, 10, 200, 80)


def test_view_region_from_camera():
    tf = Placement().layer_transform(0.5)
    # 400 x 600 screen px at zoom 2 screen px / µm show 200 x 300 µm = 400 x 600 level-0 px
    centre_px = (1000, 2000)
    centre_world = np.asarray(tf["translate"]) + (np.asarray(centre_px) - 0.5) * 0.5
    r = L.view_region(centre_world, 2.0, (400, 600), **tf, slide_shape=(5000, 5000))
    assert r == Region(800, 1700, 400, 600)
    clipped = L.view_region(centre_world, 0.1, (400, 600), **tf, slide_shape=(3000, 2500))
    assert clipped == Region(0, 0, 3000, 2500)
