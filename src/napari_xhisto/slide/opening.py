"""``open_slide``: pick the fastest correct backend for a file, find its µm/px, fail clearly."""

from __future__ import annotations

import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..errors import SlideError
from .backends import OpenSlideBackend, TiffBackend
from .cache import TileCache
from .core import Slide
from .detect import is_tiff_header, quiet_tifffile
from .integrity import tiff_extent

log = logging.getLogger(__name__)

# openslide vendors whose tiles are plain TIFF tiles that tifffile can read 1:1 (others, e.g.
# Ventana BIF with overlapping tiles or Leica SCN with offset images, need openslide's stitching)
_DIRECT_VENDORS = {None, "aperio", "generic-tiff"}
_UM_PER = {"µm": 1.0, "um": 1.0, "micron": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}
_PLAUSIBLE_MPP = (0.01, 25.0)  # outside this a resolution tag is a dummy (72 dpi ...), not a scan


def _mpp_pair(mx, my) -> float | None:
    vals = [float(v) for v in (mx, my) if v is not None]
    vals = [v for v in vals if math.isfinite(v) and v > 0]
    return float(np.mean(vals)) if vals else None


def _ome_mpp(tf) -> float | None:
    xml = tf.ome_metadata
    if not xml:
        return None
    root = ET.fromstring(xml)
    pixels = next((el for el in root.iter() if el.tag.endswith("}Pixels") or el.tag == "Pixels"),
                  None)
    if pixels is None:
        return None
    out = []
    for axis in ("X", "Y"):
        size = pixels.get(f"PhysicalSize{axis}")
        unit = pixels.get(f"PhysicalSize{axis}Unit", "µm")
        if size is not None and unit in _UM_PER:
            out.append(float(size) * _UM_PER[unit])
    return _mpp_pair(*(out + [None] * (2 - len(out))))


def _tag_mpp(page) -> float | None:
    unit = page.tags.get("ResolutionUnit")
    xres, yres = page.tags.get("XResolution"), page.tags.get("YResolution")
    if unit is None or xres is None or int(unit.value) not in (2, 3):
        return None
    per_unit_um = 25400.0 if int(unit.value) == 2 else 10000.0

    def to_mpp(tag):
        num, den = tag.value if isinstance(tag.value, tuple) else (tag.value, 1)
        return per_unit_um * den / num if num else None

    mpp = _mpp_pair(to_mpp(xres), to_mpp(yres) if yres is not None else None)
    if mpp is None or not _PLAUSIBLE_MPP[0] <= mpp <= _PLAUSIBLE_MPP[1]:
        return None
    return mpp


def _tiff_levels(tf) -> list:
    """Keyframe pages of the pyramid levels, finest first, if tifffile decodes all of them.

    SVS: every tiled page with level 0's aspect ratio, as openslide's Aperio driver counts them
    (tifffile's own SVS series assumes page 1 is a thumbnail and stops at reduced pages).
    OME and others: the first series' levels, or reduced-resolution pages after a lone level.
    """
    if not tf.series:
        return []
    if tf.is_svs:
        first = tf.pages.first
        h0, w0 = first.shape[:2]
        pages = [pg for pg in tf.pages if pg.is_tiled and len(pg.shape) == 3
                 and abs(pg.shape[0] / h0 - pg.shape[1] / w0) < 0.02]
        pages.sort(key=lambda pg: -pg.shape[0])
        return pages if all(TiffBackend.can_read(pg) for pg in pages) else []
    series = tf.series[0]
    pages = []
    for level in series.levels:
        page = level.keyframe
        if tuple(level.shape) != tuple(page.shape) or not TiffBackend.can_read(page):
            return []
        pages.append(page)
    if len(pages) == 1:  # generic pyramid stored as reduced-resolution pages
        h0, w0 = pages[0].shape[:2]
        for page in tf.pages[1:]:
            if (getattr(page, "is_reduced", False) and TiffBackend.can_read(page)
                    and page.shape[0] < pages[-1].shape[0]
                    and abs(page.shape[0] / h0 - page.shape[1] / w0) < 0.02):
                pages.append(page)
    if not all(p.is_tiled for p in pages) and max(pages[0].shape[:2]) > 16384:
        return []  # a huge striped image: openslide (or nothing) does better
    return pages


