"""Screenshot of the Annotate widget (resources/screenshot_annotate.png).

Run under a display (``xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python
resources/make_screenshot_annotate.py``). The demo slide (6144 px, seed 7): the ground truth of
a 400 µm square is imported into the Annotate widget (its class layers are made then, in the
slide's µm), tumour is picked for placing more cells.
"""

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "bench"))

from click_latency import pump_for  # noqa: E402


def main():
    import napari
    from napari.layers import Layer

    from napari_xhisto import demo
    from napari_xhisto._reader import slide_layer_data
    from napari_xhisto._sample_data import cached_synthetic_slide
    from napari_xhisto._widgets.annotate import AnnotateWidget
    from napari_xhisto.annotations import AnnotationSet, CellPoints, read_annotations

    slide_path, truth_path = cached_synthetic_slide(size=demo.DEMO_SIZE, seed=demo.DEMO_SEED)
    viewer = napari.Viewer(title="napari-xhisto: Annotate")
    viewer.window._qt_window.resize(1600, 1200)
    for data, kwargs, kind in slide_layer_data(str(slide_path)):
        viewer.add_layer(Layer.create(data, kwargs, kind))
    viewer.canvas.overlays.scale_bar.visible = True
    if True:
        widget = AnnotateWidget(viewer, autosave=False)
        viewer.window.add_dock_widget(widget, name="Annotate", area="right")
        truth = read_annotations(truth_path)
        r0, c0, side = 2300, 2600, 800  # level-0 px
        c = truth.cells
        inside = (c.rows >= r0) & (c.rows < r0 + side) & (c.cols >= c0) & (c.cols < c0 + side)
        cells = CellPoints(c.rows[inside], c.cols[inside], c.classes[inside])
        regions = [r for r in truth.regions
                   if r.cls != "tumour area" and (r.exterior[:, 0] >= r0).all()
                   and (r.exterior[:, 0] < r0 + side).all() and (r.exterior[:, 1] >= c0).all()
                   and (r.exterior[:, 1] < c0 + side).all()]
        widget.load(AnnotationSet(cells, regions, truth.colors))
        widget.activate_class("tumour")
        widget.status.setText(f"imported {len(cells)} cells and {len(regions)} region(s): the "
                              "ground truth of a 400 µm square")
        mpp = viewer.layers[0].scale[-1]
        viewer.scene.camera.center = ((r0 + side / 2) * mpp, (c0 + side / 2) * mpp)
        viewer.scene.camera.zoom = 2.0
        pump_for(1.5)
        from qtpy.QtWidgets import QApplication, QWidget

        for w in QApplication.instance().allWidgets():  # napari's start-up toasts
            if isinstance(w, QWidget) and type(w).__name__ == "NapariQtNotification":
                w.close()
        pump_for(0.5)
        assert np.all([str(ly.units[0]) in ("µm", "micrometer") for ly in viewer.layers])
        viewer.screenshot(str(HERE / "screenshot_annotate.png"), canvas_only=False)
        viewer.close()


if __name__ == "__main__":
    main()
