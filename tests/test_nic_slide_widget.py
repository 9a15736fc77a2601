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


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    """A 1024 px slide at the bundled contrastive encoder's 1.0 µm/px (8 x 8 cells, no codes
    beside it) and a slide model trained on codes fingerprinted as that encoder's."""
    import torch
    from nic_slide_helpers import planted_cohort

    from napari_xhisto.nic.encoders import load_encoder
    from napari_xhisto.nic.slide_model import save_slide_model
    from napari_xhisto.nic.slide_train import SlideTrainConfig, iter_train_slide_model
    from napari_xhisto.progress import run_to_end
    from napari_xhisto.synth.writer import write_slide

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("slide_level_compress")
    slide, _ = write_slide(tmp / "fresh.svs", size=1024, seed=5, mpp=1.0, ground_truth=False)
    enc = load_encoder("contrastive").provenance()
    grids, labels, _ = planted_cohort(8, seed=1, rows=8, cols=8, code_size=128, strength=3.0,
                                      mpp=1.0)
    for g in grids:
        g.provenance["encoder"] = {"kind": "contrastive", "name": "contrastive",
                                   "sha256": enc["weights_sha256"]}
    model, _ = run_to_end(iter_train_slide_model(
        grids, labels, SlideTrainConfig(epochs=1, width=8, hidden=8, batch_size=8, crop=8,
                                        val_fraction=0)))
    save_slide_model(tmp / "model", model)
    return slide, tmp / "model"


def test_a_slide_without_codes_is_compressed_first_then_explained(make_napari_viewer, qtbot,
                                                                  bundled):
    from napari_xhisto._reader import slide_layer_data
    from napari_xhisto._widgets.slide_level import SlideLevelWidget
    from napari_xhisto.nic.codes import read_codes
    from napari_xhisto.nic.compress import compress_slide
    from napari_xhisto.progress import run_to_end

    slide, model_dir = bundled
    viewer = make_napari_viewer()
    data, kwargs, _ = slide_layer_data(slide)[0]
    viewer.add_image(data, **kwargs)
    widget = SlideLevelWidget(viewer)
    assert widget.codes_edit.text() == "" and "Run compresses" in widget.codes_edit.placeholderText()
    widget.model_edit.setText(str(model_dir))
    worker = widget.run()
    assert widget.cancel_button.isEnabled() and not widget.run_button.isEnabled()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120000)
    assert worker is not None and widget.result is not None
    codes = slide.with_name("fresh.nic.zarr")
    assert widget.codes_edit.text() == str(codes) and codes.is_dir()
    grid = read_codes(codes)
    # the codes are compress's own, with the encoder the model was trained on
    want = run_to_end(compress_slide(slide, "contrastive"))
    np.testing.assert_array_equal(np.asarray(grid.codes), want.codes)
    assert grid.provenance["encoder"]["kind"] == "contrastive"
    c = widget.result.compressed
    assert c["n_encoded_this_run"] == want.provenance["n_patches"] > 0
    assert "after compressing the slide" in widget.result_label.text()
    assert widget.result_layer is not None and widget.result_layer.data.shape == grid.shape
    assert not widget.cancel_button.isEnabled()
    # a second run reads the codes it wrote
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60000)
    assert widget.result.compressed is None and "from cached codes" in widget.result_label.text()


def test_cancel_while_compressing_keeps_chunks_and_the_next_run_resumes(bundled, tmp_path,
                                                                       monkeypatch):
    import functools
    import shutil

    import napari_xhisto.nic.compress as nic_compress
    from napari_xhisto._widgets.slide_level.controller import SlideLevelController
    from napari_xhisto.nic.codes import read_codes
    from napari_xhisto.progress import run_to_end

    slide, model_dir = bundled
    local = tmp_path / slide.name
    shutil.copy(slide, local)
    # small chunks and batches, so a cancel lands between finished chunks
    monkeypatch.setattr(nic_compress, "compress_slide", functools.partial(
        nic_compress.compress_slide, chunk=4, batch_size=8))
    gen = SlideLevelController.run(None, model_dir, slide_path=local)
    steps = [next(gen) for _ in range(5)]
    assert steps[-1][1] > 3  # compressing: the total counts the patches
    gen.close()  # Cancel
    codes = tmp_path / "fresh.nic.zarr"
    assert not codes.exists() and codes.with_name("fresh.nic.zarr.partial").is_dir()
    result = run_to_end(SlideLevelController.run(None, model_dir, slide_path=local))
    assert result.compressed["resumed"] and result.compressed["chunks_reused"] >= 1
    once = tmp_path / "once.nic.zarr"
    run_to_end(nic_compress.compress_slide(local, "contrastive", out=once))
    np.testing.assert_array_equal(np.asarray(read_codes(codes).codes),
                                  np.asarray(read_codes(once).codes))


def test_the_encoder_must_be_the_models_and_the_flip_average_is_used(bundled, files, tmp_path):
    from napari_xhisto._widgets.slide_level.controller import SlideLevelController, encoder_for
    from napari_xhisto.errors import XhistoError
    from napari_xhisto.nic.codes import read_codes
    from napari_xhisto.nic.slide_explain import explain_slide
    from napari_xhisto.nic.slide_model import load_slide_model
    from napari_xhisto.progress import run_to_end

    slide, model_dir = bundled
    spec = load_slide_model(model_dir).spec
    assert encoder_for(spec).kind == "contrastive"
    with pytest.raises(XhistoError, match="is not the one the slide model was trained on"):
        encoder_for(spec, "vae")
    toy = load_slide_model(files[2]).spec  # trained on codes of a "toy" encoder
    with pytest.raises(XhistoError, match="which is not bundled: choose its .yaml"):
        encoder_for(toy)
    # the "8 flips/rotations" box reaches the explanation
    _slide, codes, model2, _ = files
    got = run_to_end(SlideLevelController.run(codes, model2, augment=True))
    want = explain_slide(load_slide_model(model2), read_codes(codes), augment=True)
    assert got.heatmap.provenance["augment"] is True
    assert got.p_label == pytest.approx(float(want.provenance["p_label"]), abs=1e-6)


def test_switching_to_a_slide_without_codes_clears_the_codes_field(make_napari_viewer, files,
                                                                   bundled):
    from napari_xhisto._reader import slide_layer_data
    from napari_xhisto._widgets.slide_level import SlideLevelWidget

    viewer = make_napari_viewer()
    for path in (files[0], bundled[0].with_name("other.svs")):
        if not path.exists():
            import shutil

            shutil.copy(bundled[0], path)
        data, kwargs, _ = slide_layer_data(path)[0]
        viewer.add_image(data, **kwargs)
    widget = SlideLevelWidget(viewer)
    names = [ly.name for ly in viewer.layers]
    widget.slide_combo.setCurrentText(names[0])
    assert widget.codes_edit.text() == str(files[1])  # case.nic.zarr beside case.svs
    widget.slide_combo.setCurrentText(names[1])
    assert widget.codes_edit.text() == ""  # not case's codes for the other slide


def test_codes_that_cannot_be_written_say_where_to_put_them(bundled, tmp_path):
    from napari_xhisto._widgets.slide_level.controller import SlideLevelController
    from napari_xhisto.errors import XhistoError
    from napari_xhisto.progress import run_to_end

    slide, model_dir = bundled
    target = tmp_path / "missing" / "x.nic.zarr"
    with pytest.raises(XhistoError, match="cannot write the codes into .*missing .*under Codes"):
        run_to_end(SlideLevelController.run(target, model_dir, slide_path=slide))
    assert not target.parent.exists()
