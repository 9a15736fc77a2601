"""QuPath GeoJSON and CSV: round trips, the structural checker, crafted QuPath files, errors."""

import copy
import json

import numpy as np
import pytest

from napari_xhisto.annotations import (
    AnnotationSet,
    CellPoints,
    RegionShape,
    canonical_class,
    merge_annotations,
    read_annotations,
    validate_qupath_geojson,
    write_annotations,
)
from napari_xhisto.annotations.geojson import annotations_to_geojson, geojson_to_annotations
from napari_xhisto.errors import AnnotationError


def make_set(n=500, seed=0, ids=True) -> AnnotationSet:
    rng = np.random.default_rng(seed)
    cells = CellPoints(
        rng.uniform(0, 20000, n),
        rng.uniform(0, 30000, n),
        rng.choice(["tumour", "lymphocyte", "stroma", "other", "mitosis, atypical"], n),
        np.array([f"cell-{i}" for i in range(n)]) if ids else None,
    )
    square = np.array([[100.0, 100.0], [100.0, 900.0], [900.0, 900.0], [900.0, 100.0]])
    hole = np.array([[400.0, 400.0], [400.0, 600.0], [600.0, 600.0], [600.0, 400.0]])
    star = np.array([[2000 + 300 * np.sin(t), 5000 + 300 * np.cos(t)]
                     for t in np.linspace(0, 2 * np.pi, 17)[:-1]]) + rng.uniform(0, 1e-3, (16, 2))
    regions = [
        RegionShape("necrosis", square, [hole], name="core", id="r-1"),
        RegionShape("artefact", star, [], name="fold", id="r-2"),
        RegionShape("tumour area", square + 5000.123456789, [], None, None),
    ]
    colors = {"tumour": (200, 0, 0), "lymphocyte": (10, 20, 30), "necrosis": (1, 2, 3),
              "mitosis, atypical": (7, 8, 9)}
    return AnnotationSet(cells, regions, colors)


def is_stable_id(value) -> bool:
    """Ids given on reading to objects without one: UUIDs of version 8 (derived, not random)."""
    import uuid

    return isinstance(value, str) and uuid.UUID(value).version == 8


def assert_same(a: AnnotationSet, b: AnnotationSet, *, atol=1e-6):
    np.testing.assert_allclose(b.cells.rows, a.cells.rows, atol=atol, rtol=0)
    np.testing.assert_allclose(b.cells.cols, a.cells.cols, atol=atol, rtol=0)
    assert b.cells.classes.tolist() == a.cells.classes.tolist()
    if a.cells.ids is None:  # the file had none: every read gives the same stable ids
        assert all(is_stable_id(i) for i in b.cells.ids.tolist())
    else:
        assert b.cells.ids.tolist() == a.cells.ids.tolist()
    assert len(b.regions) == len(a.regions)
    for ra, rb in zip(a.regions, b.regions):
        assert (rb.cls, rb.name) == (ra.cls, ra.name)
        assert rb.id == ra.id or (ra.id is None and is_stable_id(rb.id))
        np.testing.assert_allclose(rb.exterior, ra.exterior, atol=atol, rtol=0)
        assert len(rb.holes) == len(ra.holes)
        for ha, hb in zip(ra.holes, rb.holes):
            np.testing.assert_allclose(hb, ha, atol=atol, rtol=0)
    for name, rgb in a.colors.items():
        assert b.colors[name] == tuple(rgb)


@pytest.mark.parametrize("ids", [True, False])
def test_geojson_round_trip_is_exact(tmp_path, ids):
    original = make_set(ids=ids)
    path = write_annotations(tmp_path / "a.geojson", original)
    back = read_annotations(path)
    assert_same(original, back, atol=1e-6)
    # floats are written with repr, so the round trip is bit-exact
    assert np.array_equal(back.cells.rows, original.cells.rows)
    # a class without a colour of its own gets a colour, stable across reads; so are ids
    again = read_annotations(path)
    assert again.colors["stroma"] == back.colors["stroma"]
    assert again.cells.ids.tolist() == back.cells.ids.tolist()
    assert [r.id for r in again.regions] == [r.id for r in back.regions]


