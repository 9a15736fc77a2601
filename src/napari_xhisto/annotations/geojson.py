"""Reading QuPath-compatible GeoJSON (writing: :mod:`.geojson_write`).

Every Point and MultiPoint is scored as cells (one cell per point; a MultiPoint stays one object),
a ``detection``/``cell`` outlined as a polygon is one cell at its nucleus (else cell) centroid,
other polygons are regions (a MultiPolygon stays one object). A feature without ``objectType``
is an annotation, as QuPath reads it. Class names are kept as the file writes them
(:mod:`.classmap` says which role each plays). Whatever the plugin does not score is kept in
:class:`.objects.ObjectRecord` s and written back.

What cannot be used is skipped and counted (``AnnotationSet.skipped``): features without
geometry (allowed by RFC 7946), empty or degenerate geometries, coordinates that are not finite
or beyond ±1e7 px, and, when the slide size is known, objects off the slide. Lines and other
shapes are kept as read (``AnnotationSet.kept``) and written back. Broken structure (a position
that is not numbers, a classification of the wrong type) is an AnnotationError naming the
feature.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import AnnotationError
from .geojson_parse import (
    PLAIN_FEATURE_KEYS,
    SKIP_ABSURD,
    SKIP_DEGENERATE,
    SKIP_EMPTY,
    SKIP_NO_GEOMETRY,
    Degenerate,
    absurd,
    class_key,
    class_of,
    classification_json,
    fail,
    features_of,
    parse_classification,
    parse_polygon,
    positions_xy,
    region_problem,
    screen_points,
)
from .geojson_write import OUR_HEAD, WRITER_TAG, annotations_to_geojson, geojson_text
from .model import AnnotationSet, CellPoints, RegionShape, color_for_class
from .objects import (
    ObjectRecord,
    centroid_xy,
    derived_id,
    no_gc_pauses,
    polygon_parts,
    stable_id,
    stable_point_ids,
    unique_stable,
)

__all__ = ["WRITER_TAG", "annotations_to_geojson", "geojson_text", "geojson_to_annotations",
           "read_geojson"]

_CELL_TYPES = {"detection", "cell", "pathdetectionobject", "pathcellobject"}
_POLYGONS = ("Polygon", "MultiPolygon")
_OBJECT_TYPE_KEYS = ("objectType", "object_type", "type")  # QuPath's aliases, in its order


def _object_type(properties: dict, feature: dict, index: int):
    for key in _OBJECT_TYPE_KEYS:
        if key in properties:
            value = properties[key]
            break
    else:
        value = feature.get("objectType")  # beside properties: not QuPath's layout, still read
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    fail(index, f"objectType must be a string, got {type(value).__name__}")
    return None


def _feature_id(feature: dict, index: int):
    fid = feature.get("id")
    if fid is None or type(fid) is str:
        return fid
    if isinstance(fid, (int, float)) and not isinstance(fid, bool):
        return str(fid)
    fail(index, f"id must be a string, got {type(fid).__name__}")
    return None


class _Reader:
    """Collects cells, regions, records and counts from features one by one."""

    def __init__(self, origin, first_index: int, skip_unsupported: bool):
        self.origin = (float(origin[0]), float(origin[1]))
        self.first_index = first_index
        self.skip_unsupported = skip_unsupported
        self.points: list = []  # raw [x, y] positions, validated in bulk in finish()
        self.point_feature: list[int] = []
        self.cell_classes: list[str] = []
        self.cell_ids: list = []  # None: a plain point without id (stable id given in finish)
        self.point_owner: list = []  # id of the record a cell belongs to, or None
        self.regions: list[RegionShape] = []
        self.region_owner: list = []
        self.objects: dict[str, ObjectRecord] = {}
        self.kept: list[dict] = []
        self.skipped: dict[str, int] = {}
        self.colors: dict[str, tuple] = {}
        self.taken: set[str] = set()  # ids of records and regions
        self.class_cache: dict = {}
        self.fast: dict = {}  # classification key -> class of plain detection Points

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count

    def classify(self, value, index: int):
        key = class_key(value) if type(value) is dict else (value if type(value) is str else None)
        if key is not None and key in self.class_cache:
            return self.class_cache[key]
        name, color = parse_classification(value, index)
        result = (class_of(name), color, name)
        if key is not None:
            self.class_cache[key] = result
        return result

    def unique(self, fid: str) -> str:
        """``fid``, or a stable derived id when a record or region already uses it."""
        if fid in self.taken:
            k = 1
            while derived_id(fid, k) in self.taken:
                k += 1
            fid = derived_id(fid, k)
        self.taken.add(fid)
        return fid

    def add(self, feature, index: int) -> None:
        if type(feature) is not dict:
            fail(index, f"a feature must be an object, got {type(feature).__name__}")
        geometry = feature.get("geometry")
        if geometry is None:
            self.skip(SKIP_NO_GEOMETRY)
            return
        if type(geometry) is not dict:
            fail(index, f"geometry must be an object or null, got {type(geometry).__name__}")
        gtype = geometry.get("type")
        properties = feature.get("properties")
        if properties is None:
            properties = {}
        if type(properties) is not dict:
            fail(index, f"properties must be an object, got {type(properties).__name__}")
        value = properties.get("classification")
        cls, color, raw_name = self.classify(value, index)
        object_type = _object_type(properties, feature, index)
        fid = _feature_id(feature, index)
        coords = geometry.get("coordinates")
        is_cell = str(object_type).lower() in _CELL_TYPES
        plain_keys = (PLAIN_FEATURE_KEYS.issuperset(feature) and len(geometry) == 2
                      and color is not None and value == classification_json(cls, color))
        if gtype in ("Point", "MultiPoint") or (gtype in _POLYGONS and is_cell):
            if gtype == "Point":
                plain = (plain_keys and object_type == "detection" and len(properties) == 2
                         and type(coords) is list and len(coords) == 2)
                if plain:
                    if isinstance(value.get("name"), str):  # the fast path's key
                        self.fast[(value["name"], *value["color"])] = cls
                    self._cell(coords, index, cls, fid, None)
                else:
                    self._cell_record(feature, geometry, properties, index, cls, fid, [coords])
            elif gtype == "MultiPoint":
                if not isinstance(coords, list):
                    fail(index, "a MultiPoint needs a list of positions")
                if not coords:
                    self.skip(SKIP_EMPTY)
                    return
                self._cell_record(feature, geometry, properties, index, cls, fid, coords)
            else:
                self._outlined_cell(feature, geometry, properties, index, cls, fid)
        elif gtype in _POLYGONS:
            plain = (plain_keys and gtype == "Polygon" and object_type == "annotation"
                     and set(properties) <= {"objectType", "classification", "name"}
                     and isinstance(properties.get("name", ""), str))
            self._regions(feature, geometry, properties, index, cls, fid, plain)
        elif self.skip_unsupported:
            self.kept.append({"feature": feature, "origin": list(self.origin), "index": index})
            return
        else:
            fail(index, f"geometry type {gtype!r:.40} is not supported (cells: Point/MultiPoint, "
                 "regions: Polygon/MultiPolygon); pass skip_unsupported=True to keep such "
                 "features aside")
        if color is not None and cls not in self.colors:
            self.colors[cls] = color

    def _cell(self, position, index: int, cls: str, cid, owner) -> None:
        self.points.append(position)
        self.point_feature.append(index)
        self.cell_classes.append(cls)
        self.cell_ids.append(cid)
        self.point_owner.append(owner)

    def _record(self, feature, geometry, properties, index, kind, fid, members) -> ObjectRecord:
        extra = {k: v for k, v in feature.items() if k not in PLAIN_FEATURE_KEYS}
        record = ObjectRecord(fid, kind, members, geometry, properties, extra,
                              origin=list(self.origin), index=index)
        self.objects[fid] = record
        return record

    def _cell_record(self, feature, geometry, properties, index, cls, fid, positions) -> None:
        fid = self.unique(fid if fid is not None else stable_id(feature, index))
        many = geometry.get("type") == "MultiPoint" and len(positions) > 1
        members = [f"{fid}:{k}" if many else fid for k in range(len(positions))]
        self._record(feature, geometry, properties, index, "cells", fid, members)
        for position, member in zip(positions, members):
            self._cell(position, index, cls, member, fid)

    def _outlined_cell(self, feature, geometry, properties, index, cls, fid) -> None:
        """A QuPath cell/detection drawn as a polygon: one cell at its nucleus (else cell)
        centroid; both outlines stay in the record."""
        coords = geometry.get("coordinates")
        polygons = [coords] if geometry.get("type") == "Polygon" else coords
        if not isinstance(polygons, list) or not polygons:
            fail(index, f"a {geometry.get('type')} needs a non-empty list of rings")
        for polygon in polygons:
            try:
                parse_polygon(polygon, index, (0.0, 0.0))  # structure errors name the feature
            except Degenerate:
                self.skip(SKIP_DEGENERATE)
                return
        parts = polygon_parts(geometry)
        nucleus = feature.get("nucleusGeometry")
        if any(absurd(ring).any() for rings in parts for ring in rings):
            self.skip(SKIP_ABSURD)
            return
        centre = centroid_xy(nucleus) if nucleus is not None else None
        if centre is None or not np.isfinite(centre).all():
            centre = centroid_xy(geometry)
        self._cell_record(feature, geometry, properties, index, cls, fid, [list(centre)])

    def _regions(self, feature, geometry, properties, index, cls, fid, plain) -> None:
        coords = geometry.get("coordinates")
        gtype = geometry["type"]
        polygons = [coords] if gtype == "Polygon" else coords
        if not isinstance(polygons, list):
            fail(index, f"a {gtype} needs a list of polygons")
        if not polygons or (gtype == "Polygon" and not coords):
            self.skip(SKIP_EMPTY)
            return
        parsed = []
        try:
            for polygon in polygons:
                parsed.append(parse_polygon(polygon, index, self.origin))
        except Degenerate:
            self.skip(SKIP_DEGENERATE)
            return
        plain = plain and all(exact for _, _, exact in parsed)
        fid = self.unique(fid if fid is not None else stable_id(feature, index))
        name = properties.get("name")
        name = None if name is None else str(name)
        many = len(parsed) > 1
        members = [self.unique(f"{fid}:{k}") if many else fid for k in range(len(parsed))]
        owner = None
        if not plain:
            stored = {k: v for k, v in geometry.items() if k != "coordinates"}
            self._record(feature, stored, properties, index, "regions", fid, members)
            owner = fid
        for (exterior, holes, _), member in zip(parsed, members):
            self.regions.append(RegionShape(cls, exterior, holes, name, member))
            self.region_owner.append(owner)

    def finish(self, image_shape) -> AnnotationSet:
        xy = positions_xy(self.points, self.point_feature)
        rows = xy[:, 1] + self.origin[0]
        cols = xy[:, 0] + self.origin[1]
        classes = np.asarray(self.cell_classes, dtype=str)
        if None in self.cell_ids:
            ids = np.asarray(["" if i is None else i for i in self.cell_ids], dtype=object)
            missing = np.fromiter((i is None for i in self.cell_ids), dtype=bool,
                                  count=len(self.cell_ids))
            ids[missing] = stable_point_ids(xy[missing, 0], xy[missing, 1], classes[missing],
                                            np.asarray(self.point_feature)[missing])
        else:
            ids = self.cell_ids
        ids, _ = unique_stable(np.asarray(ids, dtype=str))
        keep, counts = screen_points(rows, cols, image_shape)
        for reason, count in counts.items():
            self.skip(reason, count)
        any_owner = any(r.kind == "cells" for r in self.objects.values())
        owners = np.asarray(self.point_owner, dtype=object) if any_owner else None
        if not keep.all():
            rows, cols, classes, ids = (a[keep] for a in (rows, cols, classes, ids))
            owners = None if owners is None else owners[keep]
        cells = CellPoints(rows, cols, classes, ids)
        regions = []
        for region, owner in zip(self.regions, self.region_owner):
            problem = region_problem(region.exterior, region.holes, image_shape)
            if problem:
                self.skip(problem)
                if owner is not None:
                    self.objects[owner].members.remove(region.id)
                continue
            regions.append(region)
        if owners is not None:
            self._settle_records(cells, owners)
        for key in [k for k, r in self.objects.items() if not r.members]:
            del self.objects[key]
        annotations = AnnotationSet(cells, regions, self.colors, self.objects, self.kept,
                                    self.skipped)
        for name in annotations.classes():
            self.colors.setdefault(name, color_for_class(name))
        return annotations

    def _settle_records(self, cells: CellPoints, owners: np.ndarray) -> None:
        """Members and anchors of the cell records after screening; empty records go."""
        cell_records = {k: r for k, r in self.objects.items() if r.kind == "cells"}
        for record in cell_records.values():
            record.members, record.anchors = [], []
        at = np.flatnonzero(owners != None)  # noqa: E711 (element-wise on an object array)
        cell_ids, rows, cols = cells.ids[at].tolist(), cells.rows[at].tolist(), cells.cols[at].tolist()
        for owner, cid, row, col in zip(owners[at].tolist(), cell_ids, rows, cols):
            record = cell_records[owner]
            record.members.append(cid)
            record.anchors.append([row, col])


def geojson_to_annotations(obj, *, origin=(0.0, 0.0), skip_unsupported: bool = True,
                           first_index: int = 0, image_shape=None) -> AnnotationSet:
    """Read a parsed GeoJSON object (QuPath layout or plain) into an AnnotationSet.

    Parameters
    ----------
    obj : dict or list
        FeatureCollection, single Feature, a list of Features, or a bare geometry.
    origin : (row, col)
        Added to every coordinate (the inverse of the writer's ``origin``).
    skip_unsupported : bool
        Keep geometries that are neither points nor polygons (lines, collections) aside in
        ``kept`` (written back unchanged); False raises instead.
    first_index : int
        Index of the first feature in messages and stable ids (when ``obj`` is a file's tail).
    image_shape : (height, width), optional
        Level-0 size of the slide: objects wholly off it are skipped and counted.

    Raises
    ------
    AnnotationError
        Naming the feature index and the problem.
    """
    reader = _Reader(origin, first_index, skip_unsupported)
    with no_gc_pauses():
        fast = reader.fast
        points, point_feature, classes = reader.points, reader.point_feature, reader.cell_classes
        ids, owners = reader.cell_ids, reader.point_owner
        for index, feature in enumerate(features_of(obj), start=first_index):
            # fast path: a plain detection Point whose classification was seen on an earlier one
            if type(feature) is dict and PLAIN_FEATURE_KEYS.issuperset(feature):
                geometry = feature.get("geometry")
                properties = feature.get("properties")
                if (type(geometry) is dict and len(geometry) == 2 and geometry.get("type") == "Point"
                        and type(properties) is dict and len(properties) == 2
                        and properties.get("objectType") == "detection"):
                    value = properties.get("classification")
                    coords = geometry.get("coordinates")
                    fid = feature.get("id")
                    if (type(value) is dict and len(value) == 2 and type(coords) is list
                            and len(coords) == 2 and (fid is None or type(fid) is str)):
                        name, color = value.get("name"), value.get("color")
                        if type(name) is str and type(color) is list:
                            try:
                                cls = fast.get((name, *color))
                            except TypeError:  # unhashable junk: the general path reports it
                                cls = None
                            if cls is not None:
                                points.append(coords)
                                point_feature.append(index)
                                classes.append(cls)
                                ids.append(fid)
                                owners.append(None)
                                continue
            reader.add(feature, index)
        return reader.finish(image_shape)


def read_geojson(path, *, origin=(0.0, 0.0), skip_unsupported: bool = True,
                 image_shape=None) -> AnnotationSet:
    """Read a GeoJSON file; see :func:`geojson_to_annotations`.

    A UTF-8 byte-order mark is allowed; a file nested too deeply for the JSON parser is an
    AnnotationError like any other malformed file.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig") as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise AnnotationError(f"{path.name} is not UTF-8 text; is it really GeoJSON?") from None
    try:
        if not text.strip():
            raise AnnotationError("the file is empty; expected a GeoJSON FeatureCollection")
        if text.startswith(OUR_HEAD):  # our own layout: cells parsed in bulk
            from .geojson_fast import read_our_layout

            fast = read_our_layout(text, origin=origin, skip_unsupported=skip_unsupported,
                                   image_shape=image_shape)
            if fast is not None:
                return fast
        try:
            with no_gc_pauses():  # twice as fast for 100k features
                obj = json.loads(text)
        except json.JSONDecodeError as err:
            ends_early = err.pos >= len(text.rstrip()) - 1 or err.msg.startswith("Unterminated")
            hint = ("; the file ends before its JSON does: it looks truncated, copy it again"
                    if ends_early else "")
            raise AnnotationError(
                f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}){hint}"
            ) from None
        return geojson_to_annotations(obj, origin=origin, skip_unsupported=skip_unsupported,
                                      image_shape=image_shape)
    except AnnotationError as err:
        raise AnnotationError(f"{path.name}: {err}") from None
    except RecursionError:
        raise AnnotationError(f"{path.name}: nested too deeply to be GeoJSON (arrays or objects "
                              "inside each other hundreds of levels deep); is the file damaged?"
                              ) from None
