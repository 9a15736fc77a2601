"""Screenshots of the Evaluate widget: ROC with intervals, radius sweep, localisation against
the threshold, region table, Bias tab with a hotspot on the slide.

Run under a display (``xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python
resources/make_screenshot_evaluate.py``). The demo slide (6144 px, seed 7) with its ground
truth, one 1024 x 1024 px region explained with the bundled demo model and LRP on the default
slide-wide canvas, the same region's Grad-CAM and patch probability added as heatmap layers
(seed 000's granularity comparison), Evaluate docked and run against the ground-truth cells and
regions with the other two ticked under "compare with".
Writes resources/screenshot_evaluate_{roc,radius,localisation,regions,bias}.png.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "bench"))

from click_latency import pump_for, pump_until  # noqa: E402
from event_loop_stall import explained_demo_viewer  # noqa: E402


def close_toasts():
    from qtpy.QtWidgets import QApplication, QWidget

    for w in QApplication.instance().allWidgets():  # napari's start-up toasts
        if isinstance(w, QWidget) and type(w).__name__ == "NapariQtNotification":
            w.close()


def shoot(viewer, name):
    close_toasts()
    pump_for(0.8)
    viewer.screenshot(str(HERE / name), canvas_only=False)


def add_other_heatmaps(viewer, scene) -> list[str]:
    """Grad-CAM and the patch probability of the explained region, as (hidden) heatmap layers."""
    from napari.layers import Layer

    from napari_xhisto._widgets.layers import heatmap_layer_data
    from napari_xhisto.explain import explain_region
    from napari_xhisto.geometry import Region
    from napari_xhisto.models import load_model
    from napari_xhisto.progress import run_to_end
    from napari_xhisto.slide import open_slide

    model = load_model("demo")
    mpp = viewer.layers["ground truth cells"].metadata["xhisto"]["mpp"]
    region = Region(*scene["explained_region_level0"])
    names = []
    with open_slide(scene["slide_path"]) as slide:
        for method, name in (("gradcam", "Grad-CAM"), ("probability", "p(tumour)")):
            heat = run_to_end(explain_region(slide, region, model, method,
                                             target=model.spec.positive_index))
            data, kw, kind = heatmap_layer_data(heat.values, heat.placement, mpp=mpp,
                                                provenance=dict(heat.provenance), name=name,
                                                slide_path=scene["slide_path"])
            kw["visible"] = False
            viewer.add_layer(Layer.create(data, kw, kind))
            names.append(name)
    return names


def show_tab(widget, index):
    widget.tabs.setCurrentIndex(index)
    bar = widget.scroll.verticalScrollBar()
    bar.setValue(min(widget.tabs.y() - 4, bar.maximum()))  # the tab, not the form above it


def main():
    viewer, widget, scene = explained_demo_viewer()
    others = add_other_heatmaps(viewer, scene)
    lrp = next(n for n in widget.controller.heatmap_names() if n not in others)
    widget.heatmap_box.setCurrentText(lrp)
    widget.set_checked(widget.compare_list, others)
    region = scene["explained_region_level0"]
    mpp = viewer.layers["ground truth cells"].metadata["xhisto"]["mpp"]
    viewer.layers["ground truth cells"].visible = True
    viewer.scene.camera.center = ((region[0] + region[2] / 2) * mpp, (region[1] + region[3] / 2) * mpp)
    viewer.scene.camera.zoom = 0.95
    widget.run_button.click()
    pump_until(lambda: widget.worker is None and widget.result is not None)
    show_tab(widget, 0)
    shoot(viewer, "screenshot_evaluate_roc.png")
    show_tab(widget, 1)
    shoot(viewer, "screenshot_evaluate_radius.png")
    show_tab(widget, 3)
    shoot(viewer, "screenshot_evaluate_localisation.png")
    show_tab(widget, 2)
    widget.region_table.selectRow(0)
    widget.region_table.cellClicked.emit(0, 0)
    shoot(viewer, "screenshot_evaluate_regions.png")
    widget.tabs.setCurrentIndex(4)
    widget.scroll.verticalScrollBar().setValue(widget.scroll.verticalScrollBar().maximum())
    widget.hotspot_table.selectRow(0)
    widget.hotspot_table.cellClicked.emit(0, 0)
    viewer.scene.camera.zoom = 1.6
    shoot(viewer, "screenshot_evaluate_bias.png")
    viewer.close()


if __name__ == "__main__":
    main()
