"""Exact area-average resampling with fractional bounds (a box filter over true pixel overlap)."""

from __future__ import annotations

import math

import numpy as np


def area_weights(start: float, stop: float, n_in: int, n_out: int):
    """Sparse (n_out, n_in) matrix averaging input pixels over output pixel footprints.

    Output pixel ``i`` covers input coordinates ``[start + i*f, start + (i+1)*f)`` with
    ``f = (stop - start) / n_out``; its weight on input pixel ``k`` (covering ``[k, k+1)``) is
    the overlap length divided by ``f``. Rows sum to 1 when the footprint lies inside the input.
    When ``f < 1`` (enlarging) this is a box-filter upsampling.

    Examples
    --------
    >>> area_weights(0, 4, 4, 2).toarray()
    array([[0.5, 0.5, 0. , 0. ],
           [0. , 0. , 0.5, 0.5]])
    """
    from scipy import sparse  # imported here: opening a slide should not pay for scipy

    edges = start + (stop - start) * np.arange(n_out + 1) / n_out
    e0, e1 = edges[:-1, None], edges[1:, None]
    span = math.ceil((stop - start) / n_out) + 2
    k = np.floor(e0).astype(np.int64) + np.arange(span)[None, :]
    overlap = np.clip(np.minimum(k + 1, e1) - np.maximum(k, e0), 0, None) / (e1 - e0)
    valid = (k >= 0) & (k < n_in) & (overlap > 0)
    rows = np.broadcast_to(np.arange(n_out)[:, None], k.shape)[valid]
    return sparse.csr_matrix((overlap[valid], (rows, k[valid])), shape=(n_out, n_in))


def area_resize(image: np.ndarray, rows: tuple[float, float], cols: tuple[float, float],
                out_shape: tuple[int, int], *, strip: int = 1024) -> np.ndarray:
    """Resample the window ``rows`` x ``cols`` (fractional pixel bounds) of ``image`` to ``out_shape``.

    Parameters
    ----------
    image : numpy.ndarray
        (H, W, C) uint8.
    rows, cols : tuple of float
        ``(start, stop)`` of the window in pixel coordinates of ``image``.
    out_shape : tuple of int
        (out_height, out_width).
    strip : int
        Columns processed at a time (bounds the float32 working memory).

    Returns
    -------
    numpy.ndarray
        (out_height, out_width, C) uint8, rounded to nearest.
    """
    oh, ow = out_shape
    h, w, c = image.shape
    if (oh, ow) == (h, w) and rows == (0, h) and cols == (0, w):
        return image
    wr = area_weights(rows[0], rows[1], h, oh)
    wc = area_weights(cols[0], cols[1], w, ow).T.tocsr()  # (w, ow)
    tmp = np.empty((oh, w, c), np.float32)
    for s in range(0, w, strip):
        part = image[:, s:s + strip].reshape(h, -1).astype(np.float32)
        tmp[:, s:s + strip] = (wr @ part).reshape(oh, -1, c)
    out = np.empty((oh, ow, c), np.float32)
    for ch in range(c):
        out[:, :, ch] = tmp[:, :, ch] @ wc
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
