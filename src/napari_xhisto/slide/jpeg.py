"""Strict decoding of TIFF JPEG tiles: damaged entropy-coded data raises instead of decoding grey.

imagecodecs (tifffile's codec) and Pillow let libjpeg's "corrupt data" warnings pass, so a tile
whose bytes were damaged on disk decodes to a plausible grey block that a classifier scores as
tissue. libjpeg-turbo can stop on those warnings; simplejpeg exposes that as ``strict=True``, and
openslide does the same (it treats libjpeg warnings as errors).

A TIFF JPEG tile is often an *abbreviated* stream: the quantisation and Huffman tables live once
in the page's JPEGTables tag. The tile is spliced into one complete stream (SOI, the tables, the
tile's own frame and scan), with an Adobe APP14 marker that states the colour transform the TIFF
``Photometric`` tag declares (RGB: none, as in Aperio files whose component ids 0, 1, 2 libjpeg
would otherwise take for YCbCr; YCbCr: the usual one), exactly as tifffile tells imagecodecs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_SOI, _EOI, _SOS = b"\xff\xd8", b"\xff\xd9", 0xDA
_APP0, _APP14 = 0xE0, 0xEE  # JFIF / Adobe markers decide libjpeg's colour space: ours replace them
# Adobe APP14: "Adobe", version 100, flags0, flags1, transform (0: none = RGB, 1: YCbCr)
_ADOBE = {2: b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00",
          6: b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x01"}
_JPEG = 7


def _tables_body(tables: bytes | None) -> bytes:
    """The marker segments of a JPEGTables tag, without its SOI and EOI."""
    if not tables:
        return b""
    tables = bytes(tables)
    if tables.startswith(_SOI):
        tables = tables[2:]
    if tables.endswith(_EOI):
        tables = tables[:-2]
    return tables


def splice_tile(prefix: bytes, data: bytes) -> bytes:
    """One complete JPEG stream from ``prefix`` (SOI, APP14, tables) and a tile's own bytes.

    The tile's SOI and any JFIF/Adobe segments are dropped (the prefix states the colour space);
    its other segments (frame header, restart interval, its own tables) and the scan are kept.
    """
    if not data.startswith(_SOI):
        raise ValueError("tile data does not start with a JPEG SOI marker")
    i, n, kept = 2, len(data), []
    while i + 4 <= n and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == _SOS:
            break
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        end = i + 2 + int.from_bytes(data[i + 2:i + 4], "big")
        if marker not in (_APP0, _APP14):
            kept.append(data[i:end])
        i = end
    return b"".join((prefix, *kept, data[i:]))


def strict_jpeg_decoder(page) -> Callable[[bytes], np.ndarray] | None:
    """A function decoding one JPEG tile of ``page`` to (h, w, 3) uint8 RGB, strictly.

    Parameters
    ----------
    page : tifffile.TiffPage
        A JPEG-compressed (TIFF compression 7), 8-bit, 3-sample, interleaved RGB or YCbCr page.

    Returns
    -------
    callable or None
        ``decode(tile_bytes) -> ndarray`` raising ``ValueError`` on any libjpeg warning (corrupt,
        truncated or extraneous data); None for pages it does not take (other compressions,
        alpha, NDPI's JPEG headers) or when simplejpeg is missing: those use tifffile's decoder.
    """
    try:
        import simplejpeg
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    photometric = int(page.photometric)
    if (int(page.compression) != _JPEG or photometric not in _ADOBE
            or page.jpegheader is not None or page.planarconfig != 1
            or len(page.shape) != 3 or page.shape[-1] != 3 or page.dtype != np.uint8):
        return None
    prefix = _SOI + _ADOBE[photometric] + _tables_body(page.jpegtables)

    def decode(data: bytes) -> np.ndarray:
        return simplejpeg.decode_jpeg(splice_tile(prefix, bytes(data)), colorspace="RGB",
                                      strict=True)

    return decode
