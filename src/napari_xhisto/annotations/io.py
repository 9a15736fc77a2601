"""``read_annotations`` / ``write_annotations``: the file formats behind one pair of calls."""

from __future__ import annotations

import warnings
from pathlib import Path

from ..errors import AnnotationError, XhistoWarning
from .csv_io import csv_text, read_csv
from .files import atomic_write, free_backup_path, keep_backup, strip_backup_suffix
from .geojson import WRITER_TAG, geojson_text, read_geojson
from .model import AnnotationSet

GEOJSON_SUFFIXES = (".geojson", ".json")
CSV_SUFFIXES = (".csv", ".tsv")
# how every file written by geojson_text begins (the tag is a foreign member QuPath ignores)
WRITER_MARK = ('"xhisto":{"writer":"' + WRITER_TAG + '"}').encode()


def _format_of(path: Path) -> str:
    suffix = Path(strip_backup_suffix(path.name)).suffix.lower()
    if suffix in GEOJSON_SUFFIXES:
        return "geojson"
    if suffix in CSV_SUFFIXES:
        return "csv"
    raise AnnotationError(
        f"{path.name}: unknown annotation format {suffix!r}; use .geojson (cells and regions) "
        "or .csv (cells only)"
    )


def _is_ours(path: Path) -> bool:
    if _format_of(path) != "geojson":
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return False
    return WRITER_MARK in head


def write_annotations(path, annotations: AnnotationSet, *, origin=(0.0, 0.0),
                      drop_regions: bool = False) -> Path:
    """Write ``annotations`` as QuPath GeoJSON (``.geojson``/``.json``) or CSV (``.csv``).

    The file is replaced atomically. An existing file we did not write is first kept as
    ``<name>.bak`` (numbered when taken), so nothing made elsewhere is overwritten silently.

    Parameters
    ----------
    path : str or Path
        Target file; its suffix picks the format.
    annotations : AnnotationSet
        Cells and regions in level-0 (row, col) pixels.
    origin : (row, col)
        Subtracted from coordinates (openslide bounds, for QuPath).
    drop_regions : bool
        CSV holds cells only; without this flag, writing regions to CSV is an error.

    Returns
    -------
    Path
        The file written.
    """
    path = Path(path)
    fmt = _format_of(path)
    if fmt == "csv":
        if annotations.regions and not drop_regions:
            raise AnnotationError(
                f"{path.name}: CSV holds cell points only; the {len(annotations.regions)} regions "
                "would be lost. Save as .geojson, or export the cells alone."
            )
        text = csv_text(annotations, origin=origin)
    else:
        text = geojson_text(annotations, origin=origin)
    if path.exists() and not _is_ours(path):
        previous = path.read_bytes()
        if previous != text.encode("utf-8"):  # the same content again needs no backup
            free_backup_path(path).write_bytes(previous)
    return atomic_write(path, text)


class AnnotationWarning(XhistoWarning):
    """Objects of an annotation file were skipped (and counted) or kept aside."""


def _geometry_type(item: dict) -> str:
    geometry = (item.get("feature") or {}).get("geometry")
    kind = geometry.get("type") if isinstance(geometry, dict) else None
    return kind if isinstance(kind, str) else "untyped"


def read_report(annotations: AnnotationSet) -> str | None:
    """One line on what reading left out or kept aside, or None when everything was used."""
    parts = [f"{count} {reason}" for reason, count in annotations.skipped.items() if count]
    text = ""
    if parts:
        total = sum(annotations.skipped.values())
        text = f"skipped {total} object{'s' if total != 1 else ''} ({', '.join(parts)})"
    if annotations.kept:
        kinds = sorted({_geometry_type(item) for item in annotations.kept})
        text += ("; " if text else "") + (
            f"kept {len(annotations.kept)} {'/'.join(kinds)} feature(s) as read: not scored, "
            "written back unchanged")
    return text or None


def read_annotations(path, *, origin=(0.0, 0.0), skip_unsupported: bool = True,
                     image_shape=None, warn: bool = True) -> AnnotationSet:
    """Read cells and regions from GeoJSON (QuPath or plain) or cells from CSV.

    Parameters
    ----------
    path : str or Path
        ``.geojson``/``.json`` or ``.csv``/``.tsv`` (``.bak`` copies open like their file).
    origin : (row, col)
        Added to coordinates (openslide bounds, for QuPath files).
    skip_unsupported : bool
        Keep lines and other non-point, non-polygon features aside (default) or raise.
    image_shape : (height, width), optional
        Level-0 slide size: objects wholly off the slide are skipped and counted.
    warn : bool
        Issue one :class:`AnnotationWarning` with the counts when something was skipped or kept
        aside (``annotations.skipped`` / ``annotations.kept`` hold them either way).

    Raises
    ------
    AnnotationError
        When the file is missing or malformed, naming the feature index (or line) and problem.
    """
    path = Path(path)
    fmt = _format_of(path)
    if not path.is_file():
        raise AnnotationError(f"annotation file not found: {path}")
    if fmt == "csv":
        annotations = read_csv(path, origin=origin, image_shape=image_shape)
    else:
        annotations = read_geojson(path, origin=origin, skip_unsupported=skip_unsupported,
                                   image_shape=image_shape)
    report = read_report(annotations)
    if warn and report:
        warnings.warn(AnnotationWarning(f"{path.name}: {report}"), stacklevel=2)
    return annotations


__all__ = ["AnnotationWarning", "keep_backup", "read_annotations", "read_report",
           "write_annotations"]
