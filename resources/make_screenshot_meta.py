"""Screenshot of the Meta widget (resources/screenshot_meta.png).

Run under a display (``xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python
resources/make_screenshot_meta.py``). The demo slide (seed 7) and its ground truth, the Meta
dock: the bundled demo model, Grad-CAM, 300 patches, seed 0, the ground truth beside the slide
as annotations; the study runs synchronously and the dock shows the mean-map grid, the
embedding and the confident disagreements. Writes resources/screenshot_meta.png (the dock only).
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_xhisto._reader import slide_layer_data
    from napari_xhisto._sample_data import cached_synthetic_slide
    from napari_xhisto._widgets.meta.dock import MetaDock
    from napari_xhisto.demo import DEMO_SEED, DEMO_SIZE

    path, gt = cached_synthetic_slide(size=DEMO_SIZE, seed=DEMO_SEED)
    viewer = napari.Viewer(show=True)
    for data, kw, kind in slide_layer_data(path):
        getattr(viewer, f"add_{kind}")(data, **kw)
    dock = MetaDock(viewer)
    from napari_xhisto._widgets.meta.widget import MetaWidget

    widget = dock.findChild(MetaWidget)
    viewer.window.add_dock_widget(dock, name="Meta", area="right")
    viewer.window._qt_window.resize(1500, 1150)
    widget.n_spin.setValue(300)
    widget.method_box.setCurrentText("gradcam")
    if not widget.ann_edit.text():
        widget.ann_edit.setText(str(gt))
    gen = widget.controller.job(widget.settings())()
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        result = stop.value
    widget.show_result(result)
    widget.progress.setValue(widget.progress.maximum())
    app = QApplication.instance()
    for _ in range(20):
        app.processEvents()
    widget.grab().save(str(HERE / "screenshot_meta.png"))
    print(widget.status.text())
    viewer.close()


if __name__ == "__main__":
    main()
