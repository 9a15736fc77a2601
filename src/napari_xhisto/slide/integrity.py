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
    """

    size: int
    needed: int
    exact: bool
    checked: bool = True

    @property
    def truncated(self) -> bool:
        return self.checked and self.needed > self.size

    def message(self, name: str) -> str:
        """The user-facing one-liner for a truncated file."""
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
            offset_code: str, *, wanted: bool) -> tuple[list[int] | None, int]:
    """Integer values of a tag (only if ``wanted``; None if not integers or not all present) and
    the end of its out-of-line storage (0 when stored inline)."""
    size = _TYPE_SIZES.get(typ, 0) * count
    if size <= inline_size:
        raw, end = inline[:size], 0
    else:
        (where,) = struct.unpack(order + offset_code, inline)
        end = where + size
        if not wanted or end > reader.size or size > _MAX_ARRAY_BYTES:
            return None, end
        raw = reader.read(where, size)
    code = _ARRAY_CODES.get(typ)
    if not wanted or code is None or len(raw) != size:
        return None, end
    values = array(code)
    values.frombytes(raw)
    if order == ">" and values.itemsize > 1:
        values.byteswap()
    return values.tolist(), end


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
        When the file is not a TIFF (no TIFF header).
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
            needed = 8
        elif magic == 43 and len(head) >= 16:
            count_code, entry_size, inline_size, offset_code = "Q", 20, 8, "Q"
            (first,) = struct.unpack(order + "Q", head[8:16])
            needed = 16
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
                needed, exact = max(needed, ifd + count_size), False
                continue
            (n,) = struct.unpack(order + count_code, raw)
            if n > _MAX_ENTRIES:
                raise ValueError(f"the TIFF directory at byte {ifd} claims {n} entries")
            end = ifd + count_size + n * entry_size + offset_size
            block = reader.read(ifd + count_size, n * entry_size + offset_size)
            if len(block) < n * entry_size + offset_size:
                needed, exact = max(needed, end), False
                continue
            needed = max(needed, end)
            tags: dict[int, list[int] | None] = {}
            for k in range(n):
                entry = block[k * entry_size:(k + 1) * entry_size]
                tag, typ = struct.unpack(order + "HH", entry[:4])
                (count,) = struct.unpack(order + offset_code, entry[4:4 + offset_size])
                wanted = tag in (273, 279, 324, 325, _SUBIFDS)
                values, value_end = _values(reader, order, typ, count, entry[4 + offset_size:],
                                            inline_size, offset_code, wanted=wanted)
                needed = max(needed, value_end)
                if wanted:
                    tags[tag] = values
                elif tag == _NDPI_FORMAT_FLAG:
                    return TiffExtent(size=size, needed=min(needed, size), exact=False,
                                      checked=False)
            for off_tag, count_tag in _DATA_PAIRS:
                offsets, counts = tags.get(off_tag), tags.get(count_tag)
                if offsets and counts:
                    data_end = max((o + c for o, c in zip(offsets, counts) if c), default=0)
                    needed = max(needed, data_end)
            todo.extend(tags.get(_SUBIFDS) or [])
            (nxt,) = struct.unpack(order + offset_code, block[n * entry_size:])
            todo.append(nxt)
    return TiffExtent(size=size, needed=needed, exact=exact)
