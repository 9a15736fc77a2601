"""Pieces of GeoJSON reading shared by the reader, the bulk reader and the writer.

What QuPath accepts is taken from its sources (qupath/qupath at v0.7.0-228):
``qupath-core/src/main/java/qupath/lib/io/GsonTools.java`` (``PathClassTypeAdapter``: a
classification is null, a string such as ``"Tumor: Positive"``, or an object with ``name`` or
``names`` and ``color`` [r, g, b] / [r, g, b, a]; the pre-0.4 form carries ``colorRGB`` and
``parentClass``) and ``qupath/lib/objects/classes/PathClass.java`` (``fromString`` splits on ":"
and strips every part; colour values are masked to 8 bits by ``ColorTools.packRGB``).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import AnnotationError
from .model import qupath_class_name
from .objects import MAX_COORD

UNCLASSIFIED = "unclassified"
GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon",
                  "MultiPolygon", "GeometryCollection")
# feature members our writer produces for a plain object (anything else goes to a record)
PLAIN_FEATURE_KEYS = frozenset({"type", "id", "geometry", "properties"})

SKIP_NO_GEOMETRY = "without geometry"
SKIP_EMPTY = "with empty geometry"
SKIP_DEGENERATE = "with a polygon of fewer than 3 distinct vertices"
SKIP_ABSURD = f"with coordinates not finite or beyond ±{MAX_COORD:.0e} px"
SKIP_OFF_SLIDE = "off the slide"


def fail(index: int, problem: str):
    raise AnnotationError(f"feature {index}: {problem}")


def _channel(v, index: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        fail(index, f"classification color values must be integers, got {v!r:.40}")
    return int(v) & 255  # QuPath: ColorTools.packRGB masks each channel to 8 bits


def parse_color(value, index: int) -> tuple[int, int, int] | None:
    """(r, g, b) from QuPath's colour forms: packed (A)RGB int, [r, g, b], [r, g, b, a], []."""
    if value is None:
        return None
    if isinstance(value, bool):
        fail(index, f"classification color must be [r, g, b], got {value!r}")
    if isinstance(value, int):  # QuPath < 0.4 wrote packed (A)RGB integers ("colorRGB")
        return ((value >> 16) & 255, (value >> 8) & 255, value & 255)
    if isinstance(value, list):
        if len(value) == 0:
            return None
        if len(value) == 1 and isinstance(value[0], int) and not isinstance(value[0], bool):
            return parse_color(value[0], index)  # QuPath: a one-element array is a packed RGB
        if len(value) in (3, 4):
            return tuple(_channel(v, index) for v in value[:3])  # type: ignore[return-value]
    fail(index, f"classification color must be [r, g, b] or [r, g, b, a], got {value!r:.80}")
    return None


def _check_names(names: list, index: int) -> str:
    parts = []
    for n in names:
        if not isinstance(n, str) or not n.strip() or "\n" in n or "\r" in n:
            fail(index, f"class names must be non-empty one-line strings, got {n!r:.60}")
        parts.append(n.strip())
    return ": ".join(parts)


def parse_classification(value, index: int) -> tuple[str | None, tuple | None]:
    """(class name as QuPath shows it, colour) of a classification value; (None, None) for none."""
    if value is None:
        return None, None
    if isinstance(value, str):
        return _check_names(value.split(":"), index), None
    if isinstance(value, dict):
        if not value:
            return None, None  # QuPath's NULL_CLASS
        if "parentClass" in value or ("colorRGB" in value and "color" not in value):
            return _legacy_class(value, index)
        name, names = value.get("name"), value.get("names")
        if name is None and isinstance(names, list) and names:
            text = _check_names(names, index)
        elif isinstance(name, str) and name.strip():
            text = _check_names(name.split(":"), index)
        else:
            fail(index, f"classification needs a non-empty 'name' string, got {name!r:.60}")
        return text, parse_color(value.get("color", value.get("colorRGB")), index)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return _check_names(value, index), None  # a list of names (derived class), as some tools write
    fail(index, f"classification must be a name or {{name, color}}, got {type(value).__name__}")
    return None, None


def _legacy_class(value: dict, index: int) -> tuple[str | None, tuple | None]:
    """QuPath < 0.4 serialised PathClass: {name, colorRGB, parentClass: {...}}."""
    names, node, depth = [], value, 0
    while isinstance(node, dict) and node:
        if depth > 32:
            fail(index, "classification parentClass chain is nested too deeply")
        name = node.get("name")
        if name is not None:
            names.insert(0, name)
        node, depth = node.get("parentClass"), depth + 1
    if not names:
        return None, None
    return _check_names(names, index), parse_color(value.get("colorRGB"), index)


def class_key(value):
    """Hashable key of a {name|names, color} classification object, or None."""
    if type(value) is not dict or len(value) != 2 or type(value.get("color")) is not list:
        return None
    name = value.get("name")
    try:
        if name is not None:
            key = (name, None, *value["color"])
        else:
            key = (None, tuple(value["names"]), *value["color"])
        hash(key)
    except (TypeError, KeyError):
        return None
    return key


def classification_json(name: str, rgb) -> dict:
    """How we write a class: ``{"name": ..., "color": [r, g, b]}``, or ``{"names": [...]}`` for
    a derived class ("Tumor: Positive"), as QuPath's ``PathClassTypeAdapter.write`` does."""
    parts = [p.strip() for p in name.split(":")] if ":" in name else None
    color = [int(c) for c in rgb][:3]
    if parts and len(parts) > 1 and all(parts):
        return {"names": parts, "color": color}
    return {"name": name, "color": color}


