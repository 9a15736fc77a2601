"""The Meta widget: what the user sees (figures with pixels, the list) and where clicks go."""

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.viewer


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    from napari_xhisto.synth.writer import write_slide

    folder = tmp_path_factory.mktemp("metaw")
    slide_path, gt = write_slide(folder / "small.svs", size=1536, seed=3)
    data = json.loads(Path(gt).read_text())
    swap = {"tumour": "stroma", "stroma": "tumour", "lymphocyte": "tumour", "other": "tumour"}
    for f in data["features"]:
        cls = f["properties"].get("classification")
        if cls and cls.get("name") in swap:
            cls["name"] = swap[cls["name"]]
    flipped = folder / "flipped.geojson"
    flipped.write_text(json.dumps(data))
    return slide_path, flipped


def _pixmap_pixels(label) -> np.ndarray:
    img = label.pixmap().toImage()
    from qtpy.QtGui import QImage

    img = img.convertToFormat(QImage.Format.Format_RGBA8888)
    ptr = img.constBits()
    ptr.setsize(img.height() * img.bytesPerLine())
    arr = np.frombuffer(ptr, np.uint8).reshape(img.height(), img.bytesPerLine())
    return arr[:, : img.width() * 4].reshape(img.height(), img.width(), 4)


def test_meta_widget_runs_shows_and_jumps(make_napari_viewer, qtbot, slide):
    from qtpy.QtCore import QPoint, Qt

    from napari_xhisto._reader import slide_layer_data
    from napari_xhisto._widgets.meta import MetaWidget

    viewer = make_napari_viewer()
    data, kwargs, _ = slide_layer_data(slide[0])[0]
    layer = viewer.add_image(data, **kwargs)
    widget = MetaWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.slide_box.currentText() == layer.name
    # the slide's own ground truth beside it is proposed; we use mislabelled data instead
    assert widget.ann_edit.text().endswith("small.geojson")
    widget.ann_edit.setText(str(slide[1]))
    widget.n_spin.setValue(48)
    widget.seed_spin.setValue(2)
    widget.run_button.click()
    assert widget.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: widget.controller.result is not None, timeout=300_000)
    qtbot.waitUntil(lambda: widget.run_button.isEnabled(), timeout=10_000)
    result = widget.controller.result
    assert len(result.rows) == 48
    # the figures are on screen with content, not blank
    for view in (widget.grid_view, widget.embedding_view):
        px = _pixmap_pixels(view)
        assert px.shape[0] > 100 and px.shape[1] > 100 and px[..., :3].std() > 10
    # the list shows the confident disagreements with the mislabelled annotations
    assert widget.disagreement_list.count() == len(result.disagreements) > 0
    first = result.disagreement_records()[0]
    item = widget.disagreement_list.item(0)
    assert item.text().startswith(f"{first['label']} → {first['predicted']} (p {first['p']:.3f})")
    assert f"x {first['x_um']:.0f} µm" in item.toolTip()
    # the mean-map grid opens at full resolution in its own window
    window = widget.enlarge_grid()
    full = _pixmap_pixels(window.image)
    assert full.shape[:2] == widget.controller.grid_rgba.shape[:2] and full[..., :3].std() > 10
    assert full.shape[1] > _pixmap_pixels(widget.grid_view).shape[1]
    window.close()
    # a click on a point (where it is drawn, at display scale) centres the view on that patch
    thumbs = {t[4] for t in widget.controller.hits["thumbs"]}
    pts = widget.controller.hits["points"]
    index = next(i for i in range(len(pts)) if i not in thumbs
                 and widget.controller.patch_at(*pts[i]) == i)
    f = widget.embedding_view.factor
    qtbot.mouseClick(widget.embedding_view, Qt.MouseButton.LeftButton,
                     pos=QPoint(int(round(pts[index][0] * f)), int(round(pts[index][1] * f))))
    mpp = layer.scale[-1]
    expected = (result.rows[index] * mpp, result.cols[index] * mpp)
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], expected, atol=2 * mpp / f + 1e-6)
    assert "meta patch" in viewer.layers
    # a click on a thumbnail jumps to its patch
    x0, y0, x1, y1, t_index = widget.controller.hits["thumbs"][0]
    qtbot.mouseClick(widget.embedding_view, Qt.MouseButton.LeftButton,
                     pos=QPoint(int((x0 + x1) / 2 * f), int((y0 + y1) / 2 * f)))
    np.testing.assert_allclose(viewer.scene.camera.center[-2:],
                               (result.rows[t_index] * mpp, result.cols[t_index] * mpp))
    # clicking a disagreement jumps to it
    widget.disagreement_list.setCurrentRow(0)
    d = result.disagreements[0]["index"]
    np.testing.assert_allclose(viewer.scene.camera.center[-2:],
                               (result.rows[d] * mpp, result.cols[d] * mpp))
    # saved outputs land in a fresh folder
    files = widget.save_to(slide[0].parent / "saved")
    assert files["grid"].exists() and files["disagreements_csv"].exists()


def test_meta_dock_is_a_contribution(make_napari_viewer):
    import yaml

    from napari_xhisto._widgets.common.docking import ScrollDock
    from napari_xhisto._widgets.meta.dock import MetaDock

    manifest = yaml.safe_load((Path(__file__).parents[1] / "napari.yaml").read_text())
    commands = {c["id"]: c["python_name"] for c in manifest["contributions"]["commands"]}
    assert commands["napari-xhisto.meta_widget"] == "napari_xhisto._widgets.meta.dock:MetaDock"
    viewer = make_napari_viewer()
    dock = MetaDock(viewer)
    assert isinstance(dock, ScrollDock) and dock.inner.run_button.text() == "Run"
    # without a slide, Run says so and starts nothing
    dock.inner.run_button.click()
    assert dock.inner.worker is None
