"""Exact area-weighted means of a heatmap over discs (cell scores), at any heatmap step.

A heatmap pixel ``(i, j)`` with placement ``(origin, step)`` covers the level-0 rectangle
``[origin - 0.5 + i * step, origin - 0.5 + (i + 1) * step)`` per axis (level-0 pixel ``k`` is
centred on coordinate ``k``, as in `_common`). The score of a cell is

    sum_p value_p * area(disc ∩ pixel_p) / sum_p area(disc ∩ pixel_p)

over the pixels ``p`` with a finite value: the disc integral of the piecewise-constant map,
exact whether the map is finer or coarser than the disc. Pixels wholly inside the disc for the
whole height of their row are summed through per-row cumulative sums; only the pixels the
circle crosses get an exact weight, from the closed-form area of a disc slice left of a
vertical line (`_left_area`). The cost per cell is about ``12 * radius / step`` look-ups.

`RandomMap` and `ConstantMap` are the baselines' maps, made row window by row window.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ConstantMap", "RandomMap", "disc_means"]


def _prim(y, r2: float):
    """``∫_0^y sqrt(r² - t²) dt`` for ``-r <= y <= r``."""
    return 0.5 * (y * np.sqrt(np.abs(r2 - y * y)) + r2 * np.arcsin(y / np.sqrt(r2)))


def _left_area(x, a, b, i_ab, r: float, r2: float):
    """Area of ``{(X, Y): X² + Y² <= r², a <= Y <= b, X <= x}`` (``-r <= a <= b <= r``).

    ``i_ab`` is ``∫_a^b sqrt(r² - Y²) dY`` (half the slice area). The slice's half-width at
    height ``Y`` is ``s(Y)``; the part left of ``x`` is ``clip(x + s, 0, 2 s)``, which is
    ``x + s`` where ``|Y| < h = sqrt(r² - x²)`` and ``s + sign(x) s`` elsewhere.
    """
    x = np.clip(x, -r, r)
    h = np.sqrt(np.abs(r2 - x * x))
    p = np.maximum(a, -h)
    q = np.maximum(np.minimum(b, h), p)  # an empty [p, q] has q == p: no length, no area
    return i_ab + x * (q - p) + np.sign(x) * (i_ab - (_prim(q, r2) - _prim(p, r2)))


def _row_cumsum(block: np.ndarray) -> np.ndarray:
    """Flat (rows * (W + 1)) per-row cumulative sums with a leading zero column."""
    out = np.zeros((block.shape[0], block.shape[1] + 1))
    np.cumsum(block, axis=1, dtype=np.float64, out=out[:, 1:])
    return out.ravel()


def disc_means(get_rows, shape, placement, rows, cols, radius: float, *,
               block_pixels: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted mean of a map over a disc around each point, and the disc's valid share.

    Parameters
    ----------
    get_rows : callable
        ``get_rows(a, b)`` returns rows ``a:b`` of the map as a float array (NaN = no value);
        called in increasing, overlapping row windows, so the map may be lazy or on disk.
    shape : (int, int)
        Map shape.
    placement : Placement
        Where the map lies on level 0.
    rows, cols : (N,) arrays
        Disc centres in level-0 pixels.
    radius : float
        Disc radius in level-0 pixels; 0 means the value of the pixel holding the point.
    block_pixels : int
        About how many map pixels are held at once (bounds memory).

    Returns
    -------
    means : (N,) float64
        NaN where the disc covers no finite map pixel.
    coverage : (N,) float64
        Area of the disc over finite map pixels divided by the disc area (1 for a disc wholly
        on computed pixels; for ``radius == 0``, 1 or 0).
    """
    H, W = (int(s) for s in shape)
    p = placement
    y = np.asarray(rows, dtype=np.float64).ravel()
    x = np.asarray(cols, dtype=np.float64).ravel()
    n = y.size
    means = np.full(n, np.nan)
    coverage = np.zeros(n)
    if n == 0:
        return means, coverage
    top0, left0 = p.origin_row - 0.5, p.origin_col - 0.5  # level-0 edge of map pixel 0
    sr, sc = float(p.step_row), float(p.step_col)
    r = float(radius)
    ok = np.isfinite(y) & np.isfinite(x)
    ci = np.full(n, -(10**9), dtype=np.int64)
    ci[ok] = np.floor((y[ok] - top0) / sr).astype(np.int64)
    cj = np.full(n, -(10**9), dtype=np.int64)
    cj[ok] = np.floor((x[ok] - left0) / sc).astype(np.int64)
    reach_r = int(np.ceil(r / sr)) + 1
    reach_c = int(np.ceil(r / sc)) + 1
    ok &= (ci >= -reach_r) & (ci < H + reach_r) & (cj >= -reach_c) & (cj < W + reach_c)
    idx = np.flatnonzero(ok)
    idx = idx[np.argsort(ci[idx], kind="stable")]
    block_rows = max(16, int(block_pixels) // max(W, 1))
    key = np.clip(ci[idx], 0, H - 1)
    for b0 in range(0, H, block_rows):
        lo, hi = np.searchsorted(key, [b0, b0 + block_rows])
        if lo == hi:
            continue
        sel = idx[lo:hi]
        top, bottom = max(b0 - reach_r, 0), min(b0 + block_rows + reach_r, H)
        block = np.asarray(get_rows(top, bottom), dtype=np.float64)
        if r == 0:
            m, c = _point_values(block, top, ci[sel], cj[sel], W)
        else:
            m, c = _block_disc_means(block, top, y[sel], x[sel], r, top0, left0, sr, sc, W)
        means[sel], coverage[sel] = m, c
    return means, coverage


def _point_values(block, top, ci, cj, W):
    inside = (ci >= top) & (ci < top + block.shape[0]) & (cj >= 0) & (cj < W)
    vals = np.full(ci.size, np.nan)
    vals[inside] = block[ci[inside] - top, cj[inside]]
    cov = np.isfinite(vals).astype(np.float64)
    return vals, cov


def _block_disc_means(block, top, y, x, r, top0, left0, sr, sc, W, *, chunk: int = 4096):
    """Disc means of the cells ``(y, x)`` whose discs lie within the map rows of ``block``."""
    valid = np.isfinite(block)
    has_nan = not valid.all()
    vsum = _row_cumsum(np.where(valid, block, 0.0) if has_nan else block)
    vcnt = _row_cumsum(valid) if has_nan else None
    flat_block = block.ravel()
    means = np.empty(y.size)
    cover = np.empty(y.size)
    for c0 in range(0, y.size, chunk):  # bounded temporaries whatever the number of cells
        sl = slice(c0, c0 + chunk)
        means[sl], cover[sl] = _chunk_disc_means(flat_block, vsum, vcnt, block.shape[0], top,
                                                 y[sl], x[sl], r, top0, left0, sr, sc, W)
    return means, cover


def _chunk_disc_means(flat_block, vsum, vcnt, nrows, top, y, x, r, top0, left0, sr, sc, W):
    r2 = r * r
    n = y.size
    total = np.zeros(n)
    area = np.zeros(n)
    i_first = np.floor((y - r - top0) / sr).astype(np.int64)
    n_strips = int(np.max(np.floor((y + r - top0) / sr).astype(np.int64) - i_first)) + 1
    c0 = left0 - x  # column edge j sits at c0 + j * sc, relative to the cell
    for d in range(n_strips):  # one map row of every disc at a time
        i = i_first + d
        y0 = top0 + i * sr - y
        a = np.clip(y0, -r, r)
        b = np.clip(y0 + sr, -r, r)
        live = (b > a) & (i >= top) & (i < top + nrows)
        if not live.all():
            if not live.any():
                continue
            b = np.where(live, b, a)  # an empty slice: no area anywhere
        s_a = np.sqrt(np.maximum(r2 - a * a, 0.0))
        s_b = np.sqrt(np.maximum(r2 - b * b, 0.0))
        s_min = np.minimum(s_a, s_b)
        s_max = np.where((a < 0) & (b > 0), r, np.maximum(s_a, s_b))
        s_max[~live] = 0.0
        i_ab = _prim(b, r2) - _prim(a, r2)
        # columns wholly inside the disc over the strip's height: [jl, jr)
        jl = np.ceil((-s_min - c0) / sc).astype(np.int64)
        jr = np.floor((s_min - c0) / sc).astype(np.int64)
        jlo = np.floor((-s_max - c0) / sc).astype(np.int64)
        jhi = np.floor((s_max - c0) / sc).astype(np.int64)
        none_inside = jr <= jl
        jl[none_inside] = jr[none_inside] = jhi[none_inside] + 1
        row = np.clip(i - top, 0, nrows - 1)
        base = row * (W + 1)
        left, right = np.clip(jl, 0, W), np.clip(jr, 0, W)
        full = np.where(live, (b - a) * sc, 0.0)
        total += full * (vsum[base + right] - vsum[base + left])
        area += full * (vcnt[base + right] - vcnt[base + left] if vcnt is not None
                        else right - left)
        # boundary columns [jlo, jl) and [jr, jhi]: the exact weight of a column is the
        # difference of the slice area left of its two edges (all columns of a side at once)
        for start, count in ((jlo, jl - jlo), (jr, jhi + 1 - jr)):
            k_max = int(np.max(count, initial=0))
            if k_max <= 0:
                continue
            j = start[:, None] + np.arange(k_max + 1)
            dl = _left_area(c0[:, None] + j * sc, a[:, None], b[:, None], i_ab[:, None], r, r2)
            w = np.diff(dl, axis=1)
            col = j[:, :-1]
            use = (np.arange(k_max) < count[:, None]) & (col >= 0) & (col < W)
            v = flat_block[(row * W)[:, None] + np.clip(col, 0, W - 1)]
            use &= np.isfinite(v)
            w = np.where(use, w, 0.0)
            total += np.sum(w * np.where(use, v, 0.0), axis=1)
            area += np.sum(w, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(area > 0, total / area, np.nan)
    return means, np.clip(area / (np.pi * r2), 0.0, 1.0)


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
