"""A structural checker for QuPath GeoJSON: what QuPath's own reader accepts, rule by rule.

The rules follow QuPath's reader (qupath/qupath at v0.7.0-228, qupath-core/src/main/java/qupath/
lib/io/: ``GsonTools.parseObjectsFromGeoJSON``, ``QuPathTypeAdapters.PathObjectTypeAdapter``,
``GsonTools.PathClassTypeAdapter``, ``ROITypeAdapters.parseGeometry``; class names:
``qupath/lib/objects/classes/PathClass.java``). A problem names the feature and the rule; the
default rules are those that make QuPath fail the import (or lose the object), so whatever
QuPath writes or reads passes:

1. top level: a FeatureCollection with a ``features`` list, a Feature, an array of features, or
   a bare geometry;
2. each feature is an object with ``"type": "Feature"`` (RFC 7946) and a geometry object (QuPath
   cannot make an object without one; RFC 7946 allows ``null``);
3. geometry: a known type; positions of 2-3 finite numbers; LineStrings of 0 or >= 2 positions;
   polygon rings closed with >= 4 positions (JTS ``LinearRing``); collections of geometries;
4. ``properties`` (optional) is an object; ``objectType`` (optional: missing means annotation;
   also ``object_type``/``type``) a string; ``name`` a string or number; per-object ``color``
   an integer or [r, g, b] of numbers;
5. ``classification``: null, a name string (``"Tumor: Positive"``), ``{}``, the pre-0.4 form
   with ``colorRGB``, or ``{"name" | "names": [...], "color": [...]}`` where the colour is
   required (QuPath fails the whole import without it) and has 0, 1, 3 or 4 integer values;
   names non-blank, on one line;
6. ``measurements`` an object of numbers, null or numeric strings ("NaN", "Infinity"), or the
   pre-0.4 list of ``{name, value}``;
7. ``id`` a string or number, unique; ``nucleusGeometry`` and ``childObjects`` follow the same
   rules.

``layout=True`` adds what our writer guarantees: known object types, cells as ``detection``
Points, regions as ``annotation`` Polygons whose rings have area, do not cross themselves and
hold their holes. ``image_shape`` adds the level-0 bounds.
"""

from __future__ import annotations

import math

import numpy as np

OBJECT_TYPES = {"annotation", "detection", "cell", "tile", "tmaCore", "tma_core", "root",
                "PathAnnotationObject", "PathDetectionObject", "PathCellObject",
                "PathTileObject", "TMACoreObject", "PathRootObject"}
GEOMETRY_TYPES = {
    "Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
    "GeometryCollection",
}
# nesting depth of "coordinates" for each geometry type
_DEPTH = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2,
          "MultiPolygon": 3}
_MAX_NESTING = 32  # geometry collections / child objects inside each other


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_position(p) -> bool:
    return isinstance(p, list) and 2 <= len(p) <= 3 and all(_is_number(v) for v in p)


def _positions_ok(coords, depth: int) -> bool:
    if depth == 0:
        return _is_position(coords)
    return isinstance(coords, list) and all(_positions_ok(c, depth - 1) for c in coords)


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return float((x * np.roll(y, -1) - np.roll(x, -1) * y).sum() / 2)


