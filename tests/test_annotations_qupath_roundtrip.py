"""A file written by hand in QuPath's layout survives read -> write -> read with every field.

The layout follows QuPath's own writer and reader (qupath/qupath at v0.7.0-228,
qupath-core/src/main/java/qupath/lib/io/QuPathTypeAdapters.java ``PathObjectTypeAdapter`` and
qupath/lib/io/GsonTools.java ``PathClassTypeAdapter``): ``id`` (UUID), ``geometry``,
``nucleusGeometry`` beside ``properties``; ``objectType``, ``name``, ``color``,
``classification`` ({name|names, color [r, g, b(, a)]} or a plain string), ``isLocked``,
``measurements`` (NaN written as the string "NaN") and ``metadata`` inside them.
"""

import copy
import json
import uuid

import numpy as np
import pytest

from napari_xhisto.annotations import (
    read_annotations,
    validate_qupath_geojson,
    write_annotations,
)
from napari_xhisto.annotations.objects import objects_from_json, objects_to_json


def _ring(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def qupath_file() -> dict:
    """Every kind of object a QuPath project exports, as QuPath 0.5-0.7 writes it."""
    features = [
        # the Points tool: one annotation holding three points of one class
        {"type": "Feature", "id": "0d4b1f3e-6c55-4f0c-9a3a-111111111111",
         "geometry": {"type": "MultiPoint", "coordinates": [[100.5, 200.25], [110, 210], [120, 220]]},
         "properties": {"objectType": "annotation",
                        "classification": {"name": "Immune cells", "color": [160, 90, 160]},
                        "isLocked": True,
                        "metadata": {"author": "pathologist A"},
                        "measurements": {"Num points": 3}}},
        # a QuPath cell detection: cell outline, nucleus outline, derived class, measurements
        {"type": "Feature", "id": "0d4b1f3e-6c55-4f0c-9a3a-222222222222",
         "geometry": {"type": "Polygon", "coordinates": [_ring(1000, 2000, 1020, 2016)]},
         "nucleusGeometry": {"type": "Polygon", "coordinates": [_ring(1004, 2004, 1012, 2010)]},
         "properties": {"objectType": "cell",
                        "classification": {"names": ["Tumor", "Positive"], "color": [200, 50, 50]},
                        "measurements": {"Nucleus: Area µm^2": 31.5, "Cell: Area µm^2": 80.25,
                                         "DAB: Nucleus: Mean": "NaN"}}},
        # a cell without nucleus, classification given as a string (QuPath reads it)
        {"type": "Feature", "id": "0d4b1f3e-6c55-4f0c-9a3a-333333333333",
         "geometry": {"type": "Polygon", "coordinates": [_ring(3000, 3000, 3010, 3030)]},
         "properties": {"objectType": "detection", "classification": "Stroma",
                        "measurements": {"Area": 300}}},
        # a locked tumour annotation with a hole, its own colour, an RGBA class colour, a name
        {"type": "Feature", "id": "0d4b1f3e-6c55-4f0c-9a3a-444444444444",
         "geometry": {"type": "Polygon", "coordinates": [_ring(0, 0, 500, 400),
                                                         _ring(100, 100, 200, 150)]},
         "properties": {"objectType": "annotation", "name": "Tumour core",
                        "color": [255, 0, 0],
                        "classification": {"name": "Tumor", "color": [200, 0, 0, 128]},
                        "isLocked": True,
                        "measurements": {"Area µm^2": 49250.0},
                        "metadata": {"reviewed": "yes", "round": "2"}}},
        # one necrosis annotation of two separate pieces
        {"type": "Feature", "id": "0d4b1f3e-6c55-4f0c-9a3a-555555555555",
         "geometry": {"type": "MultiPolygon", "coordinates": [[_ring(600, 0, 700, 50)],
                                                              [[[800, 0], [900, 0], [850, 60],
                                                                [800, 0]]]]},
         "properties": {"objectType": "annotation",
                        "classification": {"name": "Necrosis", "color": [50, 50, 50]}}},
        # an ellipse (QuPath marks it in the geometry), plain annotation otherwise
        {"type": "Feature", "id": "0d4b1f3e-6c55-4f0c-9a3a-666666666666",
         "geometry": {"type": "Polygon", "isEllipse": True,
                      "coordinates": [[[1500, 1500], [1600, 1550], [1500, 1600], [1400, 1550],
                                       [1500, 1500]]]},
         "properties": {"objectType": "annotation",
                        "classification": {"name": "Artefact", "color": [0, 160, 220]}}},
        # no objectType (QuPath reads an annotation), no id (a stable one is given)
        {"type": "Feature",
         "geometry": {"type": "Polygon", "coordinates": [_ring(2000, 0, 2100, 100)]},
         "properties": {"classification": {"name": "Region*", "color": [0, 0, 180]}}},
        # a plain tumour annotation exactly as our own writer would write it
        {"type": "Feature", "id": "0d4b1f3e-6c55-4f0c-9a3a-777777777777",
         "geometry": {"type": "Polygon", "coordinates": [_ring(4000, 0, 4100, 100)]},
         "properties": {"objectType": "annotation",
                        "classification": {"name": "Tumor", "color": [200, 0, 0]}}},
        # an unclassified detection point without id, and a plain classified one
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 6]},
         "properties": {"objectType": "detection"}},
        {"type": "Feature", "id": "0d4b1f3e-6c55-4f0c-9a3a-888888888888",
         "geometry": {"type": "Point", "coordinates": [7.5, 8.5]},
         "properties": {"objectType": "detection",
                        "classification": {"name": "Tumor", "color": [200, 0, 0]}}},
        # a ruler (line annotation): not scored, kept as read
        {"type": "Feature", "id": "0d4b1f3e-6c55-4f0c-9a3a-999999999999",
         "geometry": {"type": "LineString", "coordinates": [[0, 0], [300, 400]]},
         "properties": {"objectType": "annotation", "name": "ruler"}},
    ]
    return {"type": "FeatureCollection", "features": features}


