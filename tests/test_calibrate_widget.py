"""The Evaluate widget's Calibration tab in a real viewer: what it shows is what it computed."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.viewer


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from napari_xhisto.synth.writer import write_slide

    return write_slide(tmp_path_factory.mktemp("calw") / "w.svs", size=2048, seed=3)


def _viewer_with_slide(make_napari_viewer, synthetic):
    from napari_xhisto._reader import slide_layer_data
    from napari_xhisto._sample_data import ground_truth_layer_data
    from napari_xhisto._widgets.evaluate import EvaluateWidget

    path, gt = synthetic
    viewer = make_napari_viewer()
    for data, kw, kind in slide_layer_data(path):
        getattr(viewer, f"add_{kind}")(data, **kw)
    mpp = viewer.layers[-1].metadata["xhisto"]["mpp"]
    for data, kw, kind in ground_truth_layer_data(gt, mpp, slide_path=path):
        getattr(viewer, f"add_{kind}")(data, **kw)
    widget = EvaluateWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


def _grab(view) -> np.ndarray:
    img = view.grab().toImage().convertToFormat(view.grab().toImage().Format.Format_RGBA8888)
    ptr = img.constBits()
    ptr.setsize(img.sizeInBytes())
    arr = np.frombuffer(ptr, np.uint8).reshape(img.height(), img.bytesPerLine() // 4, 4)
    return arr[:, :img.width(), :3].astype(int)


def test_calibration_tab_shows_what_the_cli_pipeline_computes(make_napari_viewer, synthetic,
                                                              tmp_path):
    from napari_xhisto.errors import XhistoError
    from napari_xhisto.metrics.calibration_study import temperature_report
    from napari_xhisto.models import load_model
    from napari_xhisto.models.calibrate import iter_collect_logits
    from napari_xhisto.progress import run_to_end

    viewer, widget = _viewer_with_slide(make_napari_viewer, synthetic)
    panel = widget.calibration
    tabs = [widget.tabs.tabText(i) for i in range(widget.tabs.count())]
    assert "Calibration" in tabs
    widget.tabs.setCurrentIndex(tabs.index("Calibration"))
    assert panel.slide_box.currentText() == "w.svs"
    panel.splits_spin.setValue(6)
    outcome = panel.calibrate()
    # the same patches and labels as xhisto calibrate reading the GeoJSON file
    path, gt = synthetic
    ref = run_to_end(iter_collect_logits([path], [gt], load_model("demo")))
    np.testing.assert_array_equal(outcome.data.labels, ref.labels)
    np.testing.assert_allclose(outcome.data.logits, ref.logits, atol=1e-5)
    rep = temperature_report(ref.logits, ref.labels, seed=0)
    shown = {k: v.text() for k, v in panel.value_labels.items()}
    assert shown["temperature"] == f"{rep['temperature']:.3f}"
    assert shown["ECE (test split)"] == f"{rep['before']['ece']:.4f} → {rep['after']['ece']:.4f}"
    assert shown["MCE (test split)"] == f"{rep['before']['mce']:.4f} → {rep['after']['mce']:.4f}"
    assert shown["over 6 splits"].startswith("ECE ")
    assert rep["after"]["ece"] != rep["before"]["ece"]
    # the plot on screen: drawn, with before (red) and after (blue) bars and boxes
    widget.show()
    panel.plot.resize(370, 580)
    rgb = _grab(panel.plot)
    assert rgb.std() > 20
    red = (rgb[..., 0] > 180) & (rgb[..., 1] < 140) & (rgb[..., 2] < 140)
    blue = (rgb[..., 2] > 150) & (rgb[..., 0] < 140)
    assert red.sum() > 100 and blue.sum() > 100
    half = rgb.shape[0] // 2  # the test-split bars above, the box plots below
    assert red[:half].sum() > 20 and red[half:].sum() > 20
    assert blue[:half].sum() > 20 and blue[half:].sum() > 20
    # saved: the spec loads with the temperature shown; nothing is overwritten without force
    paths = panel.save(tmp_path / "w-cal.yaml")
    assert load_model(paths["spec"]).spec.temperature == pytest.approx(rep["temperature"])
    assert paths["png"].stat().st_size > 1000 and paths["json"].exists()
    with pytest.raises(XhistoError, match="exists"):
        panel.save(tmp_path / "w-cal.yaml")


def test_calibrate_button_runs_in_a_worker_and_cancel_keeps_nothing(make_napari_viewer,
                                                                    synthetic, qtbot):
    viewer, widget = _viewer_with_slide(make_napari_viewer, synthetic)
    panel = widget.calibration
    panel.splits_spin.setValue(3)
    panel.run_button.click()
    panel.cancel_button.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=60000)
    assert panel.outcome is None and "cancelled" in panel.status.text()
    panel.run_button.click()
    assert not panel.run_button.isEnabled()
    qtbot.waitUntil(lambda: panel.outcome is not None and panel.worker is None, timeout=120000)
    assert panel.run_button.isEnabled() and panel.save_button.isEnabled()
    assert panel.value_labels["temperature"].text() == f"{panel.outcome.report['temperature']:.3f}"
    assert not panel.plot.pixmap.isNull()


def test_no_annotations_is_a_clear_error(make_napari_viewer, synthetic):
    from napari_xhisto.errors import XhistoError

    viewer, widget = _viewer_with_slide(make_napari_viewer, synthetic)
    widget.set_checked(widget.points_list, [])
    widget.set_checked(widget.shapes_list, [])
    with pytest.raises(XhistoError, match="tick the cell or region layers"):
        widget.calibration.request()