def ring_self_intersects(ring: np.ndarray) -> bool:
    """True when two non-adjacent edges of a closed ring (K, 2), last != first, meet."""
    k = len(ring)
    if k < 4:
        return False
    a, b = ring, np.roll(ring, -1, axis=0)

    def orient(p, q, r):
        return np.sign((q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1])
                       - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0]))

    def on_segment(p, q, r):  # r collinear with p-q: does it lie between them?
        return ((np.minimum(p[..., 0], q[..., 0]) <= r[..., 0]) & (r[..., 0] <= np.maximum(p[..., 0], q[..., 0]))
                & (np.minimum(p[..., 1], q[..., 1]) <= r[..., 1]) & (r[..., 1] <= np.maximum(p[..., 1], q[..., 1])))

    block = 1024
    for start in range(0, k, block):
        i = np.arange(start, min(start + block, k))[:, None]
        j = np.arange(k)[None, :]
        adjacent = (j == i) | (j == (i + 1) % k) | (i == (j + 1) % k)
        p1, q1 = a[i], b[i]
        p2, q2 = a[j], b[j]
        o1, o2 = orient(p1, q1, p2), orient(p1, q1, q2)
        o3, o4 = orient(p2, q2, p1), orient(p2, q2, q1)
        hit = (o1 != o2) & (o3 != o4) & (o1 != 0) & (o2 != 0) & (o3 != 0) & (o4 != 0)
        hit |= (o1 == 0) & on_segment(p1, q1, p2)
        hit |= (o2 == 0) & on_segment(p1, q1, q2)
        hit |= (o3 == 0) & on_segment(p2, q2, p1)
        hit |= (o4 == 0) & on_segment(p2, q2, q1)
        if (hit & ~adjacent & (j > i)).any():
            return True
    return False


