"""Cell-level evaluation of a heatmap against point annotations (seed 000).

Each cell gets the area-weighted mean of the (rectified) heatmap over a disc around its point
(an exact disc integral, see `disc`); an ROC curve of "positive class" cells against the others
over thresholds of that score says how well the heatmap separates them. Baselines (all-zero,
all-one and random heatmaps) give AUC 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import as_class_set, as_map, as_placement, cell_arrays
from .disc import ConstantMap, RandomMap

__all__ = ["ConstantMap", "RandomMap", "RocResult", "TileRoc", "baseline_aucs", "cell_roc", "cell_scores",
           "per_tile_roc"]


def _rows_source(heatmap):
    """(shape, get_rows) of an array, a memmap or any object with ``.shape`` and row slicing."""
    if isinstance(heatmap, np.ndarray) or hasattr(heatmap, "shape") and hasattr(heatmap, "__getitem__"):
        shape = tuple(heatmap.shape)
        if len(shape) != 2 or 0 in shape:
            raise ValueError(f"heatmap must be a non-empty 2-D array (rows, cols), got shape {shape}")
        if isinstance(heatmap, np.ndarray) and not (
                np.issubdtype(heatmap.dtype, np.number) or heatmap.dtype == bool):
            raise ValueError(f"heatmap must be numeric, got dtype {heatmap.dtype}")
        return shape, heatmap
    h = as_map(heatmap)
    return h.shape, h


def cell_scores(heatmap, cells, *, radius_um: float, mpp: float, placement=None,
                convention: str | None = None, rectify: bool = True, min_coverage: float = 0.0,
                return_coverage: bool = False, block_pixels: int = 1 << 22):
    """Area-weighted mean heatmap value over a disc around each cell (exact disc integral).

    Parameters
    ----------
    heatmap : (H, W) array, memmap, or object with ``.shape`` and row slicing
        Heatmap values; NaN pixels (e.g. outside tissue) are left out of the means.
    cells : CellPoints or (N, 2) array
        Cell positions in level-0 pixels, (row, col).
    radius_um : float
        Disc radius in micrometres (about half a tumour-cell diameter); 0 takes the value of
        the heatmap pixel holding the cell.
    mpp : float
        Micrometres per level-0 pixel.
    placement : Placement, dict or None
        Where the heatmap lies on level 0 (origin and step in level-0 pixels); ``None`` means
        origin (0, 0), step 1.
    convention : {"rectified", "signed", "absolute"} or None
        How a signed map is read (see `conventions`); ``None`` follows ``rectify``.
    rectify : bool
        Shorthand kept for callers: ``True`` is ``"rectified"`` (positive evidence only, as in
        seed 000), ``False`` is ``"signed"``.
    min_coverage : float
        Least share of the disc area that must lie on finite heatmap pixels for a score
        (0: any overlap at all).
    return_coverage : bool
        Also return that share per cell.
    block_pixels : int
        About how many heatmap pixels are processed at once (bounds memory).

    Returns
    -------
    scores : (N,) float64
        The score of each cell; NaN for cells whose disc does not overlap a finite heatmap
        pixel (or covers less than ``min_coverage``).
    coverage : (N,) float64, only with ``return_coverage``

    Notes
    -----
    Heatmap pixel ``(i, j)`` covers level-0 ``[origin - 0.5 + i * step, origin - 0.5 + (i + 1)
    * step)`` per axis; each pixel is weighted by the exact area it shares with the disc
    (see `disc`), so coarse maps (step larger than the disc) are integrated as finely as
    full-resolution ones, and a cell whose disc overlaps the map is scored even when its
    centre lies off it.

    Examples
    --------
    >>> import numpy as np
    >>> heat = np.zeros((10, 10)); heat[2:5, 2:5] = 1.0
    >>> cell_scores(heat, np.array([[3.0, 3.0], [8.0, 8.0], [30.0, 3.0]]), radius_um=0.5, mpp=0.5)
    array([ 1.,  0., nan])
    >>> coarse = np.array([[0.0, 1.0]])  # two map pixels of 10 x 10 level-0 px
    >>> from napari_xhisto.geometry import Placement
    >>> s = cell_scores(coarse, np.array([[4.5, 9.5]]), radius_um=2, mpp=1,
    ...                 placement=Placement(0, 0, 10, 10))
    >>> round(float(s[0]), 6)  # the disc straddles the edge between the pixels: half and half
    0.5
    """
    from .conventions import check_convention
    from .disc import disc_means, values_transform

    shape, source = _rows_source(heatmap)
    p = as_placement(placement)
    conv = check_convention(convention if convention is not None
                            else ("rectified" if rectify else "signed"))
    if not np.isfinite(radius_um) or radius_um < 0:
        raise ValueError(f"radius_um must be a finite number >= 0, got {radius_um}")
    if not np.isfinite(mpp) or mpp <= 0:
        raise ValueError(f"mpp must be a positive number of µm per level-0 pixel, got {mpp}")
    if not 0 <= min_coverage <= 1:
        raise ValueError(f"min_coverage must be in [0, 1], got {min_coverage}")
    rows, cols, _ = cell_arrays(cells)
    views = isinstance(source, np.ndarray)  # an array or memmap: row windows are views

    def get_rows(a, b):
        return source[a:b] if views else np.asarray(source[a:b])

    scores, coverage = disc_means(get_rows, shape, p, rows, cols, radius_um / mpp,
                                  block_pixels=block_pixels, transform=values_transform(conv),
                                  views=views)
    if min_coverage > 0:
        scores[coverage < min_coverage] = np.nan
    return (scores, coverage) if return_coverage else scores


@dataclass
class RocResult:
    """An ROC curve of positive against negative cells, and its area.

    ``thresholds[k]`` is the score above or at which cells are called positive for the point
    ``(fpr[k], tpr[k])``; the first point is ``(0, 0)`` at threshold ``inf``.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float
    n_positive: int
    n_negative: int
    n_excluded: int
    positive: tuple[str, ...]
    negative: tuple[str, ...] | None

    def to_dict(self, *, curve: bool = True) -> dict:
        d = {"auc": float(self.auc), "n_positive": self.n_positive, "n_negative": self.n_negative,
             "n_excluded": self.n_excluded, "positive": list(self.positive),
             "negative": None if self.negative is None else list(self.negative)}
        if curve:
            d["fpr"] = self.fpr.tolist()
            d["tpr"] = self.tpr.tolist()
            d["thresholds"] = [float(t) if np.isfinite(t) else None for t in self.thresholds]
        return d


