"""Class names stay as the file writes them; an explicit, editable ClassMap gives the roles."""

import json

import numpy as np
import pytest

from napari_xhisto.annotations import (
    ClassMap,
    apply_class_map,
    load_class_map,
    read_annotations,
    suggest_class_map,
    write_annotations,
)
from napari_xhisto.annotations.classmap import cell_roles, suggest_role
from napari_xhisto.errors import AnnotationError


def _feature(geometry, cls, object_type="annotation"):
    props = {"objectType": object_type}
    if cls is not None:
        props["classification"] = {"name": cls, "color": [10, 20, 30]}
    return {"type": "Feature", "geometry": geometry, "properties": props}


def _square(x0, y0, side=10):
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x0 + side, y0], [x0 + side, y0 + side],
                                                [x0, y0 + side], [x0, y0]]]}


def _qupath_file(tmp_path):
    features = [
        _feature({"type": "Point", "coordinates": [1, 2]}, "Tumor", "detection"),
        _feature({"type": "Point", "coordinates": [3, 4]}, "Immune cells", "detection"),
        _feature({"type": "Point", "coordinates": [5, 6]}, "Tumor: Positive", "detection"),
        _feature({"type": "Point", "coordinates": [7, 8]}, "Mitosis", "detection"),
        _feature({"type": "Point", "coordinates": [9, 9]}, "Ignore*", "detection"),
        _feature(_square(0, 0), "Tumor"),
        _feature(_square(20, 0), "Necrosis"),
        _feature(_square(40, 0), "Artefact"),
        _feature(_square(60, 0), "Region*"),
    ]
    path = tmp_path / "q.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_names_are_kept_and_the_default_map_suggests_roles(tmp_path):
    annotations = read_annotations(_qupath_file(tmp_path))
    assert annotations.cells.classes.tolist() == [
        "Tumor", "Immune cells", "Tumor: Positive", "Mitosis", "Ignore*"]
    assert [r.cls for r in annotations.regions] == ["Tumor", "Necrosis", "Artefact", "Region*"]
    suggested = suggest_class_map(annotations)
    assert suggested.cells == {"Tumor": "tumour", "Immune cells": "lymphocyte",
                               "Tumor: Positive": "tumour", "Mitosis": None, "Ignore*": "ignore"}
    assert suggested.regions == {"Tumor": "tumour area", "Necrosis": "necrosis",
                                 "Artefact": "artefact", "Region*": None}
    scored = apply_class_map(annotations, suggested)
    # "ignore" leaves the class out; a class without a role keeps its own name
    assert scored.cells.classes.tolist() == ["tumour", "lymphocyte", "tumour", "Mitosis"]
    assert [r.cls for r in scored.regions] == ["tumour area", "necrosis", "artefact", "Region*"]
    assert scored.cells.cols.tolist() == annotations.cells.cols[:4].tolist()
    # the original is untouched, and writing it back keeps the file's names
    assert annotations.cells.classes[0] == "Tumor"
    out = write_annotations(tmp_path / "back.geojson", annotations)
    back = read_annotations(out)
    assert back.cells.classes.tolist() == annotations.cells.classes.tolist()
    assert [r.cls for r in back.regions] == [r.cls for r in annotations.regions]
    assert '"tumour' not in out.read_text()


def test_the_map_is_editable_and_survives_json(tmp_path):
    class_map = ClassMap()
    class_map.set_role("Mitosis", "tumour")
    class_map.set_role("Tumor", None)  # scored under its own name
    class_map.set_role("Region*", "stroma", kind="region")
    path = class_map.save(tmp_path / "map.json")
    again = ClassMap.load(path)
    assert again == class_map
    assert json.loads(path.read_text()) == {"version": 1, "cells": {"Mitosis": "tumour",
                                            "Tumor": None}, "regions": {"Region*": "stroma"}}
    # names the file does not list keep the suggestion
    assert again.cell_role("Immune cells") == "lymphocyte"
    assert again.cell_role("Tumor") is None and again.cell_role("Mitosis") == "tumour"
    classes = np.array(["Tumor", "Mitosis", "Immune cells", "Mitosis"] * 1000)
    roles = cell_roles(classes, again)
    assert roles[:4].tolist() == ["Tumor", "tumour", "lymphocyte", "tumour"]
    assert (roles.reshape(-1, 4) == roles[:4]).all()


def test_cli_style_loading_fills_every_class_in_use(tmp_path):
    annotations = read_annotations(_qupath_file(tmp_path))
    map_path = tmp_path / "map.json"
    map_path.write_text(json.dumps({"cells": {"Mitosis": "tumour"}}))
    class_map = load_class_map(map_path, annotations)
    assert class_map.cells["Mitosis"] == "tumour" and class_map.cells["Tumor"] == "tumour"
    assert class_map.regions["Artefact"] == "artefact"
    scored = apply_class_map(annotations, class_map)
    assert scored.cells.classes.tolist().count("tumour") == 3
    assert load_class_map(None, annotations) == suggest_class_map(annotations)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"cells": {"Tumor": "tumor"}}', r"'tumor' is not a cell role.*did you mean 'tumour'"),
        ('{"regions": {"Tumor": "tumour"}}', r"'tumour' is not a region role.*'tumour area'"),
        ('{"cels": {}}', r"unknown key 'cels'.*did you mean 'cells'"),
        ('{"cells": ["Tumor"]}', r"'cells' must map class names to roles"),
        ('["Tumor"]', r"expected an object"),
        ('{"cells": ', r"not valid JSON"),
        ("[" * 100_000, r"not valid JSON"),
    ],
)
def test_bad_class_maps_say_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "map.json"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=message):
        ClassMap.load(path)
    with pytest.raises(AnnotationError, match="class map not found"):
        ClassMap.load(tmp_path / "missing.json")


def test_suggestions_and_doctests():
    import doctest

    import napari_xhisto.annotations.classmap as module

    assert suggest_role("IMMUNE CELLS") == "lymphocyte"
    assert suggest_role("Artifact", kind="region") == "artefact"
    assert suggest_role("Necrosis") is None  # not a cell role
    assert suggest_role("Necrosis", kind="region") == "necrosis"
    result = doctest.testmod(module)
    assert result.attempted >= 3 and result.failed == 0
