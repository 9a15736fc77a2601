"""A QuPath export through the Annotate widget: import -> edit -> export keeps every field, and
the class names get a visible, editable mapping to the plugin's roles that Evaluate uses."""

import copy
import json

import numpy as np
import pytest
from test_annotations_qupath_roundtrip import _features_by_id, _write_by_hand, qupath_file

from napari_xhisto.annotations import ClassMap, read_annotations, validate_qupath_geojson

pytestmark = pytest.mark.viewer

MPP = 0.2527  # not a power of two: µm round trips would show in the last digit


@pytest.fixture
def viewer_with_slide(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((5000, 5000), dtype=np.uint8), scale=(MPP, MPP), name="slide",
                     translate=(3.7, 1.9), units=("µm", "µm"),
                     metadata={"xhisto": {"slide_path": str(tmp_path / "slide.svs"), "mpp": MPP}})
    return viewer


def _widget(viewer, **kwargs):
    from napari_xhisto._widgets.annotate import AnnotateWidget

    kwargs.setdefault("autosave", False)
    return AnnotateWidget(viewer, region_classes=(), **kwargs)


def test_import_export_through_the_widget_keeps_every_qupath_field(viewer_with_slide, tmp_path):
    original = qupath_file()
    source = tmp_path / "qupath.geojson"
    _write_by_hand(source, original)
    widget = _widget(viewer_with_slide)
    first = widget.import_file(source)
    # what the user is told: counts and what was kept aside
    assert "imported 7 cells, 6 regions" in widget.status.text()
    assert "kept 1 LineString feature(s) as read" in widget.status.text()
    assert widget.counts()["Immune cells"] == 3

    out = widget.export_file(tmp_path / "back.geojson")
    written = json.loads(out.read_text(encoding="utf-8"))
    nopid = first.regions[4].id
    unnamed = {6: nopid, 8: str(first.cells.ids[5])}
    want, got = _features_by_id(original, unnamed), _features_by_id(written, {})
    assert set(got) == set(want)
    for key, feature in want.items():
        expected = copy.deepcopy(feature)
        if "id" not in expected:
            expected = {"type": "Feature", "id": key,
                        **{k: v for k, v in expected.items() if k != "type"}}
        assert got[key] == expected, key
    assert validate_qupath_geojson(written) == []

    # the layers carry the records as plain JSON (napari's own save keeps them too)
    info = widget.cell_layers["Immune cells"].metadata["xhisto"]
    mp = "0d4b1f3e-6c55-4f0c-9a3a-111111111111"
    assert info["objects"][mp]["properties"]["metadata"] == {"author": "pathologist A"}
    assert any(k["feature"]["geometry"]["type"] == "LineString" for k in info["kept"])


def test_edits_in_the_widget_show_and_the_rest_is_kept(viewer_with_slide, tmp_path):
    source = tmp_path / "qupath.geojson"
    _write_by_hand(source, qupath_file())
    widget = _widget(viewer_with_slide)
    widget.import_file(source)
    # move one point of the MultiPoint to another class, move the outlined cell by 10 px
    mp = "0d4b1f3e-6c55-4f0c-9a3a-111111111111"
    immune = widget.cell_layers["Immune cells"]
    k = list(immune.features["id"]).index(f"{mp}:2")
    immune.selected_data = {k}
    assert widget.set_class_of_selected("Lymphocyte") == 1
    cell_id = "0d4b1f3e-6c55-4f0c-9a3a-222222222222"
    layer = widget.cell_layers["Tumor: Positive"]
    data = layer.data.copy()
    data[0] += [10.0, -4.0]  # level-0 px (the layer is in the slide's frame)
    layer.data = data
    doc = json.loads(widget.export_file(tmp_path / "edited.geojson").read_text())
    by_id = {f.get("id"): f for f in doc["features"]}
    assert by_id[cell_id]["geometry"]["coordinates"][0][0] == pytest.approx([996, 2010])
    assert by_id[cell_id]["nucleusGeometry"]["coordinates"][0][0] == pytest.approx([1000, 2014])
    assert by_id[cell_id]["properties"]["measurements"]["Cell: Area µm^2"] == 80.25
    assert by_id[mp]["geometry"]["coordinates"] == [[100.5, 200.25], [110, 210]]
    assert by_id[mp]["properties"]["isLocked"] is True
    split = [f for f in doc["features"]
             if f["geometry"]["type"] == "MultiPoint" and f.get("id") != mp]
    assert [f["properties"]["classification"]["name"] for f in split] == ["Lymphocyte"]
    assert validate_qupath_geojson(doc) == []


