"""What a file says about an object beyond its position and class, kept so it is written back.

A QuPath object carries more than the plugin scores: ``measurements``, ``metadata``,
``isLocked``, a per-object ``color``, a ``name``, the cell and nucleus outlines of a cell
detection, the single id of a MultiPoint or MultiPolygon, foreign members. Such a feature gets an
:class:`ObjectRecord` (in :attr:`AnnotationSet.objects`, keyed by its id); the cells or regions
it became name it through their ids (``members``). The writer rebuilds the feature from the
record and the members' current positions and classes, so nothing is lost on a round trip and
edits made in the plugin (a moved point, a new class) still show.

Layout checked against QuPath's own reader and writer (qupath/qupath at v0.7.0-228,
``qupath-core/src/main/java/qupath/lib/io/QuPathTypeAdapters.java``: ``PathObjectTypeAdapter``
writes ``id``, ``geometry``, ``nucleusGeometry`` beside ``properties`` with ``objectType``,
``name``, ``color`` [r, g, b], ``classification``, ``isLocked`` (only when true),
``measurements`` and ``metadata``; a feature without ``objectType`` is read as an annotation).

Plain cells (a ``detection`` Point with only a ``{name, color}`` classification, which is what
our writer makes) need no record, so 100k of them cost nothing extra.
"""

from __future__ import annotations

import gc
import hashlib
import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np

# a coordinate beyond this (level-0 px) is not a slide position: 1e7 px is 2.5 m at 0.25 µm/px,
# 50 times the largest slides; napari fails on values near 2**31
MAX_COORD = 1e7


@dataclass
class ObjectRecord:
    """One file object's own data, as read.

    Parameters
    ----------
    id : str
        The feature id (the file's, or the stable one given on reading).
    kind : {"cells", "regions"}
        What its members are.
    members : list of str
        Ids of the cells (MultiPoint: one per point) or regions (MultiPolygon: one per polygon).
    geometry : dict
        The geometry as read (file coordinates).
    properties : dict
        Every property as read, in file order (``objectType``, ``classification``, ``name``,
        ``color``, ``isLocked``, ``measurements``, ``metadata`` ...).
    extra : dict
        Feature members besides type, id, geometry and properties (``nucleusGeometry`` ...).
    anchors : list of [row, col]
        Level-0 position of each cell member when read (cells drawn as outlines are scored at
        the nucleus centroid, else the cell centroid); moving a cell moves its outlines with it.
    origin : [row, col]
        The origin the file was read with.
    index : int
        Position of the feature in the file (the writer keeps the order).
    """

    id: str
    kind: str
    members: list[str]
    geometry: dict
    properties: dict
    extra: dict = field(default_factory=dict)
    anchors: list = field(default_factory=list)
    origin: list = field(default_factory=lambda: [0.0, 0.0])
    index: int = 0

    def to_json(self) -> dict:
        """Plain JSON data (for a napari layer's metadata or a project file)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ObjectRecord:
        return cls(**data)

    @property
    def object_type(self) -> str | None:
        """QuPath's object type as the file gives it (None: absent, which QuPath reads as an
        annotation)."""
        for key in ("objectType", "object_type", "type"):
            if key in self.properties:
                return self.properties[key]
        return self.extra.get("objectType")


def objects_to_json(objects: dict) -> dict:
    """``AnnotationSet.objects`` as plain JSON data."""
    return {key: record.to_json() for key, record in objects.items()}


def objects_from_json(data: dict) -> dict:
    """The inverse of :func:`objects_to_json`."""
    return {key: ObjectRecord.from_json(value) for key, value in (data or {}).items()}


@contextmanager
def no_gc_pauses():
    """Cyclic GC off while building many small objects next to a large parsed file.

    Each generation-0 collection would scan the whole parsed JSON again (100k records took
    seconds, nearly all of it in the collector); nothing built here forms cycles.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# ----------------------------------------------------------------------------- stable ids
def format_uuids(raw: np.ndarray, version: int) -> np.ndarray:
    """(n, 16) uint8 -> n UUID strings with the given version nibble and the RFC 4122 variant."""
    raw = np.array(raw, dtype=np.uint8).reshape(-1, 16)
    n = len(raw)
    raw[:, 6] = (raw[:, 6] & 0x0F) | (version << 4)
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    digits = np.frombuffer(raw.tobytes().hex().encode(), dtype="S1").reshape(n, 32)
    dash = np.full((n, 1), b"-", dtype="S1")
    pieces = [digits[:, :8], dash, digits[:, 8:12], dash, digits[:, 12:16], dash,
              digits[:, 16:20], dash, digits[:, 20:]]
    joined = np.ascontiguousarray(np.concatenate(pieces, axis=1))
    return joined.view("S36").reshape(n).astype(str)


def _digest_uuid(text: str) -> str:
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()[:16]
    # version 8 ("custom", RFC 9562): a UUID QuPath keeps (UUID.fromString), derived not random
    return str(format_uuids(np.frombuffer(digest, dtype=np.uint8), 8)[0])


def stable_id(feature, index: int) -> str:
    """The id of a feature that has none: a hash of its content and position, so every read of
    the same file gives the same id."""
    try:
        text = json.dumps(feature, sort_keys=True, default=repr, allow_nan=True)
    except (RecursionError, ValueError, TypeError):
        text = repr(type(feature))
    return _digest_uuid(f"{index}\n{text}")


