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

`RandomMap` and `ConstantMap` (the baselines' maps, made row window by row window) live in
`baseline_maps` and are imported here too.
"""

from __future__ import annotations

import numpy as np

from .baseline_maps import ConstantMap, RandomMap

__all__ = ["ConstantMap", "RandomMap", "disc_means"]


def _prim(y, r2: float):
    """``∫_0^y sqrt(r² - t²) dt`` for ``-r <= y <= r``."""
    return 0.5 * (y * np.sqrt(np.abs(r2 - y * y)) + r2 * np.arcsin(y / np.sqrt(r2)))


def values_transform(convention: str | None):
    """The function reading raw map values as float values under ``convention`` (NaN kept).

    Float maps keep their dtype (``max(v, 0)`` and ``|v|`` are exact in float32); others become
    float64. Sums over them are taken in float64.
    """
    from .conventions import apply_convention

    def transform(v):
        v = np.asarray(v)
        if v.dtype.kind != "f":
            v = v.astype(np.float64)
        return v if convention is None else apply_convention(v, convention)

    return transform


def disc_means(get_rows, shape, placement, rows, cols, radius: float, *,
               block_pixels: int = 1 << 22, transform=None, views: bool = False,
               chunk_pixels: int = 1 << 22, mode: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted mean of a map over a disc around each point, and the disc's valid share.

    Parameters
    ----------
    get_rows : callable
        ``get_rows(a, b)`` returns rows ``a:b`` of the map as an array (NaN = no value), raw:
        ``transform`` reads them; called in increasing, overlapping row windows, so the map
        may be lazy or on disk (a memmap is only read where discs lie).
    shape : (int, int)
        Map shape.
    placement : Placement
        Where the map lies on level 0.
    rows, cols : (N,) arrays
        Disc centres in level-0 pixels.
    radius : float
        Disc radius in level-0 pixels; 0 means the value of the pixel holding the point.
    block_pixels : int
        About how many map pixels one ``get_rows`` window holds (bounds memory for maps
        made on the fly; an array's rows are views, pass its size).
    transform : callable or None
        Applied to raw values before they are summed (a convention; see `values_transform`).
    views : bool
        ``get_rows`` returns views (an array or memmap): with few cells per map pixel, only
        windows around the cells are read, from one view of the whole map.
    chunk_pixels : int
        About how many window pixels are gathered at once (bounds working memory).
    mode : {None, "window", "prefix"}
        How whole pixels are summed: from windows read around the cells, or from per-row
        cumulative sums of each row block; ``None`` picks the one reading fewer pixels.

    Returns
    -------
    means : (N,) float64
        NaN where the disc covers no finite map pixel.
    coverage : (N,) float64
        Area of the disc over finite map pixels divided by the disc area (1 for a disc wholly
        on computed pixels; for ``radius == 0``, 1 or 0).
    """
    transform = values_transform(None) if transform is None else transform
    H, W = (int(s) for s in shape)
    p = placement
    y = np.asarray(rows, dtype=np.float64).ravel()
    x = np.asarray(cols, dtype=np.float64).ravel()
    n = y.size
    means = np.full(n, np.nan)
    coverage = np.zeros(n)
    if n == 0:
        return means, coverage
    geo = _Geometry(p.origin_row - 0.5, p.origin_col - 0.5, float(p.step_row),
                    float(p.step_col), float(radius), H, W)
    ok = np.isfinite(y) & np.isfinite(x)
    ci = np.full(n, -(10**9), dtype=np.int64)
    ci[ok] = np.floor((y[ok] - geo.top0) / geo.sr).astype(np.int64)
    cj = np.full(n, -(10**9), dtype=np.int64)
    cj[ok] = np.floor((x[ok] - geo.left0) / geo.sc).astype(np.int64)
    reach_r = int(np.ceil(geo.r / geo.sr)) + 1
    reach_c = int(np.ceil(geo.r / geo.sc)) + 1
    ok &= (ci >= -reach_r) & (ci < H + reach_r) & (cj >= -reach_c) & (cj < W + reach_c)
    idx = np.flatnonzero(ok)
    idx = idx[np.argsort(ci[idx], kind="stable")]
    if idx.size and geo.r > 0 and views and mode != "prefix":
        n_strips, window = int(np.ceil(2 * geo.r / geo.sr)) + 1, min(
            int(np.ceil(2 * geo.r / geo.sc)) + 1, W)
        if mode == "window" or idx.size * n_strips * window < H * W:  # read under discs only
            means[idx], coverage[idx] = _block_disc_means(
                get_rows(0, H), 0, y[idx], x[idx], geo, transform, None, chunk_pixels,
                mode="window")
            return means, coverage
    block_rows = max(16, int(block_pixels) // max(W, 1))
    key = np.clip(ci[idx], 0, H - 1)
    prefix = _PrefixBuffer()
    for b0 in range(0, H, block_rows):
        lo, hi = np.searchsorted(key, [b0, b0 + block_rows])
        if lo == hi:
            continue
        sel = idx[lo:hi]
        top, bottom = max(b0 - reach_r, 0), min(b0 + block_rows + reach_r, H)
        block = get_rows(top, bottom)
        if geo.r == 0:
            m, c = _point_values(transform(block), top, ci[sel], cj[sel], W)
        else:
            m, c = _block_disc_means(block, top, y[sel], x[sel], geo, transform, prefix,
                                     chunk_pixels, mode=mode)
        means[sel], coverage[sel] = m, c
    return means, coverage


class _Geometry:
    """Map grid and disc radius: edges of map pixel 0, steps, radius, map shape."""

    def __init__(self, top0, left0, sr, sc, r, H, W):
        self.top0, self.left0, self.sr, self.sc, self.r = top0, left0, sr, sc, r
        self.r2 = r * r
        self.H, self.W = H, W


class _PrefixBuffer:
    """Per-row cumulative sums of a block, in buffers reused from block to block (fresh
    pages of large arrays cost more than the sums)."""

    def __init__(self):
        self.vsum = self.vcnt = None

    def fill(self, values: np.ndarray):
        h, w = values.shape
        if self.vsum is None or self.vsum.shape[0] < h or self.vsum.shape[1] != w + 1:
            self.vsum = np.zeros((h, w + 1))
            self.vcnt = None
        valid = np.isfinite(values)
        has_nan = not valid.all()
        vsum = self.vsum[:h]
        np.cumsum(np.where(valid, values, 0) if has_nan else values, axis=1, dtype=np.float64,
                  out=vsum[:, 1:])
        vcnt = None
        if has_nan:
            if self.vcnt is None or self.vcnt.shape[0] < h:
                self.vcnt = np.zeros((h, w + 1), dtype=np.int32)
            vcnt = self.vcnt[:h]
            np.cumsum(valid, axis=1, dtype=np.int32, out=vcnt[:, 1:])
        return vsum.reshape(-1), None if vcnt is None else vcnt.reshape(-1)


def _point_values(block, top, ci, cj, W):
    inside = (ci >= top) & (ci < top + block.shape[0]) & (cj >= 0) & (cj < W)
    vals = np.full(ci.size, np.nan)
    vals[inside] = block[ci[inside] - top, cj[inside]]
    cov = np.isfinite(vals).astype(np.float64)
    return vals, cov


def _block_disc_means(block, top, y, x, geo, transform, prefix, chunk_pixels, *, mode=None):
    """Disc means of the cells ``(y, x)`` whose discs lie within the map rows of ``block``.

    The whole-pixel interior of each disc row is summed either from windows gathered around
    the cells (``"window"``: few cells per map pixel, only pixels under discs are read) or
    from per-row cumulative sums of the block (``"prefix"``: many cells per map pixel); the
    pixels the circle crosses get exact weights.
    """
    block = np.asarray(block)
    i_first = np.floor((y - geo.r - geo.top0) / geo.sr).astype(np.int64)
    n_strips = int(np.max(np.floor((y + geo.r - geo.top0) / geo.sr).astype(np.int64)
                          - i_first)) + 1
    j_first = np.floor((x - geo.r - geo.left0) / geo.sc).astype(np.int64)
    n_cols = int(np.max(np.floor((x + geo.r - geo.left0) / geo.sc).astype(np.int64)
                        - j_first)) + 1
    if n_cols > geo.W:  # a window wider than the map: sums over rows instead
        mode = "prefix"
    elif mode is None:
        mode = "window" if y.size * n_strips * n_cols < block.size else "prefix"
    if mode == "window":
        source = np.lib.stride_tricks.sliding_window_view(block, n_cols, axis=1)
    else:
        source = prefix.fill(transform(block))
    # window mode holds (cells, strips, columns) values; the per-strip boundary arrays of
    # more than ~2000 cells fall out of cache
    chunk = min(2048, max(256, int(chunk_pixels) // (n_strips * n_cols)) if mode == "window"
                else 2048)
    means = np.empty(y.size)
    cover = np.empty(y.size)
    for c0 in range(0, y.size, chunk):  # bounded temporaries whatever the number of cells
        sl = slice(c0, c0 + chunk)
        means[sl], cover[sl] = _chunk_disc_means(block, top, y[sl], x[sl], i_first[sl],
                                                 j_first[sl], n_strips, n_cols, geo,
                                                 transform, mode, source)
    _snap_to_centre(means, block, top, y, x, geo, transform)
    return means, cover


def _snap_to_centre(means, block, top, y, x, geo, transform):
    """Give a disc lying on one value exactly that value (in place).

    A disc over a constant area (a patch-level probability map, a rectified zero) has that
    value as its exact mean, but the weighted sum divided by the area lands within a few ulps
    of it, differently for different sub-pixel positions: ties the ROC should see would be
    broken by rounding. A mean within 1e-12 (relative) of the value under the disc's centre
    is that value; any other mean moves by less than that.
    """
    nrows, W = block.shape
    ci = np.floor((y - geo.top0) / geo.sr).astype(np.int64) - top
    cj = np.floor((x - geo.left0) / geo.sc).astype(np.int64)
    on = (ci >= 0) & (ci < nrows) & (cj >= 0) & (cj < W) & np.isfinite(means)
    if not on.any():
        return
    ref = np.asarray(transform(block[ci[on], cj[on]]), dtype=np.float64)
    m = means[on]
    close = np.isfinite(ref) & (np.abs(m - ref) <= 1e-12 * np.maximum(np.abs(ref), np.abs(m)))
    m[close] = ref[close]
    means[on] = m


def _outer_area(xe, t, h, ph, a, b, pa, pb, area):
    """Area of a disc slice ``a <= Y <= b`` left of the vertical line ``X = xe``.

    ``t = |xe|`` (at most r), ``h = sqrt(r² - t²)``, ``ph = P(h)``, ``pa = P(a)``,
    ``pb = P(b)`` with ``P(y) = ∫_0^y sqrt(r² - s²) ds``, ``area = 2 (P(b) - P(a))``. The part
    of the slice beyond ``|X| >= t`` on one side is ``∫ (s(Y) - t) dY`` over ``|Y| < h``
    within ``[a, b]``; by symmetry the area left of ``xe > 0`` is the slice minus the part
    right of ``t``.
    """
    p = np.maximum(a, -h)
    q = np.minimum(b, h)
    outer = np.where(b < h, pb, ph) - np.where(a > -h, pa, -ph) - t * (q - p)
    outer = np.where(q > p, outer, 0.0)
    return np.where(xe <= 0, outer, area - outer)


def _chunk_disc_means(block, top, y, x, i_first, j_first, n_strips, n_cols, geo, transform,
                      mode, source):
    r, r2, sr, sc, W = geo.r, geo.r2, geo.sr, geo.sc, geo.W
    n = y.size
    # horizontal edges of the disc's map rows and vertical edges of its map columns, relative
    # to the centre, with the per-edge terms of the closed-form slice areas (once per edge)
    ye = np.clip(geo.top0 + (i_first[:, None] + np.arange(n_strips + 1)) * sr - y[:, None],
                 -r, r)
    py = _prim(ye, r2)
    sy = np.sqrt(np.maximum(r2 - ye * ye, 0.0))
    c0 = geo.left0 + j_first[:, None] * sc - x[:, None]  # left edge of column j_first
    he = np.sqrt(np.maximum(r2 - np.minimum(np.abs(c0 + np.arange(n_cols + 1) * sc), r) ** 2,
                            0.0))
    phe = _prim(he, r2)
    a, b = ye[:, :-1], ye[:, 1:]
    pa, pb = py[:, :-1], py[:, 1:]
    s_min = np.minimum(sy[:, :-1], sy[:, 1:])
    s_max = np.where((a < 0) & (b > 0), r, np.maximum(sy[:, :-1], sy[:, 1:]))
    # columns wholly inside the disc over a strip's height: [jl, jr) (counted from j_first);
    # a strip outside the disc has a == b: no interior, zero boundary weights
    jl = np.ceil((-s_min - c0) / sc).astype(np.int64)
    jr = np.floor((s_min - c0) / sc).astype(np.int64)
    # within the disc's columns [0, n_cols), whatever the rounding at ±r
    jlo = np.maximum(np.floor((-s_max - c0) / sc).astype(np.int64), 0)
    jhi = np.minimum(np.floor((s_max - c0) / sc).astype(np.int64), n_cols - 1)
    none_inside = jr <= jl
    jl[none_inside] = jr[none_inside] = jhi[none_inside] + 1
    rows_i = i_first[:, None] + np.arange(n_strips)
    if mode == "window":
        isum, icnt, vals, has_nan = _window_interior(block, source, rows_i - top, j_first, jl,
                                                      jr, transform, geo.H - top)
        vbase = (np.arange(2 * n) % n)[:, None] * (n_strips * n_cols)
    else:
        isum, icnt = _prefix_interior(source, block.shape, rows_i - top, j_first, jl, jr)
        vals, has_nan = block.reshape(-1), True
        rows2 = np.concatenate([rows_i, rows_i]) - top
        on2 = (rows2 >= 0) & (rows2 < block.shape[0])
        vbase = np.clip(rows2, 0, block.shape[0] - 1) * W
    full = (b - a) * sc  # the interior: whole pixels of weight (b - a) * sc
    total = np.sum(full * isum, axis=1)
    area = np.sum(full * icnt, axis=1)
    # the pixels the circle crosses: columns [jlo, jl) and [jr, jhi] of each strip get the
    # exact weight, the difference of the slice area left of their two edges; both sides of
    # a strip at once (row n + k: the right side of cell k)
    both = np.concatenate
    start = both([jlo, jr])
    count = both([jl - jlo, jhi + 1 - jr])
    k_max_strip = np.max(count, axis=0, initial=0)
    a2, b2, pa2, pb2 = both([a, a]), both([b, b]), both([pa, pa]), both([pb, pb])
    area2 = 2.0 * (pb2 - pa2)
    c02, jf2 = both([c0, c0]), both([j_first, j_first])[:, None]
    phe_flat = phe.reshape(-1)
    cell_base = (np.arange(2 * n) % n)[:, None] * (n_cols + 1)
    for d in range(n_strips):
        k_max = int(k_max_strip[d])
        if k_max <= 0:
            continue
        e = np.minimum(start[:, d, None] + np.arange(k_max + 1), n_cols)
        xd = c02 + e * sc
        td = np.minimum(np.abs(xd), r)
        hd = np.sqrt(np.maximum(r2 - td * td, 0.0))
        la = _outer_area(xd, td, hd, phe_flat[cell_base + e], a2[:, d, None], b2[:, d, None],
                         pa2[:, d, None], pb2[:, d, None], area2[:, d, None])
        w = np.diff(la, axis=1)
        use = np.arange(k_max) < count[:, d, None]
        e = e[:, :-1]
        if mode == "window":
            v = vals[vbase + (d * n_cols) + np.minimum(e, n_cols - 1)]
        else:
            col = jf2 + e
            use &= (col >= 0) & (col < W) & on2[:, d, None]
            v = transform(vals[vbase[:, d, None] + np.clip(col, 0, W - 1)])
        if has_nan:
            use &= np.isfinite(v)
            v = np.where(use, v, 0.0)
        w = np.where(use, w, 0.0)
        wv = np.sum(w * v, axis=1)
        total += wv[:n] + wv[n:]
        ws = np.sum(w, axis=1)
        area += ws[:n] + ws[n:]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(area > 0, total / area, np.nan)
    return means, np.clip(area / (np.pi * r2), 0.0, 1.0)


def _prefix_interior(sums, shape, rows, j_first, jl, jr):
    """Sums and counts of the finite values of block rows ``rows`` over columns ``[jl, jr)``
    counted from ``j_first``, from per-row cumulative sums (rows off the block: zero)."""
    nrows, W = shape
    vsum, vcnt = sums
    lo = np.clip(j_first[:, None] + jl, 0, W)
    hi = np.maximum(np.clip(j_first[:, None] + jr, 0, W), lo)
    on = (rows >= 0) & (rows < nrows)
    base = np.clip(rows, 0, nrows - 1) * (W + 1)
    isum = np.where(on, vsum[base + hi] - vsum[base + lo], 0.0)
    icnt = np.where(on, (vcnt[base + hi] - vcnt[base + lo]) if vcnt is not None else hi - lo, 0)
    return isum, icnt


def _window_interior(block, windows, rows, j_first, jl, jr, transform, rows_on_map):
    """Sums and counts of finite values over columns ``[jl, jr)`` counted from ``j_first``,
    from the windows ``(cells, strips, columns)`` read around the cells; pixels off the map
    read as NaN (no value), as do rows at or beyond ``rows_on_map``.

    Returns the sums, the counts, the windows' values (flat) and whether any is NaN.
    """
    nrows, W = block.shape
    n, s = rows.shape
    k = windows.shape[-1]
    js = np.clip(j_first, 0, W - k)
    vals = transform(windows[np.clip(rows, 0, nrows - 1), js[:, None]])
    edge = np.flatnonzero((js != j_first) | (rows[:, 0] < 0) | (rows[:, -1] >= rows_on_map))
    if edge.size:  # discs crossing the map's border: their windows are read pixel by pixel
        cols = j_first[edge, None, None] + np.arange(k)
        rr = rows[edge, :, None]
        on = (cols >= 0) & (cols < W) & (rr >= 0) & (rr < min(rows_on_map, nrows))
        v = transform(block[np.clip(rr, 0, nrows - 1), np.clip(cols, 0, W - 1)])
        if v.dtype.kind != "f":
            v = v.astype(np.float64)
        vals = vals.astype(v.dtype, copy=False)
        vals[edge] = np.where(on, v, np.nan)
    valid = np.isfinite(vals)
    has_nan = not valid.all()
    summed = np.where(valid, vals, 0) if has_nan else vals
    base = (np.arange(n * s) * k).reshape(n, s)
    start = base + np.clip(jl, 0, k)
    stop = np.maximum(base + np.clip(jr, 0, k), start)
    # add.reduceat sums [idx[2i], idx[2i + 1]) at even places (an empty range gives one value:
    # zeroed below); odd places hold the gaps between ranges, unused. The ranges increase; the
    # last may end at the array's end, where reduceat's last index sums to the end by itself
    idx = np.stack([start, stop], axis=-1).ravel()
    if idx[-1] >= vals.size:
        idx = idx[:-1]
    np.minimum(idx, vals.size - 1, out=idx)  # only an empty last range can start at the end
    empty = stop == start
    isum = np.add.reduceat(summed.reshape(-1), idx, dtype=np.float64)[::2].reshape(n, s)
    isum[empty] = 0.0
    if has_nan:
        icnt = np.add.reduceat(valid.reshape(-1), idx, dtype=np.int64)[::2].reshape(n, s)
        icnt[empty] = 0
    else:
        icnt = stop - start
    return isum, icnt, vals.reshape(-1), has_nan
