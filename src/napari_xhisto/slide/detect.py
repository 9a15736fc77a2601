"""Cheap checks (extension + a few header bytes, standard library only) for "is this a slide?".

The napari reader calls :func:`looks_like_slide` on every file dropped on the viewer, so it must not
import numpy, openslide or tifffile, and must say "no" to ordinary images (a small striped TIFF, a
float heatmap OME-TIFF) so napari offers them to other readers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from pathlib import Path

TIFF_SUFFIXES = {".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif", ".qptiff"}
OTHER_SUFFIXES = {".mrxs", ".vms", ".vmu", ".svslide", ".dcm"}
SLIDE_SUFFIXES = TIFF_SUFFIXES | OTHER_SUFFIXES

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# TIFF tags read from the first IFD
_WIDTH, _LENGTH, _BITS, _SAMPLES, _TILE_WIDTH, _SUBIFDS, _SAMPLE_FORMAT = (
    256, 257, 258, 277, 322, 330, 339)
# A striped TIFF this large is treated as a (badly written) slide rather than a photo
_LARGE_SIDE = 8192
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8,
               17: 8, 18: 8}


class _CaptureLog(logging.Filter):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record) -> bool:
        self.messages.append(record.getMessage().splitlines()[0][:200])
        return False


@contextlib.contextmanager
def quiet_tifffile():
    """Keep tifffile's warnings about a broken file out of the user's terminal while probing it.

    Yields an object whose ``messages`` list collects them (first line each), for an error
    message when the file cannot be used.
    """
    capture = _CaptureLog()
    logger = logging.getLogger("tifffile")
    logger.addFilter(capture)
    try:
        yield capture
    finally:
        logger.removeFilter(capture)


def slide_suffix(path: str | os.PathLike) -> str:
    """Lower-case suffix of ``path`` (``.ome.tif`` counts as ``.tif``)."""
    return Path(path).suffix.lower()


def is_tiff_header(head: bytes) -> bool:
    """Whether the first bytes are a classic or Big TIFF header."""
    return head[:4] in _TIFF_MAGIC


def _first_ifd_tags(fh) -> dict[int, int | None]:
    """Tag -> first value (or None when the value is not inline) of the first IFD."""
    head = fh.read(16)
    byteorder = "<" if head[:2] == b"II" else ">"
    big = head[2:4] in (b"+\x00", b"\x00+")
    size = os.fstat(fh.fileno()).st_size
    if big:
        (offset,) = struct.unpack(byteorder + "Q", head[8:16])
        count_fmt, entry_size, value_size = "Q", 20, 8
    else:
        (offset,) = struct.unpack(byteorder + "I", head[4:8])
        count_fmt, entry_size, value_size = "H", 12, 4
    fh.seek(offset)
    count_bytes = fh.read(struct.calcsize(count_fmt))
    (count,) = struct.unpack(byteorder + count_fmt, count_bytes)
    if count > 4096:
        raise ValueError("implausible IFD")
    if offset + len(count_bytes) + count * entry_size > size:
        raise ValueError("the first TIFF directory lies past the end of the file")
    raw = fh.read(count * entry_size)
    tags: dict[int, int | None] = {}
    for i in range(count):
        entry = raw[i * entry_size:(i + 1) * entry_size]
        if len(entry) < entry_size:
            break
        tag, typ = struct.unpack(byteorder + "HH", entry[:4])
        count = struct.unpack(byteorder + ("Q" if big else "I"), entry[4:entry_size - value_size])[0]
        value = entry[entry_size - value_size:]
        size = _TYPE_SIZES.get(typ, 0)
        if size * count > value_size:  # the field holds an offset to the values
            tags[tag] = None
        elif size == 2:
            tags[tag] = struct.unpack(byteorder + "H", value[:2])[0]
        elif size == 4 and typ in (4, 9, 13):
            tags[tag] = struct.unpack(byteorder + "I", value[:4])[0]
        elif typ == 16:
            tags[tag] = struct.unpack(byteorder + "Q", value[:8])[0]
        else:
            tags[tag] = None
    return tags


def slide_file_problem(path: str | os.PathLike) -> str | None:
    """What a few header bytes already show to be wrong with a file of a slide format, or None.

    Checks only what is cheap and certain: the file exists and is not empty; a TIFF-based
    format has a TIFF header whose first directory lies inside the file; DICOM has its
    ``DICM`` marker, ``.svslide`` its SQLite header, ``.vms`` its ``[Virtual Microscope``
    section, MIRAX its data folder. Everything else (truncated tile data, damaged tiles, an
    unsupported layout) is found by ``open_slide``, which says so in one message.

    Returns
    -------
    str or None
        A short reason ("the file is empty", "not a TIFF file" ...), or None when the file is
        worth opening.
    """
    path = Path(path)
    suffix = slide_suffix(path)
    if not path.is_file():
        return "no such file"
    try:
        size = path.stat().st_size
        if size == 0:
            return "the file is empty (0 bytes)"
        with open(path, "rb") as fh:
            head = fh.read(132)
            if suffix in TIFF_SUFFIXES:
                if not is_tiff_header(head):
                    return "not a TIFF file (no TIFF header)"
                fh.seek(0)
                _first_ifd_tags(fh)
                return None
            if suffix == ".dcm" and head[128:132] != b"DICM":
                return "not a DICOM file (no DICM marker)"
            if suffix == ".svslide" and not head.startswith(b"SQLite format 3\x00"):
                return "not an Aperio .svslide (SQLite) file"
            if suffix in (".vms", ".vmu") and not (b"[Virtual Microscope" in head or
                                                   head.startswith(b"\xef\xbb\xbf[Virtual")):
                return "not a Hamamatsu .vms/.vmu file"
            if suffix == ".mrxs" and not (path.parent / path.stem / "Slidedat.ini").is_file():
                return f"the MIRAX data folder {path.stem}/Slidedat.ini is missing beside it"
    except struct.error:
        return "its header is cut short"
    except ValueError as exc:
        return str(exc)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or type(exc).__name__})"
    return None


def looks_like_slide(path: str | os.PathLike) -> bool:
    """Whether ``path`` is probably a whole-slide image that :func:`open_slide` should handle.

    Decided from the extension and at most a few hundred header bytes: TIFF-based files must be
    8-bit RGB(A) and tiled (or carry SubIFDs, or be larger than 8192 px on a side); DICOM needs
    its ``DICM`` marker; MIRAX needs its data folder beside it. Nothing is decoded.

    Parameters
    ----------
    path : str or os.PathLike
        The file napari was asked to open.

    Returns
    -------
    bool
        False for anything that is not a readable slide, so napari can try other readers.
    """
    path = Path(path)
    suffix = slide_suffix(path)
    if suffix not in SLIDE_SUFFIXES or not path.is_file():
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
            if suffix in TIFF_SUFFIXES:
                if not is_tiff_header(head):
                    return False
                fh.seek(0)
                tags = _first_ifd_tags(fh)
                samples = tags.get(_SAMPLES) or 1
                bits = tags.get(_BITS)
                if samples < 3 or (bits is not None and bits != 8) or tags.get(_SAMPLE_FORMAT, 1) not in (1, None):
                    return False
                large = max(tags.get(_WIDTH) or 0, tags.get(_LENGTH) or 0) > _LARGE_SIDE
                return _TILE_WIDTH in tags or _SUBIFDS in tags or large
            if suffix == ".dcm":
                return head[128:132] == b"DICM"
            if suffix == ".svslide":
                return head.startswith(b"SQLite format 3\x00")
            if suffix in (".vms", ".vmu"):
                return b"[Virtual Microscope" in head or head.startswith(b"\xef\xbb\xbf[Virtual")
            if suffix == ".mrxs":
                return (path.parent / path.stem / "Slidedat.ini").is_file()
    except (OSError, ValueError, struct.error):
        return False
    return False
