"""Two ways to get one native tile of one level as RGB uint8: tifffile + imagecodecs, or openslide.

A backend knows nothing of caches, threads or synthetic levels (see ``core.Slide``); it only answers
``read_tile(level, tile_row, tile_col)`` with the tile cropped at the image edge, alpha composited
on white, or raises when the tile is damaged. Both are safe to call from several threads at once.

JPEG tiles are decoded strictly (:func:`strict_jpeg_decoder`): libjpeg-turbo stops on the warnings
("Corrupt JPEG data: premature end of data segment" ...) that imagecodecs and Pillow let pass, so a
tile with damaged entropy-coded data raises instead of decoding to a plausible grey block.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from .jpeg import strict_jpeg_decoder

# Compression schemes imagecodecs decodes exactly as the reference readers do for RGB slides
TIFF_DIRECT_COMPRESSIONS = {1, 5, 7, 8, 32946, 50000, 33003, 33005, 34712, 50001, 50002}


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """RGB uint8 from RGB or (straight, not premultiplied) RGBA uint8, transparent areas white."""
    if rgba.shape[-1] == 3:
        return rgba
    rgb = rgba[..., :3]
    alpha = rgba[..., 3:4]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    a = alpha.astype(np.uint16)
    out = (rgb.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)


class TiffBackend:
    """Native tiles read with ``os.pread`` and decoded by tifffile's codec for the page.

    Parameters
    ----------
    path : str
        The TIFF file.
    pages : list of tifffile.TiffPage
        One keyframe page per level, finest first; each 8-bit RGB(A), interleaved.
    strict : bool
        Decode JPEG tiles with libjpeg-turbo stopping on corrupt-data warnings (default). Other
        compressions (and JPEG layouts :func:`strict_jpeg_decoder` does not take) use tifffile's
        decoder.
    """

    name = "tifffile"

    def __init__(self, path: str, pages: list, tiff_file=None, *, strict: bool = True):
        self.path = path
        self._tiff_file = tiff_file
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self._read_lock = None if hasattr(os, "pread") else threading.Lock()
        self.level_dimensions: list[tuple[int, int]] = []
        self.tile_shapes: list[tuple[int, int]] = []
        self._grid: list[tuple[int, int]] = []
        # everything the worker threads need is fetched now: tifffile loads some tags lazily
        # through its (not thread-safe) file handle
        self._levels = []
        self._strict = []  # per level: strict JPEG decoder, or None (tifffile's decoder)
        for page in pages:
            h, w = int(page.imagelength), int(page.imagewidth)
            if page.is_tiled:
                tile = (int(page.tilelength), int(page.tilewidth))
            else:
                tile = (int(min(page.rowsperstrip or h, h)), w)
            self.level_dimensions.append((h, w))
            self.tile_shapes.append(tile)
            self._grid.append((-(-h // tile[0]), -(-w // tile[1])))
            self._levels.append((
                np.asarray(page.dataoffsets, dtype=np.int64),
                np.asarray(page.databytecounts, dtype=np.int64),
                page.decode, page.jpegtables, page.jpegheader))
            self._strict.append(strict_jpeg_decoder(page) if strict else None)

    @staticmethod
    def can_read(page) -> bool:
        """Whether ``page`` is a level this backend decodes: 8-bit interleaved RGB(A)."""
        shape = page.shape
        return (
            page.dtype == np.uint8
            and len(shape) == 3
            and shape[-1] in (3, 4)
            and page.planarconfig == 1
            and int(page.compression) in TIFF_DIRECT_COMPRESSIONS
            and int(page.photometric) in (2, 6)
            and page.imagedepth == 1
        )

    @property
    def strict_levels(self) -> list[bool]:
        """Per level, whether its tiles are decoded strictly (damaged JPEG data raises)."""
        return [d is not None for d in self._strict]

    def data_end(self) -> int:
        """Largest byte offset any tile of any level ends at (to detect truncated files)."""
        end = 0
        for offsets, counts, *_ in self._levels:
            if offsets.size:
                end = max(end, int((offsets + counts).max()))
        return end

    def _pread(self, count: int, offset: int) -> bytes:
        if self._read_lock is None:
            return os.pread(self._fd, count, offset)
        with self._read_lock:
            os.lseek(self._fd, offset, os.SEEK_SET)
            return os.read(self._fd, count)

    def read_tile(self, level: int, tile_row: int, tile_col: int) -> np.ndarray:
        """Tile ``(tile_row, tile_col)`` of ``level`` as (th, tw, 3) uint8, cropped at the edges."""
        offsets, counts, decode, jpegtables, jpegheader = self._levels[level]
        th, tw = self.tile_shapes[level]
        h, w = self.level_dimensions[level]
        rows, cols = min(th, h - tile_row * th), min(tw, w - tile_col * tw)
        index = tile_row * self._grid[level][1] + tile_col
        offset, count = int(offsets[index]), int(counts[index])
        if count == 0:  # sparse file: a tile that was never written
            return np.full((rows, cols, 3), 255, np.uint8)
        data = self._pread(count, offset)
        if len(data) != count:
            raise OSError(f"tile data ends past the end of the file ({offset + count} bytes needed)")
        strict = self._strict[level]
        if strict is not None:
            tile = strict(data)
        else:
            decoded, _, _ = decode(data, index, jpegtables=jpegtables, jpegheader=jpegheader)
            tile = decoded.reshape(decoded.shape[-3:])
        if tile.shape[0] < rows or tile.shape[1] < cols:
            raise ValueError(f"tile decodes to {tile.shape[0]} x {tile.shape[1]} px, "
                             f"{rows} x {cols} expected")
        return composite_on_white(tile[:rows, :cols])

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._tiff_file is not None:
            self._tiff_file.close()
            self._tiff_file = None


class OpenSlideBackend:
    """Tiles read through ``openslide.read_region`` on the file's own tile grid.

    Parameters
    ----------
    osr : openslide.OpenSlide
        An open handle (openslide is thread-safe; one handle is shared).
    path : str, optional
        The file, to reopen it after a damaged tile: an openslide handle that hit an error fails
        every later call, so the shared handle is replaced and the read retried on a private
        handle; a tile failing there too is damaged.
    """

    name = "openslide"

    def __init__(self, osr, path: str | None = None):
        self._osr = osr
        self._path = path
        self._retired: list = []  # failed handles, closed with the backend (others may use them)
        self._lock = threading.Lock()
        props = osr.properties
        self.level_dimensions = [(int(h), int(w)) for w, h in osr.level_dimensions]
        self.tile_shapes = []
        for i in range(osr.level_count):
            th = int(props.get(f"openslide.level[{i}].tile-height", 0) or 0)
            tw = int(props.get(f"openslide.level[{i}].tile-width", 0) or 0)
            self.tile_shapes.append((th, tw) if th > 0 and tw > 0 else (512, 512))
        self._downsamples = [float(d) for d in osr.level_downsamples]

    def _replace_handle(self, failed) -> None:
        with self._lock:
            if self._osr is failed and self._path is not None:
                self._osr = type(failed)(self._path)
                self._retired.append(failed)

    def read_tile(self, level: int, tile_row: int, tile_col: int) -> np.ndarray:
        """Tile ``(tile_row, tile_col)`` of ``level`` as (th, tw, 3) uint8, cropped at the edges."""
        th, tw = self.tile_shapes[level]
        h, w = self.level_dimensions[level]
        r, c = tile_row * th, tile_col * tw
        rows, cols = min(th, h - r), min(tw, w - c)
        ds = self._downsamples[level]
        # openslide takes the corner in level-0 pixels (x, y) and divides by its own downsample
        x0, y0 = int(round(c * ds)), int(round(r * ds))
        osr = self._osr
        try:
            image = osr.read_region((x0, y0), level, (cols, rows))
        except Exception:
            self._replace_handle(osr)
            if self._path is None:
                raise
            # the shared handle may have failed on another thread's damaged tile: ask again on
            # a handle of our own, which only this tile can fail
            with type(osr)(self._path) as own:
                image = own.read_region((x0, y0), level, (cols, rows))
        return composite_on_white(np.asarray(image))

    def close(self) -> None:
        with self._lock:
            for osr in (self._osr, *self._retired):
                osr.close()
            self._retired = []
