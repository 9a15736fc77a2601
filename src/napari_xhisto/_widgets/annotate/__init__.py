"""The docked "Annotate" widget: cell points per class, tissue regions, files and autosave.

``controller`` (classes and their lazily made layers, no window), ``view`` (Qt layout) and
``widget`` (wiring, dialogs, autosave).
"""

from ..._writer import find_slide_layer
from .controller import (
    CELL_PREFIX,
    POINT_SIZE_UM,
    REGION_LAYER_CLASSES,
    REGION_PREFIX,
    AnnotationLayers,
)
from .widget import AnnotateWidget

__all__ = ["CELL_PREFIX", "POINT_SIZE_UM", "REGION_LAYER_CLASSES", "REGION_PREFIX",
           "AnnotateWidget", "AnnotationLayers", "find_slide_layer"]