def derived_id(base: str, k: int) -> str:
    """A stable id for the ``k``-th repeat of ``base`` (ids must be unique; the first keeps it)."""
    return _digest_uuid(f"{base}\n#{k}")


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, element-wise on uint64 (wrapping arithmetic)."""
    z = values + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def stable_point_ids(xs, ys, classes, indices) -> np.ndarray:
    """Stable ids for points without one: a hash of (x, y, class, position in the file).

    Vectorised (100k points in milliseconds); the same inputs give the same ids on every read.
    """
    xs = np.ascontiguousarray(xs, dtype=np.float64).reshape(-1)
    n = len(xs)
    if n == 0:
        return np.zeros(0, dtype=str)
    ys = np.ascontiguousarray(ys, dtype=np.float64).reshape(-1)
    names, inverse = np.unique(np.asarray(classes, dtype=str), return_inverse=True)
    name_hash = np.array([int.from_bytes(hashlib.sha1(s.encode("utf-8", "surrogatepass"))
                                         .digest()[:8], "little") for s in names.tolist()],
                         dtype=np.uint64)[inverse.reshape(-1)]
    index = np.asarray(indices, dtype=np.int64).reshape(-1).astype(np.uint64)
    with np.errstate(over="ignore"):
        h1 = _mix(xs.view(np.uint64) ^ _mix(ys.view(np.uint64) ^ _mix(index ^ _mix(name_hash))))
        h2 = _mix(h1 ^ np.uint64(0xD1B54A32D192ED03))
    raw = np.stack([h1, h2], axis=1).view(np.uint8).reshape(n, 16)
    return format_uuids(raw, 8)


def unique_stable(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``ids`` with every repeat replaced by :func:`derived_id` (the first keeps its id).

    Returns the ids and the mask of those replaced.
    """
    ids = np.asarray(ids, dtype=str)
    if len(ids) < 2 or len(set(ids.tolist())) == len(ids):
        return ids, np.zeros(len(ids), dtype=bool)
    _, first = np.unique(ids, return_index=True)
    repeated = np.ones(len(ids), dtype=bool)
    repeated[first] = False
    if not repeated.any():
        return ids, repeated
    out = ids.astype(object)
    taken = set(ids.tolist())
    count: dict[str, int] = {}
    for i in np.flatnonzero(repeated).tolist():
        base = str(ids[i])
        k = count.get(base, 1)
        candidate = derived_id(base, k)
        while candidate in taken:
            k += 1
            candidate = derived_id(base, k)
        count[base] = k + 1
        taken.add(candidate)
        out[i] = candidate
    return out.astype(str), repeated


# ----------------------------------------------------------------------------- geometry
def shift_coordinates(coords, dx: float, dy: float):
    """Nested GeoJSON coordinates with every position moved by (dx, dy); z is kept."""
    if isinstance(coords, list) and coords and isinstance(coords[0], (int, float)) \
            and not isinstance(coords[0], bool):
        return [coords[0] + dx, coords[1] + dy, *coords[2:]]
    if isinstance(coords, list):
        return [shift_coordinates(c, dx, dy) for c in coords]
    return coords


def shift_geometry(geometry, dx: float, dy: float):
    """A copy of a GeoJSON geometry object moved by (dx, dy) (collections included)."""
    if not isinstance(geometry, dict) or (dx == 0 and dy == 0):
        return geometry
    moved = dict(geometry)
    if "coordinates" in moved:
        moved["coordinates"] = shift_coordinates(moved["coordinates"], dx, dy)
    if isinstance(moved.get("geometries"), list):
        moved["geometries"] = [shift_geometry(g, dx, dy) for g in moved["geometries"]]
    return moved


def polygon_parts(geometry) -> list[list[np.ndarray]]:
    """The rings (x, y arrays, closing vertex dropped) of each polygon of a Polygon or
    MultiPolygon; [] when the geometry is something else or malformed."""
    if not isinstance(geometry, dict):
        return []
    gtype, coords = geometry.get("type"), geometry.get("coordinates")
    polygons = [coords] if gtype == "Polygon" else coords if gtype == "MultiPolygon" else None
    if not isinstance(polygons, list):
        return []
    parts = []
    try:
        for polygon in polygons:
            rings = []
            for ring in polygon:
                xy = np.array([p[:2] for p in ring], dtype=np.float64).reshape(-1, 2)
                if len(xy) >= 2 and np.array_equal(xy[0], xy[-1]):
                    xy = xy[:-1]
                rings.append(xy)
            if rings:
                parts.append(rings)
    except (TypeError, ValueError, IndexError):
        return []
    return parts


def centroid_xy(geometry) -> tuple[float, float] | None:
    """Area centroid (x, y) of a Polygon/MultiPolygon (exteriors, area-weighted); the vertex
    mean when the area is zero; None when there is no polygon."""
    exteriors = [rings[0] for rings in polygon_parts(geometry) if len(rings[0])]
    if not exteriors:
        return None
    total = sx = sy = 0.0
    for ring in exteriors:
        x, y = ring[:, 0], ring[:, 1]
        x1, y1 = np.roll(x, -1), np.roll(y, -1)
        cross = x * y1 - x1 * y
        area = cross.sum() / 2
        total += area
        sx += ((x + x1) * cross).sum() / 6
        sy += ((y + y1) * cross).sum() / 6
    if abs(total) < 1e-12 or not np.isfinite(total):
        allxy = np.concatenate(exteriors)
        return float(allxy[:, 0].mean()), float(allxy[:, 1].mean())
    return float(sx / total), float(sy / total)


def outline_rings_rc(record: ObjectRecord, which: str = "cell") -> list[np.ndarray]:
    """Level-0 (row, col) rings of a cell's own outline (``which="cell"``) or its nucleus
    (``"nucleus"``), as read; for drawing them in the viewer."""
    geometry = record.geometry if which == "cell" else record.extra.get("nucleusGeometry")
    row0, col0 = record.origin
    rings = []
    for part in polygon_parts(geometry):
        for xy in part:
            rings.append(np.stack([xy[:, 1] + row0, xy[:, 0] + col0], axis=1))
    return rings
