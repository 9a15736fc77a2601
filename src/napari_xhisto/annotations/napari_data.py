"""Conversions between annotations (level-0 px) and napari layer data (µm), without napari.

Points and shapes layers made from these hold their data in µm with scale 1, so they overlay a
slide image layer whose scale is its µm/px.
"""

from __future__ import annotations

import numpy as np

from ..errors import AnnotationError
from .model import CellPoints, RegionShape, new_ids, unusable_ids

ELLIPSE_VERTICES = 64


def _mpp(mpp) -> float:
    value = 1.0 if mpp is None else float(mpp)
    if not np.isfinite(value) or value <= 0:
        raise AnnotationError(f"µm per pixel must be a positive number, got {mpp!r}")
    return value


def cells_to_points_data(cells: CellPoints, mpp) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Points layer data (N, 2) in µm and its features table {"class", "id"}.

    Cells without ids get fresh ones, so every point can be followed through edits.
    """
    scale = _mpp(mpp)
    cells = cells if cells.ids is not None else cells.with_ids()
    data = np.stack([cells.rows * scale, cells.cols * scale], axis=1) if len(cells) else np.zeros((0, 2))
    return data, {"class": cells.classes.astype(object), "id": cells.ids.astype(object)}


def points_data_to_cells(data, features, mpp, *, default_class: str = "unclassified") -> CellPoints:
    """Cells in level-0 px from points layer data in µm and its features (class, id)."""
    scale = _mpp(mpp)
    data = np.asarray(data, dtype=np.float64).reshape(-1, 2)
    n = len(data)
    classes = _column(features, "class", n)
    if classes is None:
        classes = np.full(n, default_class, dtype=object)
    else:
        classes = np.where(_missing_mask(classes), default_class, classes)
    ids = _column(features, "id", n)
    if ids is not None:
        ids = np.where(_missing_mask(ids), "", ids).astype(str)
    cells = CellPoints(data[:, 0] / scale, data[:, 1] / scale, classes.astype(str), ids)
    if ids is not None and unusable_ids(ids).any():
        cells = cells.with_ids()
    return cells


def _missing_mask(values: np.ndarray) -> np.ndarray:
    """None, NaN or empty string, element-wise."""
    missing = np.fromiter((v is None or v != v for v in values), dtype=bool, count=len(values))
    return missing | (values.astype(str) == "")


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or str(value) == ""


def _column(features, name: str, n: int):
    if features is None:
        return None
    try:
        column = features[name]
    except (KeyError, IndexError, TypeError):
        return None
    values = np.asarray(column, dtype=object)
    if len(values) != n:
        raise AnnotationError(f"features column {name!r} has {len(values)} values for {n} points")
    return values


def regions_to_shapes_data(regions: list[RegionShape], mpp):
    """Shapes layer data for regions: (vertex arrays in µm, shape types, features, holes).

    Returns
    -------
    data : list of (K, 2) arrays, µm
    shape_types : list of str (all "polygon")
    features : dict with "class", "name", "id" arrays
    holes : dict id -> list of (K, 2) arrays in µm (napari shapes have no holes; keep them
        in the layer metadata and give them back to :func:`shapes_data_to_regions`)
    """
    scale = _mpp(mpp)
    data, holes = [], {}
    ids, seen = [], set()
    for region, fresh in zip(regions, new_ids(len(regions))):
        rid = region.id if region.id and region.id not in seen else str(fresh)
        seen.add(rid)
        ids.append(rid)
    for region, rid in zip(regions, ids):
        data.append(region.exterior * scale)
        if region.holes:
            holes[rid] = [h * scale for h in region.holes]
    features = {
        "class": np.array([r.cls for r in regions], dtype=object),
        "name": np.array(["" if r.name is None else r.name for r in regions], dtype=object),
        "id": np.array(ids, dtype=object),
    }
    return data, ["polygon"] * len(regions), features, holes


def ellipse_polygon(corners: np.ndarray, vertices: int = ELLIPSE_VERTICES) -> np.ndarray:
    """The ellipse inscribed in napari's 4-corner ellipse box, as a polygon (vertices, 2)."""
    corners = np.asarray(corners, dtype=np.float64).reshape(4, 2)
    centre = corners.mean(axis=0)
    half_a = (corners[1] - corners[0]) / 2
    half_b = (corners[3] - corners[0]) / 2
    t = np.linspace(0, 2 * np.pi, vertices, endpoint=False)[:, None]
    return centre + np.cos(t) * half_a + np.sin(t) * half_b


def shapes_data_to_regions(data, shape_types, features, mpp, *, holes=None,
                           default_class: str = "unclassified") -> list[RegionShape]:
    """Regions in level-0 px from shapes layer data in µm (polygons, rectangles, ellipses).

    Raises
    ------
    AnnotationError
        For lines and paths, which do not enclose a region.
    """
    scale = _mpp(mpp)
    n = len(data)
    if isinstance(shape_types, str):
        shape_types = [shape_types] * n
    classes = _column(features, "class", n)
    names = _column(features, "name", n)
    ids = _column(features, "id", n)
    holes = holes or {}
    regions = []
    for index, (vertices, kind) in enumerate(zip(data, shape_types)):
        vertices = np.asarray(vertices, dtype=np.float64)[:, -2:]
        if kind == "ellipse":
            vertices = ellipse_polygon(vertices)
        elif kind not in ("polygon", "rectangle"):
            raise AnnotationError(
                f"shape {index} is a {kind}; regions must be closed shapes (polygon, rectangle, "
                "ellipse). Delete it or redraw it as a polygon."
            )
        cls = default_class if classes is None or _missing(classes[index]) else str(classes[index])
        name = None if names is None or _missing(names[index]) else str(names[index])
        rid = None if ids is None or _missing(ids[index]) else str(ids[index])
        region_holes = [np.asarray(h, dtype=np.float64) / scale for h in holes.get(rid, [])]
        regions.append(RegionShape(cls, vertices / scale, region_holes, name, rid))
    return regions