def _labels(classes, positive, negative) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (is_positive, is_negative) of each cell."""
    classes = np.asarray(getattr(classes, "classes", classes)).astype(str).ravel()
    pos_set = as_class_set(positive, name="positive")
    is_pos = np.isin(classes, pos_set)
    if negative is None:
        is_neg = ~is_pos
    else:
        is_neg = np.isin(classes, as_class_set(negative, name="negative")) & ~is_pos
    return is_pos, is_neg


def roc_groups_problem(n_pos: int, n_neg: int, positive, negative=None) -> str | None:
    """Why a cell ROC cannot be computed from ``n_pos`` positive and ``n_neg`` negative scored
    cells (None: it can). The message says what to change."""
    if n_pos and n_neg:
        return None
    pos_names = ", ".join(as_class_set(positive, name="positive"))
    neg_names = ("all other classes" if negative is None
                 else ", ".join(as_class_set(negative, name="negative")))
    return (f"a cell ROC needs scored cells of both groups, got {n_pos} positive ({pos_names}) "
            f"and {n_neg} negative ({neg_names}); check the class names and that cells of both "
            "groups lie on the heatmap")


def _roc(scores: np.ndarray, y: np.ndarray):
    """fpr, tpr, thresholds, auc for finite scores and boolean labels (both classes present)."""
    order = np.argsort(-scores, kind="mergesort")
    s, t = scores[order], y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]
    tps = np.cumsum(t)[last_of_run].astype(np.float64)
    fps = (last_of_run + 1) - tps
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    thresholds = np.r_[np.inf, s[last_of_run]]
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    return fpr, tpr, thresholds, auc


def cell_roc(scores, classes, *, positive=("tumour",), negative=None) -> RocResult:
    """ROC curve and AUC of positive-class cells against negative ones, over score thresholds.

    Parameters
    ----------
    scores : (N,) array
        One score per cell (e.g. from `cell_scores`); NaN scores are excluded and counted.
    classes : (N,) array of str, or CellPoints
        The class of each cell.
    positive : str or sequence of str
        Classes counted as positive.
    negative : str, sequence of str or None
        Classes counted as negative; ``None`` means every class not in ``positive``. Cells of
        other classes are left out (not counted in ``n_excluded``).

    Returns
    -------
    RocResult

    Raises
    ------
    ValueError
        When the lengths differ or no positive or no negative cell has a score.

    Examples
    --------
    >>> import numpy as np
    >>> roc = cell_roc(np.array([0.9, 0.8, 0.3, 0.1]), np.array(["tumour", "stroma", "tumour", "stroma"]))
    >>> roc.auc
    0.75
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    is_pos, is_neg = _labels(classes, positive, negative)
    if is_pos.size != s.size:
        raise ValueError(f"{s.size} scores but {is_pos.size} classes: give one class per cell")
    considered = is_pos | is_neg
    finite = np.isfinite(s)
    keep = considered & finite
    n_pos, n_neg = int(np.sum(is_pos & keep)), int(np.sum(is_neg & keep))
    pos_names = as_class_set(positive, name="positive")
    neg_names = None if negative is None else as_class_set(negative, name="negative")
    problem = roc_groups_problem(n_pos, n_neg, positive, negative)
    if problem:
        raise ValueError(problem)
    fpr, tpr, thr, auc = _roc(s[keep], is_pos[keep])
    return RocResult(fpr, tpr, thr, auc, n_pos, n_neg, int(np.sum(considered & ~finite)),
                     pos_names, neg_names)