def test_our_output_passes_every_rule_and_matches_the_dict_form(tmp_path):
    original = make_set()
    path = write_annotations(tmp_path / "a.geojson", original)
    obj = json.loads(path.read_text())
    assert validate_qupath_geojson(obj, image_shape=(20000, 30000)) == []
    assert obj["features"] == annotations_to_geojson(original)["features"]
    first = obj["features"][0]
    assert first["properties"]["objectType"] == "detection"
    assert first["geometry"]["coordinates"] == [original.cells.cols[0], original.cells.rows[0]]
    region = obj["features"][len(original.cells)]
    ring = region["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 5
    assert region["properties"]["classification"] == {"name": "necrosis", "color": [1, 2, 3]}


def test_origin_shifts_coordinates_both_ways(tmp_path):
    original = make_set(n=20)
    path = write_annotations(tmp_path / "a.geojson", original, origin=(10.0, 20.0))
    obj = json.loads(path.read_text())
    assert obj["features"][0]["geometry"]["coordinates"] == [
        original.cells.cols[0] - 20.0, original.cells.rows[0] - 10.0]
    assert_same(original, read_annotations(path, origin=(10.0, 20.0)))


def test_csv_round_trip_and_regions_refused(tmp_path):
    original = make_set(n=300)
    with pytest.raises(AnnotationError, match="regions would be lost"):
        write_annotations(tmp_path / "a.csv", original)
    cells_only = AnnotationSet(original.cells, [], {})
    path = write_annotations(tmp_path / "a.csv", cells_only)
    assert path.read_text().splitlines()[0] == "x,y,class,id"
    back = read_annotations(path)
    assert np.array_equal(back.cells.cols, original.cells.cols)
    assert back.cells.classes.tolist() == original.cells.classes.tolist()  # incl. a comma
    assert back.cells.ids.tolist() == original.cells.ids.tolist()


def test_csv_from_other_tools(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("Class,X,Y\nTumor,1.5,2.5\nImmune cells,3,4\n\nMitosis,5,6\n")
    back = read_annotations(path)
    assert back.cells.cols.tolist() == [1.5, 3.0, 5.0]
    assert back.cells.rows.tolist() == [2.5, 4.0, 6.0]
    assert back.cells.classes.tolist() == ["Tumor", "Immune cells", "Mitosis"]  # as written
    path.write_text("x,y,class\n1,2,tumour\n1,oops,tumour\n")
    with pytest.raises(AnnotationError, match=r"line 3: 'y' must be a number, got 'oops'"):
        read_annotations(path)
    path.write_text("a,b\n1,2\n")
    with pytest.raises(AnnotationError, match="needs 'x' and 'y'"):
        read_annotations(path)


QUPATH_STYLE = {
    "type": "FeatureCollection",
    "features": [
        {"type": "Feature", "id": "a1", "geometry": {"type": "Point", "coordinates": [10, 20]},
         "properties": {"objectType": "detection",
                        "classification": {"name": "Tumor", "color": [200, 0, 0]}}},
        # classification as a plain string, no objectType at all
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [11.5, 21.5]},
         "properties": {"classification": "Immune cells"}},
        # QuPath Points tool: an annotation with a MultiPoint, older packed colour
        {"type": "Feature", "id": "mp", "geometry": {"type": "MultiPoint",
                                                     "coordinates": [[1, 2], [3, 4], [5, 6]]},
         "properties": {"objectType": "annotation",
                        "classification": {"name": "Lymphocyte", "colorRGB": -16744320}}},
        # polygon with a hole, objectType missing -> region
        {"type": "Feature", "id": "p1", "geometry": {"type": "Polygon", "coordinates": [
            [[0, 0], [100, 0], [100, 50], [0, 50], [0, 0]],
            [[10, 10], [20, 10], [20, 20], [10, 20], [10, 10]]]},
         "properties": {"classification": {"name": "Necrosis", "color": [0, 0, 0]},
                        "name": "big", "metadata": {"k": "v"}}},
        {"type": "Feature", "id": "mpoly", "geometry": {"type": "MultiPolygon", "coordinates": [
            [[[0, 0], [5, 0], [5, 5], [0, 0]]],
            [[[10, 10], [15, 10], [15, 15], [10, 10]]]]},
         "properties": {"objectType": "annotation",
                        "classification": {"name": "Tumor", "color": [255, 0, 0]}}},
        # unknown class, and a QuPath cell detection outlined as a polygon
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
            [[0, 0], [4, 0], [4, 2], [0, 2], [0, 0]]]},
         "properties": {"objectType": "cell",
                        "classification": {"name": "Plasma cell", "color": [1, 2, 3]}}},
        # derived class written as a list of names
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [9, 9]},
         "properties": {"objectType": "detection",
                        "classification": {"names": ["Tumor", "Positive"], "color": [9, 9, 9]}}},
        # unclassified point
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [7, 8]},
         "properties": {"objectType": "detection"}},
    ],
}


