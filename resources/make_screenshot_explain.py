"""Screenshots of the Explain side (resources/screenshot_*.png), made as a user sees them.

Run under a display (``xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python
resources/make_screenshot_explain.py``). The demo viewer (``xhisto demo``: synthetic slide, its
ground truth, the four widgets as tabs of one dock) in a 1600 x 1200 window:

- ``screenshot_explain.png``: explain mode (grey H&E), two LRP clicks on one canvas, the
  outlines of the explained regions, the legend;
- ``screenshot_explain_1366.png``: the same at 1366 x 768;
- ``screenshot_probability.png``: the probability map of the view (clear where p is low,
  background masked) with its legend in p units;
- ``screenshot_compare.png``: the side-by-side window of LRP, Grad-CAM and p(tumour) on one
  region;
- ``screenshot_explain_cmu1.png``: the real slide ../shared/data/CMU-1-Small-Region.svs with
  the bundled demo model: the banner says the model knows synthetic tissue only.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "bench"))

from click_latency import click, pump_for, pump_until  # noqa: E402

CMU1 = HERE.parents[1] / "shared" / "data" / "CMU-1-Small-Region.svs"


def close_toasts():
    from qtpy.QtWidgets import QApplication, QWidget

    for w in QApplication.instance().allWidgets():  # napari's start-up notifications
        if isinstance(w, QWidget) and type(w).__name__ == "NapariQtNotification":
            w.close()


def shot(viewer, name, *, settle=1.5):
    pump_for(settle)
    close_toasts()
    pump_for(0.3)
    viewer.screenshot(str(HERE / name), canvas_only=False, flash=False)
    print("wrote", HERE / name)


def results(viewer, kind):
    return [ly for ly in viewer.layers if ly.metadata.get("xhisto", {}).get("kind") == kind]


def look_at(viewer, layer, rows, cols):
    """Centre the camera on level-0 ``rows`` x ``cols`` (ranges) of ``layer``, filling the view."""
    import numpy as np

    a = np.asarray(layer.data_to_world((rows[0], cols[0])))[-2:]
    b = np.asarray(layer.data_to_world((rows[1], cols[1])))[-2:]
    viewer.scene.camera.center = tuple((a + b) / 2)
    h, w = viewer.canvas.size
    viewer.scene.camera.zoom = 0.9 * min(h / abs(b[0] - a[0]), w / abs(b[1] - a[1]))


def demo_with_probability_map():
    """The demo viewer at 1600 x 1200 with its whole-slide probability map (cheap): where the
    demo model sees tumour. Returns viewer, widgets, the slide layer, the map layer, its values
    (NaN as 0) and its step in level-0 px."""
    import napari
    import numpy as np

    from napari_xhisto._widgets.launch import build_demo_viewer

    viewer = napari.Viewer(show=True, title="napari-xhisto")
    viewer.window._qt_window.resize(1600, 1200)
    viewer, widgets = build_demo_viewer(viewer)
    pump_for(1.0)
    widgets["Explain"].probability_map("whole slide")
    pump_until(lambda: widgets["Explain"].worker is None)
    (pmap,) = results(viewer, "probability")
    p = np.nan_to_num(np.asarray(pmap.data), nan=0.0)
    return viewer, widgets, viewer.layers[0], pmap, p, pmap.metadata["xhisto"]["placement"][
        "step_row"]


def main():
    import numpy as np

    viewer, widgets, slide, pmap, p, step = demo_with_probability_map()
    explain = widgets["Explain"]
    i, j = np.unravel_index(np.argmax(p), p.shape)
    centre = (int((i + 0.5) * step), int((j + 0.5) * step))
    viewer.layers.remove(pmap)

    # explain mode: two 400 µm clicks on one LRP canvas, over the grey H&E
    explain.size_spin.setValue(400.0)
    explain.set_explain_mode(True)
    for dr, dc in ((-350, -300), (350, 420)):
        click(viewer, slide.data_to_world((centre[0] + dr, centre[1] + dc)))
        pump_until(lambda: explain.worker is None)
    pump_for(1.0)
    (canvas,) = results(viewer, "heatmap")
    viewer.layers.selection.active = canvas
    look_at(viewer, slide, (centre[0] - 1000, centre[0] + 1000), (centre[1] - 1000,
                                                                  centre[1] + 1000))
    shot(viewer, "screenshot_explain.png")
    viewer.window._qt_window.resize(1366, 768)
    shot(viewer, "screenshot_explain_1366.png")
    viewer.window._qt_window.resize(1600, 1200)
    pump_for(0.5)

    # compare: LRP, Grad-CAM and p(tumour) on one region, side by side
    explain.set_explain_mode(False)
    explain.canvas_check.setChecked(False)
    explain.compare_box.setChecked(True)
    for k in range(explain.compare_list.count()):
        item = explain.compare_list.item(k)
        if item.text() in ("lrp-epsilon-plus", "gradcam"):
            from qtpy.QtCore import Qt

            item.setCheckState(Qt.CheckState.Checked)
    explain.compare_prob.setChecked(True)
    from napari_xhisto._widgets.layers import region_centred_at

    region = region_centred_at(centre[0], centre[1], 1024, 1024,
                               slide_shape=slide.data[0].shape[:2], snap=4)
    explain.explain_region(region)
    pump_until(lambda: explain.worker is None)
    win = explain.show_compare()
    win.resize(1500, 560)
    pump_for(1.5)
    win.fit()
    pump_for(0.5)
    win.grab().save(str(HERE / "screenshot_compare.png"))
    print("wrote", HERE / "screenshot_compare.png")
    win.close()
    for layer in results(viewer, "heatmap") + results(viewer, "probability"):
        if layer is not canvas:
            viewer.layers.remove(layer)
    explain.compare_box.setChecked(False)

    # the probability map of a view, legend in p units
    canvas.visible = False
    look_at(viewer, slide, (centre[0] - 2000, centre[0] + 2000), (centre[1] - 2000,
                                                                  centre[1] + 2000))
    pump_for(0.5)
    explain.probability_map("view")
    pump_until(lambda: explain.worker is None)
    (prob,) = results(viewer, "probability")
    viewer.layers.selection.active = prob
    shot(viewer, "screenshot_probability.png")

    # the real slide with the demo model: the banner
    if CMU1.exists():
        from napari.layers import Layer

        from napari_xhisto._reader import slide_layer_data

        for layer in list(viewer.layers):
            viewer.layers.remove(layer)
        for data, kwargs, kind in slide_layer_data(CMU1):
            viewer.add_layer(Layer.create(data, kwargs, kind))
        cmu = viewer.layers[0]
        explain.slide_combo.setCurrentText(cmu.name)
        explain.size_spin.setValue(200.0)
        explain.set_explain_mode(True)
        shape = cmu.data[0].shape[:2]
        click(viewer, cmu.data_to_world((shape[0] // 2, shape[1] // 2)))
        pump_until(lambda: explain.worker is None)
        look_at(viewer, cmu, (shape[0] // 2 - 700, shape[0] // 2 + 700),
                (shape[1] // 2 - 700, shape[1] // 2 + 700))
        shot(viewer, "screenshot_explain_cmu1.png")
    viewer.close()


if __name__ == "__main__":
    main()
