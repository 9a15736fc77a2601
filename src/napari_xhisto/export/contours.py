"""Thresholded heatmaps as polygons with holes, written as QuPath GeoJSON annotations.

Contours come from marching squares (:func:`skimage.measure.find_contours`) at 0.5 on the
padded binary mask, so every ring runs through the midpoints of the edges between inside and
outside pixels: rasterising the polygons (pixel centres inside) gives back the mask. Rings are
sorted into exteriors and holes by orientation and each hole goes to the smallest exterior that
contains it (no shapely needed). Coordinates are mapped to level 0 through the placement.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import XhistoError
from ..geometry import Placement
from .tiled_writer import check_writable

DEFAULT_CLASS = "xhisto evidence"


class EmptyContoursError(XhistoError):
    """No pixel passes the threshold: the export would be empty (nothing is written)."""


def signed_area(ring: np.ndarray) -> float:
    """Shoelace area of a ring of (row, col) vertices (not repeated at the end)."""
    r, c = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(r, np.roll(c, -1)) - np.dot(np.roll(r, -1), c))


def ring_contains(ring: np.ndarray, point) -> bool:
    """Even-odd ray casting: is ``point`` (row, col) inside ``ring``?"""
    r, c = ring[:, 0], ring[:, 1]
    r2, c2 = np.roll(r, -1), np.roll(c, -1)
    pr, pc = float(point[0]), float(point[1])
    crosses = (r > pr) != (r2 > pr)
    with np.errstate(divide="ignore", invalid="ignore"):
        at = c + (pr - r) * (c2 - c) / (r2 - r)
    return bool(np.count_nonzero(crosses & (pc < at)) % 2)


def _drop_collinear(ring: np.ndarray) -> np.ndarray:
    prev, nxt = np.roll(ring, 1, axis=0), np.roll(ring, -1, axis=0)
    d1, d2 = ring - prev, nxt - ring
    cross = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    keep = np.abs(cross) > 1e-9
    return ring[keep] if keep.sum() >= 3 else ring


@lru_cache(maxsize=1)
def _exterior_sign() -> float:
    """The orientation sign find_contours gives the outline of a foreground blob."""
    from skimage.measure import find_contours

    ring = find_contours(np.pad(np.ones((2, 2)), 1), 0.5, fully_connected="high",
                         positive_orientation="high")[0][:-1]
    return float(np.sign(signed_area(ring)))


def mask_polygons(mask: np.ndarray, *, min_pixels: float = 0.0) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Polygons ``(exterior, holes)`` of a boolean mask, in array index coordinates.

    Pixel ``(i, j)`` has its centre at ``(i, j)``; rings pass half-way between inside and outside
    pixel centres. Diagonal neighbours belong to one polygon (8-connected foreground).

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
    min_pixels : float
        Drop polygons whose exterior encloses less area than this (in pixels).
    """
    from skimage.measure import find_contours

    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise XhistoError(f"a mask must be 2-D, got shape {mask.shape}")
    if not mask.any():
        return []
    rings = find_contours(np.pad(mask, 1).astype(np.float32), 0.5, fully_connected="high",
                          positive_orientation="high")
    sign = _exterior_sign()
    exteriors, holes = [], []
    for ring in rings:
        ring = _drop_collinear(ring[:-1] - 1.0)  # closed -> open ring; undo the padding
        area = signed_area(ring)
        (exteriors if np.sign(area) == sign else holes).append((abs(area), ring))
    exteriors.sort(key=lambda t: t[0])  # smallest first: a hole goes to its tightest exterior
    polygons = [(ring, []) for _, ring in exteriors]
    for _, hole in holes:
        for ring, own in polygons:
            if ring_contains(ring, hole[0]):
                own.append(hole)
                break
    return [(ext, hs) for (area, _), (ext, hs) in zip(exteriors, polygons, strict=True)
            if area >= min_pixels]


def to_level0(ring: np.ndarray, placement: Placement) -> np.ndarray:
    """Map (row, col) array-index coordinates (pixel centres at integers) to level-0 pixels."""
    out = np.empty_like(ring, dtype=np.float64)
    out[:, 0] = placement.origin_row + (ring[:, 0] + 0.5) * placement.step_row
    out[:, 1] = placement.origin_col + (ring[:, 1] + 0.5) * placement.step_col
    return out


def heatmap_contours(values: np.ndarray, placement: Placement, *, threshold: float, above: bool = True,
                     cls: str = DEFAULT_CLASS, min_pixels: float = 0.0, name: str | None = None):
    """Regions where a heatmap is ``>= threshold`` (or ``<= threshold``), as level-0 RegionShapes.

    Parameters
    ----------
    values : ndarray (H, W)
        The map; NaN is never inside.
    placement : Placement
        Where the map lies on level 0.
    threshold : float
        In the map's own units.
    above : bool
        Keep values ``>= threshold`` (default) or ``<= threshold`` (negative evidence).
    cls : str
        Class of the regions (QuPath classification).
    min_pixels : float
        Drop regions smaller than this many map pixels.
    name : str, optional
        Name given to every region (defaults to ``"heatmap >= t"``).

    Returns
    -------
    list of RegionShape
    """
    from ..annotations import RegionShape

    values = np.asarray(values, np.float32)
    with np.errstate(invalid="ignore"):
        mask = values >= threshold if above else values <= threshold
    label = name or f"heatmap {'>=' if above else '<='} {threshold:g}"
    return [RegionShape(cls=cls, exterior=to_level0(ext, placement),
                        holes=[to_level0(h, placement) for h in holes], name=label)
            for ext, holes in mask_polygons(mask, min_pixels=min_pixels)]


def empty_message(values, *, threshold: float, above: bool = True) -> str:
    """Why a contour export is empty, and what to do (the map's value range)."""
    finite = np.asarray(values, np.float64)
    finite = finite[np.isfinite(finite)]
    where = "at or above" if above else "at or below"
    span = (f"its values run from {finite.min():.3g} to {finite.max():.3g}" if finite.size
            else "it holds no values")
    return (f"no part of the heatmap is {where} {threshold:g} ({span}): nothing was written; "
            "choose a threshold inside that range")


def export_contours(path, values: np.ndarray, placement: Placement, *, threshold: float,
                    above: bool = True, cls: str = DEFAULT_CLASS, min_pixels: float = 0.0,
                    color: tuple[int, int, int] = (255, 140, 0), overwrite: bool = False):
    """Write the thresholded heatmap's contours as QuPath GeoJSON annotations.

    Returns
    -------
    (Path, list of RegionShape)
        The file and the regions written (level-0 pixels).

    Raises
    ------
    EmptyContoursError
        When no region passes the threshold; no file is written (an existing one is kept).
    """
    from ..annotations import AnnotationSet, CellPoints, write_annotations

    path = check_writable(path, overwrite=overwrite)
    if path.suffix.lower() not in (".geojson", ".json"):
        raise XhistoError(f"contours are written as GeoJSON: name the file .geojson, not {path.name}")
    regions = heatmap_contours(values, placement, threshold=threshold, above=above, cls=cls,
                               min_pixels=min_pixels)
    if not regions:
        raise EmptyContoursError(empty_message(values, threshold=threshold, above=above))
    annotations = AnnotationSet(CellPoints.empty(), regions, {cls: tuple(color)})
    return write_annotations(path, annotations), regions
