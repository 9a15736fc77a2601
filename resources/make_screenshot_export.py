"""Screenshot of the Export widget (resources/screenshot_export.png).

Run under a display (``xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python
resources/make_screenshot_export.py``). The demo slide with one 1024 x 1024 px region explained
by the bundled demo model (LRP) on the default canvas; the Export widget names the layer's
model, method and target class, and has just written the contours above 0.2.
"""

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "bench"))

from click_latency import pump_for  # noqa: E402
from event_loop_stall import explained_demo_viewer  # noqa: E402


def main():
    from napari_xhisto._widgets.export_widget import ExportWidget

    viewer, widget, scene = explained_demo_viewer(widget_class=ExportWidget, name="Export")
    region = scene["explained_region_level0"]
    mpp = viewer.layers["ground truth cells"].metadata["xhisto"]["mpp"]
    viewer.layers["ground truth regions"].visible = False
    viewer.canvas.overlays.scale_bar.visible = True
    viewer.scene.camera.center = ((region[0] + region[2] / 2) * mpp, (region[1] + region[3] / 2) * mpp)
    viewer.scene.camera.zoom = 1.6
    with tempfile.TemporaryDirectory() as tmp:
        widget.threshold.setValue(0.2)
        widget.export("contours", Path(tmp) / "lrp_contours.geojson")
        widget.status.setText(widget.status.text().replace(tmp + "/", ""))
        pump_for(1.5)
        from qtpy.QtWidgets import QApplication, QWidget

        for w in QApplication.instance().allWidgets():  # start-up and "saved" toasts
            if isinstance(w, QWidget) and type(w).__name__ == "NapariQtNotification":
                w.close()
        pump_for(0.5)
        viewer.screenshot(str(HERE / "screenshot_export.png"), canvas_only=False)
    viewer.close()


if __name__ == "__main__":
    main()
