"""A structural checker for QuPath GeoJSON, one rule of REFERENCES.md "QuPath GeoJSON" each.

Rules checked (a problem message names the feature index and the rule):
1. top level is ``{"type": "FeatureCollection", "features": [...]}``;
2. every feature is ``{"type": "Feature", "geometry": {...}, "properties": {...}}`` with a
   known geometry type and well-formed, finite coordinates;
3. ``objectType`` is inside ``properties`` and one of annotation, detection, cell, tile;
4. ``classification`` is ``{"name": str, "color": [r, g, b]}`` (colour required: QuPath fails
   the whole import without it), values integers 0..255;
5. ``name`` is a string, ``measurements`` a ``{name: number}`` object;
6. (layout) cells are ``detection``/``cell`` Points, regions ``annotation`` Polygons;
7. polygon rings are closed, have >= 4 positions and non-zero area, do not cross themselves,
   and holes lie inside the exterior;
8. coordinates are level-0 pixels (optionally inside ``image_shape`` = (height, width));
9. feature ids, when present, are unique strings.
"""

from __future__ import annotations

import math

import numpy as np

OBJECT_TYPES = {"annotation", "detection", "cell", "tile"}
GEOMETRY_TYPES = {
    "Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
    "GeometryCollection",
}
# nesting depth of "coordinates" for each geometry type
_DEPTH = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2,
          "MultiPolygon": 3}


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


def _check_polygon(rings, where: str, problems: list[str]) -> None:
    if not rings:
        problems.append(f"{where}: a Polygon needs at least one ring")
        return
    arrays = []
    for r, ring in enumerate(rings):
        label = "exterior ring" if r == 0 else f"hole {r}"
        if len(ring) < 4:
            problems.append(f"{where}: {label} has {len(ring)} positions, a closed ring needs >= 4")
            continue
        xy = np.array([p[:2] for p in ring], dtype=np.float64)
        if not np.array_equal(xy[0], xy[-1]):
            problems.append(f"{where}: {label} is not closed (first position != last)")
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


def validate_qupath_geojson(obj, *, layout: bool = True, image_shape=None) -> list[str]:
    """Every breach of the QuPath GeoJSON rules in ``obj`` (a parsed JSON object).

    Parameters
    ----------
    obj : object
        The parsed file (``json.load``).
    layout : bool
        Also check our layout: cells are detection Points, regions annotation Polygons.
    image_shape : (height, width), optional
        When given, every coordinate must lie inside the image (x in [0, width], y in [0, height]).

    Returns
    -------
    list of str
        Problems, each naming the feature index; empty when the file follows every rule.
    """
    if not isinstance(obj, dict) or obj.get("type") != "FeatureCollection":
        return ["top level must be an object with \"type\": \"FeatureCollection\""]
    features = obj.get("features")
    if not isinstance(features, list):
        return ["FeatureCollection needs a \"features\" list"]
    problems: list[str] = []
    ids: dict[str, int] = {}
    for index, feature in enumerate(features):
        where = f"feature {index}"
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            problems.append(f"{where}: must be an object with \"type\": \"Feature\"")
            continue
        geometry, properties = feature.get("geometry"), feature.get("properties")
        if "objectType" in feature and not (isinstance(properties, dict) and "objectType" in properties):
            problems.append(f"{where}: objectType must be inside properties, not beside them")
        if not isinstance(properties, dict):
            problems.append(f"{where}: needs a \"properties\" object")
            properties = {}
        object_type = properties.get("objectType")
        if object_type not in OBJECT_TYPES:
            problems.append(f"{where}: properties.objectType must be one of {sorted(OBJECT_TYPES)}, "
                            f"got {object_type!r}")
        if "classification" in properties:
            cls = properties["classification"]
            if not isinstance(cls, dict):
                problems.append(f"{where}: classification must be an object {{name, color}}")
            else:
                if not isinstance(cls.get("name"), str) or not cls.get("name"):
                    problems.append(f"{where}: classification.name must be a non-empty string")
                color = cls.get("color")
                if not (isinstance(color, list) and len(color) == 3
                        and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255
                                for c in color)):
                    problems.append(f"{where}: classification.color must be [r, g, b], integers 0..255")
        if "name" in properties and not isinstance(properties["name"], str):
            problems.append(f"{where}: name must be a string")
        if "measurements" in properties:
            m = properties["measurements"]
            if not isinstance(m, dict) or not all(
                isinstance(k, str) and (_is_number(v) or v is None) for k, v in m.items()
            ):
                problems.append(f"{where}: measurements must be an object of name -> number")
        if "id" in feature:
            fid = feature["id"]
            if not isinstance(fid, str):
                problems.append(f"{where}: id must be a string")
            elif fid in ids:
                problems.append(f"{where}: id {fid!r} repeats feature {ids[fid]}")
            else:
                ids[fid] = index
        if not isinstance(geometry, dict) or geometry.get("type") not in GEOMETRY_TYPES:
            problems.append(f"{where}: geometry must be a GeoJSON geometry object")
            continue
        gtype = geometry["type"]
        if gtype == "GeometryCollection":
            continue
        coords = geometry.get("coordinates")
        if not _positions_ok(coords, _DEPTH[gtype]):
            problems.append(f"{where}: {gtype} coordinates are malformed or not finite numbers")
            continue
        if layout:
            if gtype in ("Point", "MultiPoint") and object_type not in ("detection", "cell"):
                problems.append(f"{where}: cells must be detection Points, got {object_type!r}")
            if gtype in ("Polygon", "MultiPolygon") and object_type != "annotation":
                problems.append(f"{where}: regions must be annotation Polygons, got {object_type!r}")
        if gtype == "Polygon":
            _check_polygon(coords, where, problems)
        elif gtype == "MultiPolygon":
            for k, poly in enumerate(coords):
                _check_polygon(poly, f"{where} polygon {k}", problems)
        if image_shape is not None:
            height, width = image_shape
            xy = np.array([p[:2] for p in _all_positions(coords, _DEPTH[gtype])], dtype=np.float64)
            if len(xy) and ((xy < 0).any() or (xy[:, 0] > width).any() or (xy[:, 1] > height).any()):
                problems.append(f"{where}: coordinates outside the level-0 image "
                                f"(x in [0, {width}], y in [0, {height}])")
    return problems
