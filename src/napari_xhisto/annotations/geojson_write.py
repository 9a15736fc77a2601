"""Writing QuPath GeoJSON: cells as ``detection`` Points, regions as ``annotation`` Polygons,
objects read from a file (:class:`.objects.ObjectRecord`) as they were read.

Layout (REFERENCES.md "QuPath GeoJSON"; QuPath's ``PathObjectTypeAdapter.write``): a
FeatureCollection; ``objectType`` inside ``properties``; ``classification`` =
``{"name": ..., "color": [r, g, b]}`` (``{"names": [...]}`` for a derived class such as
"Tumor: Positive"); coordinates are level-0 pixels with x = column, y = row; rings closed. Class
names are written as the annotations hold them (the file's own names when read from a file).

A record's feature is rebuilt from its properties and extra members as read, with the class,
name and positions its cells or regions have now: an unchanged object is written as read (its
missing id replaced by the stable one it got on reading), a moved cell moves its outlines.
"""

from __future__ import annotations

import json
import re

import numpy as np

from ..errors import AnnotationError
from .geojson_parse import UNCLASSIFIED, class_key, classification_json, parse_classification
from .model import AnnotationSet
from .objects import derived_id, no_gc_pauses, shift_geometry

# a foreign member (allowed by RFC 7946, ignored by QuPath) that marks files we wrote
WRITER_TAG = "napari-xhisto"
# the first line of every file geojson_text writes; one feature per line follows
OUR_HEAD = '{"type":"FeatureCollection","xhisto":{"writer":"' + WRITER_TAG + '"},"features":['


def _ring_xy(ring_rc: np.ndarray, origin) -> list[list[float]]:
    xy = np.empty_like(ring_rc)
    xy[:, 0] = ring_rc[:, 1] - origin[1]
    xy[:, 1] = ring_rc[:, 0] - origin[0]
    coords = xy.tolist()
    coords.append(coords[0])  # GeoJSON rings are closed
    return coords


def _polygon_xy(region, index: int, origin) -> list:
    rings = [region.exterior, *region.holes]
    for ring in rings:
        if ring.shape[0] < 3 or not np.isfinite(ring).all():
            raise AnnotationError(
                f"region {index} ({region.cls!r}) has a ring of {ring.shape[0]} vertices or "
                "non-finite coordinates; a polygon needs at least 3 finite vertices")
    return [_ring_xy(r, origin) for r in rings]


def _parsed(raw, cache: dict) -> tuple[str | None, tuple | None]:
    """(name, colour) of a classification as read (None, None when unreadable); cached."""
    key = ("s", raw) if type(raw) is str else class_key(raw)
    if key is not None and key in cache:
        return cache[key]
    try:
        result = parse_classification(raw, 0)
    except AnnotationError:
        result = (None, None)
    if key is not None:
        cache[key] = result
    return result


def _classification_out(properties: dict, cls: str, rgb, cache: dict):
    """The classification to write: as read when the class and its colour are unchanged."""
    if "classification" in properties:
        raw = properties["classification"]
        name, color = _parsed(raw, cache)
        if name is not None and name == cls and (color is None or tuple(color) == tuple(rgb)):
            return raw
        if name is None and cls == UNCLASSIFIED:
            return raw
    elif cls == UNCLASSIFIED:
        return _ABSENT
    return classification_json(cls, rgb)


_ABSENT = object()


def _record_feature(record, fid: str, geometry: dict, extra: dict, cls: str, rgb, cache: dict,
                    name=_ABSENT) -> dict:
    properties = {}
    wrote_class = False
    for key, value in record.properties.items():
        if key == "classification":
            value, wrote_class = _classification_out(record.properties, cls, rgb, cache), True
        elif key == "name" and name is not _ABSENT:
            value = _ABSENT if name is None else name
        if value is not _ABSENT:
            properties[key] = value
    if not wrote_class:
        value = _classification_out(record.properties, cls, rgb, cache)
        if value is not _ABSENT:
            properties["classification"] = value
    if name is not _ABSENT and name is not None and "name" not in properties:
        properties["name"] = name
    return {"type": "Feature", "id": fid, "geometry": geometry, **extra,
            "properties": properties}