def _tiff_properties(tf, pages) -> dict:
    props = {"tifffile.series": tf.series[0].kind if tf.series else "",
             "tiff.ImageDescription": (pages[0].description or "")[:2000]}
    for name in ("XResolution", "YResolution", "ResolutionUnit", "Software"):
        tag = pages[0].tags.get(name)
        if tag is not None:
            props[f"tiff.{name}"] = str(tag.value)
    return props


def _probe_tiles(reader, level: int) -> list[tuple[int, int]]:
    """Tiles of ``level`` tried when checking a file: the middle, the corners, then a few more."""
    h, w = reader.level_dimensions[level]
    th, tw = reader.tile_shapes[level]
    rows, cols = -(-h // th), -(-w // tw)
    picks = [((h // 2) // th, (w // 2) // tw), (0, 0), (rows - 1, cols - 1), (0, cols - 1),
             (rows - 1, 0), (rows // 4, cols // 4), ((3 * rows) // 4, (3 * cols) // 4)]
    return list(dict.fromkeys(picks))


def _probe_equal(tiff_reader, osr_reader) -> bool:
    """Whether both backends give identical pixels (a tile of the finest and coarsest level that
    decodes; a damaged probe tile is passed over)."""
    if tiff_reader.level_dimensions != osr_reader.level_dimensions:
        return False
    if tiff_reader.tile_shapes != osr_reader.tile_shapes:
        return False
    for level in (0, len(tiff_reader.level_dimensions) - 1):
        for tile in [(0, 0)] + _probe_tiles(tiff_reader, level):
            try:
                a = tiff_reader.read_tile(level, *tile)
            except Exception:  # noqa: BLE001 - damaged here: try another tile
                continue
            b = osr_reader.read_tile(level, *tile)
            if a.shape != b.shape or not np.array_equal(a, b):
                return False
            break
        else:
            return False
    return True


def _check_decodes(reader, name: str) -> list[tuple[int, int, int, Exception]]:
    """Decode probe tiles of the finest and coarsest level; each level needs one that decodes.

    Returns the damaged probe tiles ``(level, row, col, exc)``; raises SlideError when every
    probe of a level fails (unsupported compression or a file damaged throughout).
    """
    damaged = []
    for level in dict.fromkeys((0, len(reader.level_dimensions) - 1)):
        failures = []
        for tile in _probe_tiles(reader, level):
            try:
                reader.read_tile(level, *tile)
                break
            except Exception as exc:  # noqa: BLE001 - any decoder failure
                failures.append((level, *tile, exc))
        else:
            exc = failures[0][-1]
            raise SlideError(f"{name}: its tiles cannot be decoded ({type(exc).__name__}: "
                             f"{exc}); the file is damaged or uses an unsupported compression")
        damaged += failures
    return damaged


_APERIO_REGION = re.compile(r"\[\s*\d+\s*,\s*\d+\s+(\d+)x(\d+)\s*\]\s*\((\d+)x(\d+)\)")


def _check_aperio_description(name: str, props: dict, reader) -> None:
    """An Aperio description states level 0's size and tile size: a file whose tags disagree
    (a flipped ImageLength still fits the same tile grid) is damaged, not a different image."""
    match = _APERIO_REGION.search(props.get("tiff.ImageDescription") or "")
    if match is None:
        return
    w, h, tw, th = (int(v) for v in match.groups())
    if (h, w) != tuple(reader.level_dimensions[0]):
        raise SlideError(f"{name}: the file is damaged: level 0 is "
                         f"{reader.level_dimensions[0][0]} x {reader.level_dimensions[0][1]} px "
                         f"but its Aperio description says {h} x {w}; copy it again")
    if reader.name == "tifffile" and (th, tw) != tuple(reader.tile_shapes[0]):
        raise SlideError(f"{name}: the file is damaged: level 0 has {reader.tile_shapes[0][0]} x "
                         f"{reader.tile_shapes[0][1]} px tiles but its Aperio description says "
                         f"{th} x {tw}; copy it again")


def _resolve_mpp(mpp, found: float | None, source: str) -> tuple[float | None, str]:
    if mpp is not None:
        try:
            value = float(mpp)
        except (TypeError, ValueError):
            raise SlideError(f"mpp must be a number of µm per pixel, got {mpp!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise SlideError(f"mpp must be a positive number of µm per pixel, got {mpp!r}")
        return value, "override"
    if found is None:
        return None, "unknown"
    return found, source


def open_slide(path, *, mpp: float | None = None, cache: TileCache | None = None,
               max_workers: int | None = None, backend: str | None = None,
               strict: bool = True) -> Slide:
    """Open a whole-slide image for lazy reading.

    Parameters
    ----------
    path : str or os.PathLike
        SVS, NDPI, MRXS, SCN, BIF, Philips TIFF, DICOM (what openslide reads), OME-TIFF or a
        tiled pyramidal TIFF.
    mpp : float, optional
        µm per level-0 pixel, overriding the file's metadata (use when it is missing or wrong).
    cache : TileCache, optional
        Decoded-tile cache; the process-wide shared one by default.
    max_workers : int, optional
        Threads decoding tiles (default: number of CPUs, at least 2).
    backend : {"tifffile", "openslide"}, optional
        Force a backend (default: tifffile where it reads the file's own tiles identically, as
        checked on sample tiles, else openslide).
    strict : bool
        Decode JPEG tiles strictly (default): damaged data makes a tile *damaged* (drawn as
        stripes, listed in ``Slide.damaged_tiles``, NaN in maps) instead of a grey block.
        ``False`` decodes as tifffile/imagecodecs do, silently; for benchmarks only.

    Returns
    -------
    Slide

    Raises
    ------
    SlideError
        Naming the file and the cause: missing, empty, truncated ("the file is truncated (N of
        M bytes): copy it again"), not a slide, no tile decodes. A file with some damaged tiles
        opens; they are found as they are read (``Slide.damaged_tiles``).
    """
    p = Path(path)
    name = str(p)
    if not p.exists():
        raise SlideError(f"{name}: no such file")
    if p.is_dir():
        raise SlideError(f"{name}: is a folder, not a slide file (open the .mrxs/.vms file in it)")
    size = p.stat().st_size
    if size == 0:
        raise SlideError(f"{name}: the file is empty (0 bytes); copy or export the slide again")
    if backend not in (None, "tifffile", "openslide"):
        raise SlideError(f"backend must be 'tifffile' or 'openslide', got {backend!r}")
    with open(p, "rb") as fh:
        head = fh.read(16)
    errors: list[str] = []
    try:
        import openslide

        vendor = openslide.OpenSlide.detect_format(name)
    except Exception as exc:  # noqa: BLE001 - a missing or broken openslide just means tifffile
        openslide, vendor = None, None
        errors.append(f"openslide: {exc}")

    if is_tiff_header(head):
        try:
            extent = tiff_extent(p)
        except (ValueError, OSError) as exc:
            raise SlideError(f"{name}: the file is damaged ({exc}): copy it again") from None
        if extent.truncated:
            raise SlideError(extent.message(name))

    tiff_reader, osr_reader, tf = None, None, None
    if is_tiff_header(head) and vendor in _DIRECT_VENDORS and backend != "openslide":
        import tifffile

        with quiet_tifffile() as tifffile_log:
            try:
                tf = tifffile.TiffFile(name)
                pages = _tiff_levels(tf)
                if pages:
                    tiff_reader = TiffBackend(name, pages, tf, strict=strict)
                else:
                    errors.append("tifffile: not a tiled 8-bit RGB pyramid")
            except Exception as exc:  # noqa: BLE001 - tifffile raises many kinds on broken files
                errors.append(f"tifffile: {type(exc).__name__}: {exc}")
                tiff_reader = None
        if tiff_reader is None:
            errors += [f"tifffile: {m}" for m in tifffile_log.messages[:3]]
        for message in tifffile_log.messages:
            log.debug("tifffile on %s: %s", name, message)
    if vendor is not None and backend != "tifffile":
        try:
            osr_reader = OpenSlideBackend(openslide.OpenSlide(name), name)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"openslide: {type(exc).__name__}: {exc}")

    reader = None
    try:
        if tiff_reader is not None and tf.is_ome:
            reader = tiff_reader  # openslide sees only the main IFD of an OME pyramid
        elif tiff_reader is not None and osr_reader is not None and backend is None:
            same = _probe_equal(tiff_reader, osr_reader)
            reader = tiff_reader if same else osr_reader
        else:
            reader = tiff_reader or osr_reader
    except Exception as exc:  # noqa: BLE001 - a probe tile failed: fall through to the checks
        reader = osr_reader or tiff_reader
        errors.append(f"{type(exc).__name__}: {exc}")
    if reader is None:
        if tf is not None:
            tf.close()
        cause = "; ".join(errors) or "neither openslide nor tifffile recognises the format"
        raise SlideError(f"{name}: cannot be opened as a slide ({cause})")
    for other in (tiff_reader, osr_reader):
        if other is not None and other is not reader:
            other.close()

    # properties and µm/px: openslide's where it reads the file, else from the TIFF tags
    props, found, source = {}, None, ""
    if osr_reader is not None:
        props = dict(osr_reader._osr.properties) if reader is osr_reader else None
        if props is None:
            with openslide.OpenSlide(name) as osr:
                props = dict(osr.properties)
        found = _mpp_pair(props.get("openslide.mpp-x"), props.get("openslide.mpp-y"))
        source = "openslide.mpp-x/y"
        if vendor == "generic-tiff" and found is not None and not (
                _PLAUSIBLE_MPP[0] <= found <= _PLAUSIBLE_MPP[1]):
            found = None  # from a dummy resolution tag (72 dpi ...), not a scanner
    if tiff_reader is not None and reader is tiff_reader:
        props = {**_tiff_properties(tf, pages), **props}
        if found is None and tf.is_ome:
            found, source = _ome_mpp(tf), "OME PhysicalSizeX/Y"
        if found is None and tf.is_svs:
            m = re.search(r"MPP\s*=\s*([0-9.eE+-]+)", pages[0].description or "")
            found, source = (_mpp_pair(m.group(1), None), "Aperio MPP") if m else (None, "")
        if found is None:
            found, source = _tag_mpp(pages[0]), "TIFF resolution tags"
    is_ome = reader is tiff_reader and tf.is_ome
    slide_vendor = "ome-tiff" if is_ome else (vendor or "generic-tiff")
    value, mpp_source = _resolve_mpp(mpp, found, source)

    # the finest and the coarsest level must decode (one probe tile each; damaged ones noted)
    try:
        if slide_vendor == "aperio":
            _check_aperio_description(name, props, reader)
        damaged = _check_decodes(reader, name)
    except SlideError:
        reader.close()
        raise
    log.debug("opened %s with %s", os.path.basename(name), reader.name)
    slide = Slide(name, reader, vendor=slide_vendor, properties=props, mpp=value,
                  mpp_source=mpp_source, cache=cache, max_workers=max_workers)
    for level, row, col, exc in damaged:
        slide._report_tile_error(level, row, col, exc)
    return slide