def test_qupath_style_file_imports_every_variant(tmp_path):
    path = tmp_path / "q.geojson"
    text = json.dumps(QUPATH_STYLE)
    # duplicate "metadata" keys, as some QuPath versions write them
    text = text.replace('"metadata": {"k": "v"}', '"metadata": {"k": "v"}, "metadata": {"k": "w"}')
    assert text.count('"metadata"') == 2
    path.write_text(text)
    got = read_annotations(path)
    cells = got.cells
    assert cells.cols.tolist() == [10, 11.5, 1, 3, 5, 2, 9, 7]
    assert cells.rows.tolist() == [20, 21.5, 2, 4, 6, 1, 9, 8]
    # class names as the file writes them (roles come from a ClassMap, never by renaming)
    assert cells.classes.tolist() == ["Tumor", "Immune cells", "Lymphocyte", "Lymphocyte",
                                      "Lymphocyte", "Plasma cell", "Tumor: Positive", "unclassified"]
    ids = cells.ids.tolist()
    assert ids[0] == "a1" and ids[2:5] == ["mp:0", "mp:1", "mp:2"] and len(set(ids)) == len(ids)
    assert [(r.cls, r.id, r.name) for r in got.regions] == [
        ("Necrosis", "p1", "big"), ("Tumor", "mpoly:0", None), ("Tumor", "mpoly:1", None)]
    necrosis = got.regions[0]
    # x = col, y = row; closing vertex dropped
    np.testing.assert_array_equal(necrosis.exterior, [[0, 0], [0, 100], [50, 100], [50, 0]])
    np.testing.assert_array_equal(necrosis.holes[0], [[10, 10], [10, 20], [20, 20], [20, 10]])
    assert got.colors["Tumor"] == (200, 0, 0)  # the first colour given for the class
    assert got.colors["Lymphocyte"] == (0, 128, 128)  # -16744320 = 0xFF008080
    assert got.colors["Plasma cell"] == (1, 2, 3)
    # a bare array of features (QuPath "export as array") reads the same
    assert len(geojson_to_annotations(QUPATH_STYLE["features"]).cells) == 8


def test_class_name_suggestion():
    assert canonical_class("Tumor") == "tumour"
    assert canonical_class("Tumor", kind="region") == "tumour area"
    assert canonical_class("Immune cells") == canonical_class("Lymphocyte") == "lymphocyte"
    assert canonical_class("Stroma") == "stroma"
    assert canonical_class("Necrosis", kind="region") == "necrosis"
    assert canonical_class("Artefact", kind="region") == "artefact"
    assert canonical_class(" Ganglion ") == "Ganglion"
    # our own canonical names never change
    for name in ["tumour", "lymphocyte", "stroma", "other", "necrosis", "tumour area", "vessel"]:
        assert canonical_class(name) == name or canonical_class(name, kind="region") == name