def _groups(members: list[str], cls_of: dict, original: str | None) -> list[tuple[str, list]]:
    """Members grouped by their current class; the original class's group first."""
    groups: dict[str, list] = {}
    for m in members:
        if m in cls_of:
            groups.setdefault(cls_of[m], []).append(m)
    order = sorted(groups, key=lambda c: c != original)
    return [(c, groups[c]) for c in order]


def _original_class(record, cache: dict) -> str | None:
    name, _ = _parsed(record.properties.get("classification"), cache)
    return UNCLASSIFIED if name is None else name


def _cell_record_features(record, at: dict, cells, colors, origin, cache: dict) -> list[dict]:
    """Features of one cell record from its members' current positions and classes."""
    gtype = record.geometry.get("type")
    same_origin = record.origin[0] == origin[0] and record.origin[1] == origin[1]
    if gtype == "Point" and len(record.members) == 1:  # the common case, kept quick
        m = record.members[0]
        k = at[m]
        cls, row, col = str(cells.classes[k]), float(cells.rows[k]), float(cells.cols[k])
        if same_origin and record.anchors[0] == [row, col]:
            geometry = record.geometry  # unchanged: as read (z included)
        else:
            geometry = {**record.geometry, "coordinates": [col - origin[1], row - origin[0]]}
        return [_record_feature(record, record.id, geometry, record.extra, cls, colors[cls],
                                cache)]
    cls_of = {m: str(cells.classes[at[m]]) for m in record.members if m in at}
    anchors = dict(zip(record.members, record.anchors))
    raw = record.geometry.get("coordinates")
    raw_positions = raw if gtype == "MultiPoint" else [raw]
    raw_of = dict(zip(record.members, raw_positions)) if isinstance(raw_positions, list) else {}
    features = []
    groups = _groups(record.members, cls_of, _original_class(record, cache))
    for k, (cls, members) in enumerate(groups):
        fid = record.id if k == 0 else derived_id(record.id, 1000 + k)
        extra = dict(record.extra)
        if gtype in ("Polygon", "MultiPolygon"):  # an outlined cell: move outlines with it
            m = members[0]
            row, col = cells.rows[at[m]], cells.cols[at[m]]
            a_row, a_col = anchors.get(m, (row, col))
            dx = float(col - a_col) + (record.origin[1] - origin[1])
            dy = float(row - a_row) + (record.origin[0] - origin[0])
            geometry = shift_geometry(record.geometry, dx, dy)
            if "nucleusGeometry" in extra:
                extra["nucleusGeometry"] = shift_geometry(extra["nucleusGeometry"], dx, dy)
        else:
            positions = []
            for m in members:
                row, col = float(cells.rows[at[m]]), float(cells.cols[at[m]])
                if same_origin and anchors.get(m) == [row, col] and m in raw_of:
                    positions.append(raw_of[m])  # unchanged: as read (z included)
                else:
                    positions.append([col - origin[1], row - origin[0]])
            if gtype == "MultiPoint":
                geometry = {**record.geometry, "coordinates": positions}
            else:
                geometry = {**record.geometry, "type": "Point", "coordinates": positions[0]}
        features.append(_record_feature(record, fid, geometry, extra, cls, colors[cls], cache))
    return features


def _region_record_features(record, regions_by_id: dict, colors, origin, cache: dict
                            ) -> list[dict]:
    present = [m for m in record.members if m in regions_by_id]
    cls_of = {m: regions_by_id[m][1].cls for m in present}
    features = []
    for k, (cls, members) in enumerate(_groups(present, cls_of, _original_class(record, cache))):
        fid = record.id if k == 0 else derived_id(record.id, 1000 + k)
        polygons = [_polygon_xy(regions_by_id[m][1], regions_by_id[m][0], origin) for m in members]
        if record.geometry.get("type") == "MultiPolygon":
            geometry = {**record.geometry, "type": "MultiPolygon", "coordinates": polygons}
        else:
            geometry = {**record.geometry, "type": "Polygon", "coordinates": polygons[0]}
        name = regions_by_id[members[0]][1].name
        features.append(_record_feature(record, fid, geometry, dict(record.extra), cls,
                                        colors[cls], cache, name=name))
    return features