def _write_by_hand(path, obj) -> None:
    # QuPath writes a duplicate "metadata" key (QuPathTypeAdapters writes it twice); JSON
    # readers keep the last, which is the same map
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False), encoding="utf-8")


def _features_by_id(doc: dict, ids_of_unnamed: dict) -> dict:
    out = {}
    for index, feature in enumerate(doc["features"]):
        key = feature.get("id", ids_of_unnamed.get(index))
        assert key not in out
        out[key] = feature
    return out


def test_every_field_survives_read_write_read(tmp_path):
    original = qupath_file()
    source = tmp_path / "qupath.geojson"
    _write_by_hand(source, original)
    with pytest.warns(UserWarning, match=r"kept 1 LineString feature\(s\) as read"):
        first = read_annotations(source)

    # what is scored: each point of the MultiPoint is a cell; a cell detection is scored at
    # its nucleus centroid (else its own centroid); names exactly as written
    cells = first.cells
    assert cells.classes.tolist() == ["Immune cells"] * 3 + ["Tumor: Positive", "Stroma",
                                                             "unclassified", "Tumor"]
    assert cells.cols.tolist()[:3] == [100.5, 110, 120] and cells.rows.tolist()[:3] == [200.25, 210, 220]
    assert (cells.cols[3], cells.rows[3]) == (1008.0, 2007.0)  # nucleus square centroid
    assert (cells.cols[4], cells.rows[4]) == (3005.0, 3015.0)  # cell centroid
    mp = "0d4b1f3e-6c55-4f0c-9a3a-111111111111"
    assert cells.ids.tolist()[:3] == [f"{mp}:0", f"{mp}:1", f"{mp}:2"]
    assert [r.cls for r in first.regions] == ["Tumor", "Necrosis", "Necrosis", "Artefact",
                                              "Region*", "Tumor"]
    assert first.regions[0].name == "Tumour core" and len(first.regions[0].holes) == 1
    assert first.objects[mp].properties["isLocked"] is True
    nopid = first.regions[4].id
    assert uuid.UUID(nopid).version == 8  # stable id for the feature without one

    # write it back, then compare every field of every feature with the hand-written file
    out = write_annotations(tmp_path / "back.geojson", first)
    written = json.loads(out.read_text(encoding="utf-8"))
    unnamed = {6: nopid, 8: str(cells.ids[5])}
    want = _features_by_id(original, unnamed)
    got = _features_by_id(written, {})
    assert set(got) == set(want)
    for key, feature in want.items():
        expected = copy.deepcopy(feature)
        if "id" not in expected and key in unnamed.values():
            expected = {"type": "Feature", "id": key,
                        **{k: v for k, v in expected.items() if k != "type"}}
        assert got[key] == expected, key
    assert validate_qupath_geojson(written) == []  # QuPath reads what we wrote

    # ... and read again: the same cells, regions, ids, classes, colours and records
    second = read_annotations(out, warn=False)
    for name in ("rows", "cols", "classes", "ids"):
        assert getattr(second.cells, name).tolist() == getattr(first.cells, name).tolist()
    assert [(r.cls, r.name, r.id) for r in second.regions] == [
        (r.cls, r.name, r.id) for r in first.regions]
    for a, b in zip(first.regions, second.regions):
        np.testing.assert_array_equal(a.exterior, b.exterior)
    assert second.colors == first.colors
    assert second.objects.keys() == first.objects.keys()
    for key, record in first.objects.items():
        other = second.objects[key]
        assert (other.members, other.geometry, other.properties, other.extra, other.anchors) == (
            record.members, record.geometry, record.properties, record.extra, record.anchors)
    assert [k["feature"] for k in second.kept] == [k["feature"] for k in first.kept]
    # records are plain JSON data (they can ride in a napari layer's metadata)
    assert objects_from_json(json.loads(json.dumps(objects_to_json(first.objects)))) == first.objects


