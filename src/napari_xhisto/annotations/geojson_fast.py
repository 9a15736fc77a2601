"""Bulk reading of the files our own writer produces (one feature per line, fixed layout).

``json.loads`` builds five Python objects per cell; 100k cells cost about a second. Files from
:func:`.geojson_write.geojson_text` hold each cell on one line in a fixed template, so the cell
lines are matched with one regular expression and their numbers converted in bulk. Anything
that does not fit the template exactly (an edited file, escaped ids, a cell after a region)
returns None and the caller parses the file in full, so results and error messages are those
of :func:`.geojson.geojson_to_annotations`.
"""

from __future__ import annotations

import json
import re

import numpy as np

from ..errors import AnnotationError
from .geojson import geojson_to_annotations
from .geojson_parse import classification_json, parse_classification, screen_points
from .geojson_write import OUR_HEAD
from .model import (
    AnnotationSet,
    CellPoints,
    color_for_class,
    concat_annotations,
    qupath_class_name,
)
from .objects import no_gc_pauses, stable_point_ids

_NUMBER = r"(-?[0-9][0-9.eE+-]*)"
_CELL_LINE = re.compile(
    r'^\{"type":"Feature",(?:"id":"([A-Za-z0-9_.:-]+)",)?'
    r'"geometry":\{"type":"Point","coordinates":\[' + _NUMBER + "," + _NUMBER + r"\]\},"
    r'"properties":\{"objectType":"detection","classification":(\{[^{}\n]*\})\}\},?$',
    re.MULTILINE,
)


def read_our_layout(text: str, *, origin=(0.0, 0.0), skip_unsupported: bool = True,
                    image_shape=None) -> AnnotationSet | None:
    """Annotations from ``text`` written by our writer, or None when it is not in that layout."""
    lines = text.split("\n")
    if len(lines) < 4 or lines[0] != OUR_HEAD or lines[-2:] != ["]}", ""]:
        return None
    body = lines[1:-2]
    if body == [""]:
        body = []
    # one C-level scan: the matched lines must be exactly the first n lines of the body
    matches = _CELL_LINE.findall(text)
    n = len(matches)
    if n == 0 or n > len(body) or _CELL_LINE.search("\n".join(body[n:])) is not None:
        return None
    ids, x_text, y_text, raw_classes = zip(*matches)
    try:
        xs = np.array(x_text, dtype=np.float64)
        ys = np.array(y_text, dtype=np.float64)
    except ValueError:
        return None
    class_of, colors = {}, {}
    for index, raw in enumerate(raw_classes):
        if raw in class_of:
            continue
        try:
            value = json.loads(raw)
            name, color = parse_classification(value, index)
        except (ValueError, AnnotationError, RecursionError):
            return None
        if name is None or color is None or value != classification_json(name, color):
            return None  # not what our writer makes: the full parse keeps it as read
        cls = qupath_class_name(name)
        class_of[raw] = cls
        if color is not None:
            colors.setdefault(cls, color)
    classes = np.array([class_of[raw] for raw in raw_classes], dtype=str)
    # findall gives "" for an absent id; our ids are never empty, so "" means absent: such
    # cells get the stable ids the full parse gives them
    id_array = np.array(ids, dtype=str)
    missing = id_array == ""
    if missing.any():
        id_array = id_array.astype(object)
        id_array[missing] = stable_point_ids(xs[missing], ys[missing], classes[missing],
                                             np.flatnonzero(missing))
    rows, cols = ys + origin[0], xs + origin[1]
    keep, skipped = screen_points(rows, cols, image_shape)
    cells = CellPoints(rows[keep], cols[keep], classes[keep], id_array[keep].astype(str))
    parts = [AnnotationSet(cells, [], colors, skipped=skipped)]
    rest = body[n:]
    if rest:
        try:
            with no_gc_pauses():
                tail = json.loads("[" + "\n".join(rest) + "]")
        except ValueError:
            return None  # the full parse reports where
        parts.append(geojson_to_annotations(tail, origin=origin, image_shape=image_shape,
                                            skip_unsupported=skip_unsupported, first_index=n))
    annotations = concat_annotations(parts)
    for name in annotations.classes():
        annotations.colors.setdefault(name, color_for_class(name))
    return annotations