def _broken(mutate):
    obj = copy.deepcopy(QUPATH_STYLE)
    mutate(obj)
    return obj


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda o: o["features"][2].update(geometry="Point"), r"feature 2: geometry must be"),
        (lambda o: o["features"][1]["geometry"].update(coordinates=["a", 1]),
         r"feature 1: a position must be \[x, y\] numbers"),
        (lambda o: o["features"][0]["geometry"].update(coordinates=[1]),
         r"feature 0: a position must be"),
        (lambda o: o["features"][3]["geometry"]["coordinates"].__setitem__(0, {"x": 1}),
         r"feature 3: a polygon ring must be a list"),
        (lambda o: o["features"][0]["properties"]["classification"].pop("name"),
         r"feature 0: classification needs a non-empty 'name'"),
        (lambda o: o["features"][0]["properties"]["classification"].update(color=[1, 2, "x"]),
         r"feature 0: classification color values must be integers"),
        (lambda o: o["features"][0]["properties"]["classification"].update(color=[1, 2]),
         r"feature 0: classification color must be \[r, g, b\]"),
        (lambda o: o["features"][0]["properties"].update(classification="Tumor:"),
         r"feature 0: class names must be non-empty"),
        (lambda o: o["features"][0].update(id={"a": 1}), r"feature 0: id must be a string"),
        (lambda o: o["features"].__setitem__(5, "nope"), r"feature 5: a feature must be an object"),
        (lambda o: o.update(type="Topology"), r"top level must be a FeatureCollection"),
    ],
)
def test_malformed_files_name_feature_and_problem(tmp_path, mutate, message):
    path = tmp_path / "bad.geojson"
    path.write_text(json.dumps(_broken(mutate)))
    with pytest.raises(AnnotationError, match=message):
        read_annotations(path)


def test_unsupported_geometry_is_kept_aside_and_bad_json_is_located(tmp_path):
    obj = _broken(lambda o: o["features"][4]["geometry"].update(
        type="LineString", coordinates=[[0, 0], [1, 1]]))
    got = geojson_to_annotations(obj)
    assert len(got.regions) == 1 and [k["feature"] for k in got.kept] == [obj["features"][4]]
    with pytest.raises(AnnotationError, match=r"feature 4: geometry type 'LineString' is not"):
        geojson_to_annotations(obj, skip_unsupported=False)
    path = tmp_path / "bad.geojson"
    path.write_text('{"type": "FeatureCollection",\n "features": [}')
    with pytest.raises(AnnotationError, match=r"bad.geojson: not valid JSON \(line 2"):
        read_annotations(path)
    with pytest.raises(AnnotationError, match="unknown annotation format"):
        read_annotations(tmp_path / "a.txt")


def _feature_problems(mutate):
    obj = annotations_to_geojson(make_set(n=3))
    mutate(obj)
    return validate_qupath_geojson(obj, layout=True)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda o: o.update(type="Topology"), "FeatureCollection"),
        (lambda o: o["features"][0].update(type="Thing"), "feature 0: must be an object"),
        (lambda o: o["features"][1].update(objectType=o["features"][1]["properties"].pop("objectType")),
         "feature 1: objectType must be inside properties"),
        (lambda o: o["features"][0]["properties"].update(objectType="blob"),
         "feature 0: properties.objectType must be one of"),
        (lambda o: o["features"][0]["properties"]["classification"].pop("color"),
         "feature 0: classification.color"),
        (lambda o: o["features"][0]["properties"].update(classification=5),
         "feature 0: classification must be a name or an object"),
        (lambda o: o["features"][0]["properties"].update(name={"a": 1}),
         "feature 0: name must be a string"),
        (lambda o: o["features"][0]["properties"].update(measurements={"area": "big"}),
         "feature 0: measurements"),
        (lambda o: o["features"][1].update(id=o["features"][0]["id"]), "feature 1: id 'cell-0' repeats"),
        (lambda o: o["features"][0]["geometry"].update(coordinates=[float("nan"), 1.0]),
         "feature 0: Point coordinates are malformed"),
        (lambda o: o["features"][0]["properties"].update(objectType="annotation"),
         "feature 0: cells must be detection Points"),
        (lambda o: o["features"][3]["properties"].update(objectType="tile"),
         "feature 3: regions must be annotation Polygons"),
        (lambda o: o["features"][3]["geometry"]["coordinates"][0].pop(),
         "feature 3: exterior ring is not closed"),
        (lambda o: o["features"][3]["geometry"]["coordinates"][0].__setitem__(
            slice(None), [[0, 0], [1, 1], [0, 0]]), "feature 3: exterior ring has 3 positions"),
        (lambda o: o["features"][3]["geometry"]["coordinates"][0].__setitem__(
            slice(None), [[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]),
         "feature 3: exterior ring crosses itself"),
        (lambda o: o["features"][3]["geometry"]["coordinates"][0].__setitem__(
            slice(None), [[0, 0], [1, 1], [2, 2], [0, 0]]), "feature 3: exterior ring has zero area"),
        (lambda o: o["features"][3]["geometry"]["coordinates"][1].__setitem__(
            slice(None), [[2000, 2000], [2000, 2100], [2100, 2100], [2000, 2000]]),
         "feature 3: hole 1 is not inside the exterior"),
    ],
)
def test_checker_catches_each_broken_rule(mutate, expected):
    problems = _feature_problems(mutate)
    assert any(expected in p for p in problems), problems


