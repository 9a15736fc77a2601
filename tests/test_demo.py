"""The demo pipeline end to end (small slide), and the demo viewer with its docked widgets."""

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from napari_xhisto import cli
from napari_xhisto.annotations import read_annotations
from napari_xhisto.demo import fresh_dir, pick_region
from napari_xhisto.export import read_heatmap
from napari_xhisto.slide import open_slide


@pytest.fixture
def small_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XHISTO_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_fresh_dir_never_reuses_a_folder_with_content(tmp_path):
    first = fresh_dir(tmp_path / "out")
    (first / "result.json").write_text("{}")
    second = fresh_dir(tmp_path / "out")
    assert second != first and second.name == "out-2"
    assert (first / "result.json").read_text() == "{}"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One headless demo through the CLI on a small slide; the printed file list, parsed."""
    tmp = tmp_path_factory.mktemp("demo")
    mp = pytest.MonkeyPatch()
    mp.setenv("XHISTO_CACHE_DIR", str(tmp / "cache"))
    mp.setattr("napari_xhisto.demo.DEMO_SIZE", 2048)
    mp.setattr("napari_xhisto.demo.DEMO_METHODS", ("lrp-epsilon-plus", "gradcam"))
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            assert cli.main(["demo", "--headless", "--out", str(tmp / "out")]) == 0
    finally:
        mp.undo()
    files, figures = {}, {}
    for line in buf.getvalue().splitlines()[1:]:
        name, value = re.match(r"\s*(.+?)\s{2,}(\S+)", line).groups()
        if value.endswith((".svs", ".geojson", ".tif", ".png", ".json", ".html")):
            files[name] = Path(value)
        else:
            figures[name] = float(value)
            if name.startswith("cell AUC"):  # each AUC with its interval and cell counts
                assert re.search(r"95% CI 0\.\d{3}-[01]\.\d{3}, \d+ positive / \d+ other", line)
    assert buf.getvalue().startswith("demo outputs written to")
    return files, figures


def test_headless_demo_writes_outputs_that_read_back(demo_run):
    files, figures = demo_run
    with open_slide(files["slide"]) as slide:
        mpp = slide.mpp
        assert slide.dimensions == (2048, 2048)
    prob = read_heatmap(files["probability map"])
    assert prob.provenance["kind"] == "probability"
    assert np.nanmin(prob.values) >= 0 and np.nanmax(prob.values) <= 1
    heat = read_heatmap(files["heatmap lrp-epsilon-plus"])
    assert heat.mpp == pytest.approx(mpp)
    assert heat.provenance["method"] == "lrp-epsilon-plus"
    # the heatmap lies on the 1024 px region the demo picked on a tumour edge
    truth = read_annotations(files["ground truth"])
    region = pick_region(truth, size=1024, slide_shape=(2048, 2048))
    assert heat.placement.origin_row == pytest.approx(region.level0_row, abs=heat.placement.step_row)
    assert heat.placement.origin_col == pytest.approx(region.level0_col, abs=heat.placement.step_col)
    metrics = json.loads(files["metrics"].read_text())
    assert set(metrics) == {"lrp-epsilon-plus", "gradcam"}
    assert metrics["lrp-epsilon-plus"]["roc"]["auc"] == pytest.approx(figures["cell AUC lrp-epsilon-plus"], abs=1e-3)
    html = files["report"].read_text()
    assert html.count("data:image/png;base64,") >= 2
    assert files["snapshot gradcam"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_annotations(files["contours"]).regions


@pytest.mark.viewer
def test_demo_viewer_docks_the_widgets(make_napari_viewer, small_cache):
    from napari_xhisto._widgets.launch import build_demo_viewer

    viewer = make_napari_viewer()
    viewer, widgets = build_demo_viewer(viewer, size=2048, seed=3)
    assert set(widgets) == {"Explain", "Annotate", "Evaluate", "Export", "Meta", "Slide-level"}
    slide_layer = viewer.layers[0]
    assert slide_layer.multiscale and slide_layer.rgb
    assert slide_layer.scale[-1] == pytest.approx(slide_layer.metadata["xhisto"]["mpp"])
    names = [layer.name for layer in viewer.layers]
    assert "ground truth cells" in names and viewer.canvas.overlays.scale_bar.visible
