"""The lazy dask pyramid handed to napari: one dask array per level, chunked on the tile grid."""

from __future__ import annotations

import numpy as np


class LevelView:
    """Array-like view of one level (basic slicing only): the napari layer's data, and the source
    of ``dask.array.from_array`` for the dask pyramid.

    Each slice (or dask chunk) becomes one ``Slide._read_level`` call, which decodes the tiles it
    needs in parallel through the slide's bounded cache.
    """

    def __init__(self, slide, level: int):
        self._slide = slide
        self._level = level
        h, w = slide.levels[level].shape
        self.shape = (h, w, 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1] * 3

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        block = self[:, :]
        return block if dtype is None else block.astype(dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (3 - len(key))
        bounds, drop = [], []
        for axis, (k, n) in enumerate(zip(key[:2], self.shape[:2])):
            if isinstance(k, int | np.integer):
                index = int(k) + n if k < 0 else int(k)
                if not 0 <= index < n:
                    raise IndexError(f"index {k} is out of bounds for axis {axis} with size {n}")
                k = slice(index, index + 1)
                drop.append(axis)
            if not isinstance(k, slice) or k.step not in (None, 1):
                raise IndexError("LevelView supports integers and contiguous slices only")
            start, stop, _ = k.indices(n)
            bounds.append((start, max(stop, start)))
        (r0, r1), (c0, c1) = bounds
        block = self._slide._read_level(self._level, r0, c0, r1 - r0, c1 - c0)
        index = tuple(0 if axis in drop else slice(None) for axis in range(2)) + (key[2],)
        return block[index]


def build_pyramid(slide) -> list:
    """Dask arrays for every level of ``slide`` (finest first), never rechunked."""
    import dask.array as da

    arrays = []
    for i, lv in enumerate(slide.levels):
        arrays.append(da.from_array(
            LevelView(slide, i), chunks=(lv.chunk[0], lv.chunk[1], 3), asarray=False,
            lock=False, fancy=False, inline_array=True,
            name=f"xhisto-slide-{slide._token}-level{i}", meta=np.empty((0, 0, 0), np.uint8)))
    return arrays
