"""validate_qupath_geojson accepts what QuPath writes or reads and rejects what it rejects.

Each case is a rule of QuPath's reader (qupath/qupath v0.7.0-228, qupath-core/src/main/java/
qupath/lib/io/QuPathTypeAdapters.java, GsonTools.java, ROITypeAdapters.java): accepted forms
are read by QuPath, rejected ones make its import fail (an exception from Gson or JTS).
"""

import copy

import pytest

from napari_xhisto.annotations import validate_qupath_geojson
from napari_xhisto.annotations.geojson import geojson_to_annotations

BASE = {"type": "Feature", "id": "a",
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 0]]]},
        "properties": {"objectType": "annotation",
                       "classification": {"name": "Tumor", "color": [200, 0, 0]}}}


def feature(**changes) -> dict:
    out = copy.deepcopy(BASE)
    for key, value in changes.items():
        if key == "properties":
            out["properties"].update(value)
        else:
            out[key] = value
    return out


def collection(*features) -> dict:
    return {"type": "FeatureCollection", "features": list(features)}


ACCEPTED = {
    "string classification": feature(properties={"classification": "Tumor"}),
    "derived class as a string": feature(properties={"classification": "Tumor: Positive"}),
    "derived class as names": feature(properties={
        "classification": {"names": ["Tumor", "Positive"], "color": [200, 0, 0]}}),
    "RGBA class colour": feature(properties={
        "classification": {"name": "Tumor", "color": [200, 0, 0, 128]}}),
    "colour of 1 packed value": feature(properties={
        "classification": {"name": "Tumor", "color": [-3670016]}}),
    "pre-0.4 class with colorRGB": feature(properties={
        "classification": {"name": "Tumor", "colorRGB": -3670016}}),
    "empty classification (QuPath's null class)": feature(properties={"classification": {}}),
    "null classification": feature(properties={"classification": None}),
    "missing objectType": {"type": "Feature", "geometry": BASE["geometry"],
                           "properties": {"classification": {"name": "Tumor",
                                                             "color": [200, 0, 0]}}},
    "no properties at all": {"type": "Feature", "geometry": BASE["geometry"]},
    "objectType under its old name": feature(properties={"object_type": "annotation"}),
    "unknown objectType (read as an annotation)": feature(properties={"objectType": "blob"}),
    "measurements with NaN written as a string": feature(properties={
        "measurements": {"Area": 12.5, "Mean": "NaN", "Max": "Infinity", "Empty": None}}),
    "pre-0.4 measurement list": feature(properties={
        "measurements": [{"name": "Area", "value": 12.5}]}),
    "metadata, isLocked and per-object colour": feature(properties={
        "metadata": {"k": "v"}, "isLocked": True, "color": [255, 0, 0]}),
    "a number as name and id": feature(id=5, properties={"name": 12}),
    "cell with nucleus": feature(properties={"objectType": "cell"}, nucleusGeometry={
        "type": "Polygon", "coordinates": [[[1, 1], [5, 1], [5, 5], [1, 1]]]}),
    "MultiPoint annotation": feature(geometry={"type": "MultiPoint",
                                               "coordinates": [[1, 2], [3, 4]]}),
    "ellipse flag and 3-D positions": feature(geometry={
        "type": "Polygon", "isEllipse": True,
        "coordinates": [[[0, 0, 0], [10, 0, 0], [10, 10, 0], [0, 0, 0]]]}),
    "self-crossing polygon (JTS builds it)": feature(geometry={
        "type": "Polygon", "coordinates": [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]}),
    "line annotation": feature(geometry={"type": "LineString", "coordinates": [[0, 0], [5, 5]]}),
    "geometry collection": feature(geometry={"type": "GeometryCollection", "geometries": [
        {"type": "Point", "coordinates": [1, 1]}]}),
    "child objects": feature(properties={"childObjects": [copy.deepcopy(BASE) | {"id": "b"}]}),
}

REJECTED = {
    "object classification without colour": (
        feature(properties={"classification": {"name": "Tumor"}}), "classification.color is required"),
    "classification as a list": (
        feature(properties={"classification": ["Tumor"]}), "classification must be a name"),
    "blank class name": (feature(properties={"classification": "Tumor: "}), "empty or multi-line"),
    "colour of 2 values": (feature(properties={
        "classification": {"name": "Tumor", "color": [1, 2]}}), "classification.color must be"),
    "fractional colour": (feature(properties={
        "classification": {"name": "Tumor", "color": [1.5, 2, 3]}}), "classification.color must be"),
    "null geometry": (feature(geometry=None), "geometry must be a GeoJSON geometry"),
    "unclosed ring": (feature(geometry={"type": "Polygon", "coordinates": [
        [[0, 0], [10, 0], [10, 10], [0, 10]]]}), "is not closed"),
    "ring of 3 positions": (feature(geometry={"type": "Polygon", "coordinates": [
        [[0, 0], [10, 0], [0, 0]]]}), "a closed ring needs >= 4"),
    "non-numeric measurement": (feature(properties={"measurements": {"Area": "big"}}),
                                "measurements must be"),
    "object as id": (feature(id={"x": 1}), "id must be a string"),
    "object as name": (feature(properties={"name": {"x": 1}}), "name must be a string"),
    "properties not an object": ({**copy.deepcopy(BASE), "properties": [1]},
                                 "properties must be an object"),
    "broken nucleus": (feature(nucleusGeometry={"type": "Polygon", "coordinates": [[["a"]]]}),
                       "nucleusGeometry: Polygon coordinates are malformed"),
    "broken child": (feature(properties={"childObjects": [{"type": "Feature", "geometry": None}]}),
                     "child 0: geometry must be"),
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_forms_qupath_reads_pass(name):
    assert validate_qupath_geojson(collection(ACCEPTED[name])) == []


def test_top_level_forms_qupath_reads_pass():
    assert validate_qupath_geojson([BASE, feature(id="b")]) == []  # a bare array
    assert validate_qupath_geojson(BASE) == []  # a single Feature
    assert validate_qupath_geojson(BASE["geometry"]) == []  # a bare geometry
    assert validate_qupath_geojson({"type": "Topology"})  # nothing QuPath can read


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_forms_qupath_rejects_fail(name):
    obj, expected = REJECTED[name]
    problems = validate_qupath_geojson(collection(obj))
    assert any(expected in p for p in problems), problems


def test_repeated_ids_and_deep_nesting_are_reported_without_recursion_errors():
    problems = validate_qupath_geojson(collection(BASE, copy.deepcopy(BASE)))
    assert problems == ["feature 1: id 'a' repeats feature 0"]
    child = {"type": "Feature", "geometry": BASE["geometry"], "properties": {}}
    for _ in range(200):
        child = {"type": "Feature", "geometry": BASE["geometry"],
                 "properties": {"childObjects": [child]}}
    assert any("nested too deeply" in p for p in validate_qupath_geojson(collection(child)))


def test_the_reader_reads_every_accepted_form():
    """What the checker accepts, our reader reads too (no error): the two agree."""
    for name, obj in ACCEPTED.items():
        got = geojson_to_annotations(collection(obj))
        used = len(got.cells) + len(got.regions) + len(got.kept)
        assert used >= 1, name
