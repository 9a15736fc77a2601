"""Code grids with a planted lesion signal, for the slide-level tests (no encoder needed)."""

from __future__ import annotations

import numpy as np

from napari_xhisto.nic.codes import CodeGrid


def planted_grid(rng, *, rows=16, cols=16, code_size=8, lesion: int = 0, strength=1.5,
                 stride=128, origin=(0, 0), mpp=0.5, sha="enc-a"):
    """A grid of noisy codes on an elliptic tissue; ``lesion`` > 0 plants a square focus of
    ``lesion`` x ``lesion`` cells whose codes are shifted along one fixed direction.

    Returns ``(grid, lesion_mask (rows, cols) bool)``.
    """
    ii, jj = np.mgrid[:rows, :cols]
    tissue = ((ii - rows / 2 + 0.5) / (rows * 0.48)) ** 2 + ((jj - cols / 2 + 0.5) / (cols * 0.48)) ** 2 < 1
    codes = rng.normal(0, 1, (rows, cols, code_size)).astype(np.float32)
    mask = np.zeros((rows, cols), bool)
    if lesion:
        on = np.argwhere(tissue[: rows - lesion + 1, : cols - lesion + 1]
                         & tissue[lesion - 1:, lesion - 1:])
        r, c = on[rng.integers(len(on))]
        mask[r:r + lesion, c:c + lesion] = True
        direction = np.zeros(code_size, np.float32)
        direction[0] = 1.0
        direction[1] = -1.0
        codes[mask] += strength * direction
    codes[~tissue] = 0
    prov = {"encoder": {"kind": "toy", "sha256": sha}}
    grid = CodeGrid(codes=codes, stride=stride, patch=stride, origin=origin, mpp=mpp,
                    tissue=tissue, provenance=prov)
    return grid, mask & tissue


def planted_cohort(n, *, seed=0, lesion=3, **kw):
    rng = np.random.default_rng(seed)
    labels = np.array([i % 2 for i in range(n)])
    grids, masks = [], []
    for y in labels:
        g, m = planted_grid(rng, lesion=lesion if y else 0, **kw)
        grids.append(g)
        masks.append(m)
    return grids, labels, masks