def point_in_ring(points: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Even-odd rule: which of ``points`` (M, 2) lie inside the ring (K, 2)."""
    x, y = points[:, 0:1], points[:, 1:2]
    x1, y1 = ring[None, :, 0], ring[None, :, 1]
    x2, y2 = np.roll(ring[:, 0], -1)[None], np.roll(ring[:, 1], -1)[None]
    crosses = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    return ((crosses & (x < x_at)).sum(axis=1) % 2) == 1


def _check_polygon(rings, where: str, problems: list[str], geometry_rules: bool) -> None:
    arrays = []
    for r, ring in enumerate(rings):
        label = "exterior ring" if r == 0 else f"hole {r}"
        if len(ring) == 0:
            continue  # an empty ring is an empty geometry to JTS
        if len(ring) < 4:
            problems.append(f"{where}: {label} has {len(ring)} positions, a closed ring needs >= 4")
            continue
        xy = np.array([p[:2] for p in ring], dtype=np.float64)
        if not np.array_equal(xy[0], xy[-1]):
            problems.append(f"{where}: {label} is not closed (first position != last)")
            continue
        if not geometry_rules:
            continue
        open_ring = xy[:-1]
        if ring_self_intersects(open_ring):
            problems.append(f"{where}: {label} crosses itself")
        elif abs(_signed_area(open_ring)) <= 1e-12:
            problems.append(f"{where}: {label} has zero area")
            continue
        arrays.append((r, open_ring))
    if arrays and arrays[0][0] == 0:
        exterior = arrays[0][1]
        for r, hole in arrays[1:]:
            if not point_in_ring(hole, exterior).all():
                problems.append(f"{where}: hole {r} is not inside the exterior ring")


def _all_positions(coords, depth: int):
    if depth == 0:
        yield coords
    else:
        for c in coords:
            yield from _all_positions(c, depth - 1)


def _check_geometry(geometry, where: str, problems: list, layout: bool, image_shape,
                    nesting: int = 0) -> str | None:
    """Problems of one geometry object; returns its type when it can be used further."""
    if not isinstance(geometry, dict) or geometry.get("type") not in GEOMETRY_TYPES:
        problems.append(f"{where}: geometry must be a GeoJSON geometry object (QuPath cannot "
                        "make an object without one)")
        return None
    gtype = geometry["type"]
    if gtype == "GeometryCollection":
        parts = geometry.get("geometries")
        if not isinstance(parts, list):
            problems.append(f"{where}: a GeometryCollection needs a \"geometries\" list")
        elif nesting >= _MAX_NESTING:
            problems.append(f"{where}: geometry collections nested too deeply")
        else:
            for k, part in enumerate(parts):
                _check_geometry(part, f"{where} geometry {k}", problems, layout, image_shape,
                                nesting + 1)
        return None
    coords = geometry.get("coordinates")
    if not _positions_ok(coords, _DEPTH[gtype]):
        problems.append(f"{where}: {gtype} coordinates are malformed or not finite numbers")
        return None
    if gtype == "LineString" and len(coords) == 1:
        problems.append(f"{where}: a LineString needs 0 or at least 2 positions")
    if gtype == "Polygon":
        _check_polygon(coords, where, problems, layout)
    elif gtype == "MultiPolygon":
        for k, poly in enumerate(coords):
            _check_polygon(poly, f"{where} polygon {k}", problems, layout)
    if image_shape is not None:
        height, width = image_shape
        xy = np.array([p[:2] for p in _all_positions(coords, _DEPTH[gtype])], dtype=np.float64)
        if len(xy) and ((xy < 0).any() or (xy[:, 0] > width).any() or (xy[:, 1] > height).any()):
            problems.append(f"{where}: coordinates outside the level-0 image "
                            f"(x in [0, {width}], y in [0, {height}])")
    return gtype


def _names_ok(names) -> bool:
    return (isinstance(names, list) and len(names) > 0 and all(
        isinstance(n, str) and n.strip() and "\n" not in n and "\r" not in n for n in names))


def _check_classification(cls, where: str, problems: list) -> None:
    if cls is None:
        return
    if isinstance(cls, str):
        if not _names_ok(cls.split(":")):
            problems.append(f"{where}: classification {cls!r:.60} has an empty or multi-line name")
        return
    if not isinstance(cls, dict):
        problems.append(f"{where}: classification must be a name or an object {{name, color}}")
        return
    if not cls or "colorRGB" in cls or "parentClass" in cls:
        return  # QuPath's NULL_CLASS, or its pre-0.4 serialised PathClass
    name, names = cls.get("name"), cls.get("names")
    if name is None and names is None:
        problems.append(f"{where}: classification needs a \"name\" (or \"names\")")
    elif name is not None and not (isinstance(name, str) and _names_ok(name.split(":"))):
        problems.append(f"{where}: classification.name must be a non-empty one-line string")
    elif name is None and not _names_ok(names):
        problems.append(f"{where}: classification.names must be non-empty one-line strings")
    if "color" not in cls:
        problems.append(f"{where}: classification.color is required in the object form "
                        "(QuPath fails the whole import without it): [r, g, b]")
        return
    color = cls["color"]
    if color is not None and not (
            isinstance(color, list) and len(color) in (0, 1, 3, 4)
            and all(isinstance(c, int) and not isinstance(c, bool) for c in color)):
        problems.append(f"{where}: classification.color must be [r, g, b] or [r, g, b, a] "
                        "integers")


def _check_measurements(m, where: str, problems: list) -> None:
    def numeric(v) -> bool:
        if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)):
            return True
        if isinstance(v, str):
            if v.strip().lower() in ("nan", "inf", "-inf", "infinity", "-infinity"):
                return True
            try:
                float(v)
                return True
            except ValueError:
                return False
        return False

    if isinstance(m, dict):
        ok = all(isinstance(k, str) and numeric(v) for k, v in m.items())
    elif isinstance(m, list):  # the pre-0.4 form
        ok = all(isinstance(e, dict) and isinstance(e.get("name"), str)
                 and isinstance(e.get("value"), (int, float)) and not isinstance(e.get("value"), bool)
                 for e in m)
    else:
        ok = True  # anything else is ignored by QuPath
    if not ok:
        problems.append(f"{where}: measurements must be an object of name -> number")


def _check_feature(feature, where: str, problems: list, ids: dict, layout: bool, image_shape,
                   nesting: int = 0) -> None:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        problems.append(f"{where}: must be an object with \"type\": \"Feature\"")
        return
    geometry, properties = feature.get("geometry"), feature.get("properties", {})
    if "objectType" in feature and not (isinstance(properties, dict) and "objectType" in properties):
        problems.append(f"{where}: objectType must be inside properties, not beside them")
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        problems.append(f"{where}: properties must be an object")
        properties = {}
    object_type = None
    for key in ("objectType", "object_type", "type"):
        if key in properties:
            object_type = properties[key]
            if not isinstance(object_type, (str, int, float)) or isinstance(object_type, bool):
                problems.append(f"{where}: properties.{key} must be a string")
            break
    if layout and object_type not in OBJECT_TYPES:
        problems.append(f"{where}: properties.objectType must be one of "
                        f"{sorted(OBJECT_TYPES)[:6]}..., got {object_type!r:.40}")
    if "classification" in properties:
        _check_classification(properties["classification"], where, problems)
    if "name" in properties and not (
            isinstance(properties["name"], (str, int, float)) and not isinstance(properties["name"], bool)):
        problems.append(f"{where}: name must be a string")
    color = properties.get("color")
    if color is not None and not (
            (isinstance(color, int) and not isinstance(color, bool))
            or (isinstance(color, list) and (len(color) != 3 or all(_is_number(c) for c in color)))):
        problems.append(f"{where}: color must be [r, g, b] numbers or a packed integer")
    if "measurements" in properties:
        _check_measurements(properties["measurements"], where, problems)
    if "id" in feature:
        fid = feature["id"]
        if not isinstance(fid, (str, int, float)) or isinstance(fid, bool):
            problems.append(f"{where}: id must be a string")
        elif str(fid) in ids:
            problems.append(f"{where}: id {fid!r} repeats {ids[str(fid)]}")
        else:
            ids[str(fid)] = where
    gtype = _check_geometry(geometry, where, problems, layout, image_shape)
    if "nucleusGeometry" in feature:
        _check_geometry(feature["nucleusGeometry"], f"{where} nucleusGeometry", problems, layout,
                        image_shape)
    if layout and gtype is not None:
        if gtype in ("Point", "MultiPoint") and object_type not in ("detection", "cell"):
            problems.append(f"{where}: cells must be detection Points, got {object_type!r}")
        if gtype in ("Polygon", "MultiPolygon") and object_type not in (
                "annotation", "cell", "detection"):
            problems.append(f"{where}: regions must be annotation Polygons, got {object_type!r}")
    children = properties.get("childObjects", properties.get("children"))
    if isinstance(children, list):
        if nesting >= _MAX_NESTING:
            problems.append(f"{where}: child objects nested too deeply")
            return
        for k, child in enumerate(children):
            _check_feature(child, f"{where} child {k}", problems, ids, layout, image_shape,
                           nesting + 1)


def validate_qupath_geojson(obj, *, layout: bool = False, image_shape=None) -> list[str]:
    """Every breach of QuPath's GeoJSON rules in ``obj`` (a parsed JSON object).

    Parameters
    ----------
    obj : object
        The parsed file (``json.load``).
    layout : bool
        Also check our layout: known object types, cells as detection Points, regions as
        annotation Polygons with valid rings (area, no crossing, holes inside).
    image_shape : (height, width), optional
        When given, every coordinate must lie inside the image (x in [0, width], y in [0, height]).

    Returns
    -------
    list of str
        Problems, each naming the feature index; empty when QuPath reads the file fully.
    """
    if isinstance(obj, list):
        features = obj
    elif isinstance(obj, dict) and obj.get("type") == "FeatureCollection":
        features = obj.get("features")
        if not isinstance(features, list):
            return ["FeatureCollection needs a \"features\" list"]
    elif isinstance(obj, dict) and obj.get("type") == "Feature":
        features = [obj]
    elif isinstance(obj, dict) and obj.get("type") in GEOMETRY_TYPES:
        features = [{"type": "Feature", "geometry": obj, "properties": {}}]
    else:
        return ["top level must be an object with \"type\": \"FeatureCollection\" (or a Feature, "
                "an array of features or a geometry)"]
    problems: list[str] = []
    ids: dict[str, str] = {}
    for index, feature in enumerate(features):
        _check_feature(feature, f"feature {index}", problems, ids, layout, image_shape)
    return problems