def parse_position(value, index: int) -> tuple[float, float]:
    """x, y of a position (numbers; non-finite ones are screened out later, not here)."""
    if (
        not isinstance(value, (list, tuple))
        or len(value) < 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value[:2])
    ):
        fail(index, f"a position must be [x, y] numbers, got {value!r:.80}")
    return _float(value[0]), _float(value[1])


def _float(v) -> float:
    try:
        return float(v)
    except OverflowError:  # an integer beyond float range: screened out as absurd later
        return math.inf if v > 0 else -math.inf


class Degenerate(Exception):
    """A polygon ring with fewer than 3 distinct vertices: the object is skipped and counted."""


def parse_ring(value, index: int) -> tuple[np.ndarray, bool]:
    """(K, 2) x/y of a ring without its closing vertex, and whether the ring was closed and 2-D
    (i.e. written back exactly as read)."""
    if not isinstance(value, list):
        fail(index, f"a polygon ring must be a list of positions, got {type(value).__name__}")
    xy = np.array([parse_position(p, index) for p in value], dtype=np.float64).reshape(-1, 2)
    exact = all(len(p) == 2 for p in value)
    if len(xy) >= 2 and np.array_equal(xy[0], xy[-1]):
        xy = xy[:-1]  # drop the closing vertex; unclosed rings are accepted and closed implicitly
    else:
        exact = False
    if len(np.unique(xy, axis=0)) < 3:
        raise Degenerate
    return xy, exact


def parse_polygon(value, index: int, origin) -> tuple[np.ndarray, list[np.ndarray], bool]:
    """(exterior, holes, exact): level-0 (row, col) rings of a Polygon's coordinates."""
    if not isinstance(value, list) or not value:
        fail(index, "a Polygon needs a non-empty list of rings")
    rings, exact = [], True
    for ring in value:
        xy, ring_exact = parse_ring(ring, index)
        exact &= ring_exact
        rc = np.empty_like(xy)
        rc[:, 0] = xy[:, 1] + origin[0]
        rc[:, 1] = xy[:, 0] + origin[1]
        rings.append(rc)
    return rings[0], rings[1:], exact


def features_of(obj) -> list:
    """The features of a FeatureCollection, a Feature, a bare array of features, or a bare
    geometry (QuPath reads all four: ``GsonTools.parseObjectsFromGeoJSON``)."""
    if isinstance(obj, list):
        return obj  # QuPath can export a bare array of features
    if not isinstance(obj, dict):
        raise AnnotationError(f"GeoJSON must be a FeatureCollection object, got {type(obj).__name__}")
    kind = obj.get("type")
    if kind == "FeatureCollection":
        features = obj.get("features")
        if not isinstance(features, list):
            raise AnnotationError("FeatureCollection has no 'features' list")
        return features
    if kind == "Feature":
        return [obj]
    if kind in GEOMETRY_TYPES:  # QuPath makes an annotation of a bare geometry
        return [{"type": "Feature", "geometry": obj, "properties": {}}]
    raise AnnotationError(f"GeoJSON top level must be a FeatureCollection, got type {kind!r:.60}")


def absurd(values: np.ndarray) -> np.ndarray:
    """Mask (along the last axis reduced) of coordinates that are not finite or beyond MAX_COORD."""
    with np.errstate(invalid="ignore"):
        return ~(np.abs(values) <= MAX_COORD)


def screen_points(rows: np.ndarray, cols: np.ndarray, image_shape) -> tuple[np.ndarray, dict]:
    """(keep mask, {reason: count}) for points: absurd coordinates, then off the slide."""
    bad = absurd(rows) | absurd(cols)
    counts = {}
    if bad.any():
        counts[SKIP_ABSURD] = int(bad.sum())
    if image_shape is not None:
        height, width = float(image_shape[0]), float(image_shape[1])
        with np.errstate(invalid="ignore"):
            off = ~bad & ((rows < 0) | (rows > height) | (cols < 0) | (cols > width))
        if off.any():
            counts[SKIP_OFF_SLIDE] = int(off.sum())
        bad |= off
    return ~bad, counts


def region_problem(exterior: np.ndarray, holes, image_shape) -> str | None:
    """Why a region cannot be used (absurd coordinates; wholly off the slide), or None."""
    if absurd(exterior).any() or any(absurd(h).any() for h in holes):
        return SKIP_ABSURD
    if image_shape is not None:
        height, width = float(image_shape[0]), float(image_shape[1])
        lo, hi = exterior.min(axis=0), exterior.max(axis=0)
        if hi[0] < 0 or hi[1] < 0 or lo[0] > height or lo[1] > width:
            return SKIP_OFF_SLIDE
    return None


def positions_xy(points: list, point_feature: list[int]) -> np.ndarray:
    """(N, 2) float64 x/y from raw positions, or an AnnotationError naming the bad feature."""
    if not points:
        return np.zeros((0, 2))
    try:
        xy = np.array(points)
        ok = (
            xy.ndim == 2
            and xy.shape[1] >= 2
            and xy.dtype.kind in "fi"
            and not any(type(p[0]) is bool or type(p[1]) is bool for p in points)
        )
    except (ValueError, TypeError, OverflowError):
        ok = False
    if ok:
        return xy[:, :2].astype(np.float64)
    for position, index in zip(points, point_feature):
        parse_position(position, index)
    # every position is fine on its own, but they differ in length (e.g. some carry z)
    return np.array([parse_position(p, i) for p, i in zip(points, point_feature)],
                    dtype=np.float64)


def class_of(raw_name: str | None) -> str:
    return UNCLASSIFIED if raw_name is None else qupath_class_name(raw_name)
