"""Screenshot of the Explain widget (resources/screenshot_explain.png): two clicks on one canvas.

Run under a display (``xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python
resources/make_screenshot_explain.py``). A synthetic slide at 0.5 µm/px, the bundled demo model,
LRP, explain mode on (the default slide-wide canvas), H&E in grey scale, two 400 µm clicks.
"""

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "bench"))

from click_latency import click, make_slide, open_viewer, pump_for, pump_until  # noqa: E402


def main():
    with tempfile.TemporaryDirectory() as tmp:
        viewer, layer, widget = open_viewer(make_slide(Path(tmp)))
        widget.size_spin.setValue(400.0)
        widget.grey_check.setChecked(True)
        widget.set_explain_mode(True)
        for row, col in ((1700, 1500), (2300, 2250)):
            click(viewer, layer.data_to_world((row, col)))
            pump_until(lambda: widget.worker is None)
        heat = [ly for ly in viewer.layers if "(canvas)" in ly.name][0]
        viewer.layers.selection.active = heat
        viewer.scene.camera.center = tuple(layer.data_to_world((2000, 1875)))
        viewer.scene.camera.zoom = 1.15
        pump_for(1.5)
        from qtpy.QtWidgets import QApplication, QWidget

        for w in QApplication.instance().allWidgets():  # napari's start-up toasts
            if isinstance(w, QWidget) and type(w).__name__ == "NapariQtNotification":
                w.close()
        pump_for(0.5)
        viewer.screenshot(str(HERE / "screenshot_explain.png"), canvas_only=False)
        viewer.close()


if __name__ == "__main__":
    main()
