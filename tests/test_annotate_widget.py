"""The Annotate widget in a real viewer: points per class, keys, counts, files, autosave."""

import numpy as np
import pytest

from napari_xhisto.annotations import (
    AnnotationSet,
    CellPoints,
    RegionShape,
    load_latest,
    read_annotations,
    write_annotations,
)

pytestmark = pytest.mark.viewer

MPP = 0.5


@pytest.fixture
def viewer_with_slide(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    slide_path = tmp_path / "slide.svs"
    viewer.add_image(np.zeros((64, 64), dtype=np.uint8), scale=(MPP, MPP), name="slide",
                     units=("µm", "µm"),
                     metadata={"xhisto": {"slide_path": str(slide_path), "mpp": MPP}})
    return viewer


def find_slide_layer(viewer):
    from napari_xhisto._widgets.annotate import find_slide_layer

    return find_slide_layer(viewer)


def make_widget(viewer, **kwargs):
    from napari_xhisto._widgets.annotate import AnnotateWidget

    kwargs.setdefault("autosave", False)
    kwargs.setdefault("region_classes", ())  # fewer layers: tests that need regions name them
    return AnnotateWidget(viewer, **kwargs)


def test_points_per_class_counts_and_click_added_points(viewer_with_slide):
    from napari_xhisto._widgets.annotate import REGION_LAYER_CLASSES

    widget = make_widget(viewer_with_slide, region_classes=REGION_LAYER_CLASSES)
    assert widget.annotations.cell_classes == ["tumour", "lymphocyte", "stroma", "other"]
    assert widget.annotations.region_classes == ["necrosis", "artefact", "vessel", "tumour area"]
    widget.add_points([[10.0, 20.0], [30.0, 40.0]], "tumour")
    widget.add_points([[1.0, 2.0]], "stroma")
    assert widget.counts() == {"tumour": 2, "lymphocyte": 0, "stroma": 1, "other": 0}
    assert widget.cell_list.item(0).text() == "1  tumour  (2)"
    assert list(widget.cell_layers) == ["tumour", "stroma"]  # layers only for classes used
    # a point placed the way a click places it: napari fills feature defaults, we fill the id
    layer = widget.activate_class("lymphocyte")
    layer.add(np.array([[5.0, 6.0]]))
    assert widget.counts()["lymphocyte"] == 1
    assert layer.features["class"].tolist() == ["lymphocyte"]
    ids = [i for lay in widget.cell_layers.values() for i in lay.features["id"]]
    assert len(ids) == 4 and len(set(ids)) == 4 and all(ids)


def test_number_keys_switch_class_while_placing(viewer_with_slide):
    widget = make_widget(viewer_with_slide)
    handler = viewer_with_slide.window._qt_viewer._key_map_handler
    widget.activate_class("tumour")
    assert widget.active_class == "tumour" and widget.cell_layers["tumour"].mode == "add"
    assert handler.press_key("3")
    assert widget.active_class == "stroma"
    assert widget.cell_layers["stroma"].mode == "add"
    handler.release_key("3")
    assert handler.press_key("2")  # napari's own "2" (add mode) is shadowed on our layers only
    assert widget.active_class == "lymphocyte"
    widget.add_cell_class("mitosis")
    assert handler.press_key("5") and widget.active_class == "mitosis"


def test_set_class_of_selected_points_in_one_action(viewer_with_slide):
    widget = make_widget(viewer_with_slide)
    widget.add_points([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], "tumour", ids=["a", "b", "c"])
    widget.add_points([[9.0, 9.0]], "other", ids=["d"])
    widget.cell_layers["tumour"].selected_data = {0, 2}
    widget.cell_layers["other"].selected_data = {0}
    assert widget.set_class_of_selected("lymphocyte") == 3
    assert widget.counts() == {"tumour": 1, "lymphocyte": 3, "stroma": 0, "other": 0}
    lymph = widget.cell_layers["lymphocyte"]
    assert lymph.features["id"].tolist() == ["a", "c", "d"]
    assert lymph.features["class"].tolist() == ["lymphocyte"] * 3
    np.testing.assert_allclose(lymph.data, [[0, 0], [4, 4], [18, 18]])  # level-0 px (µm / 0.5)
    assert widget.cell_layers["tumour"].features["id"].tolist() == ["b"]


def test_export_reads_back_in_level0_pixels(viewer_with_slide, tmp_path):
    widget = make_widget(viewer_with_slide, region_classes=("necrosis",))
    widget.add_points([[10.0, 20.0], [30.5, 40.25]], "tumour", ids=["t1", "t2"])
    widget.add_points([[1.0, 2.0]], "Plasma cell", ids=["p1"])
    widget.set_class_color("tumour", (1, 2, 3))
    widget.activate_region("necrosis").add_rectangles(np.array([[0.0, 0.0], [10.0, 20.0]]))
    widget.set_class_color("necrosis", (9, 8, 7))
    np.testing.assert_allclose(widget.region_layers["necrosis"].edge_color[0][:3] * 255, (9, 8, 7))
    path = widget.export_file(tmp_path / "out.geojson")
    back = read_annotations(path)
    order = np.argsort(back.cells.ids)
    assert back.cells.ids[order].tolist() == ["p1", "t1", "t2"]
    np.testing.assert_allclose(back.cells.rows[order], [2.0, 20.0, 61.0], atol=1e-6)  # µm / 0.5
    np.testing.assert_allclose(back.cells.cols[order], [4.0, 40.0, 80.5], atol=1e-6)
    assert back.cells.classes[order].tolist() == ["Plasma cell", "tumour", "tumour"]
    assert back.colors["tumour"] == (1, 2, 3) and back.colors["necrosis"] == (9, 8, 7)
    (region,) = back.regions
    assert region.cls == "necrosis"
    assert sorted(map(tuple, region.exterior)) == [(0, 0), (0, 20), (10, 0), (10, 20)]
    csv_back = read_annotations(widget.export_file(tmp_path / "out.csv"))
    assert sorted(csv_back.cells.ids.tolist()) == ["p1", "t1", "t2"]


def test_import_merges_creates_unknown_classes_and_keeps_holes(viewer_with_slide, tmp_path):
    widget = make_widget(viewer_with_slide)
    widget.add_points([[1.0, 1.0]], "tumour", ids=["mine"])
    ring = np.array([[0.0, 0.0], [0.0, 40.0], [40.0, 40.0], [40.0, 0.0]])
    hole = np.array([[10.0, 10.0], [10.0, 20.0], [20.0, 20.0]])
    incoming = AnnotationSet(
        CellPoints([4.0, 8.0], [6.0, 10.0], ["tumour", "Ganglion"], ["mine", "g1"]),
        [RegionShape("fibrin", ring, [hole], "f", "R1")], {"Ganglion": (9, 9, 9)})
    path = write_annotations(tmp_path / "in.geojson", incoming)
    widget.import_file(path)  # non-empty layers: merged, never replaced
    assert widget.counts()["tumour"] == 2 and widget.counts()["Ganglion"] == 1
    assert "fibrin" in widget.region_layers and widget.colors["Ganglion"] == (9, 9, 9)
    tumour_ids = widget.cell_layers["tumour"].features["id"].tolist()
    assert tumour_ids[0] == "mine" and len(set(tumour_ids)) == 2  # clashing id renewed
    widget.import_file(path)  # the same file again: every id stays unique, across layers too
    all_ids = [i for layer in widget.cell_layers.values() for i in layer.features["id"]]
    assert len(all_ids) == 5 and len(set(all_ids)) == 5
    first = widget.annotation_set().cells.ids.tolist()
    assert widget.annotation_set().cells.ids.tolist() == first  # ids stable between exports
    out = read_annotations(widget.export_file(tmp_path / "out.geojson"))
    fibrins = [r for r in out.regions if r.cls == "fibrin"]
    assert len(fibrins) == 2 and fibrins[0].id == "R1" and fibrins[1].id != "R1"
    for fibrin in fibrins:  # both copies keep their hole
        np.testing.assert_allclose(fibrin.exterior, ring, atol=1e-9)
        np.testing.assert_allclose(fibrin.holes[0], hole, atol=1e-9)
    g = out.cells.classes == "Ganglion"
    np.testing.assert_allclose([out.cells.rows[g][0], out.cells.cols[g][0]], [8.0, 10.0])


def test_autosave_writes_and_reopening_restores(make_napari_viewer, viewer_with_slide, tmp_path,
                                                qtbot):
    widget = make_widget(viewer_with_slide, autosave=True, autosave_delay_ms=50)
    slide_path = tmp_path / "slide.svs"
    assert widget.store is not None and widget.store.path.parent == tmp_path
    widget.add_points([[3.0, 4.0]], "tumour", ids=["x1"])
    qtbot.waitUntil(lambda: widget.store.path.exists(), timeout=5000)
    saved = load_latest(slide_path)
    assert saved.cells.ids.tolist() == ["x1"]
    np.testing.assert_allclose([saved.cells.rows[0], saved.cells.cols[0]], [6.0, 8.0])
    # a project folder instead of beside the slide
    project = tmp_path / "project"
    widget.set_autosave(True, folder=project)
    assert widget.save_now() == project / "slide.svs.annotations.geojson"
    # reopening the slide in a fresh viewer restores the annotations
    viewer2 = make_napari_viewer()
    widget2 = make_widget(viewer2, autosave=True)
    assert widget2.counts()["tumour"] == 0  # no slide yet: nothing to restore
    viewer2.add_image(np.zeros((8, 8), dtype=np.uint8), scale=(MPP, MPP),
                      metadata={"xhisto": {"slide_path": str(slide_path), "mpp": MPP}})
    assert widget2.counts()["tumour"] == 1
    qtbot.waitUntil(lambda: viewer2.layers.index(find_slide_layer(viewer2)) == 0, timeout=2000)
    assert widget2.cell_layers["tumour"].metadata["xhisto"]["mpp"] == MPP
    np.testing.assert_allclose(widget2.cell_layers["tumour"].data, [[6.0, 8.0]])  # level-0 px
    np.testing.assert_allclose(widget2.cell_layers["tumour"].scale, (MPP, MPP))


def test_writer_functions_for_our_layers_and_plain_layers(viewer_with_slide, tmp_path):
    from napari_xhisto._writer import write_annotation_layers, write_points, write_shapes

    widget = make_widget(viewer_with_slide, region_classes=("vessel",))
    widget.add_points([[10.0, 20.0]], "tumour", ids=["a"])
    widget.activate_region("vessel").add_polygons([np.array([[0.0, 0.0], [0.0, 10.0], [10.0, 10.0]])])
    data, meta, _ = widget.cell_layers["tumour"].as_layer_data_tuple()
    assert meta["metadata"]["xhisto"]["mpp"] == MPP  # recorded for napari's own Save
    (written,) = write_points(str(tmp_path / "p.geojson"), data, meta)
    back = read_annotations(written)
    assert back.cells.ids.tolist() == ["a"] and back.cells.classes.tolist() == ["tumour"]
    np.testing.assert_allclose([back.cells.rows[0], back.cells.cols[0]], [20.0, 40.0])
    # a plain napari points layer in pixels at the slide's scale (napari's "new points layer")
    plain = viewer_with_slide.add_points(np.array([[7.0, 9.0]]), scale=(MPP, MPP))
    data, meta, _ = plain.as_layer_data_tuple()
    (written,) = write_points(str(tmp_path / "plain.csv"), data, meta)
    back = read_annotations(written)
    np.testing.assert_allclose([back.cells.rows[0], back.cells.cols[0]], [7.0, 9.0])
    assert back.cells.classes.tolist() == ["unclassified"]
    shapes = widget.region_layers["vessel"].as_layer_data_tuple()
    (written,) = write_shapes(str(tmp_path / "s.geojson"), shapes[0], shapes[1])
    (region,) = read_annotations(written).regions
    assert region.cls == "vessel"
    np.testing.assert_allclose(region.exterior, [[0, 0], [0, 10], [10, 10]])
    layers = [widget.cell_layers["tumour"].as_layer_data_tuple(), shapes]
    (written,) = write_annotation_layers(str(tmp_path / "both.geojson"), layers)
    both = read_annotations(written)
    assert len(both.cells) == 1 and len(both.regions) == 1


def test_real_slide_layer_gives_the_scale(make_napari_viewer, cmu1_path, tmp_path):
    from napari.layers import Layer

    from napari_xhisto._reader import slide_layer_data

    viewer = make_napari_viewer()
    (data, kwargs, kind), = slide_layer_data(cmu1_path)
    viewer.add_layer(Layer.create(data, kwargs, kind))
    widget = make_widget(viewer)
    mpp, _, slide = widget.slide_frame()
    assert slide is not None and mpp == pytest.approx(kwargs["scale"][0])
    widget.add_points([[100.0 * mpp, 200.0 * mpp]], "tumour", ids=["c"])
    back = read_annotations(widget.export_file(tmp_path / "cmu.geojson"))
    np.testing.assert_allclose([back.cells.rows[0], back.cells.cols[0]], [100.0, 200.0], atol=1e-6)


def test_a_new_widget_adopts_the_layers_of_a_closed_one(viewer_with_slide):
    first = make_widget(viewer_with_slide)
    first.add_points([[1.0, 2.0]], "tumour", ids=["kept"])
    first.close()
    from napari.utils.key_bindings import coerce_keybinding

    assert coerce_keybinding("3") not in first.cell_layers["tumour"].keymap  # keys released
    n_layers = len(viewer_with_slide.layers)
    second = make_widget(viewer_with_slide)
    assert len(viewer_with_slide.layers) == n_layers
    assert second.cell_layers["tumour"] is first.cell_layers["tumour"]
    second.add_points([[3.0, 4.0]], "tumour")
    assert second.counts()["tumour"] == 2
    handler = viewer_with_slide.window._qt_viewer._key_map_handler
    viewer_with_slide.layers.selection.active = second.cell_layers["tumour"]
    assert handler.press_key("3") and second.active_class == "stroma"
    # the closed widget no longer listens: its list still shows the old count
    assert first.cell_list.item(0).text() == "1  tumour  (1)"
    assert second.cell_list.item(0).text() == "1  tumour  (2)"


def test_bounded_slide_files_use_qupath_origin(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    props = {"openslide.bounds-x": "1000", "openslide.bounds-y": "400"}
    viewer.add_image(np.zeros((2100, 4100), dtype=np.uint8), scale=(MPP, MPP), metadata={
        "xhisto": {"slide_path": str(tmp_path / "b.mrxs"), "mpp": MPP, "properties": props}})
    widget = make_widget(viewer)
    widget.add_points([[1000.0, 2000.0]], "tumour", ids=["b1"])  # level-0 (2000, 4000)
    path = widget.export_file(tmp_path / "b.geojson")
    assert read_annotations(path).cells.rows.tolist() == [1600.0]  # as QuPath counts
    assert read_annotations(path).cells.cols.tolist() == [3000.0]
    widget.clear()
    widget.import_file(path)
    np.testing.assert_allclose(widget.cell_layers["tumour"].data, [[2000.0, 4000.0]])
    from napari_xhisto._writer import write_points

    data, meta, _ = widget.cell_layers["tumour"].as_layer_data_tuple()
    (written,) = write_points(str(tmp_path / "w.geojson"), data, meta)
    assert read_annotations(written).cells.cols.tolist() == [3000.0]


def test_docking_adds_no_layer_and_used_layers_follow_the_slide_units(viewer_with_slide, caplog,
                                                                      capsys):
    from napari_xhisto._widgets.annotate import REGION_LAYER_CLASSES

    viewer = viewer_with_slide
    n = len(viewer.layers)
    widget = make_widget(viewer, region_classes=REGION_LAYER_CLASSES)
    assert len(viewer.layers) == n and widget.cell_layers == {} and widget.region_layers == {}
    assert widget.cell_list.count() == 4 and widget.region_list.count() == 4  # classes on offer
    assert widget.counts() == {"tumour": 0, "lymphocyte": 0, "stroma": 0, "other": 0}
    widget.cell_list.setCurrentRow(2)  # the user picks "stroma"
    stroma = widget.cell_layers["stroma"]
    assert viewer.layers.selection.active is stroma and stroma.mode == "add"
    widget.region_list.setCurrentRow(3)  # and "tumour area" for drawing
    area = widget.region_layers["tumour area"]
    assert len(viewer.layers) == n + 2
    slide = viewer.layers["slide"]
    for layer in (stroma, area):
        assert tuple(layer.units) == tuple(slide.units) and str(layer.units[0]) in ("µm", "micrometer")
        np.testing.assert_allclose(layer.scale, slide.scale)
        np.testing.assert_allclose(layer.translate, slide.translate)
    # a click at world (10 µm, 20 µm) is level-0 px (20, 40) and exports as such
    stroma.add(stroma.world_to_data((10.0, 20.0)))
    back = widget.annotation_set()
    np.testing.assert_allclose([back.cells.rows[0], back.cells.cols[0]], [20.0, 40.0])
    assert "Inconsistent units" not in caplog.text + capsys.readouterr().out


def test_annotate_minimum_size_fits_a_narrow_dock(viewer_with_slide):
    widget = make_widget(viewer_with_slide)
    widget.add_cell_class("a rather long class name for a cell type")
    assert widget.minimumSizeHint().width() <= 400


def test_read_only_slide_folder_autosaves_to_the_data_dir_and_says_so(make_napari_viewer,
                                                                      tmp_path, monkeypatch,
                                                                      qtbot):
    from test_annotations_autosave import _make_read_only

    monkeypatch.setenv("XHISTO_DATA_DIR", str(tmp_path / "data"))
    slides = tmp_path / "slides"
    slides.mkdir()
    undo = _make_read_only(slides)
    if undo is None:
        pytest.skip("cannot make a read-only folder here")
    try:
        viewer = make_napari_viewer()
        viewer.add_image(np.zeros((8, 8), dtype=np.uint8), scale=(MPP, MPP), units=("µm", "µm"),
                         metadata={"xhisto": {"slide_path": str(slides / "s.svs"), "mpp": MPP}})
        widget = make_widget(viewer, autosave=True, autosave_delay_ms=20)
        widget.add_points([[1.0, 2.0]], "tumour", ids=["ro"])
        qtbot.waitUntil(lambda: widget.store.fallback.exists(), timeout=5000)
        assert widget.store.fell_back and list(slides.iterdir()) == []
        qtbot.waitUntil(lambda: "autosaved to" in widget.status.text(), timeout=5000)
        assert "read-only" in widget.status.text()
        assert str(widget.store.fallback) in widget.status.text()
        # a new session on the same slide restores from the data directory
        viewer2 = make_napari_viewer()
        widget2 = make_widget(viewer2, autosave=True)
        viewer2.add_image(np.zeros((8, 8), dtype=np.uint8), scale=(MPP, MPP), units=("µm", "µm"),
                          metadata={"xhisto": {"slide_path": str(slides / "s.svs"), "mpp": MPP}})
        assert widget2.counts()["tumour"] == 1
        assert widget2.cell_layers["tumour"].features["id"].tolist() == ["ro"]
    finally:
        undo()
