"""Cell point and tissue region annotations: QuPath GeoJSON, CSV, autosave, napari conversions.

Level-0 (row, col) pixels inside; x/y only in files; µm only in the napari conversions.
No napari, Qt or torch here.
"""

from .autosave import AutosaveStore, autosave_path, load_latest
from .classmap import (
    CELL_ROLES,
    REGION_ROLES,
    ClassMap,
    apply_class_map,
    load_class_map,
    suggest_class_map,
    suggest_role,
)
from .io import AnnotationWarning, read_annotations, read_report, write_annotations
from .model import (
    CELL_CLASSES,
    DEFAULT_COLORS,
    REGION_CLASSES,
    AnnotationSet,
    CellPoints,
    RegionShape,
    canonical_class,
    color_for_class,
    concat_annotations,
    merge_annotations,
    qupath_origin,
)
from .napari_data import (
    cells_to_points_data,
    points_data_to_cells,
    regions_to_shapes_data,
    shapes_data_to_regions,
)
from .objects import ObjectRecord, objects_from_json, objects_to_json, outline_rings_rc
from .qupath_check import validate_qupath_geojson

__all__ = [
    "AnnotationWarning",
    "ObjectRecord",
    "objects_from_json",
    "objects_to_json",
    "outline_rings_rc",
    "read_report",
    "CELL_ROLES",
    "REGION_ROLES",
    "ClassMap",
    "apply_class_map",
    "load_class_map",
    "suggest_class_map",
    "suggest_role",
    "CELL_CLASSES",
    "DEFAULT_COLORS",
    "REGION_CLASSES",
    "AnnotationSet",
    "AutosaveStore",
    "CellPoints",
    "RegionShape",
    "autosave_path",
    "canonical_class",
    "cells_to_points_data",
    "color_for_class",
    "concat_annotations",
    "load_latest",
    "merge_annotations",
    "points_data_to_cells",
    "qupath_origin",
    "read_annotations",
    "regions_to_shapes_data",
    "shapes_data_to_regions",
    "validate_qupath_geojson",
    "write_annotations",
]
