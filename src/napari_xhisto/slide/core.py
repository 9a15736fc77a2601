"""``Slide``: levels (the file's own plus synthetic coarse ones), cached parallel tile reads,
``read_region`` / ``read_scaled`` in level-0 pixels, and the lazy dask pyramid for napari.

A tile that cannot be decoded (damaged JPEG data, bytes past the end of the file ...) is *damaged*:
it is drawn with :func:`damaged_pattern` (yellow and black stripes, never plausible tissue), listed
in ``Slide.damaged_tiles`` and reported once to ``on_tile_error``; ``Slide.damage_mask`` says
which output pixels of a ``read_scaled`` came from damaged tiles, so consumers (probability maps,
heatmaps) set them to NaN instead of scoring the stripes.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..geometry import Region
from .cache import DEFAULT_CACHE_BYTES, TileCache
from .damage import damaged_pattern, mask_from_boxes
from .resample import area_resize

log = logging.getLogger(__name__)

COARSEST_MAX_SIDE = 1024  # synthetic levels are added until the coarsest level fits in this
CHUNK_TARGET = 512  # dask chunk = smallest multiple of the native tile >= this (<= 2048)
_token_counter = itertools.count()
_shared_cache = TileCache(DEFAULT_CACHE_BYTES)
_worker_flag = threading.local()


def decode_on_this_thread() -> None:
    """Let the calling thread decode the tiles its reads miss itself, instead of handing them
    to the slide's pool: for threads that are already one of several parallel readers."""
    _worker_flag.active = True


def shared_tile_cache() -> TileCache:
    """The process-wide decoded-tile cache every slide uses unless given its own."""
    return _shared_cache


@dataclass(frozen=True)
class Level:
    """One level of the pyramid: the file's own (``parent is None``) or synthetic (2x box mean of
    ``parent``). ``tile`` is the cache unit: the native tile, or the chunk for synthetic levels."""

    shape: tuple[int, int]
    tile: tuple[int, int]
    chunk: tuple[int, int]
    downsample: tuple[float, float]
    parent: int | None = None


def _release(pool, reader) -> None:
    pool.shutdown(wait=True)
    reader.close()


def _chunk_for(tile: int) -> int:
    if tile > 2048:
        return 1024
    return tile * max(1, math.ceil(CHUNK_TARGET / tile))


