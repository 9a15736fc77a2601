"""The Explain widget end to end in a real napari viewer (run under Xvfb).

A small synthetic slide and a small random-weight model written as a real spec + safetensors
file; clicks go through napari's own mouse-callback machinery; results are compared with a
direct ``explain_region`` call on the same region.
"""

from types import SimpleNamespace

import numpy as np
import pytest
from qtpy.QtCore import Qt

pytestmark = pytest.mark.viewer

MPP = 0.5
SIZE = 768


def _write_slide(path):
    try:
        try:
            from napari_xhisto.synth import write_slide
        except ImportError:
            from napari_xhisto.synth.writer import write_slide
        slide_path, _ = write_slide(path, size=(SIZE, SIZE), seed=3, format="ome-tiff", mpp=MPP,
                                    ground_truth=False)
        return slide_path
    except ImportError:  # synth not landed yet: a tiled RGB TIFF with H&E-like colours
        import tifffile
        from scipy.ndimage import gaussian_filter

        rng = np.random.default_rng(3)
        field = gaussian_filter(rng.normal(size=(SIZE, SIZE)), 6)
        field = (field - field.min()) / np.ptp(field)
        pink, purple = np.array([230, 150, 190]), np.array([110, 60, 150])
        rgb = (pink * (1 - field[..., None]) + purple * field[..., None]).astype(np.uint8)
        tifffile.imwrite(path, rgb, tile=(256, 256), photometric="rgb",
                         resolution=(1e4 / MPP, 1e4 / MPP), resolutionunit="CENTIMETER")
        return path


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    return _write_slide(tmp_path_factory.mktemp("slide") / "small.ome.tif")


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory):
    import torch

    from napari_xhisto.models import ModelSpec, build_architecture, save_model

    torch.manual_seed(0)
    spec = ModelSpec(architecture="xhisto_cnn_s", class_names=["non-tumour", "tumour"],
                     patch_size=32, mpp=1.0)
    module = build_architecture(spec.architecture, spec.num_classes).eval()
    return save_model(module, spec, tmp_path_factory.mktemp("model") / "tiny.json")


def _add_slide(viewer, path):
    try:
        from napari_xhisto._reader import slide_layer_data

        data, kwargs, _ = slide_layer_data(path)[0]
    except ImportError:
        from napari_xhisto.slide.opening import open_slide

        s = open_slide(path)
        data = s.pyramid()
        kwargs = {"rgb": True, "multiscale": True, "scale": (s.mpp, s.mpp), "name": "slide",
                  "metadata": {"xhisto": {"slide_path": str(path), "mpp": s.mpp}, "xhisto_slide": s}}
    return viewer.add_image(data, **kwargs)


@pytest.fixture
def setup(make_napari_viewer, qtbot, slide_path, spec_path):
    from napari_xhisto._widgets.explain_widget import ExplainWidget

    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    viewer = make_napari_viewer()
    slide_layer = _add_slide(viewer, slide_path)
    widget = ExplainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Explain")
    widget._load_spec(str(spec_path))
    widget.method_combo.setCurrentText("saliency")
    widget.size_spin.setValue(64.0)  # 128 level-0 px
    return SimpleNamespace(viewer=viewer, widget=widget, slide=slide_layer, qtbot=qtbot,
                           slide_path=slide_path, spec_path=spec_path)


@pytest.fixture
def notifications(monkeypatch):
    """Every napari notification shown during the test, instead of dialogs or re-raised errors."""
    from napari.utils.notifications import notification_manager

    seen = []
    monkeypatch.setattr(notification_manager, "catch_error", False, raising=False)
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)


def _click(viewer, world, button=1):
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

    def ev(kind):
        return ReadOnlyWrapper(SimpleNamespace(type=kind, button=button, modifiers=[],
                                               position=tuple(world), pos=(100.0, 100.0),
                                               is_dragging=False, handled=False))

    mouse_press_callbacks(viewer, ev("mouse_press"))
    mouse_release_callbacks(viewer, ev("mouse_release"))


