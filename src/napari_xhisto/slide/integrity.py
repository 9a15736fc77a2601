"""Is a TIFF file whole? Walk its IFDs (and SubIFDs) and find the last byte anything points to.

A slide cut short by an interrupted copy or download keeps its header, so tifffile opens it and
logs a warning per missing page, or silently sees a shorter pyramid. Comparing every offset and
byte count with the file size first gives one clear message instead: "the file is truncated
(N of M bytes): copy it again". Standard library only (``struct``, ``array``); reads the IFDs and
the offset/byte-count arrays, never the image data.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
               13: 4, 16: 8, 17: 8, 18: 8}
_ARRAY_CODES = {3: "H", 4: "I", 13: "I", 16: "Q", 18: "Q"}
_DATA_PAIRS = ((273, 279), (324, 325))  # (Strip|Tile)Offsets, (Strip|Tile)ByteCounts
_SUBIFDS = 330
_NDPI_FORMAT_FLAG = 65420
MAX_IFDS = 4096  # more pages than any slide has: a loop or garbage
_MAX_ENTRIES = 65535  # a classic TIFF's limit; a Big TIFF IFD with more is garbage
_MAX_ARRAY_BYTES = 256 * 2**20  # offsets of ~30 million tiles: more is garbage
_CUT_SLACK = 4096  # bytes of padding a writer may leave between blocks
_CUT_RATIO = 64  # a file pointing past 64x its size is damaged, not cut (a cut keeps > 1/64)
_INTEGER_TYPES = {1, 3, 4, 6, 8, 9, 16, 17}  # what libtiff converts to an integer
_OFFSET_TYPES = {4, 13, 16, 18}
# tags whose value decides how pixels are read: a wrong type means a damaged directory
_INTEGER_TAGS = {254: "NewSubfileType", 256: "ImageWidth", 257: "ImageLength",
                 258: "BitsPerSample", 259: "Compression", 262: "PhotometricInterpretation",
                 273: "StripOffsets", 277: "SamplesPerPixel", 278: "RowsPerStrip",
                 279: "StripByteCounts", 284: "PlanarConfiguration", 322: "TileWidth",
                 323: "TileLength", 324: "TileOffsets", 325: "TileByteCounts",
                 32997: "ImageDepth"}
_LAYOUT_TAGS = (256, 257, 277, 278, 284, 322, 323, 32997)
_SINGLE_TAGS = {254, 256, 257, 259, 262, 277, 278, 284, 322, 323, 32997}


@dataclass(frozen=True)
class TiffExtent:
    """What :func:`tiff_extent` found.

    Attributes
    ----------
    size : int
        Bytes in the file.
    needed : int
        The largest byte offset the file's structure points to (IFDs, tag values, image data).
    exact : bool
        False when an IFD lies (partly) past the end of the file: what it would point to is
        unknown, so ``needed`` is a lower bound.
    checked : bool
        False for Hamamatsu NDPI files, whose 32-bit offsets wrap past 4 GiB (openslide checks
        them): ``truncated`` is then False.
    cut : bool
        Whether what lies past the end looks like a file cut short (the first missing block
        starts at the end, blocks do not overlap) rather than a damaged pointer or byte count.
    """

    size: int
    needed: int
    exact: bool
    checked: bool = True
    cut: bool = True

    @property
    def truncated(self) -> bool:
        return self.checked and self.needed > self.size

    def message(self, name: str) -> str:
        """The user-facing one-liner for a truncated file."""
        if not self.cut:
            return (f"{name}: the file is damaged: it has {self.size} bytes but its structure "
                    f"points to byte {self.needed}; copy it again")
        of = f"{self.needed}" if self.exact else f"at least {self.needed}"
        return f"{name}: the file is truncated ({self.size} of {of} bytes): copy it again"


class _Reader:
    def __init__(self, fh, size: int):
        self.fh, self.size = fh, size

    def read(self, offset: int, count: int) -> bytes:
        if offset >= self.size or count <= 0:
            return b""
        self.fh.seek(offset)
        return self.fh.read(min(count, self.size - offset))


def _values(reader: _Reader, order: str, typ: int, count: int, inline: bytes, inline_size: int,
            offset_code: str, *, wanted: bool) -> tuple[list[int] | None, tuple[int, int] | None]:
    """Integer values of a tag (only if ``wanted``; None if not integers or not all present) and
    the (start, end) of its out-of-line storage (None when stored inline)."""
    size = _TYPE_SIZES.get(typ, 0) * count
    span = None
    if size <= inline_size:
        raw = inline[:size]
    else:
        (where,) = struct.unpack(order + offset_code, inline)
        span = (where, where + size)
        if not wanted or span[1] > reader.size or size > _MAX_ARRAY_BYTES:
            return None, span
        raw = reader.read(where, size)
    code = _ARRAY_CODES.get(typ)
    if not wanted or code is None or len(raw) != size:
        return None, span
    values = array(code)
    values.frombytes(raw)
    if order == ">" and values.itemsize > 1:
        values.byteswap()
    return values.tolist(), span


_WANTED = {258, 259, 273, 279, 324, 325, _SUBIFDS, *_LAYOUT_TAGS}


def _check_layout(tags: dict, off_tag: int, n_offsets: int, counts: list[int], ifd: int) -> None:
    """Offsets and byte counts must match each other and the tile (strip) grid the directory's
    size tags give, as the TIFF specification defines it, and uncompressed blocks must hold
    exactly their pixels: a flipped width, tile size, count or a lost Compression tag otherwise
    reads the wrong pixels without any error."""
    def first(tag, default=None):
        values = tags.get(tag)
        return values[0] if values else default

    width, length, n_counts = first(256), first(257), len(counts)
    if n_offsets != n_counts:
        raise ValueError(f"the TIFF directory at byte {ifd} has {n_offsets} data offsets but "
                         f"{n_counts} byte counts")
    if not width or not length:
        return
    planes = first(277, 1) if first(284, 1) == 2 else 1
    depth = first(32997, 1) or 1
    if off_tag == 324:
        tw, tl = first(322), first(323)
        if not tw or not tl:
            raise ValueError(f"the TIFF directory at byte {ifd} has tiles of size 0")
        expected = -(-width // tw) * -(-length // tl) * planes * depth
    else:
        rows = min(first(278, length) or length, length)
        expected = -(-length // rows) * planes
    if n_offsets != expected:
        raise ValueError(f"the TIFF directory at byte {ifd} has {n_offsets} data blocks where "
                         f"its size tags need {expected}")
    if first(259, 1) == 1:  # uncompressed: each block holds exactly its pixels
        bits = sum((tags.get(258) or [1])[:1]) * (first(277, 1) if planes == 1 else 1)
        if off_tag == 324:
            full = first(322) * first(323) * depth * bits // 8
            wrong = any(c != full for c in counts)
        else:
            full = min(first(278, length) or length, length) * width * bits // 8
            wrong = any(c > full for c in counts)
        if wrong:
            raise ValueError(f"the TIFF directory at byte {ifd} says uncompressed, but its "
                             "byte counts do not match its pixels (Compression tag lost?)")


def _looks_cut(spans: list[tuple[int, int]], size: int) -> bool:
    """Whether the blocks reaching past the end fit a file cut short rather than a damaged
    pointer or byte count.

    Damaged: a block past the end overlaps another block (a byte count grew), or a block starts
    far past the end although the readable structure accounts for the file up to its last byte
    (a pointer changed). A cut file instead has a block running over its end or starting right
    there, or unreferenced bytes at its end (data whose directory, written after it, is gone).
    """
    outside = [(a, b) for a, b in spans if b > size]
    if not outside:
        return True
    starts = sorted({a for a, b in spans if b > a})
    for a, b in outside:
        k = bisect_right(starts, a)
        if k < len(starts) and starts[k] < b:  # another block begins inside this one
            return False
    if max(b for _, b in outside) > _CUT_RATIO * size + 2**20:
        return False
    if min(a for a, _ in outside) <= size + _CUT_SLACK:
        return True
    inside_end = max((b for _, b in spans if b <= size), default=0)
    return inside_end < size - _CUT_SLACK


def tiff_extent(path) -> TiffExtent:
    """Walk the IFD chain (and SubIFDs) of a classic or Big TIFF and find its extent.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    TiffExtent

    Raises
    ------
    ValueError
        When the file is not a TIFF (no TIFF header), or a directory is garbage.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        reader = _Reader(fh, size)
        head = reader.read(0, 16)
        if head[:2] not in (b"II", b"MM") or len(head) < 8:
            raise ValueError("not a TIFF file")
        order = "<" if head[:2] == b"II" else ">"
        (magic,) = struct.unpack(order + "H", head[2:4])
        if magic == 42:
            count_code, entry_size, inline_size, offset_code = "H", 12, 4, "I"
            (first,) = struct.unpack(order + "I", head[4:8])
            spans = [(0, 8)]
        elif magic == 43 and len(head) >= 16:
            count_code, entry_size, inline_size, offset_code = "Q", 20, 8, "Q"
            (first,) = struct.unpack(order + "Q", head[8:16])
            spans = [(0, 16)]
        else:
            raise ValueError("not a TIFF file")
        count_size, offset_size = struct.calcsize(count_code), struct.calcsize(offset_code)
        todo, seen, exact = [first], set(), True
        while todo and len(seen) < MAX_IFDS:
            ifd = todo.pop()
            if ifd == 0 or ifd in seen:
                continue
            seen.add(ifd)
            raw = reader.read(ifd, count_size)
            if len(raw) < count_size:
                spans.append((ifd, ifd + count_size))
                exact = False
                continue
            (n,) = struct.unpack(order + count_code, raw)
            if n > _MAX_ENTRIES:
                raise ValueError(f"the TIFF directory at byte {ifd} claims {n} entries")
            spans.append((ifd, ifd + count_size + n * entry_size + offset_size))
            block = reader.read(ifd + count_size, n * entry_size + offset_size)
            if len(block) < n * entry_size + offset_size:
                exact = False
                continue
            tags: dict[int, list[int] | None] = {}
            codes = set()
            for k in range(n):
                entry = block[k * entry_size:(k + 1) * entry_size]
                tag, typ = struct.unpack(order + "HH", entry[:4])
                if tag in codes:
                    raise ValueError(f"the TIFF directory at byte {ifd} has tag {tag} twice")
                codes.add(tag)
                (count,) = struct.unpack(order + offset_code, entry[4:4 + offset_size])
                if typ not in _TYPE_SIZES:
                    if tag in _INTEGER_TAGS or tag in (_SUBIFDS, 347):
                        raise ValueError(f"the TIFF directory at byte {ifd} has tag {tag} of "
                                         f"invalid type {typ}")
                    continue  # a damaged tag that does not decide the pixels: ignored
                if (tag in _INTEGER_TAGS and typ not in _INTEGER_TYPES) or (
                        tag == _SUBIFDS and typ not in _OFFSET_TYPES):
                    raise ValueError(f"the TIFF directory at byte {ifd} has "
                                     f"{_INTEGER_TAGS.get(tag, 'SubIFDs')} of type {typ}")
                if tag in _SINGLE_TAGS and count != 1 or tag == 258 and not 1 <= count <= 16:
                    raise ValueError(f"the TIFF directory at byte {ifd} has {count} values of "
                                     f"{_INTEGER_TAGS[tag]}")
                wanted = tag in _WANTED
                values, span = _values(reader, order, typ, count, entry[4 + offset_size:],
                                       inline_size, offset_code, wanted=wanted)
                if span is not None:
                    spans.append(span)
                if wanted:
                    tags[tag] = values
                elif tag == _NDPI_FORMAT_FLAG:
                    return TiffExtent(size=size, needed=size, exact=False, checked=False)
            if 256 in codes and not any(a in codes or b in codes for a, b in _DATA_PAIRS):
                raise ValueError(f"the TIFF directory at byte {ifd} has an image but no data "
                                 "offsets")
            for off_tag, count_tag in _DATA_PAIRS:
                if (off_tag in codes) != (count_tag in codes):
                    raise ValueError(f"the TIFF directory at byte {ifd} has only one of tags "
                                     f"{off_tag} and {count_tag} (data offsets and byte counts)")
                offsets, counts = tags.get(off_tag), tags.get(count_tag)
                if offsets and counts:
                    _check_layout(tags, off_tag, len(offsets), counts, ifd)
                    spans.extend((o, o + c) for o, c in zip(offsets, counts) if c)
            todo.extend(tags.get(_SUBIFDS) or [])
            (nxt,) = struct.unpack(order + offset_code, block[n * entry_size:])
            todo.append(nxt)
    needed = max(b for _, b in spans)
    return TiffExtent(size=size, needed=needed, exact=exact,
                      cut=needed <= size or _looks_cut(spans, size))
