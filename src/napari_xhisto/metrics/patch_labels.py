"""Which class an annotated patch belongs to: the labelling rule of ``xhisto calibrate``.

A patch grid (the cells of :func:`napari_xhisto.models.inference.plan_patches`, one patch per
cell, patches side by side) is labelled from annotations in level-0 pixels:

``"cells"`` (the default when the file has cell points)
    the cells whose point lies inside the patch vote; the patch's label is the class with the
    most votes. A tie goes to the positive class when it is among the tied classes (so for a
    two-class model a patch is positive when at least half its cells are: the rule the demo
    model was trained with), otherwise the patch is skipped. Patches with fewer than
    ``min_cells`` voting cells are skipped.
``"regions"`` (the default when the file has only regions)
    the regions covering the patch's centre decide; a patch whose centre lies in no region, or
    in regions that map to different classes, is skipped.

Annotation classes are matched to the model's classes by name (case-insensitive), then by the
role the name suggests (``"Tumor"`` cells and ``"tumour area"`` regions are the model class
``"tumour"``, see :func:`napari_xhisto.annotations.suggest_role`). In a two-class model every
other annotated class counts as the non-positive class; in a model with more classes it does
not vote. Classes whose role is ``"ignore"`` (QuPath's ``Ignore*``) never vote, and a region
of that role removes the patches whose centre it covers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..annotations import suggest_role
from .regions import region_mask

__all__ = ["IGNORED", "LABEL_RULES", "UNMAPPED", "PatchLabels", "label_patches",
           "model_class_index"]

LABEL_RULES = ("auto", "cells", "regions")
UNMAPPED = -1
IGNORED = -2


def model_class_index(name: str, class_names, positive_class: str, *, kind: str = "cell") -> int:
    """Index of the model class an annotation class stands for (``UNMAPPED``/``IGNORED``).

    Examples
    --------
    >>> names = ["non-tumour", "tumour"]
    >>> model_class_index("Tumor", names, "tumour"), model_class_index("stroma", names, "tumour")
    (1, 0)
    >>> model_class_index("tumour area", names, "tumour", kind="region")
    1
    >>> model_class_index("Ignore*", names, "tumour")
    -2
    """
    key = str(name).strip().lower()
    lower = [c.lower() for c in class_names]
    if key in lower:
        return lower.index(key)
    role = suggest_role(name, kind=kind)
    if role == "ignore":
        return IGNORED
    if role is not None:
        for k, c in enumerate(class_names):
            if suggest_role(c, kind=kind) == role:
                return k
    if len(class_names) == 2:
        return 1 - list(class_names).index(positive_class)
    return UNMAPPED


@dataclass
class PatchLabels:
    """Labels of the patches of a grid; ``-1`` where a patch has no usable evidence.

    Attributes
    ----------
    labels : (K,) int
        Model class index per patch (``-1``: skipped).
    rule : str
        ``"cells"`` or ``"regions"``.
    skipped : dict
        Reason -> number of patches skipped for it.
    unmapped : list of str
        Annotation classes that matched no model class (they did not vote).
    n_evidence : (K,) int
        Voting cells (rule ``"cells"``) or covering regions (``"regions"``) per patch.
    """

    labels: np.ndarray
    rule: str
    skipped: dict = field(default_factory=dict)
    unmapped: list = field(default_factory=list)
    n_evidence: np.ndarray | None = None

    @property
    def n_labelled(self) -> int:
        return int((self.labels >= 0).sum())


def _map_all(names, class_names, positive_class, kind):
    uniq, inverse = np.unique(np.asarray(names, dtype=str), return_inverse=True)
    idx = np.array([model_class_index(u, class_names, positive_class, kind=kind) for u in uniq],
                   dtype=np.int64)
    unmapped = [str(u) for u, k in zip(uniq, idx) if k == UNMAPPED]
    return (idx[inverse] if len(uniq) else np.zeros(0, np.int64)), unmapped


def _by_cells(annotations, placement, shape, cells, class_names, positive, min_cells):
    n_cls = len(class_names)
    rows, cols = shape
    pts = annotations.cells
    cls, unmapped = _map_all(pts.classes, class_names, class_names[positive], "cell")
    i = np.floor((pts.rows - placement.origin_row) / placement.step_row).astype(np.int64)
    j = np.floor((pts.cols - placement.origin_col) / placement.step_col).astype(np.int64)
    keep = (cls >= 0) & (i >= 0) & (i < rows) & (j >= 0) & (j < cols)
    votes = np.zeros((rows, cols, n_cls), np.int64)
    np.add.at(votes, (i[keep], j[keep], cls[keep]), 1)
    v = votes[cells[:, 0], cells[:, 1]] if len(cells) else np.zeros((0, n_cls), np.int64)
    n = v.sum(axis=1)
    top = v.max(axis=1) if len(v) else np.zeros(0, np.int64)
    tied = (v == top[:, None]) & (n[:, None] > 0)
    n_tied = tied.sum(axis=1)
    labels = np.where(n_tied == 1, v.argmax(axis=1), -1)
    pos_tie = (n_tied > 1) & tied[:, positive]
    labels[pos_tie] = positive
    few = n < max(1, int(min_cells))
    labels[few] = -1
    skipped = {"no annotated cell": int((n == 0).sum()),
               f"fewer than {int(min_cells)} cells": int((few & (n > 0)).sum()),
               "tie between classes": int((~few & (n_tied > 1) & ~pos_tie).sum())}
    return PatchLabels(labels.astype(np.int64), "cells", {k: v for k, v in skipped.items() if v},
                       unmapped, n)


def _by_regions(annotations, placement, shape, cells, class_names, positive):
    n_cls = len(class_names)
    names = [r.cls for r in annotations.regions]
    cls, unmapped = _map_all(names, class_names, class_names[positive], "region")
    cover = np.zeros((*shape, n_cls), bool)
    ignore = np.zeros(shape, bool)
    for region, k in zip(annotations.regions, cls):
        if k == UNMAPPED:
            continue
        mask = region_mask(region, shape, placement=placement)
        if k == IGNORED:
            ignore |= mask
        else:
            cover[..., k] |= mask
    c = cover[cells[:, 0], cells[:, 1]] if len(cells) else np.zeros((0, n_cls), bool)
    ign = ignore[cells[:, 0], cells[:, 1]] if len(cells) else np.zeros(0, bool)
    n = c.sum(axis=1)
    labels = np.where((n == 1) & ~ign, c.argmax(axis=1), -1)
    skipped = {"centre in no annotated region": int(((n == 0) & ~ign).sum()),
               "regions of different classes": int(((n > 1) & ~ign).sum()),
               "ignored region": int(ign.sum())}
    return PatchLabels(labels.astype(np.int64), "regions",
                       {k: v for k, v in skipped.items() if v}, unmapped, n)


def label_patches(annotations, placement, shape, cells, class_names, positive_class, *,
                  rule: str = "auto", min_cells: int = 3) -> PatchLabels:
    """Label the patches ``cells`` of a grid from annotations (see the module notes).

    Parameters
    ----------
    annotations : AnnotationSet
        Cells and regions in level-0 (row, col) pixels.
    placement : Placement
        Grid origin and step (level-0 px); patch (i, j) covers
        ``origin + [i, i + 1) * step`` (patches side by side, no overlap).
    shape : (rows, cols)
        Grid shape.
    cells : (K, 2) int
        Grid indices of the patches to label.
    class_names : list of str
        The model's classes.
    positive_class : str
    rule : {"auto", "cells", "regions"}
        ``"auto"``: cells when the annotations hold any, regions otherwise.
    min_cells : int
        Fewest voting cells a patch needs under the cells rule.

    Examples
    --------
    >>> from napari_xhisto.annotations import AnnotationSet, CellPoints
    >>> from napari_xhisto.geometry import Placement
    >>> cells = CellPoints([5, 6, 7, 15], [5, 6, 7, 15], ["tumour", "tumour", "stroma", "stroma"])
    >>> lab = label_patches(AnnotationSet(cells, [], {}), Placement(0, 0, 10, 10), (2, 2),
    ...                     np.array([[0, 0], [1, 1]]), ["non-tumour", "tumour"], "tumour",
    ...                     min_cells=1)
    >>> lab.labels.tolist(), lab.rule
    ([1, 0], 'cells')
    """
    if rule not in LABEL_RULES:
        raise ValueError(f"label rule must be one of {LABEL_RULES}, got {rule!r}")
    class_names = [str(c) for c in class_names]
    if positive_class not in class_names:
        raise ValueError(f"positive class {positive_class!r} is not one of {class_names}")
    positive = class_names.index(positive_class)
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
    shape = (int(shape[0]), int(shape[1]))
    has_cells = len(annotations.cells) > 0
    if rule == "auto":
        rule = "cells" if has_cells else "regions"
    if rule == "cells":
        if not has_cells:
            raise ValueError("the annotations hold no cell points: use the regions rule")
        return _by_cells(annotations, placement, shape, cells, class_names, positive, min_cells)
    if not annotations.regions:
        raise ValueError("the annotations hold no regions: use the cells rule")
    return _by_regions(annotations, placement, shape, cells, class_names, positive)