def _kept_feature(item: dict, origin) -> dict:
    feature = item["feature"]
    dx = item["origin"][1] - origin[1]
    dy = item["origin"][0] - origin[0]
    if (dx or dy) and isinstance(feature.get("geometry"), dict):
        feature = {**feature, "geometry": shift_geometry(feature["geometry"], dx, dy)}
    return feature


def _split_cells(annotations: AnnotationSet):
    """(mask of plain cells, {cell id: index} of the cells records own)."""
    cells = annotations.cells
    owned = [m for r in annotations.objects.values() if r.kind == "cells" for m in r.members]
    if not owned or cells.ids is None:
        return np.ones(len(cells), dtype=bool), {}
    owned_set = set(owned)
    ids = cells.ids.tolist()
    in_record = np.fromiter((i in owned_set for i in ids), dtype=bool, count=len(ids))
    at = {ids[i]: i for i in np.flatnonzero(in_record).tolist()}
    return ~in_record, at


def _cell_record_items(annotations: AnnotationSet, colors: dict, origin, at: dict
                       ) -> tuple[list[int], list[dict]]:
    """Features of the cell records, each with the index of its first cell (its place in the
    file: the writer keeps the cells' order)."""
    keys, features = [], []
    cache: dict = {}
    for record in sorted(annotations.objects.values(), key=lambda r: r.index):
        if record.kind != "cells":
            continue
        present = [at[m] for m in record.members if m in at]
        if not present:
            continue  # every cell of it was deleted
        for feature in _cell_record_features(record, at, annotations.cells, colors, origin,
                                             cache):
            keys.append(min(present))
            features.append(feature)
    return keys, features


def _region_and_kept_features(annotations: AnnotationSet, colors: dict, origin) -> list[dict]:
    """Regions (those read from a file grouped back into their objects), then kept features."""
    features: list[dict] = []
    records = sorted(annotations.objects.values(), key=lambda r: r.index)
    region_owner = {m: r for r in records if r.kind == "regions" for m in r.members}
    regions_by_id = {r.id: (i, r) for i, r in enumerate(annotations.regions)
                     if r.id is not None and r.id in region_owner}
    written: set[str] = set()
    cache: dict = {}
    for index, region in enumerate(annotations.regions):
        record = region_owner.get(region.id) if region.id is not None else None
        if record is not None:
            if record.id not in written:
                written.add(record.id)
                features.extend(_region_record_features(record, regions_by_id, colors, origin,
                                                         cache))
            continue
        feature = {"type": "Feature"}
        if region.id is not None:
            feature["id"] = region.id
        properties = {"objectType": "annotation",
                      "classification": classification_json(region.cls, colors[region.cls])}
        if region.name is not None:
            properties["name"] = region.name
        feature["geometry"] = {"type": "Polygon",
                               "coordinates": _polygon_xy(region, index, origin)}
        feature["properties"] = properties
        features.append(feature)
    features.extend(_kept_feature(item, origin) for item in annotations.kept)
    return features


def _in_file_order(plain_keys, plain_items: list, record_keys: list, record_items: list) -> list:
    """Plain cells and record features merged by the index of their (first) cell."""
    if not record_items:
        return list(plain_items)
    keys = np.concatenate([np.asarray(plain_keys, dtype=np.int64),
                           np.asarray(record_keys, dtype=np.int64)])
    items = list(plain_items) + list(record_items)
    return [items[i] for i in np.argsort(keys, kind="stable").tolist()]