def test_edits_made_in_the_plugin_show_in_the_written_objects(tmp_path):
    source = tmp_path / "qupath.geojson"
    _write_by_hand(source, qupath_file())
    annotations = read_annotations(source, warn=False)
    cells = annotations.cells
    cell_id = "0d4b1f3e-6c55-4f0c-9a3a-222222222222"
    k = cells.ids.tolist().index(cell_id)
    cells.rows[k] += 10.0  # the user moved the cell: its outlines move with it
    cells.cols[k] -= 4.0
    mp = "0d4b1f3e-6c55-4f0c-9a3a-111111111111"
    cells.classes[cells.ids.tolist().index(f"{mp}:2")] = "Lymphocyte"  # one point reclassified
    annotations.regions = [r for r in annotations.regions
                           if r.id != "0d4b1f3e-6c55-4f0c-9a3a-555555555555:1"]  # a piece deleted
    annotations.colors["Artefact"] = (1, 2, 3)  # the class colour changed
    out = write_annotations(tmp_path / "edited.geojson", annotations)
    doc = json.loads(out.read_text())
    by_id = {f.get("id"): f for f in doc["features"]}
    moved = by_id[cell_id]
    assert moved["geometry"]["coordinates"][0][0] == [996, 2010]
    assert moved["nucleusGeometry"]["coordinates"][0][0] == [1000, 2014]
    assert moved["properties"]["measurements"]["Cell: Area µm^2"] == 80.25
    multipoint = by_id[mp]
    assert multipoint["geometry"]["coordinates"] == [[100.5, 200.25], [110, 210]]
    assert multipoint["properties"]["metadata"] == {"author": "pathologist A"}
    split = [f for f in doc["features"] if f["geometry"]["type"] == "MultiPoint" and f is not multipoint]
    assert len(split) == 1 and split[0]["geometry"]["coordinates"] == [[120, 220]]
    assert split[0]["properties"]["classification"]["name"] == "Lymphocyte"
    necrosis = by_id["0d4b1f3e-6c55-4f0c-9a3a-555555555555"]
    assert necrosis["geometry"] == {"type": "MultiPolygon",
                                    "coordinates": [[_ring(600, 0, 700, 50)]]}
    ellipse = by_id["0d4b1f3e-6c55-4f0c-9a3a-666666666666"]
    assert ellipse["geometry"]["isEllipse"] is True
    assert ellipse["properties"]["classification"] == {"name": "Artefact", "color": [1, 2, 3]}
    assert validate_qupath_geojson(doc) == []
    back = read_annotations(out, warn=False)
    assert back.cells.rows[back.cells.ids.tolist().index(cell_id)] == 2017.0