class Slide:
    """A whole-slide image opened for lazy, cached, parallel reading. Build with ``open_slide``.

    Attributes
    ----------
    path : str
    backend : str
        ``"tifffile"`` (native tiles decoded with imagecodecs) or ``"openslide"``.
    vendor : str
        ``"aperio"``, ``"ome-tiff"``, ``"generic-tiff"``, ``"hamamatsu"`` ...
    properties : dict
    mpp : float or None
        µm per level-0 pixel; None when neither metadata nor the caller gave it.
    mpp_source : str
        Where ``mpp`` came from (``"override"``, ``"openslide.mpp-x/y"``, ``"ome"``, ...), or
        ``"unknown"``.
    on_tile_error : list of callables
        Each is called once per damaged tile as ``f(slide, level, tile_row, tile_col, exc)``
        (from the thread that decoded it); the tile is drawn with :func:`damaged_pattern` and
        never retried.
    failed_tiles : set of (level, tile_row, tile_col)
        Damaged tiles found so far (file levels only; see ``damaged_tiles`` for details).
    """

    def __init__(self, path, reader, *, vendor, properties, mpp, mpp_source,
                 cache: TileCache | None = None, max_workers: int | None = None):
        self.path = str(path)
        self._reader = reader
        self.backend = reader.name
        self.vendor = vendor
        self.properties = dict(properties)
        self.mpp = mpp
        self.mpp_source = mpp_source
        self.cache = cache if cache is not None else _shared_cache
        self.on_tile_error: list = []
        self.failed_tiles: set[tuple[int, int, int]] = set()
        self._damage: list[dict] = []
        self._token = next(_token_counter)
        self._pool = ThreadPoolExecutor(max_workers or max(2, os.cpu_count() or 2),
                                        thread_name_prefix="xhisto-tiles")
        self._pyramid = None
        self._level_arrays = None
        self._error_lock = threading.Lock()
        self._closed = False
        # a slide dropped without close() (e.g. its napari layer deleted) still frees its file
        # and threads
        self._finalizer = weakref.finalize(self, _release, self._pool, reader)
        self._file_level_count = len(reader.level_dimensions)
        h0, w0 = reader.level_dimensions[0]
        self.levels: list[Level] = []
        for shape, tile in zip(reader.level_dimensions, reader.tile_shapes):
            chunk = (_chunk_for(tile[0]), _chunk_for(tile[1]))
            self.levels.append(Level(shape, tile, chunk, (h0 / shape[0], w0 / shape[1])))
        while max(self.levels[-1].shape) > COARSEST_MAX_SIDE:
            ph, pw = self.levels[-1].shape
            shape = (-(-ph // 2), -(-pw // 2))
            self.levels.append(Level(shape, (512, 512), (512, 512),
                                     (h0 / shape[0], w0 / shape[1]), parent=len(self.levels) - 1))

    # -- description -------------------------------------------------------------------------
    @property
    def dimensions(self) -> tuple[int, int]:
        """(height, width) of level 0 in pixels."""
        return self.levels[0].shape

    @property
    def level_count(self) -> int:
        """Number of the file's own levels (synthetic ones excluded)."""
        return self._file_level_count

    @property
    def level_dimensions(self) -> list[tuple[int, int]]:
        """(height, width) of each of the file's own levels."""
        return [lv.shape for lv in self.levels[: self.level_count]]

    @property
    def level_downsamples(self) -> list[tuple[float, float]]:
        """(rows, cols) level-0 pixels per pixel of each file level: exact ratios, not rounded."""
        return [lv.downsample for lv in self.levels[: self.level_count]]

    @property
    def synthetic_level_count(self) -> int:
        """Coarse levels computed here (2x box means) because the file has too few."""
        return len(self.levels) - self.level_count

    def best_level_for_downsample(self, downsample: float) -> int:
        """Index (into ``levels``, synthetic included) of the coarsest level whose downsample is
        at most ``downsample`` (both axes); 0 when even level 0 is coarser."""
        best = 0
        for i, lv in enumerate(self.levels):
            if max(lv.downsample) <= downsample * (1 + 1e-9):
                best = i
        return best

    def info(self) -> dict:
        """A JSON-ready description (what ``xhisto info`` prints)."""
        return {
            "path": self.path, "backend": self.backend, "vendor": self.vendor,
            "mpp": self.mpp, "mpp_source": self.mpp_source,
            "dimensions": list(self.dimensions),
            "level_count": self.level_count,
            "level_dimensions": [list(d) for d in self.level_dimensions],
            "level_downsamples": [list(d) for d in self.level_downsamples],
            "tile_size": [list(lv.tile) for lv in self.levels[: self.level_count]],
            "synthetic_levels": [{"dimensions": list(lv.shape), "downsample": list(lv.downsample)}
                                 for lv in self.levels[self.level_count:]],
            "chunk_size": [list(lv.chunk) for lv in self.levels],
        }

    # -- tiles -------------------------------------------------------------------------------
    def _tile(self, level: int, tile_row: int, tile_col: int) -> np.ndarray:
        key = (self._token, level, tile_row, tile_col)
        tile = self.cache.get(key)
        if tile is not None:
            return tile
        lv = self.levels[level]
        rows = min(lv.tile[0], lv.shape[0] - tile_row * lv.tile[0])
        cols = min(lv.tile[1], lv.shape[1] - tile_col * lv.tile[1])
        if (level, tile_row, tile_col) in self.failed_tiles:
            return damaged_pattern(rows, cols)
        try:
            if lv.parent is None:
                tile = self._reader.read_tile(level, tile_row, tile_col)
            else:
                tile = self._synthetic_tile(lv, tile_row, tile_col, rows, cols)
        except Exception as exc:  # noqa: BLE001 - any decoder failure must not reach the canvas
            self._report_tile_error(level, tile_row, tile_col, exc)
            return damaged_pattern(rows, cols)
        self.cache.put(key, tile)
        return tile

    def _synthetic_tile(self, lv: Level, tile_row, tile_col, rows, cols) -> np.ndarray:
        r0, c0 = 2 * tile_row * lv.tile[0], 2 * tile_col * lv.tile[1]
        parent_shape = self.levels[lv.parent].shape
        ph, pw = min(2 * rows, parent_shape[0] - r0), min(2 * cols, parent_shape[1] - c0)
        block = self._read_level(lv.parent, r0, c0, ph, pw)
        if ph < 2 * rows or pw < 2 * cols:  # odd edge: repeat the last row/col = mean of what exists
            block = np.pad(block, ((0, 2 * rows - ph), (0, 2 * cols - pw), (0, 0)), mode="edge")
        pairs = block[0::2].astype(np.uint16) + block[1::2]
        acc = pairs[:, 0::2] + pairs[:, 1::2]
        acc += 2
        acc //= 4
        return acc.astype(np.uint8)

    def _tile_box(self, level: int, tile_row: int, tile_col: int) -> tuple[int, int, int, int]:
        """Level-0 (row, col, height, width) covered by a native tile of a file level."""
        lv = self.levels[level]
        th, tw = lv.tile
        r0, c0 = tile_row * th, tile_col * tw
        r1, c1 = min(r0 + th, lv.shape[0]), min(c0 + tw, lv.shape[1])
        ds_r, ds_c = lv.downsample
        top, left = math.floor(r0 * ds_r), math.floor(c0 * ds_c)
        return (top, left, math.ceil(r1 * ds_r) - top, math.ceil(c1 * ds_c) - left)

    def _report_tile_error(self, level, tile_row, tile_col, exc) -> None:
        with self._error_lock:
            key = (level, tile_row, tile_col)
            if key in self.failed_tiles:
                return
            first = not self.failed_tiles
            self.failed_tiles.add(key)
            self._damage.append({
                "level": level, "tile_row": tile_row, "tile_col": tile_col,
                "level0_region": list(self._tile_box(level, tile_row, tile_col)),
                "error": f"{type(exc).__name__}: {exc}"})
        emit = log.warning if first else log.debug
        emit("%s: tile (%d, %d) of level %d is damaged (%s: %s); drawn as stripes",
             self.path, tile_row, tile_col, level, type(exc).__name__, exc)
        for callback in list(self.on_tile_error):
            try:
                callback(self, level, tile_row, tile_col, exc)
            except Exception:  # noqa: BLE001 - a broken listener must not break reading
                log.exception("tile-error callback %r failed", callback)

    def _run_tile_task(self, args):
        _worker_flag.active = True
        try:
            return self._tile(*args)
        finally:
            _worker_flag.active = False

    def _read_level(self, level: int, row: int, col: int, height: int, width: int) -> np.ndarray:
        """Pixels ``[row, row+height) x [col, col+width)`` of ``level`` (level pixels); white
        outside the level; missing tiles decoded in parallel."""
        lv = self.levels[level]
        out = np.full((height, width, 3), 255, np.uint8)
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + height, lv.shape[0]), min(col + width, lv.shape[1])
        if r1 <= r0 or c1 <= c0:
            return out
        th, tw = lv.tile
        keys = [(level, i, j) for i in range(r0 // th, (r1 - 1) // th + 1)
                for j in range(c0 // tw, (c1 - 1) // tw + 1)]
        tiles = [self.cache.get((self._token, *k)) for k in keys]
        missing = [n for n, tile in enumerate(tiles) if tile is None]
        if len(missing) > 1 and not getattr(_worker_flag, "active", False):
            decoded = self._pool.map(self._run_tile_task, [keys[n] for n in missing])
        else:
            decoded = (self._tile(*keys[n]) for n in missing)
        for n, tile in zip(missing, decoded):
            tiles[n] = tile
        for (_, i, j), tile in zip(keys, tiles):
            tr0, tc0 = i * th, j * tw
            a0, b0 = max(r0, tr0), max(c0, tc0)
            a1, b1 = min(r1, tr0 + tile.shape[0]), min(c1, tc0 + tile.shape[1])
            out[a0 - row:a1 - row, b0 - col:b1 - col] = tile[a0 - tr0:a1 - tr0, b0 - tc0:b1 - tc0]
        return out

    # -- damage ------------------------------------------------------------------------------
    @property
    def damaged_tiles(self) -> list[dict]:
        """The damaged tiles found so far, in the order found, JSON-ready (for provenance).

        Each is ``{"level", "tile_row", "tile_col", "level0_region": [row, col, height, width],
        "error"}``. Damage is found when a tile is decoded: the list grows as the slide is read.
        """
        with self._error_lock:
            return [dict(d, level0_region=list(d["level0_region"])) for d in self._damage]

    def file_level_of(self, level: int) -> int:
        """The file level whose tiles ``level``'s pixels come from (itself for a file level)."""
        while self.levels[level].parent is not None:
            level = self.levels[level].parent
        return level

    def _scaled_level(self, region: Region, out_height: int, out_width: int) -> int:
        ds = min(region.height / out_height, region.width / out_width)
        return self.best_level_for_downsample(ds)

    def damage_mask(self, region: Region, out_height: int, out_width: int) -> np.ndarray | None:
        """Which pixels of ``read_scaled(region, out_height, out_width)`` show damaged tiles.

        Call it after the read (reading is what finds damage). The mask is conservative: an
        output pixel touching a damaged tile of the level that read used is True.

        Returns
        -------
        ndarray (out_height, out_width) bool, or None
            None when no damaged tile of that level overlaps ``region`` (the usual case).
        """
        file_level = self.file_level_of(self._scaled_level(region, out_height, out_width))
        with self._error_lock:
            boxes = [d["level0_region"] for d in self._damage if d["level"] == file_level]
        return mask_from_boxes(boxes, region, out_height, out_width)

    # -- public reads ------------------------------------------------------------------------
    def _level_index(self, level: int) -> int:
        if not 0 <= level < len(self.levels):
            raise ValueError(f"level {level} does not exist: {self.path} has levels 0.."
                             f"{len(self.levels) - 1} (synthetic included)")
        return level

    def read_region(self, level0_row: int, level0_col: int, height: int, width: int,
                    level: int = 0) -> np.ndarray:
        """RGB pixels of ``level`` starting at a level-0 corner.

        Parameters
        ----------
        level0_row, level0_col : int
            Top-left corner in level-0 pixels (may lie outside the slide).
        height, width : int
            Output size in pixels of ``level``.
        level : int
            Index into ``levels`` (the file's levels first, then synthetic ones).

        Returns
        -------
        numpy.ndarray
            (height, width, 3) uint8; transparent and out-of-slide areas are white.
        """
        lv = self.levels[self._level_index(level)]
        if height < 0 or width < 0:
            raise ValueError(f"height and width must be >= 0, got {height} x {width}")
        # the level pixel whose area contains the corner (tolerant to float noise)
        row = math.floor(level0_row / lv.downsample[0] + 1e-9)
        col = math.floor(level0_col / lv.downsample[1] + 1e-9)
        return self._read_level(level, row, col, int(height), int(width))

    def read_scaled(self, region: Region, out_height: int, out_width: int) -> np.ndarray:
        """A level-0 ``region`` resampled to ``(out_height, out_width, 3)`` uint8 RGB.

        Reads the coarsest level that is still at least as fine as the requested scale, then
        area-averages (exact fractional box filter) to the output size.
        """
        if out_height <= 0 or out_width <= 0:
            raise ValueError(f"output size must be positive, got {out_height} x {out_width}")
        level = self._scaled_level(region, out_height, out_width)
        lv = self.levels[level]
        p0r, p1r = region.level0_row / lv.downsample[0], region.bottom / lv.downsample[0]
        p0c, p1c = region.level0_col / lv.downsample[1], region.right / lv.downsample[1]
        r0, c0 = math.floor(p0r + 1e-9), math.floor(p0c + 1e-9)
        r1, c1 = max(math.ceil(p1r - 1e-9), r0 + 1), max(math.ceil(p1c - 1e-9), c0 + 1)
        block = self._read_level(level, r0, c0, r1 - r0, c1 - c0)
        return area_resize(block, (p0r - r0, p1r - r0), (p0c - c0, p1c - c0),
                           (out_height, out_width))

    def level_arrays(self) -> list:
        """Array-likes (h, w, 3) uint8 per level, finest first, without dask.

        Slicing one reads exactly the requested pixels (tiles decoded in parallel, through the
        bounded tile cache); ``numpy.asarray`` reads the whole level. The napari reader gives
        these to the image layer: napari then keeps no second (dask) cache of its own, so memory
        stays bounded by ``cache.max_bytes`` while panning.
        """
        if self._level_arrays is None:
            from .pyramid import LevelView

            self._level_arrays = [LevelView(self, i) for i in range(len(self.levels))]
        return self._level_arrays

    def pyramid(self) -> list:
        """Lazy dask arrays (h, w, 3) uint8, finest first, synthetic levels included.

        Chunks are a whole number of native tiles (512-2048 px); computing a chunk decodes its
        tiles in parallel through the shared cache. The same list is returned on every call.
        """
        if self._pyramid is None:
            from .pyramid import build_pyramid

            self._pyramid = build_pyramid(self)
        return self._pyramid

    # -- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        """Release the file and this slide's cached tiles."""
        if self._closed:
            return
        self._closed = True
        token = self._token
        self.cache.discard(lambda key: key[0] == token)
        self._finalizer()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        h, w = self.dimensions
        return (f"Slide({os.path.basename(self.path)!r}, {h}x{w} px, backend={self.backend!r}, "
                f"levels={self.level_count}+{self.synthetic_level_count} synthetic, mpp={self.mpp})")
