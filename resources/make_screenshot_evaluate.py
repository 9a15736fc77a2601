"""Screenshots of the Evaluate widget: ROC, region table, Bias tab with a hotspot on the slide.

Run under a display (``xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python
resources/make_screenshot_evaluate.py``). The demo slide (6144 px, seed 7) with its ground
truth, one 1024 x 1024 px region explained with the bundled demo model and LRP on the default
slide-wide canvas, Evaluate docked and run against the ground-truth cells and regions.
Writes resources/screenshot_evaluate_{roc,regions,bias}.png.
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


def main():
    viewer, widget, scene = explained_demo_viewer()
    region = scene["explained_region_level0"]
    mpp = viewer.layers["ground truth cells"].metadata["xhisto"]["mpp"]
    viewer.layers["ground truth cells"].visible = True
    viewer.scene.camera.center = ((region[0] + region[2] / 2) * mpp, (region[1] + region[3] / 2) * mpp)
    viewer.scene.camera.zoom = 0.95
    widget.run_button.click()
    pump_until(lambda: widget.worker is None and widget.result is not None)
    widget.tabs.setCurrentIndex(0)
    shoot(viewer, "screenshot_evaluate_roc.png")
    widget.tabs.setCurrentIndex(1)
    widget.region_table.selectRow(0)
    widget.region_table.cellClicked.emit(0, 0)
    shoot(viewer, "screenshot_evaluate_regions.png")
    widget.tabs.setCurrentIndex(3)
    widget.scroll.verticalScrollBar().setValue(widget.scroll.verticalScrollBar().maximum())
    widget.hotspot_table.selectRow(0)
    widget.hotspot_table.cellClicked.emit(0, 0)
    viewer.scene.camera.zoom = 1.6
    shoot(viewer, "screenshot_evaluate_bias.png")
    viewer.close()


if __name__ == "__main__":
    main()