def annotations_to_geojson(annotations: AnnotationSet, *, origin=(0.0, 0.0)) -> dict:
    """A QuPath-layout FeatureCollection (plain dicts and lists) for ``annotations``.

    Parameters
    ----------
    annotations : AnnotationSet
        Cells become ``detection`` Points, regions ``annotation`` Polygons; objects read from
        a file are written as read (see the module docstring).
    origin : (row, col)
        Subtracted from every coordinate (use openslide's ``bounds-y``, ``bounds-x`` for QuPath).
    """
    colors = annotations.complete_colors()
    plain, at = _split_cells(annotations)
    cells = annotations.cells
    features: list[dict] = []
    ids = None if cells.ids is None else cells.ids[plain].tolist()
    xs = (cells.cols[plain] - origin[1]).tolist()
    ys = (cells.rows[plain] - origin[0]).tolist()
    for k, (x, y, c) in enumerate(zip(xs, ys, cells.classes[plain].tolist())):
        feature = {"type": "Feature"}
        if ids is not None:
            feature["id"] = ids[k]
        feature["geometry"] = {"type": "Point", "coordinates": [x, y]}
        feature["properties"] = {"objectType": "detection",
                                 "classification": classification_json(c, colors[c])}
        features.append(feature)
    keys, items = _cell_record_items(annotations, colors, origin, at)
    features = _in_file_order(np.flatnonzero(plain), features, keys, items)
    features.extend(_region_and_kept_features(annotations, colors, origin))
    return {"type": "FeatureCollection", "features": features, "xhisto": {"writer": WRITER_TAG}}


_SIMPLE_ID = re.compile(r"[A-Za-z0-9_.:-]*")


def _json_strings(values: list[str]) -> list[str]:
    if all(_SIMPLE_ID.fullmatch(v) for v in values):
        return [f'"{v}"' for v in values]
    return [json.dumps(v, ensure_ascii=False) for v in values]


def geojson_text(annotations: AnnotationSet, *, origin=(0.0, 0.0)) -> str:
    """The GeoJSON file content for ``annotations``: one feature per line.

    Same content as ``json.dumps(annotations_to_geojson(...))``; plain cells are formatted
    directly (``repr`` of floats, as ``json`` does) because building 100k dicts costs more than
    writing them.
    """
    colors = annotations.complete_colors()
    plain, at = _split_cells(annotations)
    cells = annotations.cells
    classes_all = cells.classes if plain.all() else cells.classes[plain]
    class_json = {
        name: json.dumps(classification_json(name, colors[name]), separators=(",", ":"),
                         ensure_ascii=False)
        for name in np.unique(classes_all).tolist()
    }
    xs = (cells.cols[plain] - origin[1]).tolist()
    ys = (cells.rows[plain] - origin[0]).tolist()
    if not (np.isfinite(cells.cols).all() and np.isfinite(cells.rows).all()):
        raise AnnotationError("cell coordinates must be finite numbers; found NaN or infinity")
    classes = [class_json[c] for c in classes_all.tolist()]
    head = '{"type":"Feature",'
    geom = '"geometry":{"type":"Point","coordinates":['
    props = ']},"properties":{"objectType":"detection","classification":'
    if cells.ids is None:
        lines = [f"{head}{geom}{x!r},{y!r}{props}{c}}}}}" for x, y, c in zip(xs, ys, classes)]
    else:
        ids = _json_strings(cells.ids[plain].tolist())
        lines = [
            f'{head}"id":{i},{geom}{x!r},{y!r}{props}{c}}}}}'
            for x, y, c, i in zip(xs, ys, classes, ids)
        ]
    def dumps(feature: dict) -> str:
        return json.dumps(feature, separators=(",", ":"), ensure_ascii=False, allow_nan=True)

    try:
        with no_gc_pauses():
            keys, items = _cell_record_items(annotations, colors, origin, at)
            lines = _in_file_order(np.flatnonzero(plain), lines, keys, [dumps(f) for f in items])
            lines.extend(dumps(f) for f in _region_and_kept_features(annotations, colors, origin))
    except RecursionError:
        raise AnnotationError("an object's properties are nested too deeply to be written "
                              "as JSON") from None
    return OUR_HEAD + "\n" + ",\n".join(lines) + "\n]}\n"
