"""Baseline maps for the cell-score baselines, made row window by row window (never held whole):
a seeded uniform random map and a constant map, NaN where the evaluated heatmap is NaN."""

from __future__ import annotations

import numpy as np

__all__ = ["ConstantMap", "RandomMap"]


class RandomMap:
    """A uniform [0, 1) random map, made row chunk by row chunk (never held whole).

    Rows ``a:b`` are the same whichever window asks for them (each chunk of ``chunk`` rows has
    its own seeded generator), so overlapping row windows agree. Pixels that are NaN in
    ``nan_like`` (the evaluated heatmap) are NaN here too: the baseline scores only pixels
    where the real heatmap has values.

    Examples
    --------
    >>> import numpy as np
    >>> m = RandomMap((10, 4), seed=3, chunk=3)
    >>> bool(np.array_equal(m[2:7], m[0:10][2:7])), m[0:10].shape
    (True, (10, 4))
    """

    def __init__(self, shape, *, seed: int = 0, nan_like=None, chunk: int = 64):
        self.shape = tuple(int(s) for s in shape)
        self.seed = tuple(int(v) for v in np.atleast_1d(seed))
        self.nan_like = nan_like
        self.chunk = max(int(chunk), 1)
        if nan_like is not None and tuple(np.shape(nan_like)) != self.shape:
            raise ValueError(f"nan_like has shape {np.shape(nan_like)}, the map {self.shape}")

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("RandomMap supports row slices map[a:b] only")
        a, b, _ = key.indices(self.shape[0])
        c0, c1 = a // self.chunk, (max(b, a + 1) - 1) // self.chunk
        parts = [np.random.default_rng([*self.seed, c]).random(
                 (min(self.chunk, self.shape[0] - c * self.chunk), self.shape[1]))
                 for c in range(c0, c1 + 1)]
        rows = np.concatenate(parts)[a - c0 * self.chunk:b - c0 * self.chunk]
        if self.nan_like is not None:
            rows[~np.isfinite(np.asarray(self.nan_like[a:b]))] = np.nan
        return rows


class ConstantMap:
    """A constant map (NaN where ``nan_like`` is NaN), made row window by row window."""

    def __init__(self, shape, value: float, *, nan_like=None):
        self.shape = tuple(int(s) for s in shape)
        self.value = float(value)
        self.nan_like = nan_like

    def __getitem__(self, key):
        a, b, _ = key.indices(self.shape[0])
        rows = np.full((b - a, self.shape[1]), self.value)
        if self.nan_like is not None:
            rows[~np.isfinite(np.asarray(self.nan_like[a:b]))] = np.nan
        return rows
