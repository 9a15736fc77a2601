"""Open napari on the demo slide with its ground truth and the plugin's widgets docked."""

from __future__ import annotations


def build_demo_viewer(viewer=None, *, size: int | None = None, seed: int | None = None):
    """Put the demo slide, its ground truth and the plugin's six widgets into ``viewer`` (new
    if None), tabbed in one dock with Explain in front."""
    import napari
    from napari.layers import Layer

    from .. import demo
    from .._reader import slide_layer_data
    from .._sample_data import cached_synthetic_slide, ground_truth_layer_data
    from .annotate import AnnotateWidget
    from .common.docking import dock_widgets
    from .evaluate import EvaluateWidget
    from .explain import ExplainWidget
    from .export_widget import ExportWidget
    from .layers import watch_for_slides
    from .meta import MetaWidget
    from .slide_level import SlideLevelWidget

    viewer = viewer or napari.Viewer(title="napari-xhisto demo")
    watch_for_slides(viewer)  # the scale bar (µm) is on whenever a slide is open
    slide_path, truth_path = cached_synthetic_slide(size=size or demo.DEMO_SIZE, seed=demo.DEMO_SEED
                                                    if seed is None else seed)
    for data, kwargs, kind in slide_layer_data(slide_path):
        viewer.add_layer(Layer.create(data, kwargs, kind))
    mpp = viewer.layers[-1].metadata["xhisto"]["mpp"] or 1.0
    for data, kwargs, kind in ground_truth_layer_data(truth_path, mpp, slide_path=slide_path):
        kwargs["visible"] = kind == "shapes"
        viewer.add_layer(Layer.create(data, kwargs, kind))
    widgets = {
        "Explain": ExplainWidget(viewer),
        "Annotate": AnnotateWidget(viewer),
        "Evaluate": EvaluateWidget(viewer),
        "Export": ExportWidget(viewer),
        "Meta": MetaWidget(viewer),
        "Slide-level": SlideLevelWidget(viewer),
    }
    dock_widgets(viewer, widgets)  # scrollable tabs of one dock: the slide keeps >= 60 %
    return viewer, widgets


def launch_demo_viewer() -> None:
    """Open the demo in a window and run the Qt event loop until it is closed."""
    import napari

    build_demo_viewer()
    napari.run()
