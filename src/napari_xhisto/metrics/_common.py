"""Shared checks and coordinate conversions for the metrics (private).

A heatmap is a 2-D float array with a `Placement` on level 0: heatmap pixel ``(i, j)`` covers
level-0 pixels from ``origin + index * step``; its centre sits at ``origin + index * step +
(step - 1) / 2`` in level-0 pixel coordinates (the convention of ``Placement.layer_transform``,
where a level-0 pixel ``k`` is centred on coordinate ``k``).
"""

from __future__ import annotations

import numpy as np

from ..geometry import Placement


def as_map(values, *, name: str = "heatmap") -> np.ndarray:
    """``values`` as a 2-D float64 array, or a clear ValueError."""
    arr = np.asarray(values)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (rows, cols), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def as_stack(values, *, name: str = "heatmaps") -> np.ndarray:
    """``values`` (one map or a sequence of equal-shaped maps) as an (N, H, W) float64 array."""
    arr = np.asarray(values)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{name} must be (N, rows, cols) or one (rows, cols) map, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    return arr.astype(np.float64, copy=False)


def as_placement(placement) -> Placement:
    """A `Placement`; ``None`` means the heatmap starts at level-0 (0, 0) with step 1."""
    if placement is None:
        return Placement()
    if isinstance(placement, Placement):
        return placement
    if isinstance(placement, dict):
        return Placement.from_dict(placement)
    raise ValueError(f"placement must be a Placement, a dict or None, got {type(placement).__name__}")


def level0_to_map(rows, cols, placement: Placement) -> tuple[np.ndarray, np.ndarray]:
    """Level-0 pixel coordinates to fractional heatmap indices (pixel centres are integers)."""
    p = placement
    fr = (np.asarray(rows, dtype=np.float64) - p.origin_row - (p.step_row - 1) / 2) / p.step_row
    fc = (np.asarray(cols, dtype=np.float64) - p.origin_col - (p.step_col - 1) / 2) / p.step_col
    return fr, fc


def map_to_level0(i, j, placement: Placement) -> tuple[np.ndarray, np.ndarray]:
    """Heatmap indices (pixel centres) to level-0 pixel coordinates."""
    p = placement
    r = p.origin_row + np.asarray(i, dtype=np.float64) * p.step_row + (p.step_row - 1) / 2
    c = p.origin_col + np.asarray(j, dtype=np.float64) * p.step_col + (p.step_col - 1) / 2
    return r, c


def cell_arrays(cells) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(rows, cols, classes-or-None) from a `CellPoints`-like object or an (N, 2) array."""
    if hasattr(cells, "rows") and hasattr(cells, "cols"):
        rows = np.asarray(cells.rows, dtype=np.float64).ravel()
        cols = np.asarray(cells.cols, dtype=np.float64).ravel()
        classes = getattr(cells, "classes", None)
        classes = None if classes is None else np.asarray(classes).astype(str).ravel()
    else:
        arr = np.asarray(cells, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(
                f"cells must be CellPoints or an (N, 2) array of (row, col) level-0 pixels, "
                f"got shape {arr.shape}")
        rows, cols, classes = arr[:, 0], arr[:, 1], None
    if rows.shape != cols.shape:
        raise ValueError(f"cells have {rows.size} rows but {cols.size} cols")
    if classes is not None and classes.shape != rows.shape:
        raise ValueError(f"cells have {rows.size} positions but {classes.size} classes")
    return rows, cols, classes


def as_class_set(classes, *, name: str) -> tuple[str, ...]:
    """A tuple of class names from a string or an iterable of strings."""
    if isinstance(classes, str):
        return (classes,)
    out = tuple(str(c) for c in classes)
    if not out:
        raise ValueError(f"{name} must name at least one class")
    return out
