"""The docked "Evaluate" widget: score a heatmap layer against cell points and region shapes.

``layerdata`` (layers to level-0 pixels), ``core`` (the work, a generator), ``plots``
(matplotlib on Agg) and ``controller`` (choices, rows, viewer actions) need no window;
``view`` is the Qt layout and ``widget`` wires them together.
"""

from .controller import EvaluateController, Settings
from .core import EvaluateJob, iter_evaluate_job
from .layerdata import (
    cells_from_layers,
    crop_to,
    heatmap_from_layer,
    mask_uncovered,
    patches_of,
    regions_from_layers,
)
from .widget import EvaluateWidget

__all__ = ["EvaluateController", "EvaluateJob", "EvaluateWidget", "Settings", "cells_from_layers",
           "crop_to", "heatmap_from_layer", "iter_evaluate_job", "mask_uncovered", "patches_of",
           "regions_from_layers"]
