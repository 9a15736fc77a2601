"""The Export widget in a real viewer: each button writes a file that reads back as exported."""

import numpy as np
import openslide
import pytest
from matplotlib.image import imread
from test_export_rgb import write_test_svs  # tests/ is on sys.path (rootdir conftest)

from napari_xhisto.annotations import read_annotations
from napari_xhisto.export import read_heatmap
from napari_xhisto.geometry import Placement

pytestmark = pytest.mark.viewer

MPP = 0.5
PLACEMENT = Placement(100, 200, 4, 4)


@pytest.fixture
def scene(make_napari_viewer, tmp_path):
    from napari_xhisto._widgets.export_widget import ExportWidget
    from napari_xhisto._widgets.layers import heatmap_layer_data

    slide = write_test_svs(tmp_path / "slide.svs", 900, 1300, mpp=MPP)
    rr, cc = np.mgrid[0:150, 0:200]
    disc = np.hypot(rr - 75, cc - 100)
    values = ((disc < 40).astype(np.float32) - 1.5 * (disc < 15)).astype(np.float32)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((10, 10)), name="not a heatmap")
    data, kw, _ = heatmap_layer_data(values, PLACEMENT, mpp=MPP, name="lrp", slide_path=slide,
                                     provenance={"model": "demo", "method": "lrp-epsilon-plus",
                                                 "normalize": "global-max"})
    viewer.add_image(data, **kw)
    widget = ExportWidget(viewer)
    return viewer, widget, values, tmp_path, slide


def _save_to(widget, monkeypatch, path):
    monkeypatch.setattr(widget, "ask_save_path", lambda kind: path)


def test_layer_choice_and_ome_tiff_with_overwrite_confirmation(scene, qtbot, monkeypatch):
    viewer, widget, values, tmp, _ = scene
    assert [widget.layer_combo.itemText(i) for i in range(widget.layer_combo.count())] == ["lrp"]
    out = tmp / "lrp.ome.tif"
    _save_to(widget, monkeypatch, out)
    widget.float16_box.setChecked(True)
    widget.export("ome-tiff")
    qtbot.waitUntil(lambda: widget.worker is None, timeout=20000)
    back = read_heatmap(out)
    assert back.placement == PLACEMENT and back.mpp == MPP
    assert back.provenance["method"] == "lrp-epsilon-plus" and back.provenance["stored_dtype"] == "float16"
    np.testing.assert_array_equal(back.values, values)

    out.write_bytes(b"user data")
    monkeypatch.setattr(widget, "confirm_overwrite", lambda path: False)
    assert widget.export("ome-tiff") is None
    assert out.read_bytes() == b"user data"  # declined: nothing replaced
    monkeypatch.setattr(widget, "confirm_overwrite", lambda path: True)
    widget.float16_box.setChecked(False)
    widget.export("ome-tiff")
    qtbot.waitUntil(lambda: widget.worker is None, timeout=20000)
    np.testing.assert_array_equal(read_heatmap(out).values, values)


def test_rgb_png_contours_report(scene, qtbot, monkeypatch):
    viewer, widget, values, tmp, slide = scene
    svs = tmp / "overlay.svs"
    _save_to(widget, monkeypatch, svs)
    widget.full_slide_box.setChecked(True)
    widget.export("rgb")
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    with openslide.OpenSlide(svs) as osr, openslide.OpenSlide(slide) as base:
        assert osr.dimensions == base.dimensions == (1300, 900)
        ring = np.asarray(osr.read_region((200 + 4 * 125, 100 + 4 * 75), 0, (1, 1)))[0, 0, :3]
    assert int(ring[0]) - int(ring[2]) > 100  # +1 -> red

    # the snapshot is the current view: centre the camera on the heatmap
    viewer.scene.camera.center = (MPP * (100 + 4 * 75), MPP * (200 + 4 * 100))
    viewer.scene.camera.zoom = 2.0
    png = tmp / "view.png"
    layout = widget.export("png", png)
    expected = widget.view_region(widget.source(), widget.slide())
    assert layout.region == expected
    assert imread(png).shape[:2] == layout.size
    assert "lrp-epsilon-plus" in layout.title

    geo = tmp / "c.geojson"
    widget.threshold.setValue(0.25)
    widget.export("contours", geo)
    regions = read_annotations(geo).regions
    assert len(regions) == 1 and len(regions[0].holes) == 1

    widget.annotations_edit.setText(str(geo))
    html = tmp / "r.html"
    widget.export("report", html)
    text = html.read_text()
    assert "data:image/png;base64," in text and "lrp-epsilon-plus" in text and "slide.svs" in text
    assert "xhisto evidence" in text  # the contour regions counted per class


def test_exported_file_reopens_in_the_viewer_on_top_of_its_layer(scene, qtbot, monkeypatch):
    from napari_xhisto.export.layer_reader import heatmap_file_layer_data

    viewer, widget, values, tmp, _ = scene
    out = tmp / "again.ome.tif"
    widget.export("ome-tiff", out)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=20000)
    ((data, kwargs, _),) = heatmap_file_layer_data(out)
    reopened = viewer.add_image(data, **kwargs)
    original = viewer.layers["lrp"]
    np.testing.assert_allclose(reopened.extent.world, original.extent.world)
    np.testing.assert_array_equal(np.asarray(reopened.data), values)
    # the reopened layer is exportable again (it carries the same metadata)
    assert "lrp" in [widget.layer_combo.itemText(i) for i in range(widget.layer_combo.count())]
    assert reopened.name in [widget.layer_combo.itemText(i) for i in range(widget.layer_combo.count())]


def test_target_class_named_and_empty_contours_warn_without_a_file(scene, monkeypatch):
    from napari.utils import notifications

    from napari_xhisto._widgets.layers import heatmap_layer_data

    viewer, widget, values, tmp, slide = scene
    prov = {"model": {"model": "demo", "class_names": ["non-tumour", "tumour"]},
            "method": "gradcam", "target": 1, "normalize": "global-max"}
    data, kw, _ = heatmap_layer_data(values, PLACEMENT, mpp=MPP, name="cam", slide_path=slide,
                                     provenance=prov)
    viewer.add_image(data, **kw)
    widget.layer_combo.setCurrentText("cam")
    assert "target: tumour" in widget.description.text()
    assert widget.source().provenance["target"] == "tumour"
    assert widget.source().provenance["target_index"] == 1
    png = tmp / "cam.png"
    assert "target: tumour" in widget.export("png", png).title

    warnings = []
    monkeypatch.setattr(notifications, "show_warning", warnings.append)
    out = tmp / "nothing.geojson"
    widget.threshold.setValue(5.0)  # the map runs from -0.5 to 1
    assert widget.export("contours", out) is None
    assert not out.exists()
    assert len(warnings) == 1 and "nothing was written" in warnings[0]
    assert "-0.5 to 1" in widget.status.text()


def test_export_minimum_size_fits_a_narrow_dock(scene):
    _, widget, *_ = scene
    assert widget.minimumSizeHint().width() <= 400
