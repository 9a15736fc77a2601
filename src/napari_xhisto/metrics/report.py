"""All metrics of one heatmap against annotations, as one JSON-ready dict.

`evaluate_heatmap` is what ``xhisto evaluate`` and the Evaluate widget both call, so the CLI,
the widget and Python give the same numbers. The output names the convention each metric used
for signed maps (``conventions``), the units of every length (``units``) and, for every AUC,
a bootstrap interval with its settings (``roc.ci``). `evaluate_heatmaps` (in `multi`) runs it
for several heatmaps of the same cells and compares their AUCs.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from ._common import as_placement, cell_arrays
from .cells import _labels, _rows_source, cell_roc, cell_scores, per_tile_roc, roc_groups_problem
from .conventions import check_convention, conventions_record
from .localization import localization_at_percentiles
from .regions import region_relevance, region_window
from .threshold_sweep import (
    REFERENCE_STEP,
    confusion_from_histograms,
    pxap_from_histograms,
    threshold_histograms,
)
from .uncertainty import auc_interval

__all__ = ["UNITS", "evaluate_heatmap", "iter_evaluate_heatmap", "jsonable", "truth_mask"]

UNITS = {"radius_um": "µm", "tile_um": "µm", "hausdorff": "level-0 px", "hausdorff_um": "µm",
         "area_level0": "level-0 px²", "per_tile.row0/col0/size": "level-0 px",
         "thresholds": "fraction of the min-max scaled map (after the convention)",
         "placement": "level-0 px", "mpp": "µm per level-0 px"}

MAX_PERCENTILE_PIXELS = 64_000_000  # Dice/Hausdorff at percentiles need full-size masks


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


def truth_mask(regions, shape, *, placement=None, classes, windows=None) -> np.ndarray:
    """Union of the masks of the regions whose class is in ``classes`` (``windows``: their
    `region_window` results, when the caller already has them)."""
    mask = np.zeros(tuple(int(s) for s in shape), dtype=bool)
    wanted = set(classes)
    for k, region in enumerate(regions):
        if getattr(region, "cls", None) in wanted:
            rows, cols, local = (region_window(region, shape, placement=placement)
                                 if windows is None else windows[k])
            mask[rows, cols] |= local
    return mask


def _finite_fraction(source, shape, *, block_pixels: int = 1 << 22) -> float:
    rows = max(1, block_pixels // max(shape[1], 1))
    n = sum(int(np.isfinite(np.asarray(source[r:r + rows])).sum()) for r in range(0, shape[0], rows))
    return n / (shape[0] * shape[1])


def evaluate_heatmap(heatmap, **options) -> dict:
    """All metrics at once: `iter_evaluate_heatmap` run to its end (same options)."""
    from ..progress import run_to_end

    return run_to_end(iter_evaluate_heatmap(heatmap, **options))


def iter_evaluate_heatmap(heatmap, *, placement=None, mpp: float, cells=None, regions=(),
                          radius_um: float, positive=("tumour",), negative=None,
                          tile_um: float = 256.0, n_random: int = 20, seed: int = 0,
                          localize=None, percentiles=(50, 75, 90), iou_threshold: float = 0.5,
                          curves: bool = True, threshold_step: float = REFERENCE_STEP,
                          cell_convention: str = "rectified",
                          localization_convention: str = "rectified", n_boot: int = 1000,
                          ci_level: float = 0.95, radius_sweep=None,
                          max_percentile_pixels: int = MAX_PERCENTILE_PIXELS):
    """Cell ROC with intervals and baselines, per-tile ROC, regions and localisation of a heatmap.

    Parameters
    ----------
    heatmap : (H, W) array (float32 is kept as is; a memmap is read in row blocks)
        Heatmap values (NaN where not computed).
    placement : Placement, dict or None
        Where the heatmap lies on level 0.
    mpp : float
        µm per level-0 pixel (converts ``radius_um``, ``tile_um`` and Hausdorff distances).
    cells : CellPoints or None
        Cell annotations in level-0 pixels; skipped when None or empty.
    regions : sequence of RegionShape
        Region annotations in level-0 pixels.
    radius_um : float
        Disc radius for cell scores (exact disc integral, see `cells.cell_scores`).
    positive, negative : class names
        Groups compared by the cell ROC (``negative=None``: all other classes).
    tile_um : float
        Tile side of the per-tile ROC grid, in µm.
    n_random : int
        Random heatmaps for the baseline (NaN where the heatmap is NaN).
    localize : sequence of str or None
        Region classes the heatmap should localise (PxAP etc. against their union);
        None means ``("tumour area",)`` when such regions exist.
    curves : bool
        Include full ROC / threshold curves.
    threshold_step : float
        Step of the localisation threshold grid (0.001: the WSOL evaluator's reference).
    cell_convention, localization_convention : str
        How signed maps are read (``"rectified"``, ``"signed"``, ``"absolute"``).
    n_boot, ci_level : int, float
        Bootstrap resamples and level of the AUC intervals (seeded with ``seed``).
    radius_sweep : sequence of float or None
        Disc radii (µm) at which the cell AUC and its interval are also computed.
    max_percentile_pixels : int
        Dice/IoU/Hausdorff at percentile thresholds need full-size masks; larger maps skip
        them (recorded), the per-threshold Dice/IoU curves are computed at any size.

    Yields
    ------
    (done, total)
        Progress, one step per stage, per random baseline run and per sweep radius.

    Returns
    -------
    dict
        Keys ``heatmap``, ``parameters``, ``conventions``, ``units``, ``cells``, ``roc`` (with
        ``ci``), ``baselines``, ``per_tile``, ``radius_sweep``, ``regions``,
        ``localization`` (those that apply), ready for `jsonable` and JSON.

    Examples
    --------
    >>> import numpy as np
    >>> heat = np.zeros((20, 20)); heat[:, :10] = 1.0
    >>> from types import SimpleNamespace
    >>> cells = SimpleNamespace(rows=np.array([5.0, 12, 5, 14]), cols=np.array([3.0, 4, 15, 16]),
    ...                         classes=np.array(["tumour", "tumour", "stroma", "stroma"]))
    >>> out = evaluate_heatmap(heat, mpp=1.0, cells=cells, radius_um=2, n_random=2, n_boot=50)
    >>> out["roc"]["auc"], out["baselines"]["all_one"], out["conventions"]["cell_scores"]["map"]
    (1.0, 0.5, 'rectified')
    """
    shape, h = _rows_source(heatmap)
    p = as_placement(placement)
    if not (mpp and mpp > 0):
        raise ValueError("mpp (µm per level-0 pixel) is needed to convert the disc radius; "
                         "pass --mpp or use a heatmap file that records it")
    check_convention(cell_convention, what="cell convention")
    check_convention(localization_convention, what="localisation convention")
    sweep = [] if radius_sweep is None else [float(r) for r in radius_sweep]
    rows, cols, classes = cell_arrays(cells) if cells is not None else (np.empty(0),) * 2 + (None,)
    regions = list(regions or ())
    targets = ("tumour area",) if localize is None else tuple(localize)
    present = {getattr(r, "cls", None) for r in regions}
    targets = [t for t in targets if t in present]
    if rows.size and classes is None:
        raise ValueError("cells need classes for a cell ROC")
    # The map-wide passes (finite share, region relevance, localisation) do not depend on the
    # cells: one background thread runs them while this one scores the cells (numpy releases
    # the GIL in the heavy loops, so two cores are used). The results are the same as in turn.
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1, thread_name_prefix="xhisto-evaluate")
    map_pass = pool.submit(_map_pass, h, shape, p, regions, targets, mpp=mpp,
                           step=threshold_step, convention=localization_convention,
                           percentiles=percentiles, iou_threshold=iou_threshold, curves=curves,
                           max_pixels=max_percentile_pixels)
    pool.shutdown(wait=False)
    try:
        return (yield from _evaluate(h, shape, p, map_pass, rows, classes, cells, regions,
                                     mpp=mpp, radius_um=radius_um, positive=positive,
                                     negative=negative, tile_um=tile_um, n_random=n_random,
                                     seed=seed, threshold_step=threshold_step, n_boot=n_boot,
                                     ci_level=ci_level, sweep=sweep, curves=curves,
                                     cell_convention=cell_convention,
                                     localization_convention=localization_convention))
    finally:
        map_pass.cancel()


def _map_pass(h, shape, p, regions, targets, *, mpp, step, convention, percentiles,
              iou_threshold, curves, max_pixels) -> dict:
    """Finite share of the map, region relevance and localisation per target class.

    Each region is rasterised once; the finite share comes from the first localisation's
    pixel counts (every finite pixel is a positive or a negative there) when there is one.
    """
    out = {}
    if regions:
        windows = [region_window(r, shape, placement=p) for r in regions]
        out["regions"] = [r.to_dict() for r in region_relevance(h, regions, placement=p,
                                                                   windows=windows)]
        out["localization"] = {}
        for name in targets:
            truth = truth_mask(regions, shape, placement=p, classes=(name,), windows=windows)
            if not truth.any():
                continue
            entry = _localization(h, shape, truth, p, mpp=mpp, step=step, convention=convention,
                                  percentiles=percentiles, iou_threshold=iou_threshold,
                                  curves=curves, max_pixels=max_pixels)
            if entry is not None:
                out["localization"][name] = entry
                out.setdefault("finite_fraction", (entry["n_positive_pixels"]
                                                   + entry["n_negative_pixels"])
                               / (shape[0] * shape[1]))
    if "finite_fraction" not in out:
        out["finite_fraction"] = _finite_fraction(h, shape)
    return out


def _evaluate(h, shape, p, map_pass, rows, classes, cells, regions, *, mpp, radius_um,
              positive, negative, tile_um, n_random, seed, threshold_step, n_boot, ci_level,
              sweep, curves, cell_convention, localization_convention):
    out = {"heatmap": {"shape": list(shape), "placement": p.to_dict(), "mpp": mpp},
           "parameters": {"radius_um": radius_um, "positive": list(np.atleast_1d(positive)),
                          "negative": None if negative is None else list(np.atleast_1d(negative)),
                          "tile_um": tile_um, "n_random": n_random, "seed": seed,
                          "threshold_step": threshold_step, "n_boot": n_boot,
                          "ci_level": ci_level, "radius_sweep_um": sweep or None},
           "conventions": conventions_record(cell_scores=cell_convention,
                                             localization=localization_convention,
                                             threshold_step=threshold_step),
           "units": dict(UNITS)}
    total = (3 + n_random + len(sweep) if rows.size else 0) + (1 if regions else 0)
    done = 0
    yield done, total
    if rows.size:
        kw = dict(mpp=mpp, placement=p, convention=cell_convention)
        scores, cover = cell_scores(h, cells, radius_um=radius_um, return_coverage=True, **kw)
        out["cells"] = {"n": int(rows.size), "n_off_heatmap": int(np.isnan(scores).sum()),
                        "n_partly_on_heatmap": int(np.sum((cover > 0) & (cover < 1 - 1e-9))),
                        "classes": dict(Counter(classes.tolist())), "radius_um": radius_um,
                        "scores": scores}
        is_pos, is_neg = _labels(classes, positive, negative)
        considered = is_pos | is_neg
        scored = np.isfinite(scores)
        problem = roc_groups_problem(int(np.sum(is_pos & scored)), int(np.sum(is_neg & scored)),
                                     positive, negative)
        if problem:  # e.g. no tumour cell on this area: say so, and go on with the regions
            out["cells"]["roc_skipped"] = problem
            done = total - (1 if regions else 0)
            yield done, total
    if rows.size and "roc_skipped" not in out["cells"]:
        roc = cell_roc(scores, classes, positive=positive, negative=negative)
        out["roc"] = roc.to_dict(curve=curves)
        out["roc"]["ci"] = auc_interval(scores[considered], is_pos[considered], n_boot=n_boot,
                                        level=ci_level, seed=seed)
        done += 1
        yield done, total
        # a constant map NaN where the heatmap is scores exactly the cells the heatmap scores
        # (same discs, same coverage), all with the same value: no need to integrate it
        base = {name: cell_roc(np.where(np.isfinite(scores), fill, np.nan), classes,
                               positive=positive, negative=negative).auc
                for name, fill in (("all_zero", 0.0), ("all_one", 1.0))}
        from .disc import RandomMap

        aucs = []
        for k in range(int(n_random)):
            random_scores = cell_scores(RandomMap(shape, seed=(seed, k), nan_like=h), cells,
                                        radius_um=radius_um, mpp=mpp, placement=p)
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
        if sweep:
            out["radius_sweep"] = []
            for r_um in sweep:
                s = cell_scores(h, cells, radius_um=r_um, **kw)
                entry = {"radius_um": r_um, "n_scored": int(np.isfinite(s[considered]).sum())}
                try:
                    entry.update(auc_interval(s[considered], is_pos[considered], n_boot=n_boot,
                                              level=ci_level, seed=seed))
                except ValueError as exc:  # no scored cells of a group at this radius
                    entry["error"] = str(exc)
                out["radius_sweep"].append(entry)
                done += 1
                yield done, total
    found = map_pass.result()
    out["heatmap"]["finite_fraction"] = found.pop("finite_fraction")
    out.update(found)
    if regions:
        done += 1
        yield done, total
    return out


def _localization(h, shape, truth, p, *, mpp, step, convention, percentiles, iou_threshold,
                  curves, max_pixels) -> dict | None:
    pos, neg, thr = threshold_histograms(h, truth, step=step, convention=convention)
    if pos.sum() == 0:  # the region lies where the heatmap was not computed
        return None
    px = pxap_from_histograms(pos, neg, thr, step=step, convention=convention)
    conf = confusion_from_histograms(pos, neg, thr)
    entry = {"pxap": px.pxap, "threshold_step": step, "convention": convention,
             "n_positive_pixels": conf["n_positive_pixels"],
             "n_negative_pixels": conf["n_negative_pixels"], "mean_rates": conf["mean_rates"]}
    if shape[0] * shape[1] <= max_pixels:
        entry["at_percentiles"] = localization_at_percentiles(
            np.asarray(h), truth, percentiles=percentiles, iou_threshold=iou_threshold,
            spacing=(p.step_row, p.step_col), convention=convention, mpp=mpp)
    else:
        entry["at_percentiles"] = []
        entry["at_percentiles_skipped"] = (
            f"the map has {shape[0] * shape[1]} pixels, more than {max_pixels}: Dice/IoU/"
            "Hausdorff at percentiles need full-size masks; the threshold curves hold Dice/IoU "
            "per threshold (crop the heatmap to the annotated area for the percentile table)")
    if curves:
        entry["curve"] = {"thresholds": conf["thresholds"], **conf["curve"]}
    return entry
