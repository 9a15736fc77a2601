"""Cell points as CSV: ``x,y,class[,id]``, x = column and y = row in level-0 pixels."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..errors import AnnotationError
from .geojson_parse import screen_points
from .model import AnnotationSet, CellPoints, color_for_class, qupath_class_name
from .objects import stable_point_ids, unique_stable

_X_NAMES = ("x", "centroid x px", "centroid_x", "col", "column")
_Y_NAMES = ("y", "centroid y px", "centroid_y", "row")
_CLASS_NAMES = ("class", "classification", "label", "name")
_ID_NAMES = ("id", "object id", "uuid")


def csv_text(annotations: AnnotationSet, *, origin=(0.0, 0.0)) -> str:
    """CSV content for the cells of ``annotations`` (regions are not representable in CSV)."""
    cells = annotations.cells
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    xs = (cells.cols - origin[1]).tolist()
    ys = (cells.rows - origin[0]).tolist()
    classes = cells.classes.tolist()
    if cells.ids is None:
        writer.writerow(["x", "y", "class"])
        writer.writerows(zip(map(repr, xs), map(repr, ys), classes))
    else:
        writer.writerow(["x", "y", "class", "id"])
        writer.writerows(zip(map(repr, xs), map(repr, ys), classes, cells.ids.tolist()))
    return out.getvalue()


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None


def csv_to_annotations(text: str, *, origin=(0.0, 0.0), source: str = "CSV",
                       image_shape=None) -> AnnotationSet:
    """Parse CSV text with a header naming at least x, y and class columns.

    Class names are kept as written; cells without an id get stable ones (the same on every
    read); cells with coordinates that are not finite, beyond ±1e7 px, or (with
    ``image_shape``) off the slide are skipped and counted in ``skipped``.
    """
    sample = text[:4096]
    delimiter = "\t" if sample.count("\t") > sample.count(",") else ","
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    except csv.Error as err:  # NUL bytes, a field over the size limit ...
        raise AnnotationError(f"{source} is not a readable CSV file ({err}); is it really "
                              "a table of cells?") from None
    rows = [r for r in rows if r and any(v.strip() for v in r)]
    if not rows:
        raise AnnotationError(f"{source} is empty; expected a header 'x,y,class' and one row per cell")
    header = rows[0]
    ix, iy = _column(header, _X_NAMES), _column(header, _Y_NAMES)
    ic, iid = _column(header, _CLASS_NAMES), _column(header, _ID_NAMES)
    if ix is None or iy is None:
        raise AnnotationError(f"{source}: the header needs 'x' and 'y' columns, got {header!r:.120}")
    body = rows[1:]
    width = max(ix, iy, ic if ic is not None else 0, iid if iid is not None else 0) + 1
    for number, row in enumerate(body, start=2):
        if len(row) < width:
            raise AnnotationError(f"{source} line {number}: expected {width} columns, got {len(row)}")
    try:
        xs = np.array([r[ix] for r in body], dtype=np.float64)
        ys = np.array([r[iy] for r in body], dtype=np.float64)
    except ValueError:
        for number, row in enumerate(body, start=2):
            for col in (ix, iy):
                try:
                    float(row[col])
                except ValueError:
                    raise AnnotationError(
                        f"{source} line {number}: {header[col]!r} must be a number, got {row[col]!r:.60}"
                    ) from None
        raise
    if ic is None:
        classes = np.full(len(body), "unclassified")
    else:
        names, inverse = np.unique(np.array([r[ic] for r in body], dtype=str), return_inverse=True)
        mapped = [qupath_class_name(n) or "unclassified" for n in names.tolist()]
        classes = np.asarray(mapped, dtype=str)[inverse.reshape(-1)] if len(body) else names
    ids = np.array([r[iid].strip() for r in body] if iid is not None else [""] * len(body),
                   dtype=str)
    missing = ids == ""
    if missing.any():
        ids = ids.astype(object)
        ids[missing] = stable_point_ids(xs[missing], ys[missing], classes[missing],
                                        np.flatnonzero(missing))
    ids, _ = unique_stable(ids.astype(str))
    rows_px, cols_px = ys + origin[0], xs + origin[1]
    keep, skipped = screen_points(rows_px, cols_px, image_shape)
    cells = CellPoints(rows_px[keep], cols_px[keep], classes[keep], ids[keep])
    colors = {name: color_for_class(name) for name in dict.fromkeys(cells.classes.tolist())}
    return AnnotationSet(cells, [], colors, skipped=skipped)


def read_csv(path, *, origin=(0.0, 0.0), image_shape=None) -> AnnotationSet:
    """Read cell points from a CSV file; see :func:`csv_to_annotations`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise AnnotationError(f"{path.name} is not UTF-8 text; is it really a CSV file?") from None
    return csv_to_annotations(text, origin=origin, source=path.name, image_shape=image_shape)
