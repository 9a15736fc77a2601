"""Windows of a heatmap read on demand: from an array, from a heatmap file tile by tile, or placed
on a full-slide canvas.

Every source here answers ``read(row, col, height, width)`` in its own pixel grid and returns a
float array of exactly that size, NaN where it holds no value, so writers can stream any of them
without the whole map in memory.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import tifffile

from ..errors import XhistoError
from ..geometry import Placement
from .heatmap_io import _read_description, _read_info


class ArrayTiles:
    """Windows of an in-memory 2-D map, NaN outside it.

    Parameters
    ----------
    values : ndarray, shape (H, W)
    placement : Placement
        Where the map lies on level 0.
    mpp : float or None
        The slide's µm per level-0 pixel.
    provenance : dict, optional
    """

    def __init__(self, values, placement: Placement, *, mpp=None, provenance=None):
        # numpy arrays and lazy arrays (dask, a layer's canvas level) alike: only windows are read
        self.values = values if hasattr(values, "__getitem__") and hasattr(values, "shape") else np.asarray(values)
        if len(self.values.shape) != 2:
            raise XhistoError(f"a heatmap must be 2-D (rows, cols), got shape {self.values.shape}")
        self.shape = tuple(int(n) for n in self.values.shape)
        self.placement = placement
        self.mpp = mpp
        self.provenance = dict(provenance or {})

    def read(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        out = np.full((height, width), np.nan, np.float32)
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + height, self.shape[0]), min(col + width, self.shape[1])
        if r1 > r0 and c1 > c0:
            out[r0 - row:r1 - row, c0 - col:c1 - col] = np.asarray(self.values[r0:r1, c0:c1])
        return out

    def close(self):
        pass


class HeatmapTileReader:
    """Windows of one pyramid level of a heatmap TIFF, decoding only the tiles they touch.

    Parameters
    ----------
    path : str or Path
        A file written by :func:`~napari_xhisto.export.write_heatmap` or
        :func:`~napari_xhisto.export.write_heatmap_tiles` (or any tiled single-channel TIFF).
    level : int
        Pyramid level; the placement is scaled to match it.
    cache_tiles : int
        How many decoded tiles to keep (a small LRU cache bounds memory).
    """

    def __init__(self, path, *, level: int = 0, cache_tiles: int = 64):
        self.path = Path(path)
        if not self.path.exists():
            raise XhistoError(f"heatmap file not found: {self.path}")
        try:
            self._tf = tifffile.TiffFile(self.path)
            series = self._tf.series[0]
            if not 0 <= level < len(series.levels):
                raise XhistoError(f"{self.path.name} has {len(series.levels)} pyramid level(s); "
                                  f"level {level} does not exist")
            self.levels = len(series.levels)
            self._page = series.levels[level].keyframe
            info = (_read_info(self._tf.ome_metadata) if self._tf.is_ome
                    else _read_description(self._tf.pages[0].description))
            base_shape = series.levels[0].shape
        except XhistoError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise XhistoError(f"cannot read heatmap {self.path}: {exc}") from exc
        page = self._page
        if page.samplesperpixel != 1 or len(page.shape) != 2:
            self.close()
            raise XhistoError(f"{self.path.name} is not a single-channel map (shape {page.shape})")
        self.shape = tuple(page.shape)
        self.dtype = page.dtype
        placement = Placement.from_dict(info["placement"]) if "placement" in info else Placement()
        if level:
            fr, fc = base_shape[0] / self.shape[0], base_shape[1] / self.shape[1]
            placement = Placement(placement.origin_row, placement.origin_col,
                                  placement.step_row * fr, placement.step_col * fc)
        self.placement = placement
        self.mpp = info.get("mpp")
        self.provenance = info.get("provenance", {})
        self.kind = info.get("kind", "heatmap")
        self._tiled = page.is_tiled
        self._tile = (page.tilelength, page.tilewidth) if page.is_tiled else (page.rowsperstrip,
                                                                              page.imagewidth)
        self._cache: OrderedDict = OrderedDict()
        self._cache_size = cache_tiles

    def _segment(self, ti: int, tj: int) -> np.ndarray:
        key = (ti, tj)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        page = self._page
        per_row = math.ceil(self.shape[1] / self._tile[1])
        index = ti * per_row + tj
        offset, count = page.dataoffsets[index], page.databytecounts[index]
        fh = self._tf.filehandle
        if count:
            fh.seek(offset)
            data = fh.read(count)
        else:
            data = None
        seg, _, shape = page.decode(data, index, jpegtables=page.jpegtables)
        if seg is None:
            seg = np.full(self._tile, np.nan, np.float32)
        else:
            seg = seg.reshape(shape[1], shape[2])
        self._cache[key] = seg
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return seg

    def read(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """The window of ``height`` x ``width`` map pixels at ``(row, col)``; NaN outside the map."""
        out = np.full((height, width), np.nan, np.float32)
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + height, self.shape[0]), min(col + width, self.shape[1])
        if r1 <= r0 or c1 <= c0:
            return out
        th, tw = self._tile
        for ti in range(r0 // th, (r1 - 1) // th + 1):
            for tj in range(c0 // tw, (c1 - 1) // tw + 1):
                seg = self._segment(ti, tj)
                sr0, sc0 = ti * th, tj * tw
                a0, a1 = max(r0, sr0), min(r1, sr0 + th, self.shape[0])
                b0, b1 = max(c0, sc0), min(c1, sc0 + tw, self.shape[1])
                out[a0 - row:a1 - row, b0 - col:b1 - col] = seg[a0 - sr0:a1 - sr0, b0 - sc0:b1 - sc0]
        return out

    def close(self):
        tf = getattr(self, "_tf", None)
        if tf is not None:
            tf.close()
            self._tf = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def full_slide_canvas(source, slide_shape: tuple[int, int]):
    """Place a heatmap on a canvas that covers the whole slide on the heatmap's own grid.

    The canvas keeps the heatmap's step (level-0 px per map pixel), so values are copied,
    never resampled; its origin is the heatmap origin shifted by whole steps to lie in
    ``(-step, 0]``, so the canvas covers every slide pixel.

    Parameters
    ----------
    source : ArrayTiles or HeatmapTileReader
        Anything with ``shape``, ``placement`` and ``read(row, col, h, w)``.
    slide_shape : (int, int)
        Level-0 (height, width) of the slide.

    Returns
    -------
    shape : (int, int)
        Canvas size in map pixels.
    placement : Placement
        Where the canvas lies on level 0.
    tile_source : callable
        ``tile_source(row, col, h, w)`` -> float32 canvas window (NaN where the heatmap has none).
    """
    p = source.placement
    shifts = []
    for origin, step in ((p.origin_row, p.step_row), (p.origin_col, p.step_col)):
        k = math.floor(origin / step)
        shift = origin - k * step  # in [0, step)
        if abs(shift - round(shift)) > 1e-6:
            raise XhistoError("the heatmap origin is not on whole level-0 pixels; "
                              "write it as a region instead of a full-slide canvas")
        start = shift - step if shift > 0 else 0.0
        shifts.append((start, round((origin - start) / step)))
    (start_r, off_r), (start_c, off_c) = shifts
    shape = (math.ceil((slide_shape[0] - start_r) / p.step_row),
             math.ceil((slide_shape[1] - start_c) / p.step_col))
    placement = Placement(start_r, start_c, p.step_row, p.step_col)

    def tile_source(row, col, height, width):
        return source.read(row - off_r, col - off_c, height, width)

    return shape, placement, tile_source
