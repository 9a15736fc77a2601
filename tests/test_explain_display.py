"""What the user sees of an explanation (issue #13): legend, layer order, units and scale bar,
outlines of explained regions, transparent unexplained pixels, the probability map, names, the
demo-model banner, and one action per click. Runs under Xvfb with a real napari viewer."""

import warnings

import numpy as np
import pytest
import test_explain_widget as base  # tests/ is on sys.path (rootdir conftest)

from napari_xhisto.geometry import Region

pytestmark = pytest.mark.viewer
# the Explain widget's fixtures: a small synthetic slide, a tiny random model, a docked widget
slide_path, spec_path, setup = base.slide_path, base.spec_path, base.setup
_click, _qt_click, _wait_idle = base._click, base._qt_click, base._wait_idle
_world_of_pixel = base._world_of_pixel


def _results(viewer, kind=None):
    kinds = (kind,) if kind else ("heatmap", "probability")
    return [ly for ly in viewer.layers if ly.metadata.get("xhisto", {}).get("kind") in kinds]


def _legend_checks(widget, layer, title_words):
    """The legend shows ``layer``: a non-empty pixmap with its colours and its range."""
    from qtpy.QtGui import QFontMetrics

    from napari_xhisto._widgets.common.legend import BAR_HEIGHT, format_value, legend_font

    legend = widget.legend
    pm = legend.pixmap()
    assert pm is not None and not pm.isNull() and pm.width() >= 160
    lo, hi = layer.contrast_limits
    assert legend.ticks == (format_value(lo), format_value((lo + hi) / 2), format_value(hi))
    assert all(w in legend.spec.title for w in title_words)
    img = pm.toImage()
    # bar row: the layer's own colormap at both ends (over the light-grey backdrop)
    text_h = QFontMetrics(legend_font(legend.font())).height()  # the tick labels' line
    y = pm.height() - text_h - 2 - BAR_HEIGHT // 2
    for x, t in ((1, 0.0), (pm.width() - 2, 1.0)):
        rgba = layer.colormap.map(np.array([t]))[0]
        a = rgba[3] * layer.opacity
        expected = rgba[:3] * 255 * a + np.array([205, 205, 205]) * (1 - a)
        c = img.pixelColor(x, y)
        np.testing.assert_allclose((c.red(), c.green(), c.blue()), expected, atol=3)
    # tick labels drawn under the bar's left end, centre and right end: text pixels there
    ys = range(pm.height() - text_h, pm.height())
    for xs in (range(0, pm.width() // 6), range(pm.width() * 5 // 12, pm.width() * 7 // 12),
               range(pm.width() * 5 // 6, pm.width())):
        assert any(img.pixelColor(x, yy).alpha() > 0 for x in xs for yy in ys)


def test_legend_shows_range_of_heatmap_and_probability_map(setup):
    s, w = setup, setup.widget
    w.canvas_check.setChecked(False)
    w.explain_region(Region(128, 128, 128, 128))
    _wait_idle(s)
    (heat,) = _results(s.viewer, "heatmap")
    s.qtbot.waitUntil(lambda: w.legend.spec is not None)
    _legend_checks(w, heat, ("saliency", "tumour"))
    s.viewer.reset_view()
    w.probability_map("view")
    _wait_idle(s)
    (prob,) = _results(s.viewer, "probability")
    s.qtbot.waitUntil(lambda: w.legend.spec is not None and "p(" in w.legend.spec.title)
    _legend_checks(w, prob, ("p(tumour)",))
    assert w.legend.ticks == ("0", "0.5", "1")  # in p units
    s.viewer.layers.selection.active = heat  # the legend follows the selected layer
    assert "saliency" in w.legend.spec.title
    heat.contrast_limits = (-0.25, 0.25)  # and its limits as the user changes them
    assert w.legend.ticks == ("-0.25", "0", "0.25")


def test_new_result_layers_go_below_the_annotations(setup):
    s, w = setup, setup.widget
    w.norm_combo.setCurrentText("global-max")
    cells = s.viewer.add_points(np.array([[10.0, 10.0]]), name="cells", units="µm")
    regions = s.viewer.add_shapes([np.array([[0, 0], [20, 0], [20, 20]])], shape_type="polygon",
                                  name="regions", units="µm")
    w.canvas_check.setChecked(True)
    w.set_explain_mode(True)  # canvas and outline layers made ahead
    _click(s.viewer, _world_of_pixel(s.slide, 200, 200))
    _wait_idle(s)
    w.canvas_check.setChecked(False)
    w.explain_region(Region(400, 400, 128, 128))
    _wait_idle(s)
    w.probability_map("whole slide")
    _wait_idle(s)
    names = [ly.name for ly in s.viewer.layers]
    floor = min(names.index(cells.name), names.index(regions.name))
    added = _results(s.viewer) + [ly for ly in s.viewer.layers if "explained" in ly.name]
    assert len(added) == 4  # canvas, single-click heatmap, probability map, outlines
    assert all(names.index(ly.name) < floor for ly in added)
    assert names[-2:] == ["cells", "regions"]  # annotations stay on top, in their order
    assert names[0] == s.slide.name


def test_units_are_micrometres_and_scale_bar_is_on(make_napari_viewer, qtbot, monkeypatch,
                                                   tmp_path, spec_path):
    from napari.utils import notifications

    from napari_xhisto._widgets.explain import ExplainWidget

    monkeypatch.setenv("XHISTO_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("XHISTO_SAMPLE_SIZE", "768")
    shown = []
    monkeypatch.setattr(notifications, "show_warning", shown.append)
    monkeypatch.setattr("napari._vispy.canvas.show_warning", shown.append)
    viewer = make_napari_viewer()
    assert not viewer.canvas.overlays.scale_bar.visible
    viewer.open_sample("napari-xhisto", "synthetic-he")  # through the reader's layer data
    assert viewer.canvas.overlays.scale_bar.visible
    widget = ExplainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Explain")
    widget._load_spec(str(spec_path))
    widget.method_combo.setCurrentText("saliency")
    widget.size_spin.setValue(64.0)
    widget.set_explain_mode(True)  # grey H&E, canvas and outline layers
    slide = widget.slide_layer()
    _click(viewer, _world_of_pixel(slide, 300, 300))
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    widget.canvas_check.setChecked(False)
    widget.explain_region(Region(400, 400, 128, 128))
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    viewer.reset_view()
    widget.probability_map("view")
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    for _ in range(3):  # napari checks the units on the next draws
        viewer.window._qt_viewer.canvas._scene_canvas.update()
        qtbot.wait(50)
    assert len(viewer.layers) >= 8  # slide, grey, ground truth x2, canvas, heatmap, p, outlines
    for layer in viewer.layers:
        assert tuple(str(u) for u in layer.units) == ("micrometer", "micrometer"), layer.name
    assert viewer.layers.extent.units is not None  # napari found one unit for all layers
    assert viewer.canvas.overlays.scale_bar.visible
    assert not [m for m in shown if "units" in str(m).lower()]


def test_reader_turns_the_scale_bar_on(make_napari_viewer, cmu1_path):
    viewer = make_napari_viewer()
    viewer.open(str(cmu1_path), plugin="napari-xhisto")
    (layer,) = viewer.layers
    assert tuple(str(u) for u in layer.units) == ("micrometer", "micrometer")
    assert viewer.canvas.overlays.scale_bar.visible


def test_unexplained_is_nan_explained_is_outlined_and_files_reopen_alike(setup, tmp_path):
    from napari_xhisto._widgets.explain.outlines import explained_rectangles
    from napari_xhisto.export.layer_reader import heatmap_file_layer_data
    from napari_xhisto.export.layer_writer import write_heatmap_layer

    s, w = setup, setup.widget
    w.norm_combo.setCurrentText("global-max")
    w.canvas_check.setChecked(True)
    w.set_explain_mode(True)
    assert w.grey_check.isChecked()  # grey H&E is the default in explain mode
    assert (s.slide.name + " (grey)") in s.viewer.layers and not s.slide.visible
    for row, col in ((200, 200), (500, 520)):
        _click(s.viewer, _world_of_pixel(s.slide, row, col))
        _wait_idle(s)
    (canvas,) = _results(s.viewer, "heatmap")
    s.qtbot.waitUntil(lambda: "display_limits" in canvas.metadata["xhisto"]["provenance"])
    full = np.asarray(canvas.data[0])
    step = canvas.metadata["xhisto"]["placement"]["step_row"]
    explained = np.zeros(full.shape, bool)
    rects = [p["extent"] for p in canvas.metadata["xhisto"]["pastes"]]
    assert len(rects) == 2
    for r, c, h, wd in rects:
        explained[int(r // step):int((r + h) // step), int(c // step):int((c + wd) // step)] = True
    assert np.isnan(full[~explained]).all()  # never explained: NaN, drawn transparent
    assert np.isfinite(full[explained]).all()
    assert canvas.colormap.map(np.array([np.nan]))[0, 3] == 0

    # a thin outline around each explained region, in world µm on the slide's pixel edges
    (outline,) = [ly for ly in s.viewer.layers if ly.name == "explained areas"]
    assert explained_rectangles(s.viewer.layers, str(s.slide_path)) == [tuple(r) for r in rects]
    starts = outline.data[:, 0]
    for r, c, h, wd in rects:
        corner = (np.array([r, c]) - 0.5) * 0.5  # level-0 edge -> world µm (MPP 0.5)
        assert np.isclose(starts, corner).all(axis=1).any()
        assert np.isclose(starts, corner + np.array([h, wd]) * 0.5).all(axis=1).any()
    assert outline.edge_width == pytest.approx(1.5 / s.viewer.scene.camera.zoom, rel=0.05)
    s.viewer.scene.camera.zoom *= 4  # stays ~1.5 screen px wide when zooming
    assert outline.edge_width == pytest.approx(1.5 / s.viewer.scene.camera.zoom, rel=0.05)

    # the file written from the layer opens with the same colormap and limits (no white veil)
    (path,) = write_heatmap_layer(str(tmp_path / "canvas.ome.tif"), canvas.data,
                                  canvas.as_layer_data_tuple()[1])
    ((data, kwargs, _),) = heatmap_file_layer_data(path)
    reopened = s.viewer.add_image(data, **kwargs)
    assert reopened.colormap.name == canvas.colormap.name == "xhisto-bwr"
    x = np.linspace(0, 1, 11)
    np.testing.assert_allclose(reopened.colormap.map(x), canvas.colormap.map(x), atol=1e-6)
    assert reopened.contrast_limits == pytest.approx(canvas.contrast_limits)
    # deleting the heatmaps removes the outlines
    w.set_explain_mode(False)
    s.viewer.layers.remove(canvas)
    s.viewer.layers.remove(reopened)
    assert "explained areas" not in s.viewer.layers


def test_a_click_in_annotation_mode_only_annotates(setup):
    s, w = setup, setup.widget
    w.set_explain_mode(True)
    s.viewer.reset_view()
    cells = s.viewer.add_points(name="cells", units="µm", size=4)
    cells.mode = "add"
    _qt_click(s.viewer, _world_of_pixel(s.slide, 300, 300))
    assert len(cells.data) == 1 and w.worker is None  # a cell placed, nothing explained
    assert "cells" in w.status.text()
    cells.mode = "pan_zoom"  # the same click now explains
    _qt_click(s.viewer, _world_of_pixel(s.slide, 300, 300))
    assert w.worker is not None and len(cells.data) == 1
    _wait_idle(s)
    regions = s.viewer.add_shapes(name="regions", units="µm")
    regions.mode = "add_rectangle"
    _click(s.viewer, _world_of_pixel(s.slide, 400, 400))
    assert w.worker is None


def test_probability_map_pixels_show_the_tissue_where_p_is_low(setup):
    """Known probabilities (0 to 1 across the slide, one row of background) drawn over it."""
    from types import SimpleNamespace

    from napari_xhisto.colormaps import P_CLEAR
    from napari_xhisto.geometry import Placement

    s, w = setup, setup.widget
    p_tumour = np.tile(np.linspace(0, 1, 12, dtype=np.float32), (12, 1))
    mask = np.ones((12, 12), bool)
    mask[0] = False  # glass: no patch was run there
    pmap = SimpleNamespace(probs=np.stack([1 - p_tumour, p_tumour], axis=-1),
                           placement=Placement(0, 0, 64, 64), class_names=["non-tumour", "tumour"],
                           provenance={"kind": "probability"}, tissue_mask=mask)
    layer, path, mpp, _ = w.controller.slide_info(w.slide_combo.currentText())
    prob = w.controller.add_probability(pmap, layer, mpp, path, None, w.settings())
    assert prob.name == "p(tumour) · tiny @ whole slide"
    values = np.asarray(prob.data)
    assert np.isnan(values[0]).all() and np.isfinite(values[1:]).all()
    assert prob.colormap.name == "xhisto-probability" and tuple(prob.contrast_limits) == (0, 1)
    s.viewer.window.show()  # screenshots of a hidden window are black
    s.viewer.reset_view()
    s.viewer.layers.selection.clear()
    s.qtbot.wait(200)
    with_map = s.viewer.screenshot(canvas_only=True, flash=False)
    prob.visible = False
    without = s.viewer.screenshot(canvas_only=True, flash=False)
    prob.visible = True
    cam = s.viewer.scene.camera
    h, wd = with_map.shape[:2]

    def screen(i, j):  # centre of probability cell (i, j) on the canvas
        world = np.asarray(prob.data_to_world((i, j)))
        y = (world[0] - cam.center[-2]) * cam.zoom + h / 2
        x = (world[1] - cam.center[-1]) * cam.zoom + wd / 2
        return int(round(y)), int(round(x))

    def diff(i, j):
        y, x = screen(i, j)
        return int(np.abs(with_map[y, x, :3].astype(int) - without[y, x, :3]).max())

    low = [j for j in range(12) if p_tumour[0, j] < P_CLEAR]
    assert low == [0, 1]
    for i in range(1, 12):
        for j in low:
            assert diff(i, j) <= 1  # p < 0.1: the tissue shows unchanged
        assert diff(i, 11) > 40  # p = 1: clearly coloured
    for j in range(12):
        assert diff(0, j) <= 1  # background masked, whatever p says


def test_names_speak_classes_models_and_micrometres(setup):
    s, w = setup, setup.widget
    w.canvas_check.setChecked(False)
    w.explain_region(Region(200, 400, 128, 128))
    _wait_idle(s)
    (heat,) = _results(s.viewer, "heatmap")
    # centre (264, 464) px at 0.5 µm/px: x 232 µm, y 132 µm
    assert heat.name == "saliency · tumour · tiny @ x 232 µm, y 132 µm"
    assert "@2" not in heat.name and ",4" not in heat.name


def test_demo_banner_only_for_the_demo_model_on_a_real_slide(setup, cmu1_path):
    from napari_xhisto._reader import slide_layer_data

    s, w = setup, setup.widget
    assert not w.banner.isVisibleTo(w)  # a spec model
    w._load_spec(None)  # the bundled demo, on the (unmarked) test OME-TIFF: a real slide
    data, kwargs, _ = slide_layer_data(cmu1_path)[0]
    s.viewer.add_image(data, **kwargs)
    w.slide_combo.setCurrentText(kwargs["name"])
    assert w.banner.isVisibleTo(w) and "synthetic" in w.banner.text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from napari_xhisto.synth.writer import write_slide
    synth, _ = write_slide(s.slide_path.parent / "synthetic.svs", size=256, seed=1,
                           ground_truth=False)
    data, kwargs, _ = slide_layer_data(synth)[0]
    s.viewer.add_image(data, **kwargs)
    w.slide_combo.setCurrentText(kwargs["name"])
    assert not w.banner.isVisibleTo(w)


def test_grey_follows_the_chosen_slide_and_a_deleted_grey_layer_turns_it_off(setup, cmu1_path):
    from napari_xhisto._reader import slide_layer_data

    s, w = setup, setup.widget
    w.grey_check.setChecked(True)
    data, kwargs, _ = slide_layer_data(cmu1_path)[0]
    cmu = s.viewer.add_image(data, **kwargs)
    w.slide_combo.setCurrentText(cmu.name)
    grey = s.viewer.layers[cmu.name + " (grey)"]
    assert not cmu.visible and tuple(grey.units) == tuple(cmu.units)
    s.viewer.layers.remove(grey)  # the user's choice: no grey, and it is not made again
    assert not w.grey_check.isChecked() and cmu.visible
    assert (cmu.name + " (grey)") not in s.viewer.layers
