"""The bulk reader of our own files gives exactly what the full JSON parse gives."""

import json

import numpy as np
import pytest

from napari_xhisto.annotations import AnnotationSet, CellPoints, RegionShape, read_annotations
from napari_xhisto.annotations.geojson import geojson_text, geojson_to_annotations
from napari_xhisto.annotations.geojson_fast import read_our_layout
from napari_xhisto.errors import AnnotationError


def cells(n=200, ids=True, seed=0, weird=False):
    rng = np.random.default_rng(seed)
    rows = rng.uniform(-1e3, 1e5, n)
    rows[:4] = [0.0, -0.0, 5e-324, 1.5e-07]  # repr gives "5e-324", "1.5e-07": still exact
    names = np.array([f"c-{i}" for i in range(n)], dtype=object)
    if weird:
        names[3] = 'quote " and ünïcode'
    return CellPoints(rows, rng.uniform(0, 1e5, n),
                      rng.choice(["tumour", "Tumor", "stroma", 'odd "name"'], n),
                      names if ids else None)


def both(annotations: AnnotationSet):
    text = geojson_text(annotations)
    fast = read_our_layout(text)
    full = geojson_to_annotations(json.loads(text))
    return fast, full


def assert_identical(a: AnnotationSet, b: AnnotationSet):
    assert np.array_equal(a.cells.rows, b.cells.rows) and np.array_equal(a.cells.cols, b.cells.cols)
    assert a.cells.classes.tolist() == b.cells.classes.tolist()
    assert (a.cells.ids is None) == (b.cells.ids is None)
    if a.cells.ids is not None:
        assert a.cells.ids.tolist() == b.cells.ids.tolist()
    assert a.colors == b.colors
    assert [(r.cls, r.name, r.id) for r in a.regions] == [(r.cls, r.name, r.id) for r in b.regions]
    for ra, rb in zip(a.regions, b.regions):
        assert np.array_equal(ra.exterior, rb.exterior)


@pytest.mark.parametrize("ids", [True, False])
def test_fast_read_equals_full_parse(ids):
    square = np.array([[0.0, 0.0], [0.0, 3.0], [3.0, 3.0]])
    annotations = AnnotationSet(cells(ids=ids), [RegionShape("necrosis", square, [], "n", "r")],
                                {"stroma": (1, 2, 3)})
    fast, full = both(annotations)
    assert fast is not None
    assert_identical(fast, full)
    assert np.array_equal(fast.cells.rows, annotations.cells.rows)  # bit-exact numbers
    assert fast.cells.classes[annotations.cells.classes == "Tumor"].tolist()[0] == "Tumor"


def test_escaped_ids_fall_back_to_the_full_parse_with_the_same_result(tmp_path):
    annotations = AnnotationSet(cells(weird=True), [], {})
    fast, full = both(annotations)
    assert fast is None  # a cell line off the template, followed by more cells: full parse
    path = tmp_path / "w.geojson"
    path.write_text(geojson_text(annotations), encoding="utf-8")
    back = read_annotations(path)
    assert_identical(back, full)
    assert back.cells.ids[3] == 'quote " and ünïcode'


def test_edited_files_and_errors_keep_the_full_parse_messages(tmp_path):
    annotations = AnnotationSet(cells(n=10), [], {})
    text = geojson_text(annotations)
    lines = text.split("\n")
    lines[3] = lines[3].replace('"coordinates":[', '"coordinates":["x",')
    path = tmp_path / "e.geojson"
    path.write_text("\n".join(lines))
    with pytest.raises(AnnotationError, match=r"e.geojson: feature 2: a position must be"):
        read_annotations(path)
    lines = text.split("\n")
    lines[5] = lines[5].replace('"color":[', '"color":["red",')
    path.write_text("\n".join(lines))
    with pytest.raises(AnnotationError, match=r"feature 4: classification color"):
        read_annotations(path)
    assert read_our_layout(text.replace("\n", "")) is None  # not one feature per line
    assert read_our_layout('{"type":"FeatureCollection","features":[]}') is None


def test_empty_and_regions_only_files(tmp_path):
    for annotations in [AnnotationSet.empty(),
                        AnnotationSet(CellPoints.empty(),
                                      [RegionShape("vessel", [[0, 0], [0, 1], [1, 1]])], {})]:
        path = tmp_path / "x.geojson"
        path.write_text(geojson_text(annotations))
        back = read_annotations(path)
        assert len(back.cells) == 0 and len(back.regions) == len(annotations.regions)


def test_cells_off_the_template_at_the_end_are_parsed_in_full():
    base = cells(n=50)
    ids = base.ids.astype(object)
    ids[-1] = "last one"  # a space: written escaped-free but outside the bulk pattern
    annotations = AnnotationSet(CellPoints(base.rows, base.cols, base.classes, ids), [], {})
    fast, full = both(annotations)
    assert fast is not None
    assert_identical(fast, full)
    assert fast.cells.ids[-1] == "last one"
