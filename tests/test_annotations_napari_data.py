"""Conversions between annotations (level-0 px) and napari layer data (µm), without napari."""

import numpy as np
import pandas as pd
import pytest

from napari_xhisto.annotations import (
    CellPoints,
    RegionShape,
    cells_to_points_data,
    points_data_to_cells,
    regions_to_shapes_data,
    shapes_data_to_regions,
)
from napari_xhisto.annotations.napari_data import ellipse_polygon
from napari_xhisto.errors import AnnotationError


def test_cells_round_trip_through_points_data():
    cells = CellPoints([10.0, 20.5, 3.25], [1.0, 2.0, 3.0], ["tumour", "stroma", "x"], ["a", "b", "c"])
    data, features = cells_to_points_data(cells, 0.25)
    np.testing.assert_allclose(data, [[2.5, 0.25], [5.125, 0.5], [0.8125, 0.75]])
    assert list(features["class"]) == ["tumour", "stroma", "x"]
    back = points_data_to_cells(data, pd.DataFrame(features), 0.25)
    np.testing.assert_allclose(back.rows, cells.rows, atol=1e-9)
    np.testing.assert_allclose(back.cols, cells.cols, atol=1e-9)
    assert back.classes.tolist() == ["tumour", "stroma", "x"] and back.ids.tolist() == ["a", "b", "c"]


def test_points_without_ids_or_classes_get_them():
    cells = CellPoints([1.0, 2.0], [3.0, 4.0], ["a", "b"])
    _, features = cells_to_points_data(cells, None)
    assert len(set(features["id"])) == 2  # fresh ids, so edits can be followed
    back = points_data_to_cells([[1, 2], [3, 4]], {"class": ["t", None], "id": ["x", "x"]}, 2.0,
                                default_class="other")
    assert back.classes.tolist() == ["t", "other"]
    assert back.ids[0] == "x" and back.ids[1] not in ("x", "")
    np.testing.assert_allclose(back.rows, [0.5, 1.5])
    with pytest.raises(AnnotationError, match="positive"):
        points_data_to_cells([[1, 2]], None, 0)
    with pytest.raises(AnnotationError, match="2 values for 1 points"):
        points_data_to_cells([[1, 2]], {"class": ["a", "b"]}, 1.0)


def test_regions_round_trip_keeps_holes_names_ids():
    ext = np.array([[0.0, 0.0], [0.0, 100.0], [80.0, 100.0], [80.0, 0.0]])
    hole = np.array([[10.0, 10.0], [10.0, 20.0], [20.0, 20.0]])
    regions = [RegionShape("necrosis", ext, [hole], "core", "r1"), RegionShape("vessel", ext + 5)]
    data, types, features, holes = regions_to_shapes_data(regions, 0.5)
    assert types == ["polygon", "polygon"]
    np.testing.assert_allclose(data[0], ext * 0.5)
    assert list(features["class"]) == ["necrosis", "vessel"] and features["id"][0] == "r1"
    back = shapes_data_to_regions(data, types, features, 0.5, holes=holes)
    assert [(r.cls, r.name, r.id) for r in back] == [("necrosis", "core", "r1"),
                                                     ("vessel", None, features["id"][1])]
    np.testing.assert_allclose(back[0].exterior, ext)
    np.testing.assert_allclose(back[0].holes[0], hole)
    assert back[1].holes == []


def test_rectangles_and_ellipses_become_polygons_lines_refused():
    rect = np.array([[0.0, 0.0], [0.0, 4.0], [2.0, 4.0], [2.0, 0.0]])
    regions = shapes_data_to_regions([rect, rect], ["rectangle", "ellipse"],
                                     {"class": ["a", "b"]}, 2.0)
    np.testing.assert_allclose(regions[0].exterior, rect / 2)
    ellipse = regions[1].exterior * 2  # back to µm
    centre = np.array([1.0, 2.0])
    # every vertex lies on the ellipse with semi-axes 1 (rows) and 2 (cols)
    np.testing.assert_allclose(((ellipse - centre) ** 2 / [1.0, 4.0]).sum(axis=1), 1.0, atol=1e-12)
    assert len(ellipse_polygon(rect)) == 64
    with pytest.raises(AnnotationError, match="shape 1 is a path"):
        shapes_data_to_regions([rect, rect], ["polygon", "path"], None, 1.0)
