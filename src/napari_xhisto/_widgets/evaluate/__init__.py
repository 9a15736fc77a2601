"""The docked "Evaluate" widget: score a heatmap layer against cell points and region shapes.

``layerdata`` (layers to level-0 pixels), ``core`` (the work, a generator), ``process`` (the
child process it runs in), ``plots`` (matplotlib on Agg) and ``controller`` (choices, rows,
viewer actions) need no window; ``view`` is the Qt layout and ``widget`` wires them together.
Names are imported lazily, so the compute process never imports Qt.
"""

from importlib import import_module

_WHERE = {
    "EvaluateWidget": "widget", "EvaluateController": "controller", "Settings": "controller",
    "EvaluateRequest": "core", "EvaluateJob": "core", "iter_evaluate_job": "core",
    "compute": "core", "cells_from_layers": "layerdata", "crop_to": "layerdata",
    "heatmap_from_layer": "layerdata", "mask_uncovered": "layerdata", "patches_of": "layerdata",
    "regions_from_layers": "layerdata",
}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