def baseline_aucs(shape, cells, *, radius_um: float, mpp: float, placement=None, classes=None,
                  positive=("tumour",), negative=None, n_random: int = 20, seed: int = 0,
                  nan_like=None) -> dict:
    """AUC of the seed-000 baselines: all-zero, all-one and uniformly random heatmaps.

    Parameters
    ----------
    shape : (int, int)
        Shape of the heatmap the baselines replace (same placement).
    cells : CellPoints or (N, 2) array
        Cells in level-0 pixels; their classes are used unless ``classes`` is given.
    n_random : int
        Number of random heatmaps (uniform on [0, 1); run ``k`` is ``RandomMap`` seeded
        ``(seed, k)``).
    nan_like : (H, W) array or None
        The evaluated heatmap: the baselines are NaN where it is, so they score the same
        pixels (and the same cells) as the real heatmap.

    Returns
    -------
    dict
        ``all_zero``, ``all_one``, ``random_mean``, ``random_std``, ``random_aucs``.

    Examples
    --------
    >>> import numpy as np
    >>> pts = np.array([[2.0, 2.0], [5.0, 5.0], [8.0, 2.0], [2.0, 8.0]])
    >>> b = baseline_aucs((10, 10), pts, radius_um=1, mpp=1, classes=["tumour", "stroma"] * 2,
    ...                   n_random=3)
    >>> b["all_zero"], b["all_one"]
    (0.5, 0.5)
    """
    _, _, own = cell_arrays(cells)
    labels = own if classes is None else np.asarray(classes).astype(str)
    if labels is None:
        raise ValueError("baseline_aucs needs the cell classes: pass CellPoints or classes=")
    if len(shape) != 2:
        raise ValueError(f"shape must be (rows, cols), got {shape}")
    kw = dict(radius_um=radius_um, mpp=mpp, placement=placement)
    out = {}
    for name, fill in (("all_zero", 0.0), ("all_one", 1.0)):
        sc = cell_scores(ConstantMap(shape, fill, nan_like=nan_like), cells, **kw)
        out[name] = cell_roc(sc, labels, positive=positive, negative=negative).auc
    aucs = [cell_roc(cell_scores(RandomMap(shape, seed=(seed, k), nan_like=nan_like), cells, **kw),
                     labels, positive=positive, negative=negative).auc
            for k in range(int(n_random))]
    out["random_aucs"] = aucs
    out["random_mean"] = float(np.mean(aucs)) if aucs else float("nan")
    out["random_std"] = float(np.std(aucs)) if aucs else float("nan")
    return out


