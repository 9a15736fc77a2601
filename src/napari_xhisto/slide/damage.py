"""How a damaged tile looks (stripes no stain produces) and where it lands in a scaled read."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

DAMAGED_COLORS = ((255, 214, 0), (0, 0, 0))  # hazard stripes: no stain looks like this
DAMAGED_STRIPE = 16  # px per stripe, along the diagonal


@lru_cache(maxsize=16)
def damaged_pattern(rows: int, cols: int) -> np.ndarray:
    """(rows, cols, 3) uint8 diagonal yellow/black stripes drawn where a tile is damaged.

    Read-only (shared between calls); callers copy it into their output.
    """
    r, c = np.indices((rows, cols))
    stripes = ((r + c) // DAMAGED_STRIPE) % 2
    out = np.asarray(DAMAGED_COLORS, np.uint8)[stripes]
    out.flags.writeable = False
    return out


def mask_from_boxes(boxes, region, out_height: int, out_width: int) -> np.ndarray | None:
    """Which pixels of an ``(out_height, out_width)`` picture of level-0 ``region`` touch any of
    the level-0 ``boxes`` (row, col, height, width); None when none does.

    Conservative: a picture pixel partly over a box is True.
    """
    mask = None
    fy, fx = out_height / region.height, out_width / region.width
    for top, left, h, w in boxes:
        i0 = max(0, math.floor((top - region.level0_row) * fy + 1e-9))
        i1 = min(out_height, math.ceil((top + h - region.level0_row) * fy - 1e-9))
        j0 = max(0, math.floor((left - region.level0_col) * fx + 1e-9))
        j1 = min(out_width, math.ceil((left + w - region.level0_col) * fx - 1e-9))
        if i1 > i0 and j1 > j0:
            if mask is None:
                mask = np.zeros((out_height, out_width), bool)
            mask[i0:i1, j0:j1] = True
    return mask
