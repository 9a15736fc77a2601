"""A patch's label from annotations, for meta-explanations (purity, confident disagreements).

The rule (the demo model's training rule, extended to regions):

1. **Cells first.** The annotated cells whose centre lies inside the patch's square footprint
   vote: each cell class maps to a model class (below); the patch takes the class with most
   votes. Ties go to the model's positive class when it is among the tied, else the patch stays
   unlabelled. For a two-class model this is "positive when >= 50% of the patch's cells are
   positive cells", the rule the demo model was trained with.
2. **Else the region at the patch centre.** A patch with no annotated cell takes the class of
   the annotated region containing its centre (the last listed region wins where regions
   overlap, as they are drawn).
3. **Else unlabelled** (``-1``): never counted in purity nor in disagreements.

Class names map to model classes by name, case-insensitively, after dropping a trailing
" area" / " region" and reading "tumor" as "tumour" (so the region class "tumour area" is the
model class "tumour"). A class matching no model class maps to the negative class of a
two-class model with a positive class (stroma, lymphocyte, necrosis -> "non-tumour"), and is
ignored (no vote, no label) otherwise.
"""

from __future__ import annotations

import numpy as np

from ._common import cell_arrays

__all__ = ["LABEL_RULE", "class_index_map", "patch_labels", "points_in_ring"]

LABEL_RULE = ("cells inside the patch vote (majority; ties to the positive class), else the "
              "annotated region at the patch centre, else unlabelled")


def _key(name: str) -> str:
    n = str(name).strip().lower().replace("tumor", "tumour")
    for suffix in (" area", " region"):
        if n.endswith(suffix):
            n = n[: -len(suffix)]
    return n


def class_index_map(names, class_names, *, positive: str | None = None) -> dict[str, int]:
    """Model class index of each annotation class name (``-1``: ignored).

    Examples
    --------
    >>> class_index_map(["tumour area", "stroma", "Tumor"], ["non-tumour", "tumour"],
    ...                 positive="tumour")
    {'tumour area': 1, 'stroma': 0, 'Tumor': 1}
    """
    keys = [_key(c) for c in class_names]
    negative = -1
    if positive is not None and len(class_names) == 2 and positive in class_names:
        negative = 1 - list(class_names).index(positive)
    out = {}
    for name in names:
        k = _key(name)
        out[str(name)] = keys.index(k) if k in keys else negative
    return out


def points_in_ring(rows, cols, ring) -> np.ndarray:
    """bool per point: inside the polygon ``ring`` ((M, 2) row, col), even-odd rule.

    Examples
    --------
    >>> import numpy as np
    >>> square = np.array([[0, 0], [0, 10], [10, 10], [10, 0]])
    >>> points_in_ring([5, 5, 15], [5, 11, 5], square).tolist()
    [True, False, False]
    """
    r = np.asarray(rows, dtype=np.float64).ravel()[:, None]
    c = np.asarray(cols, dtype=np.float64).ravel()[:, None]
    ring = np.asarray(ring, dtype=np.float64).reshape(-1, 2)
    if len(ring) < 3:
        return np.zeros(r.shape[0], bool)
    ra, ca = ring[:, 0][None], ring[:, 1][None]
    rb, cb = np.roll(ring[:, 0], -1)[None], np.roll(ring[:, 1], -1)[None]
    crosses = (ra > r) != (rb > r)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = ca + (r - ra) * (cb - ca) / (rb - ra)
    return (np.count_nonzero(crosses & (c < x), axis=1) % 2) == 1


def _in_region(rows, cols, region) -> np.ndarray:
    inside = points_in_ring(rows, cols, region.exterior)
    for hole in getattr(region, "holes", []) or []:
        inside &= ~points_in_ring(rows, cols, hole)
    return inside


def patch_labels(centres, footprint: float, class_names, *, cells=None, regions=(),
                 positive: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Label of each patch by the module's rule.

    Parameters
    ----------
    centres : (N, 2) array
        Patch centres, level-0 (row, col) px.
    footprint : float
        Side of a patch's square, level-0 px.
    class_names : sequence of str
        The model's classes.
    cells : CellPoints, optional
        Annotated cells with classes (level-0 px).
    regions : sequence of RegionShape
        Annotated regions (``cls``, ``exterior`` and ``holes`` in level-0 (row, col) px).
    positive : str, optional
        The model's positive class (ties, and the negative class of a two-class model).

    Returns
    -------
    labels : (N,) int
        Class index, ``-1`` for unlabelled.
    source : (N,) str
        ``"cells"``, ``"region"``, ``"tie"`` (cells voted evenly, no positive among the tied:
        unlabelled) or ``"none"`` (no cell, no region: unlabelled).

    Examples
    --------
    >>> import numpy as np
    >>> from napari_xhisto.annotations.model import CellPoints
    >>> cells = CellPoints(np.array([10., 12, 14, 110]), np.array([10., 12, 14, 110]),
    ...                    np.array(["tumour", "tumour", "stroma", "stroma"]))
    >>> labels, source = patch_labels([[12, 12], [110, 110], [300, 300]], 20,
    ...                               ["non-tumour", "tumour"], cells=cells, positive="tumour")
    >>> labels.tolist(), source.tolist()
    ([1, 0, -1], ['cells', 'cells', 'none'])
    """
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    n, n_classes = len(centres), len(class_names)
    labels = np.full(n, -1, np.int64)
    source = np.full(n, "none", dtype=object)
    if n == 0:
        return labels, source.astype(str)
    pos_index = list(class_names).index(positive) if positive in list(class_names) else -1
    half = float(footprint) / 2
    if cells is not None and len(cells):
        rows, cols, classes = cell_arrays(cells)
        if classes is None:
            raise ValueError("cells need classes to label patches")
        mapping = class_index_map(np.unique(classes), class_names, positive=positive)
        cell_class = np.array([mapping[c] for c in classes], np.int64)
        keep = cell_class >= 0
        rows, cols, cell_class = rows[keep], cols[keep], cell_class[keep]
        order = np.argsort(rows, kind="stable")
        rows, cols, cell_class = rows[order], cols[order], cell_class[order]
        for i, (r0, c0) in enumerate(centres):
            lo, hi = np.searchsorted(rows, [r0 - half, r0 + half], side="left")
            sel = (cols[lo:hi] >= c0 - half) & (cols[lo:hi] < c0 + half)
            votes = np.bincount(cell_class[lo:hi][sel], minlength=n_classes)
            if votes.sum() == 0:
                continue
            top = np.flatnonzero(votes == votes.max())
            if len(top) == 1:
                labels[i] = top[0]
            elif pos_index in top:
                labels[i] = pos_index
            source[i] = "cells" if labels[i] >= 0 else "tie"
    todo = np.flatnonzero(source == "none")
    if len(todo) and regions:
        mapping = class_index_map({r.cls for r in regions}, class_names, positive=positive)
        for region in regions:
            k = mapping[str(region.cls)]
            if k < 0:
                continue
            inside = _in_region(centres[todo, 0], centres[todo, 1], region)
            labels[todo[inside]] = k
            source[todo[inside]] = "region"
    return labels, source.astype(str)
