"""The Explain widget's "What if healthy?" action in a real viewer (Xvfb): what the user sees.

A rectangle drawn in a Shapes layer (world µm) is filled with the bundled inpainter for the
demo model; the inpainted tissue must lie exactly under the rectangle on the slide, and the
numbers in the table and the probability layers must be the model's on the patches shown.
"""

import numpy as np
import pytest
import test_explain_widget as base  # tests/ is on sys.path (rootdir conftest)

pytestmark = pytest.mark.viewer
slide_path = base.slide_path
MPP = base.MPP


@pytest.fixture
def setup(make_napari_viewer, qtbot, slide_path):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    from napari_xhisto._widgets.explain_widget import ExplainWidget

    viewer = make_napari_viewer()
    slide_layer = base._add_slide(viewer, slide_path)
    widget = ExplainWidget(viewer)  # the demo model: 64 px at 1 µm/px
    viewer.window.add_dock_widget(widget, name="Explain")
    return viewer, widget, slide_layer, qtbot


def test_what_if_healthy_shows_the_inpainted_region_and_the_numbers(setup):
    from napari_xhisto.geometry import Region

    viewer, widget, slide_layer, qtbot = setup
    panel = widget.whatif
    # a 40 x 50 µm rectangle (80 x 100 level-0 px at 0.5 µm/px), in world coordinates
    top, left, h, w = 100.0, 120.0, 40.0, 50.0
    rect = np.array([[top, left], [top, left + w], [top + h, left + w], [top + h, left]])
    viewer.add_shapes([rect], shape_type="rectangle", name="ask", units="µm")
    results = []
    worker = panel.run()
    assert worker is not None
    worker.returned.connect(results.append)
    qtbot.waitUntil(lambda: panel.result is not None and panel.worker is None, timeout=120_000)
    res = panel.result
    image = viewer.layers[f"what-if healthy: {slide_layer.name}"]
    # placement: the RGBA layer's pixels are model pixels (1 µm), under the rectangle exactly
    assert np.allclose(image.scale, (1.0, 1.0))
    alpha = np.asarray(image.data)[..., 3]
    rows, cols = np.nonzero(alpha)
    centres = np.array([image.data_to_world((r, c)) for r, c in zip(rows, cols)])
    assert alpha.sum() // 255 == res.hole.sum() > 0.9 * h * w
    assert centres[:, 0].min() >= top and centres[:, 0].max() <= top + h
    assert centres[:, 1].min() >= left and centres[:, 1].max() <= left + w
    # and they cover it: 1 µm pixels fill the 40 x 50 µm rectangle up to its border pixels
    assert (centres[:, 0].max() - centres[:, 0].min()) >= h - 2
    assert (centres[:, 1].max() - centres[:, 1].min()) >= w - 2
    # what the layer shows is the slide outside the hole and the inpainting inside
    rgb = np.asarray(image.data)[..., :3]
    assert np.array_equal(rgb[alpha == 0], res.before[alpha == 0])
    # the numbers: p(tumour) of each patch the region touches, before and after, as computed
    # here from the slide and from the layer's pixels
    model = widget.controller.model()
    slide = slide_layer.metadata["xhisto_slide"]
    assert widget.whatif.table.rowCount() == len(res.patches) >= 1
    for i, p in enumerate(res.patches):
        reg = Region(int(round(p["level0_row"])), int(round(p["level0_col"])), 128, 128)
        p_before = model.predict_proba(slide.read_scaled(reg, 64, 64))[0, 1]
        r0 = int(round((p["level0_row"] - res.placement.origin_row) / 2))
        c0 = int(round((p["level0_col"] - res.placement.origin_col) / 2))
        p_after = model.predict_proba(rgb[r0:r0 + 64, c0:c0 + 64])[0, 1]
        assert widget.whatif.table.item(i, 1).text() == f"{p_before:.3f}"
        assert widget.whatif.table.item(i, 2).text() == f"{p_after:.3f}"
    # all four columns are visible in the dock: the table never scrolls sideways
    table = widget.whatif.table
    assert not table.horizontalScrollBar().isVisible()
    assert table.horizontalHeader().length() <= table.viewport().width() + 1
    assert [table.horizontalHeaderItem(c).text() for c in range(4)] == [
        "patch", "before", "after", "Δp"]
    before = viewer.layers[f"p(tumour) before what-if: {slide_layer.name}"]
    after = viewer.layers[f"p(tumour) after what-if: {slide_layer.name}"]
    np.testing.assert_allclose(np.asarray(before.data), res.p_before, equal_nan=True)
    np.testing.assert_allclose(np.asarray(after.data), res.p_after, equal_nan=True)
    assert np.allclose(before.scale, (64.0, 64.0))  # one cell per 64 µm patch
    assert f"{res.summary()['mean_p_before']:.3f}" in panel.summary.text()
    # a second run replaces these layers, and nothing else
    n_layers = len(viewer.layers)
    panel.result = None
    assert panel.run() is not None
    qtbot.waitUntil(lambda: panel.result is not None and panel.worker is None, timeout=120_000)
    assert len(viewer.layers) == n_layers and "ask" in viewer.layers


def test_what_if_without_a_shape_says_what_to_do(setup, monkeypatch):
    from napari_xhisto._widgets.explain import whatif

    viewer, widget, slide_layer, qtbot = setup
    seen = []
    monkeypatch.setattr(whatif, "notify_error", lambda exc, **k: seen.append(str(exc)))
    assert widget.whatif.run() is None
    assert seen and "draw a rectangle or polygon in a Shapes layer" in seen[0]
