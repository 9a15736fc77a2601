"""Write a heatmap as a pyramidal OME-TIFF tile by tile: the map never sits in memory at once.

Level 0 is pulled from ``tile_source(row, col, h, w)`` in row-major tile order. While a level is
written, its 2x2 NaN-aware means are collected one tile row at a time into a raw scratch file
that then feeds the next level, so memory stays bounded by about one tile row of the next
level plus a few tiles in flight. The result is the same file :func:`write_heatmap` writes
from an in-memory array (same levels, same values, same metadata).
"""

from __future__ import annotations

import math
import queue
import tempfile
import threading
from collections.abc import Callable, Generator
from pathlib import Path

import numpy as np
import tifffile

from ..errors import XhistoError
from ..geometry import Placement
from ..progress import run_to_end
from .heatmap_io import _downsample2, _first_page_metadata

TileSource = Callable[[int, int, int, int], np.ndarray]


def check_writable(path, *, overwrite: bool) -> Path:
    """``path`` as a Path, refusing to replace an existing file unless ``overwrite`` is set."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise XhistoError(f"{path} already exists; choose another name or allow overwriting "
                          "(--overwrite on the command line)")
    if not path.parent.exists():
        raise XhistoError(f"the folder {path.parent} does not exist")
    return path


def level_shapes(shape: tuple[int, int], min_level_size: int = 512) -> list[tuple[int, int]]:
    """Pyramid level sizes: halve (rounding up) until no side exceeds ``min_level_size``."""
    shapes = [(int(shape[0]), int(shape[1]))]
    while max(shapes[-1]) > min_level_size:
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


class _RawPlane:
    """An image on disk, written one strip of rows at a time and read back in strips."""

    def __init__(self, path: Path, shape, dtype):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self._row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        self._fh = open(path, "w+b")  # noqa: SIM115 - closed by close()

    def write_rows(self, row: int, rows: np.ndarray):
        self._fh.seek(row * self._row_bytes)
        self._fh.write(np.ascontiguousarray(rows, self.dtype).tobytes())

    def read_rows(self, row: int, count: int) -> np.ndarray:
        count = min(count, self.shape[0] - row)
        self._fh.seek(row * self._row_bytes)
        data = self._fh.read(count * self._row_bytes)
        return np.frombuffer(data, self.dtype).reshape(count, *self.shape[1:])

    def close(self):
        self._fh.close()


def _writer_thread(tmp: Path, tiff_options: dict, feed: queue.Queue, steps: list, tile: int,
                   errors: list):
    """Run tifffile in its own thread; each step takes its tiles (or one array) from ``feed``."""

    def tiles(shape):
        # exactly one level's tiles: tifffile stops pulling once it has them all
        for _ in range(math.ceil(shape[0] / tile) * math.ceil(shape[1] / tile)):
            item = feed.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    try:
        with tifffile.TiffWriter(tmp, **tiff_options) as tw:
            for kind, shape, options in steps:
                if kind == "tiles":
                    tw.write(tiles(shape), shape=shape, tile=(tile, tile), **options)
                else:
                    item = feed.get()
                    if isinstance(item, BaseException):
                        raise item
                    tw.write(item, **options)
    except BaseException as exc:  # handed back to the producing generator
        errors.append(exc)


def iter_stream_pyramid(
    path: Path,
    shapes: list[tuple],
    tile_source: TileSource,
    *,
    dtype,
    level_options: list[dict],
    tiff_options: dict,
    downsample: Callable[[np.ndarray], np.ndarray],
    tile: int = 256,
    thumbnail: dict | None = None,
) -> Generator[tuple[int, int], None, Path]:
    """Stream a pyramid into ``path`` (replaced atomically), one tile at a time.

    ``shapes[k]`` is level k's (rows, cols[, samples]); level 0 comes from
    ``tile_source(row, col, h, w)``, level k+1 is ``downsample`` of level k's tiles collected in
    a scratch file. ``level_options[k]`` go to tifffile's ``write`` for level k. ``thumbnail``
    (``{"shape": (h, w), "options": {...}}``) adds a nearest-neighbour thumbnail page right after
    level 0 (the Aperio layout). Yields ``(done, total)`` tiles; closing it removes the partial file.
    """
    n_tiles = [math.ceil(s[0] / tile) * math.ceil(s[1] / tile) for s in shapes]
    total, done = sum(n_tiles), 0
    steps = [("tiles", shapes[0], level_options[0])]
    if thumbnail is not None:
        steps.append(("array", None, thumbnail["options"]))
        th_shape = thumbnail["shape"]
        thumb = np.zeros((*th_shape, *shapes[0][2:]), dtype)
        # level-0 pixel sampled for each thumbnail pixel (its centre)
        th_rows = ((np.arange(th_shape[0]) + 0.5) * shapes[0][0] / th_shape[0]).astype(int)
        th_cols = ((np.arange(th_shape[1]) + 0.5) * shapes[0][1] / th_shape[1]).astype(int)
    steps += [("tiles", s, o) for s, o in zip(shapes[1:], level_options[1:], strict=True)]
    tmp = path.with_name(path.name + ".partial")
    feed: queue.Queue = queue.Queue(maxsize=8)
    errors: list = []
    writer = threading.Thread(target=_writer_thread, daemon=True,
                              args=(tmp, tiff_options, feed, steps, tile, errors))
    finished = False

    def put(item):
        while True:
            if errors:
                raise XhistoError(f"cannot write {path.name}: {errors[0]}") from errors[0]
            try:
                feed.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    with tempfile.TemporaryDirectory(prefix=".xhisto-", dir=path.parent) as scratch_dir:
        writer.start()
        current = None  # scratch plane feeding this level (None: the caller's tile_source)
        try:
            for k, shape in enumerate(shapes):
                h, w = shape[:2]
                nxt = (_RawPlane(Path(scratch_dir) / f"level{k + 1}.raw", shapes[k + 1], dtype)
                       if k + 1 < len(shapes) else None)
                half = tile // 2
                for ti in range(math.ceil(h / tile)):
                    r0 = ti * tile
                    th = min(tile, h - r0)
                    strip = current.read_rows(r0, th) if current is not None else None
                    coarse = (np.empty((math.ceil(th / 2), *shapes[k + 1][1:]), dtype)
                              if nxt is not None else None)
                    for tj in range(math.ceil(w / tile)):
                        c0 = tj * tile
                        tw_ = min(tile, w - c0)
                        if strip is not None:
                            block = strip[:, c0:c0 + tw_]
                        else:
                            block = np.asarray(tile_source(r0, c0, th, tw_))
                            if block.shape[:2] != (th, tw_):
                                raise XhistoError(f"tile_source({r0}, {c0}, {th}, {tw_}) returned "
                                                  f"shape {block.shape}, expected {(th, tw_)}")
                        block = block.astype(dtype, copy=False)
                        if coarse is not None:
                            small = downsample(block)
                            coarse[:, tj * half:tj * half + small.shape[1]] = small
                        if k == 0 and thumbnail is not None:
                            ri = np.nonzero((th_rows >= r0) & (th_rows < r0 + th))[0]
                            ci = np.nonzero((th_cols >= c0) & (th_cols < c0 + tw_))[0]
                            if ri.size and ci.size:
                                thumb[np.ix_(ri, ci)] = block[np.ix_(th_rows[ri] - r0,
                                                                     th_cols[ci] - c0)]
                        padded = np.zeros((tile, tile, *shape[2:]), dtype)
                        padded[:th, :tw_] = block
                        put(padded)
                        done += 1
                        yield done, total
                    if nxt is not None:
                        nxt.write_rows(ti * half, coarse)
                if k == 0 and thumbnail is not None:
                    put(thumb)
                if current is not None:
                    current.close()
                current = nxt
            writer.join()
            if errors:
                raise XhistoError(f"cannot write {path.name}: {errors[0]}") from errors[0]
            tmp.replace(path)
            finished = True
        finally:
            if current is not None:
                current.close()
            if not finished:
                # wake the writer with an error so tifffile closes the partial file
                while writer.is_alive():
                    try:
                        feed.put(RuntimeError("export cancelled"), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                writer.join()
            if tmp.exists():
                tmp.unlink()
    return path


def iter_write_heatmap_tiles(
    path,
    shape: tuple[int, int],
    tile_source: TileSource,
    placement: Placement,
    *,
    mpp: float | None,
    provenance: dict | None = None,
    dtype: str = "float32",
    tile: int = 256,
    min_level_size: int = 512,
    overwrite: bool = False,
) -> Generator[tuple[int, int], None, Path]:
    """Generator form of :func:`write_heatmap_tiles`: yields ``(done, total)`` tiles, returns the path.

    Closing the generator early (Cancel) removes the partial file.
    """
    if dtype not in ("float32", "float16"):
        raise XhistoError(f"heatmap dtype must be 'float32' or 'float16', got {dtype!r}")
    if tile % 16 or tile <= 0:
        raise XhistoError(f"the tile size must be a positive multiple of 16, got {tile}")
    path = check_writable(path, overwrite=overwrite)
    if min(shape) <= 0:
        raise XhistoError(f"a heatmap needs a positive size, got {shape}")
    shapes = level_shapes(shape, min_level_size)
    prov = dict(provenance or {})
    prov["stored_dtype"] = dtype
    ome, first = _first_page_metadata(path, placement, mpp=mpp, provenance=prov, dtype=dtype)
    # zlib level 1: float maps hardly compress at any level, and level 6 made compression the
    # bottleneck of large exports (about 35% slower for the same size); no predictor, so every
    # TIFF reader (libtiff, Bio-Formats) still decodes the file
    common = {"compression": "zlib", "compressionargs": {"level": 1}, "dtype": dtype}
    options = [{"subifds": len(shapes) - 1, **first, **common}]
    options += [{"subfiletype": 1, "metadata": None, **common} for _ in shapes[1:]]
    return (yield from iter_stream_pyramid(
        path, shapes, tile_source, dtype=dtype, level_options=options,
        tiff_options={"bigtiff": True, "ome": ome}, downsample=_downsample2, tile=tile))


def write_heatmap_tiles(
    path,
    shape: tuple[int, int],
    tile_source: TileSource,
    placement: Placement,
    *,
    mpp: float | None,
    provenance: dict | None = None,
    dtype: str = "float32",
    tile: int = 256,
    min_level_size: int = 512,
    overwrite: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a heatmap as a tiled, pyramidal OME-TIFF, pulling it tile by tile.

    Parameters
    ----------
    path : str or Path
        Output file (``.ome.tif``). An existing file is refused unless ``overwrite``.
    shape : (int, int)
        Size of the map in map pixels (rows, cols).
    tile_source : callable
        ``tile_source(row, col, height, width)`` -> float array of exactly that shape (map
        pixels; NaN where there is no value). Called once per level-0 tile, in row-major order.
    placement : Placement
        Where map pixel (0, 0) lies on level 0 and the level-0 px per map pixel.
    mpp : float or None
        The slide's µm per level-0 pixel.
    provenance : dict, optional
        Model, method, parameters, normalisation ... (JSON-serialisable).
    dtype : {"float32", "float16"}
        Stored precision (recorded as ``provenance["stored_dtype"]``).
    tile : int
        Tile side in pixels (multiple of 16).
    min_level_size : int
        Pyramid levels are added until no side exceeds this.
    overwrite : bool
        Replace an existing file.
    on_progress : callable, optional
        Called with ``(done, total)`` tiles.

    Returns
    -------
    Path
        The written file; :func:`~napari_xhisto.export.read_heatmap` reads it back.
    """
    gen = iter_write_heatmap_tiles(path, shape, tile_source, placement, mpp=mpp,
                                   provenance=provenance, dtype=dtype, tile=tile,
                                   min_level_size=min_level_size, overwrite=overwrite)
    return run_to_end(gen, on_progress=on_progress)
