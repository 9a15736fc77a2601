"""All metrics of one heatmap against annotations, as one JSON-ready dict.

`evaluate_heatmap` is what ``xhisto evaluate`` and the Evaluate widget both call, so the CLI,
the widget and Python give the same numbers.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from ._common import as_map, as_placement, cell_arrays
from .cells import baseline_aucs, cell_roc, cell_scores, per_tile_roc
from .localization import confusion_over_thresholds, localization_at_percentiles, pxap
from .regions import region_mask, region_relevance

__all__ = ["evaluate_heatmap", "iter_evaluate_heatmap", "jsonable", "truth_mask"]


def jsonable(obj):
    """``obj`` with numpy types made plain and NaN/inf made ``None`` (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def truth_mask(regions, shape, *, placement=None, classes) -> np.ndarray:
    """Union of the masks of the regions whose class is in ``classes``."""
    mask = np.zeros(shape, dtype=bool)
    for region in regions:
        if getattr(region, "cls", None) in set(classes):
            mask |= region_mask(region, shape, placement=placement)
    return mask


def evaluate_heatmap(heatmap, **options) -> dict:
    """All metrics at once: `iter_evaluate_heatmap` run to its end (same options)."""
    from ..progress import run_to_end

    return run_to_end(iter_evaluate_heatmap(heatmap, **options))


def iter_evaluate_heatmap(heatmap, *, placement=None, mpp: float, cells=None, regions=(),
                     radius_um: float, positive=("tumour",), negative=None,
                     tile_um: float = 256.0, n_random: int = 20, seed: int = 0,
                     localize=None, percentiles=(50, 75, 90), iou_threshold: float = 0.5,
                     curves: bool = True):
    """Cell ROC with baselines, per-tile ROC, region relevance and localisation of one heatmap.

    Parameters
    ----------
    heatmap : (H, W) array
        Heatmap values (NaN where not computed).
    placement : Placement, dict or None
        Where the heatmap lies on level 0.
    mpp : float
        µm per level-0 pixel (converts ``radius_um`` and ``tile_um``).
    cells : CellPoints or None
        Cell annotations in level-0 pixels; skipped when None or empty.
    regions : sequence of RegionShape
        Region annotations in level-0 pixels.
    radius_um : float
        Disc radius for cell scores.
    positive, negative : class names
        Groups compared by the cell ROC (``negative=None``: all other classes).
    tile_um : float
        Tile side of the per-tile ROC grid, in µm.
    n_random : int
        Random heatmaps for the baseline.
    localize : sequence of str or None
        Region classes the heatmap should localise (PxAP etc. against their union);
        None means ``("tumour area",)`` when such regions exist.
    curves : bool
        Include full ROC / threshold curves.

    Yields
    ------
    (done, total)
        Progress, one step per stage and per random baseline run.

    Returns
    -------
    dict
        Keys ``heatmap``, ``cells``, ``roc``, ``baselines``, ``per_tile``, ``regions``,
        ``localization`` (those that apply), ready for `jsonable` and JSON.

    Examples
    --------
    >>> import numpy as np
    >>> heat = np.zeros((20, 20)); heat[:, :10] = 1.0
    >>> from types import SimpleNamespace
    >>> cells = SimpleNamespace(rows=np.array([5.0, 12, 5, 14]), cols=np.array([3.0, 4, 15, 16]),
    ...                         classes=np.array(["tumour", "tumour", "stroma", "stroma"]))
    >>> out = evaluate_heatmap(heat, mpp=1.0, cells=cells, radius_um=2, n_random=2)
    >>> out["roc"]["auc"], out["baselines"]["all_one"]
    (1.0, 0.5)
    """
    h = as_map(heatmap)
    p = as_placement(placement)
    if not (mpp and mpp > 0):
        raise ValueError("mpp (µm per level-0 pixel) is needed to convert the disc radius; "
                         "pass --mpp or use a heatmap file that records it")
    out = {"heatmap": {"shape": list(h.shape), "placement": p.to_dict(), "mpp": mpp,
                       "finite_fraction": float(np.isfinite(h).mean())},
           "parameters": {"radius_um": radius_um, "positive": list(np.atleast_1d(positive)),
                          "negative": None if negative is None else list(np.atleast_1d(negative)),
                          "tile_um": tile_um, "n_random": n_random, "seed": seed}}
    rows, cols, classes = cell_arrays(cells) if cells is not None else (np.empty(0),) * 2 + (None,)
    regions = list(regions or ())
    targets = ("tumour area",) if localize is None else tuple(localize)
    present = {getattr(r, "cls", None) for r in regions}
    targets = [t for t in targets if t in present]
    total = (3 + n_random if rows.size else 0) + (1 + len(targets) if regions else 0)
    done = 0
    yield done, total
    if rows.size:
        if classes is None:
            raise ValueError("cells need classes for a cell ROC")
        scores = cell_scores(h, cells, radius_um=radius_um, mpp=mpp, placement=p)
        out["cells"] = {"n": int(rows.size), "n_off_heatmap": int(np.isnan(scores).sum()),
                        "classes": dict(Counter(classes.tolist())), "scores": scores}
        roc = cell_roc(scores, classes, positive=positive, negative=negative)
        out["roc"] = roc.to_dict(curve=curves)
        done += 1
        yield done, total
        base = baseline_aucs(h.shape, cells, radius_um=radius_um, mpp=mpp, placement=p,
                             positive=positive, negative=negative, n_random=0)
        rng = np.random.default_rng(seed)
        aucs = []
        for _ in range(int(n_random)):
            random_scores = cell_scores(rng.random(h.shape), cells, radius_um=radius_um,
                                        mpp=mpp, placement=p)
            aucs.append(cell_roc(random_scores, classes, positive=positive, negative=negative).auc)
            done += 1
            yield done, total
        base.update(random_aucs=aucs, random_mean=float(np.mean(aucs)) if aucs else float("nan"),
                    random_std=float(np.std(aucs)) if aucs else float("nan"))
        out["baselines"] = base
        done += 1
        yield done, total
        tiles = per_tile_roc(scores, cells, tile_size=tile_um / mpp, positive=positive,
                             negative=negative, origin=(p.origin_row, p.origin_col))
        out["per_tile"] = [t.to_dict() for t in tiles]
        done += 1
        yield done, total
    if regions:
        out["regions"] = [r.to_dict() for r in region_relevance(h, regions, placement=p)]
        done += 1
        yield done, total
        out["localization"] = {}
        filled = np.where(np.isfinite(h), h, np.nanmin(h) if np.isfinite(h).any() else 0.0)
        for name in targets:
            truth = truth_mask(regions, h.shape, placement=p, classes=(name,))
            done += 1
            yield done, total
            if not truth.any():
                continue
            px = pxap(filled, truth)
            conf = confusion_over_thresholds(filled, truth)
            entry = {"pxap": px.pxap, "mean_rates": conf["mean_rates"],
                     "at_percentiles": localization_at_percentiles(
                         filled, truth, percentiles=percentiles, iou_threshold=iou_threshold,
                         spacing=(p.step_row, p.step_col))}
            if curves:
                entry["curve"] = {"thresholds": conf["thresholds"], **conf["curve"]}
            out["localization"][name] = entry
    return out