def _qt_click(viewer, world):
    """A real left click on the canvas widget at a world point; returns where napari put it."""
    from qtpy.QtCore import QPoint, Qt
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    seen = []
    spy = lambda v, e: seen.append(np.asarray(e.position)[-2:])  # noqa: E731
    viewer.mouse_drag_callbacks.insert(0, spy)
    try:
        QApplication.processEvents()
        h, w = viewer.canvas.size
        cam = viewer.scene.camera
        y = (world[0] - cam.center[-2]) * cam.zoom + h / 2
        x = (world[1] - cam.center[-1]) * cam.zoom + w / 2
        QTest.mouseClick(viewer.window._qt_viewer.canvas.native, Qt.MouseButton.LeftButton,
                         Qt.KeyboardModifier.NoModifier,
                         QPoint(int(round(x)), int(round(y))))
        QApplication.processEvents()
    finally:
        viewer.mouse_drag_callbacks.remove(spy)
    assert seen, "the click did not reach napari's mouse callbacks"
    return seen[0]


def _expected_region(world, *, side=128, snap=2, shape=(SIZE, SIZE)):
    """The region the widget should explain for a click at ``world`` (slide scale MPP, no shift)."""
    from napari_xhisto.geometry import Region

    start = []
    for centre_um, limit in zip(world, shape):
        centre_px = centre_um / MPP + 0.5  # pixel i spans [i, i+1): its centre is at i*MPP
        k = min(max(round((centre_px - side / 2) / snap), 0), (limit - side) // snap)
        start.append(k * snap)
    return Region(start[0], start[1], side, side)


def _world_of_pixel(layer, row, col):
    """World µm of the centre of level-0 pixel (row, col)."""
    return np.asarray(layer.data_to_world((row, col)))


def _direct(slide_path, region, spec_path, method, *, target, overlap, normalize, **params):
    from napari_xhisto.explain import explain_region
    from napari_xhisto.models import load_model
    from napari_xhisto.progress import run_to_end
    from napari_xhisto.slide.opening import open_slide

    model = load_model(str(spec_path))
    with open_slide(slide_path) as slide:
        return run_to_end(explain_region(slide, region, model, method, target=target,
                                         overlap=overlap, normalize=normalize, **params))


def _wait_idle(s, timeout=60_000):
    s.qtbot.waitUntil(lambda: s.widget.worker is None, timeout=timeout)


def _heat_layers(viewer):
    return [ly for ly in viewer.layers if ly.metadata.get("xhisto", {}).get("kind") == "heatmap"]


def test_click_adds_layer_equal_to_direct_explain_region(setup):
    from napari_xhisto.geometry import Placement

    s, w = setup, setup.widget
    w.canvas_check.setChecked(False)
    w.set_explain_mode(True)
    s.viewer.reset_view()
    world = _qt_click(s.viewer, _world_of_pixel(s.slide, 300, 410))
    assert w.worker is not None
    _wait_idle(s)
    (layer,) = _heat_layers(s.viewer)
    # 64 µm = 128 px centred on the click, corner snapped to the model grid (2 level-0 px)
    region = _expected_region(world)
    assert abs(region.level0_row + 64 - 300.5) <= 2.5 and abs(region.level0_col + 64 - 410.5) <= 2.5
    assert layer.metadata["xhisto"]["provenance"]["region"] == list(region.as_tuple())
    heat = _direct(s.slide_path, region, s.spec_path, "saliency", target=1, overlap=0.1,
                   normalize="global-max")
    np.testing.assert_allclose(layer.data, heat.values, rtol=1e-5, atol=1e-6)
    tf = heat.placement.layer_transform(MPP)
    np.testing.assert_allclose(layer.scale, tf["scale"])
    np.testing.assert_allclose(layer.translate, tf["translate"])
    meta = layer.metadata["xhisto"]
    assert Placement.from_dict(meta["placement"]) == heat.placement
    assert meta["mpp"] == pytest.approx(MPP) and meta["slide_path"] == str(s.slide_path)
    assert meta["provenance"]["method"] == "saliency"
    lo, hi = layer.contrast_limits
    assert lo == pytest.approx(-hi)
    assert hi == pytest.approx(np.percentile(np.abs(heat.values), 99.5), rel=1e-5)
    assert layer.colormap.name == "xhisto-bwr"


def test_clicks_share_one_canvas_normalised_by_global_max(setup):
    from napari_xhisto.geometry import Region

    s, w = setup, setup.widget
    w.norm_combo.setCurrentText("global-max")
    w.canvas_check.setChecked(True)
    w.set_explain_mode(True)
    regions = [Region(136, 136, 128, 128), Region(456, 496, 128, 128)]
    for region in regions:  # clicks on the pixels at the centres of these regions
        _click(s.viewer, _world_of_pixel(s.slide, region.level0_row + 64, region.level0_col + 64))
        _wait_idle(s)
    (layer,) = _heat_layers(s.viewer)
    assert layer.multiscale and layer.metadata["xhisto"]["canvas"] is True
    heats = [_direct(s.slide_path, r, s.spec_path, "saliency", target=1, overlap=0.1,
                     normalize="global-max") for r in regions]
    # seed 000: divide by the global maximum over all computed (patch) maps of both clicks
    scales = [h.provenance["normalization_scale"] for h in heats]
    gmax = max(scales)
    raws = [SimpleNamespace(values=h.values * sc, placement=h.placement)
            for h, sc in zip(heats, scales)]
    full = np.asarray(layer.data[0])
    tf = layer.metadata["xhisto"]["placement"]
    step = tf["step_row"]
    for heat in raws:
        r0 = round(heat.placement.origin_row / step)
        c0 = round(heat.placement.origin_col / step)
        h, wd = heat.values.shape
        np.testing.assert_allclose(full[r0:r0 + h, c0:c0 + wd], heat.values / gmax,
                                   rtol=1e-5, atol=1e-6)
    assert layer.metadata["xhisto"]["global_max"] == pytest.approx(gmax)
    assert [p["placement"] for p in layer.metadata["xhisto"]["pastes"]] == \
        [h.placement.to_dict() for h in raws]


def test_drag_does_not_explain_and_mode_off_ignores_clicks(setup):
    s, w = setup, setup.widget
    _click(s.viewer, _world_of_pixel(s.slide, 300, 300))
    assert w.worker is None
    from napari.utils.key_bindings import coerce_keybinding

    key = s.viewer.keymap[coerce_keybinding("Shift-E")]
    key(s.viewer)
    assert w.explain_mode and w.mode_button.isChecked()
    key(s.viewer)
    assert not w.explain_mode


@pytest.mark.parametrize("canvas", [False, True], ids=["separate-layer", "canvas"])
def test_cancel_stops_worker_and_adds_no_layer(setup, canvas):
    s, w = setup, setup.widget
    w.norm_combo.setCurrentText("global-max")
    w.canvas_check.setChecked(canvas)  # a canvas made for this run alone goes too
    w.method_combo.setCurrentText("smoothgrad")
    w._forms["smoothgrad"].editors["n_samples"].setValue(64)
    w.size_spin.setValue(300.0)
    steps = []
    worker = w.explain_region(__import__("napari_xhisto.geometry").geometry.Region(0, 0, 600, 600))
    worker.yielded.connect(steps.append)
    s.qtbot.waitUntil(lambda: len(steps) >= 2, timeout=60_000)
    w.cancel_button.click()
    _wait_idle(s)
    assert _heat_layers(s.viewer) == []
    done, total = steps[-1]
    assert done < total, "the run finished before Cancel took effect"
    assert "cancelled" in w.status.text()


def test_bad_model_file_is_a_notification_not_a_traceback(setup, notifications, tmp_path):
    from napari.utils.notifications import ErrorNotification, NotificationSeverity

    s, w = setup, setup.widget
    broken_json = tmp_path / "broken.json"
    broken_json.write_text("{ not json")
    w._load_spec(str(broken_json))
    assert notifications and notifications[-1].severity == NotificationSeverity.ERROR
    assert "broken.json" in notifications[-1].message
    assert not isinstance(notifications[-1], ErrorNotification)  # no traceback attached
    assert w._spec_path == str(s.spec_path)  # the good model stays chosen

    # a readable spec whose weights are garbage fails when the model loads, in the worker
    bad = tmp_path / "bad.json"
    bad.write_text(s.spec_path.read_text())
    (tmp_path / "tiny.safetensors").write_bytes(b"garbage, not safetensors")
    w._load_spec(str(bad))
    n = len(notifications)
    w.explain_region(__import__("napari_xhisto.geometry").geometry.Region(0, 0, 128, 128))
    _wait_idle(s)
    assert len(notifications) > n
    note = notifications[-1]
    assert note.severity == NotificationSeverity.ERROR and "tiny.safetensors" in note.message
    assert not isinstance(note, ErrorNotification)
    assert _heat_layers(s.viewer) == []


def test_view_too_large_is_refused_with_probability_offer(setup, notifications):
    s, w = setup, setup.widget
    w.method_combo.setCurrentText("integrated-gradients")
    s.viewer.reset_view()
    s.viewer.scene.camera.zoom = s.viewer.scene.camera.zoom * 0.5
    assert w.explain_view() is None and w.worker is None
    assert not w.offer_button.isHidden()
    assert "probability map" in notifications[-1].message
    w.offer_button.click()
    _wait_idle(s)
    (prob,) = [ly for ly in s.viewer.layers
               if ly.metadata.get("xhisto", {}).get("kind") == "probability"]
    assert prob.metadata["xhisto"]["class_name"] == "tumour"
    assert 0.0 <= float(np.nanmin(prob.data)) and float(np.nanmax(prob.data)) <= 1.0


def test_compare_view_has_one_labelled_panel_per_method_and_nothing_else(setup):
    from napari_xhisto._widgets.layers import luminance
    from napari_xhisto.geometry import Region

    s, w = setup, setup.widget
    w.canvas_check.setChecked(False)
    w.compare_box.setChecked(True)
    for i in range(w.compare_list.count()):
        item = w.compare_list.item(i)
        if item.text() in ("saliency", "gradcam"):
            item.setCheckState(Qt.CheckState.Checked)
    w.compare_prob.setChecked(True)
    # things the grid used to show as panels of their own: annotations, the bare slide
    s.viewer.add_points(np.zeros((0, 2)), name="cells", units="µm")
    s.viewer.add_shapes(name="regions", units="µm")
    region = Region(128, 128, 128, 128)
    w.explain_region(region)
    _wait_idle(s)
    kinds = sorted((ly.metadata["xhisto"]["kind"], ly.metadata["xhisto"]["provenance"].get("method"))
                   for ly in s.viewer.layers if "xhisto" in ly.metadata
                   and ly.metadata["xhisto"].get("kind") in ("heatmap", "probability"))
    assert [k for k, _ in kinds] == ["heatmap", "heatmap", "probability"]
    assert {m for k, m in kinds if k == "heatmap"} == {"saliency", "gradcam"}

    win = w.show_compare()
    s.qtbot.addWidget(win)
    titles = [t.text() for t in win.titles]
    assert len(win.views) == len(titles) == 3  # one per method + the probability map, nothing else
    assert sorted(titles) == sorted(["saliency · tumour · normalised: global-max",
                                     "gradcam · tumour · normalised: global-max",
                                     "p(tumour) · probability (0 to 1)"])
    # each panel: the layer as napari draws it (colormap, limits, opacity) over the grey H&E
    grey = luminance(np.asarray(s.slide.data[0])[128:256, 128:256])
    for view in win.views:
        layer = s.viewer.layers[view.panel.layer_name]
        rgb = view.panel.rgb
        assert rgb.shape == (128, 128, 3) and view.panel.downsample == 1
        data = np.asarray(layer.data)
        p = layer.metadata["xhisto"]["placement"]
        # panel pixel (64, 64) is centred on level-0 (192.5, 192.5)
        v = data[int((192.5 - p["origin_row"]) // p["step_row"]),
                 int((192.5 - p["origin_col"]) // p["step_col"])]
        lo, hi = layer.contrast_limits
        rgba = layer.colormap.map(np.array([np.clip((v - lo) / (hi - lo), 0, 1)]))[0]
        a = rgba[3] * layer.opacity if np.isfinite(v) else 0.0
        expected = rgba[:3] * 255 * a + grey[64, 64] * (1 - a)
        np.testing.assert_allclose(rgb[64, 64], expected, atol=1.5)
    # one camera: zooming one panel zooms them all, centred alike
    win.views[0].zoom_by(2.0)
    win.views[0].centerOn(30, 40)
    for view in win.views[1:]:
        assert view.transform().m11() == pytest.approx(win.views[0].transform().m11())
        c0, c = win.views[0].centre(), view.centre()
        assert (c.x(), c.y()) == pytest.approx((c0.x(), c0.y()), abs=1.0)
    win.close()


def test_parameters_shown_per_method_with_declared_ranges(setup):
    from napari_xhisto.explain import get_explainer

    w = setup.widget
    for name in ("smoothgrad", "saliency", "lrp-epsilon-plus"):
        w.method_combo.setCurrentText(name)
        form = w.params_stack.currentWidget()
        params = get_explainer(name).params
        assert set(form.editors) == set(params)
        assert form.values() == get_explainer(name).check_params()
    spin = w._forms["smoothgrad"].editors["n_samples"]
    p = get_explainer("smoothgrad").params["n_samples"]
    assert (spin.minimum(), spin.maximum()) == (p.low, p.high)


def test_greyscale_toggle_and_legend(setup):
    from napari_xhisto._widgets.layers import luminance

    s, w = setup, setup.widget
    w.grey_check.setChecked(True)
    grey = s.viewer.layers[s.slide.name + " (grey)"]
    assert not s.slide.visible
    level = np.asarray(s.slide.data[-1])
    np.testing.assert_array_equal(np.asarray(grey.data[-1]), luminance(level))
    np.testing.assert_allclose(grey.scale, s.slide.scale)
    w.grey_check.setChecked(False)
    assert s.slide.visible and (s.slide.name + " (grey)") not in s.viewer.layers


def test_explain_mode_makes_the_canvas_ahead_and_clicks_only_paint_it(setup):
    """Adding a layer stalls napari's GUI thread; in explain mode the click's canvas exists first."""
    from napari_xhisto.geometry import Region

    s, w = setup, setup.widget
    w.norm_combo.setCurrentText("global-max")
    w.canvas_check.setChecked(True)
    assert _heat_layers(s.viewer) == []
    w.set_explain_mode(True)
    (made,) = _heat_layers(s.viewer)
    assert made.name == "saliency · tumour · tiny (canvas)"
    assert made.metadata["xhisto"]["pastes"] == []
    assert np.isnan(np.asarray(made.data[-1])).all()  # empty: shows the slide unchanged

    # another method re-targets the empty layer instead of adding one
    w.method_combo.setCurrentText("gradcam")
    s.qtbot.waitUntil(lambda: _heat_layers(s.viewer)[0].name == "gradcam · tumour · tiny (canvas)")
    (layer,) = _heat_layers(s.viewer)
    assert layer is made and layer.metadata["xhisto"]["provenance"]["method"] == "gradcam"
    w.method_combo.setCurrentText("saliency")
    s.qtbot.waitUntil(lambda: _heat_layers(s.viewer)[0].name == "saliency · tumour · tiny (canvas)")

    inserted = []
    s.viewer.layers.events.inserted.connect(inserted.append)
    region = Region(136, 136, 128, 128)
    _click(s.viewer, _world_of_pixel(s.slide, 200, 200))
    _wait_idle(s)
    assert inserted == []  # the result went into the existing layer
    (layer,) = _heat_layers(s.viewer)
    assert layer is made and len(layer.metadata["xhisto"]["pastes"]) == 1
    heat = _direct(s.slide_path, region, s.spec_path, "saliency", target=1, overlap=0.1,
                   normalize="global-max")
    full = np.asarray(layer.data[0])
    np.testing.assert_allclose(full[68:132, 68:132], heat.values, rtol=1e-5, atol=1e-6)
    # display limits as for a single-click layer: +-99.5th percentile of |R| (values untouched),
    # set once the frame with the data has been drawn
    s.qtbot.waitUntil(lambda: layer.contrast_limits[1] != 1.0)
    lo, hi = layer.contrast_limits
    assert lo == pytest.approx(-hi)
    assert hi == pytest.approx(np.percentile(np.abs(heat.values), 99.5), rel=1e-4)
    layer.contrast_limits = (-0.5, 0.5)  # the user's choice survives the next click
    _click(s.viewer, _world_of_pixel(s.slide, 500, 500))
    _wait_idle(s)
    s.qtbot.wait(500)  # past the deferred limits update
    assert tuple(layer.contrast_limits) == (-0.5, 0.5)
    assert len(layer.metadata["xhisto"]["pastes"]) == 2

    # a parameter change is another canvas (made ahead); leaving explain mode removes only
    # the empty one, the painted canvas is the user's result
    w._forms["saliency"].editors["abs"].setChecked(True)
    s.qtbot.waitUntil(lambda: len(_heat_layers(s.viewer)) == 2)
    w.set_explain_mode(False)
    assert _heat_layers(s.viewer) == [layer]


def test_a_deleted_canvas_starts_afresh(setup):
    s, w = setup, setup.widget
    w.norm_combo.setCurrentText("global-max")
    w.canvas_check.setChecked(True)
    w.set_explain_mode(True)
    _click(s.viewer, _world_of_pixel(s.slide, 200, 200))
    _wait_idle(s)
    (first,) = _heat_layers(s.viewer)
    s.viewer.layers.remove(first)
    _click(s.viewer, _world_of_pixel(s.slide, 500, 500))
    _wait_idle(s)
    (layer,) = _heat_layers(s.viewer)
    pastes = layer.metadata["xhisto"]["pastes"]
    assert len(pastes) == 1 and pastes[0]["placement"]["origin_row"] > 300
    assert np.isnan(np.asarray(layer.data[0])[60:140, 60:140]).all()  # first click gone

