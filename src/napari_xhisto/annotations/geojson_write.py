"""Writing QuPath GeoJSON: cells as ``detection`` Points, regions as ``annotation`` Polygons.

Layout (REFERENCES.md "QuPath GeoJSON"): a FeatureCollection; ``objectType`` inside
``properties``; ``classification`` = ``{"name": ..., "color": [r, g, b]}``; coordinates are
level-0 pixels with x = column, y = row; rings closed. Class names are our canonical ones.
"""

from __future__ import annotations

import json
import re

import numpy as np

from ..errors import AnnotationError
from .model import AnnotationSet, CellPoints

# a foreign member (allowed by RFC 7946, ignored by QuPath) that marks files we wrote
WRITER_TAG = "napari-xhisto"
# the first line of every file geojson_text writes; one feature per line follows
OUR_HEAD = '{"type":"FeatureCollection","xhisto":{"writer":"' + WRITER_TAG + '"},"features":['


def _ring_xy(ring_rc: np.ndarray, origin: tuple[float, float]) -> list[list[float]]:
    xy = np.empty_like(ring_rc)
    xy[:, 0] = ring_rc[:, 1] - origin[1]
    xy[:, 1] = ring_rc[:, 0] - origin[0]
    coords = xy.tolist()
    coords.append(coords[0])  # GeoJSON rings are closed
    return coords


def annotations_to_geojson(annotations: AnnotationSet, *, origin=(0.0, 0.0)) -> dict:
    """A QuPath-layout FeatureCollection (plain dicts and lists) for ``annotations``.

    Parameters
    ----------
    annotations : AnnotationSet
        Cells become ``detection`` Points, regions ``annotation`` Polygons.
    origin : (row, col)
        Subtracted from every coordinate (use openslide's ``bounds-y``, ``bounds-x`` for QuPath).
    """
    colors = annotations.complete_colors()
    classification = {
        name: {"name": name, "color": [int(c) for c in rgb]} for name, rgb in colors.items()
    }
    cells = annotations.cells
    xs = (cells.cols - origin[1]).tolist()
    ys = (cells.rows - origin[0]).tolist()
    classes = cells.classes.tolist()
    features: list[dict] = []
    append = features.append
    if cells.ids is None:
        for x, y, c in zip(xs, ys, classes):
            append({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [x, y]},
                "properties": {"objectType": "detection", "classification": classification[c]},
            })
    else:
        for x, y, c, i in zip(xs, ys, classes, cells.ids.tolist()):
            append({
                "type": "Feature",
                "id": i,
                "geometry": {"type": "Point", "coordinates": [x, y]},
                "properties": {"objectType": "detection", "classification": classification[c]},
            })
    for index, region in enumerate(annotations.regions):
        rings = [region.exterior, *region.holes]
        for ring in rings:
            if ring.shape[0] < 3 or not np.isfinite(ring).all():
                raise AnnotationError(
                    f"region {index} ({region.cls!r}) has a ring of {ring.shape[0]} vertices or "
                    "non-finite coordinates; a polygon needs at least 3 finite vertices"
                )
        properties = {"objectType": "annotation", "classification": classification[region.cls]}
        if region.name is not None:
            properties["name"] = region.name
        feature = {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [_ring_xy(r, origin) for r in rings]},
            "properties": properties,
        }
        if region.id is not None:
            feature["id"] = region.id
        append(feature)
    return {"type": "FeatureCollection", "features": features, "xhisto": {"writer": WRITER_TAG}}


_SIMPLE_ID = re.compile(r"[A-Za-z0-9_.:-]*")


def _json_strings(values: list[str]) -> list[str]:
    if all(_SIMPLE_ID.fullmatch(v) for v in values):
        return [f'"{v}"' for v in values]
    return [json.dumps(v, ensure_ascii=False) for v in values]


def geojson_text(annotations: AnnotationSet, *, origin=(0.0, 0.0)) -> str:
    """The GeoJSON file content for ``annotations``: one feature per line.

    Same content as ``json.dumps(annotations_to_geojson(...))``; cells are formatted directly
    (``repr`` of floats, as ``json`` does) because building 100k dicts costs more than writing.
    """
    colors = annotations.complete_colors()
    cells = annotations.cells
    class_json = {
        name: json.dumps({"name": name, "color": [int(c) for c in colors[name]]},
                         separators=(",", ":"), ensure_ascii=False)
        for name in dict.fromkeys(np.unique(cells.classes).tolist())
    }
    xs = (cells.cols - origin[1]).tolist()
    ys = (cells.rows - origin[0]).tolist()
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        raise AnnotationError("cell coordinates must be finite numbers; found NaN or infinity")
    classes = [class_json[c] for c in cells.classes.tolist()]
    head = '{"type":"Feature",'
    geom = '"geometry":{"type":"Point","coordinates":['
    props = ']},"properties":{"objectType":"detection","classification":'
    if cells.ids is None:
        lines = [f"{head}{geom}{x!r},{y!r}{props}{c}}}}}" for x, y, c in zip(xs, ys, classes)]
    else:
        ids = _json_strings(cells.ids.tolist())
        lines = [
            f'{head}"id":{i},{geom}{x!r},{y!r}{props}{c}}}}}'
            for x, y, c, i in zip(xs, ys, classes, ids)
        ]
    regions_only = AnnotationSet(CellPoints.empty(), annotations.regions, colors)
    region_features = annotations_to_geojson(regions_only, origin=origin)["features"]
    lines.extend(
        json.dumps(f, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        for f in region_features
    )
    return (
        OUR_HEAD + "\n"
        + ",\n".join(lines)
        + "\n]}\n"
    )