def test_checker_image_bounds():
    obj = annotations_to_geojson(make_set(n=3))
    assert validate_qupath_geojson(obj, image_shape=(20000, 30000)) == []
    problems = validate_qupath_geojson(obj, image_shape=(100, 100))
    assert any("outside the level-0 image" in p for p in problems)


def test_foreign_file_is_backed_up_ours_is_replaced(tmp_path):
    path = tmp_path / "a.geojson"
    path.write_text(json.dumps(QUPATH_STYLE))
    write_annotations(path, make_set(n=5))
    assert json.loads((tmp_path / "a.geojson.bak").read_text()) == QUPATH_STYLE
    write_annotations(path, make_set(n=6))  # our own file: replaced, no new backup
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.geojson", "a.geojson.bak"]
    assert len(read_annotations(path).cells) == 6
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("x,y,class\n1,2,theirs\n")
    write_annotations(csv_path, AnnotationSet(make_set(n=2).cells, [], {}))
    write_annotations(csv_path, AnnotationSet(make_set(n=3).cells, [], {}))
    assert (tmp_path / "c.csv.bak").read_text() == "x,y,class\n1,2,theirs\n"
    assert (tmp_path / "c.csv.2.bak").exists()  # CSV carries no mark: every overwrite keeps one
    write_annotations(csv_path, AnnotationSet(make_set(n=3).cells, [], {}))
    assert not (tmp_path / "c.csv.3.bak").exists()  # unless the content is the same


def test_merge_keeps_everything_and_ids_unique():
    a, b = make_set(n=10, seed=1), make_set(n=7, seed=2)
    merged = merge_annotations(a, b)
    assert len(merged.cells) == 17 and len(merged.regions) == 6
    assert len(set(merged.cells.ids.tolist())) == 17
    assert merged.cells.ids[:10].tolist() == a.cells.ids.tolist()
    np.testing.assert_array_equal(merged.cells.rows[10:], b.cells.rows)


def test_new_ids_are_random_uuid4_strings_and_concat_renews_repeats():
    import uuid

    from napari_xhisto.annotations import concat_annotations
    from napari_xhisto.annotations.model import new_ids, unusable_ids

    ids = new_ids(2000)
    assert len(set(ids.tolist())) == 2000
    assert all(str(uuid.UUID(i)) == i and uuid.UUID(i).version == 4 for i in ids)
    assert unusable_ids(np.array(["a", "", None, "a", float("nan"), "b"], dtype=object)).tolist() == [
        False, True, True, True, True, False]
    a, b = make_set(n=5, seed=1), make_set(n=4, seed=2)
    b.cells.ids[0] = a.cells.ids[0]
    joined = concat_annotations([a, AnnotationSet(CellPoints([1.0], [2.0], ["x"]), [], {}), b])
    assert len(joined.cells) == 10 and len(set(joined.cells.ids.tolist())) == 10
    assert joined.cells.ids[:5].tolist() == a.cells.ids.tolist()  # the first keeps its ids
    assert joined.cells.ids[6] != a.cells.ids[0] and len(joined.regions) == 6


def test_later_points_with_bad_classification_still_fail():
    good = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]},
            "properties": {"objectType": "detection",
                           "classification": {"name": "tumour", "color": [1, 2, 3]}}}
    bad_color = copy.deepcopy(good)
    bad_color["properties"]["classification"]["color"] = [[1], 2, 3]
    bad_coords = copy.deepcopy(good)
    bad_coords["geometry"]["coordinates"] = [1, "2"]
    for bad, message in [(bad_color, "feature 1: classification color"),
                         (bad_coords, r"feature 1: a position must be")]:
        with pytest.raises(AnnotationError, match=message):
            geojson_to_annotations({"type": "FeatureCollection", "features": [good, bad, good]})


def test_doctests_of_the_model():
    import doctest

    import napari_xhisto.annotations.model as model

    result = doctest.testmod(model)
    assert result.attempted >= 3 and result.failed == 0
