"""The Slide-level widget in a real viewer: codes found beside the slide, p(label) shown, the
slide-wide heatmap placed on the slide above it and below the annotations, legend drawn."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.viewer

MPP = 0.5
SIZE = 512  # 8 x 8 cells of 64 px


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import torch
    from nic_slide_helpers import planted_cohort, planted_grid

    from napari_xhisto.nic.codes import write_codes
    from napari_xhisto.nic.slide_model import save_slide_model
    from napari_xhisto.nic.slide_train import SlideTrainConfig, iter_train_slide_model
    from napari_xhisto.progress import run_to_end
    from napari_xhisto.synth.writer import write_slide

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("slide_level")
    slide, _ = write_slide(tmp / "case.svs", size=SIZE, seed=2, mpp=MPP, ground_truth=False)
    grid, mask = planted_grid(np.random.default_rng(4), rows=8, cols=8, lesion=3, strength=3.0,
                              stride=64, mpp=MPP)
    write_codes(tmp / "case.nic.zarr", grid)
    grids, labels, _ = planted_cohort(16, seed=0, rows=8, cols=8, strength=3.0)
    model, _ = run_to_end(iter_train_slide_model(
        grids, labels, SlideTrainConfig(epochs=3, width=8, hidden=8, batch_size=8, val_fraction=0)))
    save_slide_model(tmp / "model", model)
    return slide, tmp / "case.nic.zarr", tmp / "model", grid


def test_widget_shows_p_label_and_places_the_heatmap(make_napari_viewer, qtbot, files):
    from napari_xhisto._reader import slide_layer_data
    from napari_xhisto._widgets.slide_level import SlideLevelWidget

    slide, codes, model_dir, grid = files
    viewer = make_napari_viewer()
    data, kwargs, _ = slide_layer_data(slide)[0]
    slide_layer = viewer.add_image(data, **kwargs)
    viewer.add_points(np.array([[10.0, 10.0]]), name="cells")
    widget = SlideLevelWidget(viewer)
    assert widget.slide_combo.currentText() == slide_layer.name
    assert widget.codes_edit.text() == str(codes)  # found beside the slide
    widget.model_edit.setText(str(model_dir))
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60000)
    names = [ly.name for ly in viewer.layers]
    layer = widget.result_layer
    assert layer is not None
    assert names.index(slide_layer.name) < names.index(layer.name) < names.index("cells")
    assert widget.result_label.text().startswith(f"p(present) = {widget.result.p_label:.3f}")
    assert layer.metadata["xhisto"]["provenance"]["method"] == "gradcam"
    assert layer.metadata["xhisto"]["kind"] == "heatmap"
    # one map pixel per code cell, its centre on the patch centre, as the codes layer
    scale, translate = grid.world_transform()
    assert tuple(layer.scale) == pytest.approx(scale)
    assert tuple(layer.translate) == pytest.approx(translate)
    assert layer.data.shape == grid.shape
    # the legend is drawn with the layer's limits and a title
    spec = widget.legend.spec
    assert spec is not None and "present" in spec.title
    assert all(widget.legend.ticks) and widget.legend.pixmap() is not None


def test_widget_without_codes_says_what_to_do(make_napari_viewer, qtbot, files, monkeypatch):
    from napari_xhisto._widgets.slide_level import SlideLevelWidget
    from napari_xhisto._widgets.slide_level import widget as wmod

    _slide, _codes, model_dir, _ = files
    errors = []
    monkeypatch.setattr(wmod, "notify_error", lambda exc, context="": errors.append(str(exc)))
    viewer = make_napari_viewer()
    widget = SlideLevelWidget(viewer)
    widget.codes_edit.setText("/nowhere/x.nic.zarr")
    widget.model_edit.setText(str(model_dir))
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30000)
    assert errors and "no compressed slide at /nowhere/x.nic.zarr" in errors[0]
    assert widget.result_layer is None and not list(viewer.layers)


def test_slide_level_dock_opens_from_the_plugins_menu(make_napari_viewer):
    from napari_xhisto._widgets.common.docking import ScrollDock
    from napari_xhisto._widgets.slide_level import SlideLevelWidget

    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-xhisto", "Slide-level")
    assert isinstance(widget, ScrollDock) and isinstance(widget.inner, SlideLevelWidget)
