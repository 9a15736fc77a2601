"""Screenshot of the Evaluate widget's Calibration tab on the demo slide.

Run under a display (``xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python
resources/make_screenshot_calibration.py``). The demo slide (6144 px, seed 7) and its ground
truth cells and regions, Evaluate docked, Calibration tab: the bundled demo model, labels from
the ticked ground-truth layers (cells rule), 20 seeded splits. Writes
resources/screenshot_evaluate_calibration.png (the dock only).
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_xhisto._reader import slide_layer_data
    from napari_xhisto._sample_data import cached_synthetic_slide, ground_truth_layer_data
    from napari_xhisto._widgets.evaluate import EvaluateWidget
    from napari_xhisto.demo import DEMO_SEED, DEMO_SIZE

    path, gt = cached_synthetic_slide(size=DEMO_SIZE, seed=DEMO_SEED)
    viewer = napari.Viewer(show=True)
    for data, kw, kind in slide_layer_data(path):
        getattr(viewer, f"add_{kind}")(data, **kw)
    mpp = viewer.layers[-1].metadata["xhisto"]["mpp"]
    for data, kw, kind in ground_truth_layer_data(gt, mpp, slide_path=path):
        getattr(viewer, f"add_{kind}")(data, **kw)
    widget = EvaluateWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Evaluate", area="right")
    viewer.window._qt_window.resize(1500, 1150)
    tabs = [widget.tabs.tabText(i) for i in range(widget.tabs.count())]
    widget.tabs.setCurrentIndex(tabs.index("Calibration"))
    outcome = widget.calibration.calibrate()
    app = QApplication.instance()
    for _ in range(20):
        app.processEvents()
    # scroll so that the tab (plot and numbers) is in view
    widget.scroll.ensureWidgetVisible(widget.calibration.save_button)
    for _ in range(20):
        app.processEvents()
    widget.grab().save(str(HERE / "screenshot_evaluate_calibration.png"))
    r = outcome.report
    print(f"T {r['temperature']:.3f}, ECE {r['before']['ece']:.4f} -> {r['after']['ece']:.4f}")
    viewer.close()


if __name__ == "__main__":
    main()
