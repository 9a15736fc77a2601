"""Screenshot of the Annotate widget (resources/screenshot_annotate.png).

Run under a display (``xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python
resources/make_screenshot_annotate.py``). The demo slide (6144 px, seed 7): the ground truth of
a 400 µm square, written as a QuPath project would export it (QuPath's class names "Tumor",
"Immune cells", "Stroma", "Necrosis" ..., a ruler line, one point off the slide), is imported
through the Annotate widget: its class layers are made then, in the slide's µm; the status line
says what was skipped and kept; the class mapping shows the suggested role of each name, and
"Other" cells are set to "ignore" in its drop-down.
"""

import json
import sys
import tempfile
from dataclasses import replace
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
    from napari_xhisto.annotations import (
        AnnotationSet,
        CellPoints,
        read_annotations,
        write_annotations,
    )

    slide_path, truth_path = cached_synthetic_slide(size=demo.DEMO_SIZE, seed=demo.DEMO_SEED)
    viewer = napari.Viewer(title="napari-xhisto: Annotate")
    viewer.window._qt_window.resize(1600, 1200)
    for data, kwargs, kind in slide_layer_data(str(slide_path)):
        viewer.add_layer(Layer.create(data, kwargs, kind))
    viewer.canvas.overlays.scale_bar.visible = True
    if True:
        widget = AnnotateWidget(viewer, autosave=False, region_classes=())
        viewer.window.add_dock_widget(widget, name="Annotate", area="right")
        truth = read_annotations(truth_path)
        r0, c0, side = 2300, 2600, 800  # level-0 px
        qupath = {"tumour": "Tumor", "lymphocyte": "Immune cells", "stroma": "Stroma",
                  "other": "Other", "necrosis": "Necrosis", "artefact": "Artefact",
                  "vessel": "Vessel", "tumour area": "Tumor"}
        c = truth.cells
        inside = (c.rows >= r0) & (c.rows < r0 + side) & (c.cols >= c0) & (c.cols < c0 + side)
        names = np.array([qupath[k] for k in c.classes[inside]])
        cells = CellPoints(np.r_[c.rows[inside], 1e6], np.r_[c.cols[inside], 10.0],
                           np.append(names, "Tumor"))  # the last one lies off the slide
        regions = [replace(r, cls=qupath[r.cls]) for r in truth.regions
                   if r.cls != "tumour area" and (r.exterior[:, 0] >= r0).all()
                   and (r.exterior[:, 0] < r0 + side).all() and (r.exterior[:, 1] >= c0).all()
                   and (r.exterior[:, 1] < c0 + side).all()]
        colours = {qupath[k]: v for k, v in truth.colors.items() if k in qupath}
        folder = Path(tempfile.mkdtemp())
        path = write_annotations(folder / "qupath_export.geojson",
                                 AnnotationSet(cells, regions, colours))
        doc = json.loads(path.read_text())
        doc["features"].append({"type": "Feature", "geometry": {"type": "LineString",
                                "coordinates": [[c0, r0], [c0 + 200, r0 + 150]]},
                                "properties": {"objectType": "annotation", "name": "ruler"}})
        path.write_text(json.dumps(doc))
        widget.import_file(path)
        widget.mapping_box("Other", "cell").setCurrentText("ignore")
        widget.activate_class("Tumor")
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