def test_autosave_keeps_records_and_the_class_map(make_napari_viewer, viewer_with_slide,
                                                  tmp_path):
    source = tmp_path / "qupath.geojson"
    _write_by_hand(source, qupath_file())
    widget = _widget(viewer_with_slide)
    widget.set_autosave(True)
    widget.import_file(source)
    widget.set_class_map("Stroma", "cell", "ignore")
    saved = widget.save_now()
    beside = tmp_path / "slide.svs.classmap.json"
    assert saved == tmp_path / "slide.svs.annotations.geojson" and beside.is_file()
    assert ClassMap.load(beside).cells["Stroma"] == "ignore"
    back = read_annotations(saved, warn=False)
    assert back.objects["0d4b1f3e-6c55-4f0c-9a3a-444444444444"].properties["metadata"] == {
        "reviewed": "yes", "round": "2"}
    assert len(back.kept) == 1

    # a new viewer on the same slide restores annotations, records and the map
    viewer2 = make_napari_viewer()
    viewer2.add_image(np.zeros((5000, 5000), dtype=np.uint8), scale=(MPP, MPP),
                      translate=(3.7, 1.9), units=("µm", "µm"),
                      metadata={"xhisto": {"slide_path": str(tmp_path / "slide.svs"), "mpp": MPP}})
    again = _widget(viewer2, autosave=True)
    assert again.class_map.cells["Stroma"] == "ignore"
    assert again.mapping_box("Stroma", "cell").currentText() == "ignore"
    out = json.loads(again.export_file(tmp_path / "again.geojson").read_text())
    locked = {f["id"]: f for f in out["features"] if f.get("id")}
    assert locked["0d4b1f3e-6c55-4f0c-9a3a-444444444444"]["properties"]["isLocked"] is True


def test_class_mapping_is_shown_editable_and_reaches_the_layers(viewer_with_slide, tmp_path):
    source = tmp_path / "qupath.geojson"
    _write_by_hand(source, qupath_file())
    widget = _widget(viewer_with_slide)
    assert not widget.map_table.isVisibleTo(widget)  # no class in use yet
    widget.import_file(source)
    assert widget.map_table.isVisibleTo(widget)
    rows = [widget.map_table.item(i, 0).text() for i in range(widget.map_table.rowCount())]
    assert "Tumor (cell)" in rows and "Tumor (region)" in rows and "Artefact (region)" in rows
    box = widget.mapping_box("Tumor", "region")
    assert box.currentText() == "tumour area"
    assert [box.itemText(i) for i in range(box.count())] == [
        "(own name)", "tumour area", "stroma", "necrosis", "artefact", "vessel", "ignore"]
    cells_box = widget.mapping_box("Immune cells", "cell")
    assert cells_box.currentText() == "lymphocyte"
    assert [cells_box.itemText(i) for i in range(cells_box.count())] == [
        "(own name)", "tumour", "lymphocyte", "stroma", "other", "ignore"]
    assert widget.mapping_box("Tumor: Positive", "cell").currentText() == "tumour"
    assert widget.mapping_box("Region*", "region").currentText() == "(own name)"
    # the user changes a role in the drop-down: the map and every layer's metadata follow
    cells_box.setCurrentText("ignore")
    assert widget.class_map.cells["Immune cells"] == "ignore"
    for layer in [*widget.cell_layers.values(), *widget.region_layers.values()]:
        assert layer.metadata["xhisto"]["class_map"]["cells"]["Immune cells"] == "ignore"
    assert widget.mapping_box("Immune cells", "cell") is cells_box  # the table was not rebuilt


def test_import_skips_objects_off_the_slide_and_says_so(viewer_with_slide, tmp_path):
    features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": xy},
                 "properties": {"objectType": "detection", "classification": "Tumor"}}
                for xy in ([10, 10], [20, 30], [90000, 10], [-5e4, 3])]
    path = tmp_path / "off.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    widget = _widget(viewer_with_slide)
    widget.import_file(path)
    assert widget.counts()["Tumor"] == 2
    assert "skipped 2 objects (2 off the slide)" in widget.status.text()


def test_napari_save_of_imported_layers_keeps_every_qupath_field(viewer_with_slide, tmp_path):
    """File ▸ Save Selected Layers (our npe2 writer) after an import writes what the widget's
    own export writes: measurements, MultiPoint grouping, outlines and kept lines included."""
    from napari_xhisto._writer import write_annotation_layers

    source = tmp_path / "qupath.geojson"
    _write_by_hand(source, qupath_file())
    widget = _widget(viewer_with_slide)
    widget.import_file(source)
    ours = json.loads(widget.export_file(tmp_path / "widget.geojson").read_text("utf-8"))
    layers = [ly for ly in viewer_with_slide.layers if ly.name != "slide"]
    (saved,) = write_annotation_layers(str(tmp_path / "napari.geojson"),
                                       [ly.as_layer_data_tuple() for ly in layers])
    napari_saved = json.loads(open(saved, encoding="utf-8").read())
    assert _features_by_id(napari_saved, {}) == _features_by_id(ours, {})
