"""Reading QuPath-compatible GeoJSON: cells as ``detection`` Points, regions as ``annotation``
Polygons (writing: :mod:`.geojson_write`).

Layout (REFERENCES.md "QuPath GeoJSON"): a FeatureCollection; ``objectType`` inside
``properties``; ``classification`` = ``{"name": ..., "color": [r, g, b]}``; coordinates are
level-0 pixels with x = column, y = row. Class names are kept as the file writes them
(``"Tumor"``, ``"Immune cells"``); :mod:`.classmap` says which plugin role each plays.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import AnnotationError
from .geojson_write import OUR_HEAD, WRITER_TAG, annotations_to_geojson, geojson_text
from .model import AnnotationSet, CellPoints, RegionShape, color_for_class, qupath_class_name

__all__ = ["WRITER_TAG", "annotations_to_geojson", "geojson_text", "geojson_to_annotations",
           "read_geojson"]

UNCLASSIFIED = "unclassified"
_CELL_TYPES = {"detection", "cell"}
_POINT_GEOMETRIES = {"Point", "MultiPoint"}
_POLYGON_GEOMETRIES = {"Polygon", "MultiPolygon"}


# ----------------------------------------------------------------------------- reading
def _fail(index: int, problem: str):
    raise AnnotationError(f"feature {index}: {problem}")


def _color(value, index: int) -> tuple[int, int, int] | None:
    if value is None:
        return None
    if isinstance(value, bool):
        _fail(index, f"classification color must be [r, g, b], got {value!r}")
    if isinstance(value, int):  # QuPath < 0.4 wrote packed (A)RGB integers ("colorRGB")
        return ((value >> 16) & 255, (value >> 8) & 255, value & 255)
    if (
        isinstance(value, (list, tuple))
        and len(value) in (3, 4)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        and all(0 <= v <= 255 for v in value[:3])
    ):
        return tuple(int(round(v)) for v in value[:3])  # type: ignore[return-value]
    _fail(index, f"classification color must be [r, g, b] with values 0..255, got {value!r}")
    return None


def _classification(properties: dict, index: int) -> tuple[str | None, tuple | None]:
    value = properties.get("classification")
    if value is None:
        return None, None
    if isinstance(value, str):
        return value, None
    if isinstance(value, dict):
        name = value.get("name")
        names = value.get("names")  # QuPath derived classes: {"names": ["Tumor", "Positive"]}
        if name is None and isinstance(names, list) and names and all(isinstance(n, str) for n in names):
            name = ": ".join(names)
        if not isinstance(name, str) or not name.strip():
            _fail(index, f"classification needs a non-empty 'name' string, got {name!r}")
        color = value.get("color", value.get("colorRGB"))
        return name, _color(color, index)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return ": ".join(value), None  # QuPath derived classes, e.g. ["Tumor", "Positive"]
    _fail(index, f"classification must be a name or {{name, color}}, got {type(value).__name__}")
    return None, None


def _position(value, index: int) -> tuple[float, float]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) < 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value[:2])
    ):
        _fail(index, f"a position must be [x, y] numbers, got {value!r:.80}")
    x, y = float(value[0]), float(value[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        _fail(index, f"coordinates must be finite numbers, got {value!r:.80}")
    return x, y


def _ring(value, index: int) -> np.ndarray:
    if not isinstance(value, list):
        _fail(index, f"a polygon ring must be a list of positions, got {type(value).__name__}")
    xy = np.array([_position(p, index) for p in value], dtype=np.float64).reshape(-1, 2)
    if len(xy) >= 2 and np.array_equal(xy[0], xy[-1]):
        xy = xy[:-1]  # drop the closing vertex; unclosed rings are accepted and closed implicitly
    if len(np.unique(xy, axis=0)) < 3:
        _fail(index, f"a polygon ring needs at least 3 distinct vertices, got {len(xy)}")
    return xy


def _polygon(value, index: int, origin) -> tuple[np.ndarray, list[np.ndarray]]:
    if not isinstance(value, list) or not value:
        _fail(index, "a Polygon needs a non-empty list of rings")
    rings = []
    for ring in value:
        xy = _ring(ring, index)
        rc = np.empty_like(xy)
        rc[:, 0] = xy[:, 1] + origin[0]
        rc[:, 1] = xy[:, 0] + origin[1]
        rings.append(rc)
    return rings[0], rings[1:]


def _features_of(obj) -> list:
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
    raise AnnotationError(f"GeoJSON top level must be a FeatureCollection, got type {kind!r}")


class _Classifier:
    """Validates each distinct classification once (100k cells share a handful)."""

    def __init__(self):
        self.cache: dict = {}

    def __call__(self, properties: dict, index: int) -> tuple[str | None, tuple | None]:
        value = properties.get("classification")
        if type(value) is dict:
            color = value.get("color", value.get("colorRGB"))
            key = (value.get("name"), tuple(color) if type(color) is list else color)
        else:
            key = value if isinstance(value, str) or value is None else None
        try:
            return self.cache[key]
        except (KeyError, TypeError):
            pass
        result = _classification(properties, index)
        if key is not None:
            try:
                self.cache[key] = result
            except TypeError:
                pass
        return result


def geojson_to_annotations(obj, *, origin=(0.0, 0.0), skip_unsupported: bool = False,
                           first_index: int = 0) -> AnnotationSet:
    """Read a parsed GeoJSON object (QuPath layout or plain) into an AnnotationSet.

    Parameters
    ----------
    obj : dict or list
        FeatureCollection, single Feature, or a list of Features.
    origin : (row, col)
        Added to every coordinate (the inverse of the writer's ``origin``).
    skip_unsupported : bool
        Skip geometries that are neither points nor polygons (lines, collections) instead of
        raising.
    first_index : int
        Index of the first feature in messages (when ``obj`` is the tail of a file).

    Raises
    ------
    AnnotationError
        Naming the feature index and the problem.
    """
    points: list = []  # raw [x, y] positions, validated in bulk below
    point_feature: list[int] = []
    cell_classes: list[str] = []
    cell_ids: list[str | None] = []
    regions: list[RegionShape] = []
    colors: dict[str, tuple[int, int, int]] = {}
    classify = _Classifier()
    cell_class_of: dict = {}
    fast: dict = {}  # (name, *color) of a classification object already seen -> cell class
    for index, feature in enumerate(_features_of(obj), start=first_index):
        # fast path: a Point whose classification object was validated on an earlier feature
        if type(feature) is dict:
            geometry = feature.get("geometry")
            if type(geometry) is dict and geometry.get("type") == "Point":
                properties = feature.get("properties")
                value = properties.get("classification") if type(properties) is dict else None
                if type(value) is dict and type(value.get("color")) is list:
                    try:
                        cls = fast.get((value.get("name"), *value["color"]))
                    except TypeError:  # unhashable junk: the general path reports it
                        cls = None
                    if cls is not None and "colorRGB" not in value:
                        points.append(geometry.get("coordinates"))
                        point_feature.append(index)
                        cell_classes.append(cls)
                        fid = feature.get("id")
                        cell_ids.append(fid if fid is None or type(fid) is str else str(fid))
                        continue
        if type(feature) is not dict:
            _fail(index, f"a feature must be an object, got {type(feature).__name__}")
        geometry = feature.get("geometry")
        if type(geometry) is not dict:
            _fail(index, "has no geometry object")
        gtype = geometry.get("type")
        properties = feature.get("properties") or {}
        if type(properties) is not dict:
            _fail(index, f"properties must be an object, got {type(properties).__name__}")
        raw_name, color = classify(properties, index)
        fid = feature.get("id")
        if fid is not None and type(fid) is not str:
            fid = str(fid)
        coords = geometry.get("coordinates")
        if gtype == "Point":
            if raw_name not in cell_class_of:
                cell_class_of[raw_name] = UNCLASSIFIED if raw_name is None else qupath_class_name(raw_name)
            cls = cell_class_of[raw_name]
            value = properties.get("classification")
            if type(value) is dict and type(value.get("color")) is list and color is not None:
                fast[(value.get("name"), *value["color"])] = cls
            points.append(coords)
            point_feature.append(index)
            cell_classes.append(cls)
            cell_ids.append(fid)
        elif gtype == "MultiPoint" or (
            gtype in _POLYGON_GEOMETRIES
            and str(properties.get("objectType", feature.get("objectType"))).lower() in _CELL_TYPES
        ):
            cls = UNCLASSIFIED if raw_name is None else qupath_class_name(raw_name)
            if gtype == "MultiPoint":
                if not isinstance(coords, list):
                    _fail(index, "a MultiPoint needs a list of positions")
                positions = coords
            else:  # a cell outlined as a polygon (QuPath cell detection): keep its centroid
                polygons = [coords] if gtype == "Polygon" else coords
                if not isinstance(polygons, list) or not polygons:
                    _fail(index, f"a {gtype} needs a non-empty list of rings")
                positions = []
                for poly in polygons:
                    ext, _ = _polygon(poly, index, (0.0, 0.0))
                    row, col = _centroid_rc(ext)
                    positions.append([col, row])
            for k, position in enumerate(positions):
                points.append(position)
                point_feature.append(index)
                cell_classes.append(cls)
                many = len(positions) > 1
                cell_ids.append(None if fid is None else (f"{fid}:{k}" if many else fid))
        elif gtype in _POLYGON_GEOMETRIES:
            cls = UNCLASSIFIED if raw_name is None else qupath_class_name(raw_name)
            name = properties.get("name")
            name = None if name is None else str(name)
            if gtype == "Polygon":
                ext, holes = _polygon(coords, index, origin)
                regions.append(RegionShape(cls, ext, holes, name, fid))
            else:
                if not isinstance(coords, list) or not coords:
                    _fail(index, "a MultiPolygon needs a non-empty list of polygons")
                for k, poly in enumerate(coords):
                    ext, holes = _polygon(poly, index, origin)
                    rid = None if fid is None else (fid if len(coords) == 1 else f"{fid}:{k}")
                    regions.append(RegionShape(cls, ext, holes, name, rid))
        elif skip_unsupported:
            continue
        else:
            _fail(
                index,
                f"geometry type {gtype!r} is not supported (cells: Point/MultiPoint, regions: "
                "Polygon/MultiPolygon); pass skip_unsupported=True to leave such features out",
            )
        if color is not None and cls not in colors:
            colors[cls] = color
    xy = _positions(points, point_feature)
    cells = _cells(xy[:, 0], xy[:, 1], cell_classes, cell_ids, origin)
    annotations = AnnotationSet(cells, regions, colors)
    for name in annotations.classes():
        colors.setdefault(name, color_for_class(name))
    return annotations


def _positions(points: list, point_feature: list[int]) -> np.ndarray:
    """(N, 2) float64 x/y from raw positions, or an AnnotationError naming the bad feature."""
    if not points:
        return np.zeros((0, 2))
    try:
        xy = np.array(points)
        ok = (
            xy.ndim == 2
            and xy.shape[1] >= 2
            and xy.dtype.kind in "fi"
            and bool(np.isfinite(xy[:, :2]).all())
            and not any(type(p[0]) is bool or type(p[1]) is bool for p in points)
        )
    except (ValueError, TypeError):
        ok = False
    if ok:
        return xy[:, :2].astype(np.float64)
    for position, index in zip(points, point_feature):
        _position(position, index)
    # every position is fine on its own, but they differ in length (e.g. some carry z)
    return np.array([_position(p, i) for p, i in zip(points, point_feature)], dtype=np.float64)


def _centroid_rc(ring_rc: np.ndarray) -> tuple[float, float]:
    """Area centroid (row, col) of a ring; the vertex mean for degenerate rings."""
    r, c = ring_rc[:, 0], ring_rc[:, 1]
    r1, c1 = np.roll(r, -1), np.roll(c, -1)
    cross = r * c1 - r1 * c
    area = cross.sum() / 2
    if abs(area) < 1e-12:
        return float(r.mean()), float(c.mean())
    return float(((r + r1) * cross).sum() / (6 * area)), float(((c + c1) * cross).sum() / (6 * area))


def _cells(xs, ys, classes, ids, origin) -> CellPoints:
    rows = np.asarray(ys, dtype=np.float64) + origin[0]
    cols = np.asarray(xs, dtype=np.float64) + origin[1]
    if not ids or all(i is None for i in ids):
        return CellPoints(rows, cols, np.asarray(classes, dtype=str), None)
    filled = ["" if i is None else i for i in ids]
    cells = CellPoints(rows, cols, np.asarray(classes, dtype=str), np.asarray(filled, dtype=str))
    if "" in filled or len(set(filled)) != len(filled):
        cells = cells.with_ids()
    return cells


def read_geojson(path, *, origin=(0.0, 0.0), skip_unsupported: bool = False) -> AnnotationSet:
    """Read a GeoJSON file; see :func:`geojson_to_annotations`."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise AnnotationError(f"{path.name} is not UTF-8 text; is it really GeoJSON?") from None
    try:
        if text.startswith(OUR_HEAD):  # our own layout: cells parsed in bulk
            from .geojson_fast import read_our_layout

            fast = read_our_layout(text, origin=origin, skip_unsupported=skip_unsupported)
            if fast is not None:
                return fast
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            raise AnnotationError(
                f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
        return geojson_to_annotations(obj, origin=origin, skip_unsupported=skip_unsupported)
    except AnnotationError as err:
        raise AnnotationError(f"{path.name}: {err}") from None
