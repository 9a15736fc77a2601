"""Contours of thresholded heatmaps: valid polygons with holes that rasterise back to the mask."""

import json

import numpy as np
import pytest
from skimage.draw import polygon as raster_polygon

from napari_xhisto.annotations import read_annotations, validate_qupath_geojson
from napari_xhisto.errors import XhistoError
from napari_xhisto.export.contours import (
    export_contours,
    heatmap_contours,
    mask_polygons,
    ring_contains,
    signed_area,
)
from napari_xhisto.geometry import Placement


def _segments_cross(a, b, c, d):
    def orient(p, q, r):
        return np.sign((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]))
    return orient(a, b, c) * orient(a, b, d) < 0 and orient(c, d, a) * orient(c, d, b) < 0


def _assert_simple(ring):
    """A valid ring: >= 3 distinct vertices, non-zero area, no two edges crossing."""
    assert len(ring) >= 3 and len(np.unique(ring, axis=0)) == len(ring)
    assert abs(signed_area(ring)) > 0
    n = len(ring)
    for i in range(n):
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue
            assert not _segments_cross(ring[i], ring[(i + 1) % n], ring[j], ring[(j + 1) % n])


def _rasterise(regions, placement, shape):
    """Pixel-centre rasterisation of level-0 polygons back onto the map grid (even-odd rings)."""
    out = np.zeros(shape, bool)
    for region in regions:
        for ring in [region.exterior, *region.holes]:
            idx = np.empty_like(ring)
            idx[:, 0] = (ring[:, 0] - placement.origin_row) / placement.step_row - 0.5
            idx[:, 1] = (ring[:, 1] - placement.origin_col) / placement.step_col - 0.5
            rr, cc = raster_polygon(idx[:, 0], idx[:, 1], shape)
            ring_mask = np.zeros(shape, bool)
            ring_mask[rr, cc] = True
            out ^= ring_mask
    return out


def _scene(shape=(120, 160)):
    rr, cc = np.mgrid[0:shape[0], 0:shape[1]]
    d = np.hypot(rr - 60, cc - 60)
    values = np.full(shape, -0.5, np.float32)
    values[(d <= 40) & (d > 20)] = 0.9  # annulus: one polygon with one hole
    values[d <= 8] = 0.8  # island inside the hole: its own polygon
    values[10:30, 120:150] = 0.7  # a rectangle touching nothing
    values[0:5, 155:160] = 0.6  # touching the map border
    values[90, 130] = 0.95  # a single pixel
    values[100:110, 100:104] = np.nan  # no value: never inside
    return values


def test_polygons_rasterise_back_to_the_mask_with_holes():
    values = _scene()
    placement = Placement(1000, 2000, 2.0, 2.0)
    regions = heatmap_contours(values, placement, threshold=0.5, cls="tumour area")
    mask = values >= 0.5
    assert len(regions) == 5
    with_holes = [r for r in regions if r.holes]
    assert len(with_holes) == 1 and len(with_holes[0].holes) == 1
    for region in regions:
        assert region.cls == "tumour area"
        _assert_simple(region.exterior)
        for hole in region.holes:
            _assert_simple(hole)
            assert ring_contains(region.exterior, hole[0])
    back = _rasterise(regions, placement, values.shape)
    # rings pass half-way between pixel centres, so pixel-centre rasterisation is exact
    np.testing.assert_array_equal(back, mask)
    # level-0 mapping: the rectangle spans map rows 10..29 -> level-0 rows [1020, 1060)
    rect = next(r for r in regions if 2230 < r.exterior[:, 1].min() and r.exterior[:, 1].max() < 2305
                and r.exterior[:, 0].max() < 1100)
    assert rect.exterior[:, 0].min() == pytest.approx(1000 + 2 * 9.5 + 1)
    assert rect.exterior[:, 0].max() == pytest.approx(1000 + 2 * 29.5 + 1)


def test_single_pixels_and_diagonals_are_valid_polygons():
    mask = np.zeros((6, 6), bool)
    mask[1, 1] = mask[2, 2] = True  # diagonal neighbours: one 8-connected polygon
    mask[4, 4] = True
    polys = mask_polygons(mask)
    assert len(polys) == 2
    for ext, holes in polys:
        _assert_simple(ext)
        assert holes == []
    assert mask_polygons(np.zeros((3, 3), bool)) == []
    assert len(mask_polygons(mask, min_pixels=1.0)) == 1  # the diagonal pair encloses 1.5 px


def test_negative_evidence_and_geojson_round_trip(tmp_path):
    values = -_scene()
    placement = Placement(0, 0, 4.0, 4.0)
    path, regions = export_contours(tmp_path / "evidence.geojson", values, placement, threshold=-0.5,
                                    above=False, cls="necrosis")
    doc = json.loads(path.read_text())
    assert len(doc["features"]) == len(regions) == 5
    assert validate_qupath_geojson(doc) == []  # QuPath's rules (closed rings, classification ...)
    assert all(f["properties"]["objectType"] == "annotation" for f in doc["features"])
    back = read_annotations(path)
    assert len(back.regions) == 5
    assert sum(len(r.holes) for r in back.regions) == 1
    for got, sent in zip(sorted(back.regions, key=lambda r: r.exterior.min(axis=0).tolist()),
                         sorted(regions, key=lambda r: r.exterior.min(axis=0).tolist()), strict=True):
        assert got.cls == "necrosis"
        np.testing.assert_allclose(got.exterior, sent.exterior)
        for h1, h2 in zip(got.holes, sent.holes, strict=True):
            np.testing.assert_allclose(h1, h2)
    mask = values <= -0.5
    np.testing.assert_array_equal(_rasterise(back.regions, placement, values.shape), mask)


def test_contours_refuse_to_overwrite_and_wrong_suffix(tmp_path):
    target = tmp_path / "mine.geojson"
    target.write_text("{}")
    with pytest.raises(XhistoError, match="already exists"):
        export_contours(target, np.ones((4, 4)), Placement(), threshold=0.5)
    assert target.read_text() == "{}"
    with pytest.raises(XhistoError, match="GeoJSON"):
        export_contours(tmp_path / "x.tif", np.ones((4, 4)), Placement(), threshold=0.5)


def test_a_threshold_with_nothing_above_writes_nothing_and_says_why(tmp_path):
    from napari_xhisto.export.contours import EmptyContoursError

    values = np.linspace(-0.2, 0.4, 64, dtype=np.float32).reshape(8, 8)
    target = tmp_path / "none.geojson"
    with pytest.raises(EmptyContoursError, match=r"at or above 0.9 .*-0.2 to 0.4.*nothing was written"):
        export_contours(target, values, Placement(), threshold=0.9)
    assert not target.exists()
    with pytest.raises(EmptyContoursError, match="at or below -0.5"):
        export_contours(target, values, Placement(), threshold=-0.5, above=False)
    target.write_text("the user's file")  # an existing file is never replaced by an empty one
    with pytest.raises(EmptyContoursError):
        export_contours(target, values, Placement(), threshold=0.9, overwrite=True)
    assert target.read_text() == "the user's file"
