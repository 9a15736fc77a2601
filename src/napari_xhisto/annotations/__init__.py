"""Cell point and tissue region annotations: QuPath GeoJSON, CSV, autosave, napari conversions.

Level-0 (row, col) pixels inside; x/y only in files; µm only in the napari conversions.
No napari, Qt or torch here.
"""

from .io import read_annotations, write_annotations
from .model import (
    CELL_CLASSES,
    DEFAULT_COLORS,
    REGION_CLASSES,
    AnnotationSet,
    CellPoints,
    RegionShape,
    canonical_class,
    color_for_class,
    merge_annotations,
)

__all__ = [
    "CELL_CLASSES",
    "DEFAULT_COLORS",
    "REGION_CLASSES",
    "AnnotationSet",
    "CellPoints",
    "RegionShape",
    "canonical_class",
    "color_for_class",
    "merge_annotations",
    "read_annotations",
    "write_annotations",
]
