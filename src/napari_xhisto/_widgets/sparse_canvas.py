"""A slide-wide heatmap canvas, stored tile by tile: separate clicks on one comparable grid.

Plain numpy (no napari): :class:`SparseCanvas` keeps raw relevance of every click pasted on one
grid and serves normalised, lazily read multiscale levels to a napari image layer. Pixels no
click explained are NaN, which napari draws transparent: never-explained tissue does not look
like zero relevance.
"""

from __future__ import annotations

import math

import numpy as np

from ..geometry import Placement, split_index_2d, squeeze_2d


class SparseCanvas:
    """Heatmaps of separate clicks pasted on one slide-wide grid, stored tile by tile.

    The grid has ``step`` level-0 pixels per canvas pixel (the heatmaps' resolution), so memory
    grows with the explained area only; pixels nothing was pasted on are NaN. Raw values are kept; the canvas shows them divided by
    the largest ``|value|`` over everything pasted so far (seed 000: normalise by the global
    maximum over all computed heatmaps, so tiles stay comparable). Later pastes overwrite
    earlier ones where they overlap.

    ``levels()`` gives a multiscale list of lazy array-likes for a napari image layer.
    """

    def __init__(self, slide_shape: tuple[int, int], *, step: float = 1.0, tile: int = 512):
        self.step = float(step)
        self.tile = int(tile)
        self.shape = (max(1, math.ceil(slide_shape[0] / self.step)),
                      max(1, math.ceil(slide_shape[1] / self.step)))
        self._tiles: dict[tuple[int, int], np.ndarray] = {}
        self.scale_value = 0.0  # largest |raw| pasted so far
        self.display_peak = 0.0  # largest display limit (raw) of the pastes, set by the widget
        self.pastes: list[dict] = []  # placement + provenance of every paste, in order

    @property
    def placement(self) -> Placement:
        return Placement(0.0, 0.0, self.step, self.step)

    def offset_of(self, placement: Placement) -> tuple[int, int]:
        """Canvas pixel of ``placement``'s origin; ``ValueError`` when the grids differ."""
        if not (math.isclose(placement.step_row, self.step) and math.isclose(placement.step_col, self.step)):
            raise ValueError(f"heatmap step {placement.step_row} differs from the canvas step {self.step}")
        r, c = round(placement.origin_row / self.step), round(placement.origin_col / self.step)
        # within half a level-0 pixel of the grid (corners rounded to whole pixels)
        if (abs(placement.origin_row - r * self.step) > 0.5 + 1e-6
                or abs(placement.origin_col - c * self.step) > 0.5 + 1e-6):
            raise ValueError(f"heatmap origin ({placement.origin_row}, {placement.origin_col}) is not on "
                             f"the canvas grid (multiples of {self.step} px)")
        return int(round(r)), int(round(c))

    def paste(self, values, placement: Placement, *, provenance: dict | None = None,
              peak: float | None = None) -> None:
        """Write ``values`` (raw, unnormalised) where ``placement`` puts them.

        ``peak`` is the largest |relevance| behind them (e.g. over the patch maps before
        stitching); default the largest |value| pasted.
        """
        values = np.asarray(values, dtype=np.float32)
        r0, c0 = self.offset_of(placement)
        # cut to the canvas
        top, left = max(r0, 0), max(c0, 0)
        bottom = min(r0 + values.shape[0], self.shape[0])
        right = min(c0 + values.shape[1], self.shape[1])
        if bottom <= top or right <= left:
            return
        values = values[top - r0:bottom - r0, left - c0:right - c0]
        t = self.tile
        for tr in range(top // t, (bottom - 1) // t + 1):
            for tc in range(left // t, (right - 1) // t + 1):
                tile = self._tiles.get((tr, tc))
                if tile is None:
                    tile = self._tiles[(tr, tc)] = np.full((t, t), np.nan, np.float32)
                ar0, ac0 = max(top, tr * t), max(left, tc * t)
                ar1, ac1 = min(bottom, (tr + 1) * t), min(right, (tc + 1) * t)
                tile[ar0 - tr * t:ar1 - tr * t, ac0 - tc * t:ac1 - tc * t] = \
                    values[ar0 - top:ar1 - top, ac0 - left:ac1 - left]
        if peak is None:
            finite = values[np.isfinite(values)]
            peak = float(np.abs(finite).max()) if finite.size else 0.0
        self.scale_value = max(self.scale_value, float(peak))
        extent = [top * self.step, left * self.step, (bottom - top) * self.step,
                  (right - left) * self.step]  # level-0 rows, cols, height, width
        self.pastes.append({"placement": placement.to_dict(), "extent": extent,
                            "provenance": dict(provenance or {})})

    def read(self, rows: slice, cols: slice, *, normalised: bool = True) -> np.ndarray:
        """Canvas pixels ``[rows, cols]`` (NaN where nothing was pasted)."""
        r0, r1, _ = rows.indices(self.shape[0])
        c0, c1, _ = cols.indices(self.shape[1])
        out = np.full((max(r1 - r0, 0), max(c1 - c0, 0)), np.nan, np.float32)
        t = self.tile
        for (tr, tc), tile in self._tiles.items():
            ar0, ac0 = max(r0, tr * t), max(c0, tc * t)
            ar1, ac1 = min(r1, (tr + 1) * t), min(c1, (tc + 1) * t)
            if ar1 > ar0 and ac1 > ac0:
                out[ar0 - r0:ar1 - r0, ac0 - c0:ac1 - c0] = \
                    tile[ar0 - tr * t:ar1 - tr * t, ac0 - tc * t:ac1 - tc * t]
        if normalised and self.scale_value > 0:
            out /= self.scale_value
        return out

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self._tiles.values())

    def levels(self, *, coarsest: int = 1024) -> list:
        """Lazy views ``[level0, level1, ...]``, each half the previous, down to ``coarsest`` px."""
        out = [_CanvasLevel(self, 1)]
        f = 1
        while max(self.shape) / f > coarsest:
            f *= 2
            out.append(_CanvasLevel(self, f))
        return out


class _CanvasLevel:
    """A read-only array-like view of a :class:`SparseCanvas` subsampled by ``factor``."""

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, canvas: SparseCanvas, factor: int):
        self.canvas, self.factor = canvas, int(factor)
        self.shape = tuple(math.ceil(s / self.factor) for s in canvas.shape)

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        f = self.factor
        (r0, r1, rs), (c0, c1, cs), squeeze = split_index_2d(key, self.shape)
        # nearest-neighbour subsampling keeps signs and extremes of the full-resolution map
        block = self.canvas.read(slice(r0 * f, r1 * f), slice(c0 * f, c1 * f))[::f * rs, ::f * cs]
        block = block[:max(0, len(range(r0, r1, rs))), :max(0, len(range(c0, c1, cs)))]
        return squeeze_2d(block, squeeze)

    def __array__(self, dtype=None, copy=None):
        arr = self[:, :]
        return arr if dtype is None else arr.astype(dtype)