@dataclass
class TileRoc:
    """AUC of the cells inside one square tile (level-0 pixels); NaN when a group is missing."""

    tile_row: int
    tile_col: int
    row0: float
    col0: float
    size: float
    auc: float
    n_positive: int
    n_negative: int

    def to_dict(self) -> dict:
        return {k: (float(v) if isinstance(v, float | np.floating) else int(v))
                for k, v in self.__dict__.items()}


def per_tile_roc(scores, cells, *, tile_size: float, classes=None, positive=("tumour",),
                 negative=None, origin=(0.0, 0.0)) -> list[TileRoc]:
    """AUC per tile of a square grid, to find tiles where the heatmap fails.

    Parameters
    ----------
    scores : (N,) array
        Cell scores; NaN scores are left out.
    cells : CellPoints or (N, 2) array
        Cell positions (level-0 pixels); classes from here unless ``classes`` is given.
    tile_size : float
        Tile side in level-0 pixels.
    origin : (float, float)
        Level-0 position of the grid's top-left corner.

    Returns
    -------
    list of TileRoc
        One entry per tile holding at least one considered cell, in (tile_row, tile_col) order.

    Examples
    --------
    >>> import numpy as np
    >>> pts = np.array([[10, 10], [20, 20], [10, 110], [20, 120]], dtype=float)
    >>> tiles = per_tile_roc(np.array([0.9, 0.1, 0.2, 0.8]), pts, tile_size=100,
    ...                      classes=["tumour", "stroma"] * 2)
    >>> [(t.tile_col, t.auc) for t in tiles]
    [(0, 1.0), (1, 0.0)]
    """
    if not tile_size > 0:
        raise ValueError(f"tile_size must be positive (level-0 pixels), got {tile_size}")
    rows, cols, own = cell_arrays(cells)
    labels = own if classes is None else np.asarray(classes).astype(str)
    if labels is None:
        raise ValueError("per_tile_roc needs the cell classes: pass CellPoints or classes=")
    s = np.asarray(scores, dtype=np.float64).ravel()
    if not (s.size == rows.size == labels.size):
        raise ValueError(f"{s.size} scores, {rows.size} cells and {labels.size} classes differ")
    is_pos, is_neg = _labels(labels, positive, negative)
    keep = (is_pos | is_neg) & np.isfinite(s)
    tr = np.floor((rows - origin[0]) / tile_size).astype(np.int64)
    tc = np.floor((cols - origin[1]) / tile_size).astype(np.int64)
    out = []
    if not keep.any():
        return out
    keys, which = np.unique(np.stack([tr[keep], tc[keep]], axis=1), axis=0, return_inverse=True)
    order = np.argsort(which.ravel(), kind="stable")
    groups = np.split(np.flatnonzero(keep)[order], np.cumsum(np.bincount(which.ravel()))[:-1])
    for (a, b), m in zip(keys, groups):
        n_pos, n_neg = int(np.sum(is_pos[m])), int(np.sum(is_neg[m]))
        auc = _roc(s[m], is_pos[m])[3] if n_pos and n_neg else float("nan")
        out.append(TileRoc(int(a), int(b), origin[0] + a * tile_size, origin[1] + b * tile_size,
                           float(tile_size), auc, n_pos, n_neg))
    return out
