"""``xhisto evaluate``: score a heatmap file against cell and region annotations."""

from __future__ import annotations

HELP = "score a heatmap against cell/region annotations: cell ROC + baselines, regions, PxAP"
DESCRIPTION = (
    "Reads a heatmap (OME-TIFF from `xhisto explain`) and QuPath GeoJSON annotations (level-0 "
    "pixels) and writes JSON with the cell-level ROC/AUC (mean rectified relevance in a disc "
    "around each cell), the all-zero/all-one/random baselines, per-tile AUCs, mean and total "
    "relevance per region, and localisation scores (PxAP, Dice/IoU, Hausdorff, weak "
    "localisation at the 50/75/90th percentiles) of the regions named by --localize.")


def add_arguments(parser) -> None:
    parser.add_argument("--heatmap", required=True, help="heatmap file (.tif / .ome.tif)")
    parser.add_argument("--cells", help="cell annotations (.geojson or .csv), level-0 pixels")
    parser.add_argument("--regions", help="region annotations (.geojson); default: regions "
                        "found in the --cells file")
    parser.add_argument("--radius-um", type=float, required=True,
                        help="disc radius around each cell in µm (about half a tumour cell)")
    parser.add_argument("--mpp", type=float, default=None,
                        help="µm per level-0 pixel (default: recorded in the heatmap file)")
    parser.add_argument("--out", required=True, help="metrics JSON to write")
    parser.add_argument("--positive", action="append", default=None, metavar="CLASS",
                        help="positive cell class (repeatable; default: tumour)")
    parser.add_argument("--negative", action="append", default=None, metavar="CLASS",
                        help="negative cell class (repeatable; default: all other classes)")
    parser.add_argument("--tile-um", type=float, default=256.0,
                        help="tile side of the per-tile ROC grid in µm (default 256)")
    parser.add_argument("--random-runs", type=int, default=20,
                        help="random heatmaps for the baseline (default 20)")
    parser.add_argument("--localize", action="append", default=None, metavar="CLASS",
                        help="region class the heatmap should localise (repeatable; default: "
                        "'tumour area')")
    parser.add_argument("--compare", default=None, metavar="HEATMAP_B",
                        help="a second heatmap (model B) of the same tissue: mean relevance per "
                        "region on both, flagged where their signs disagree (sampling bias)")
    parser.add_argument("--csv", default=None,
                        help="also write one row per cell (id, row, col, class, score) here")
    parser.add_argument("--no-curves", action="store_true", help="leave full curves out of the JSON")


def run(args) -> int:
    import csv
    import json
    from pathlib import Path

    import numpy as np

    from ..annotations import read_annotations
    from ..errors import XhistoError
    from ..export.heatmap_io import read_heatmap
    from ..metrics.report import iter_evaluate_heatmap, jsonable
    from ..progress import run_to_end, text_progress

    if not args.cells and not args.regions:
        raise XhistoError("nothing to evaluate against: give --cells and/or --regions")
    heat = read_heatmap(args.heatmap)
    mpp = args.mpp or heat.mpp
    if not mpp:
        raise XhistoError(f"{args.heatmap} does not record µm per pixel: pass --mpp")
    cells, regions = None, []
    if args.cells:
        ann = read_annotations(args.cells)
        cells = ann.cells
        regions = list(ann.regions)
    if args.regions:
        regions = list(read_annotations(args.regions).regions)
    if cells is not None and len(cells.rows) == 0:
        cells = None
    if cells is None and not regions:
        raise XhistoError("the annotation files hold no cells and no regions")
    try:
        result = run_to_end(iter_evaluate_heatmap(
            heat.values, placement=heat.placement, mpp=mpp, cells=cells, regions=regions,
            radius_um=args.radius_um, positive=tuple(args.positive or ("tumour",)),
            negative=None if args.negative is None else tuple(args.negative),
            tile_um=args.tile_um, n_random=args.random_runs, localize=args.localize,
            curves=not args.no_curves), on_progress=text_progress("evaluate"))
    except ValueError as exc:
        raise XhistoError(str(exc)) from exc
    result["inputs"] = {"heatmap": str(args.heatmap), "cells": args.cells,
                        "regions": args.regions, "provenance": heat.provenance}
    if args.compare:
        if not regions:
            raise XhistoError("--compare needs region annotations (--regions or regions in --cells)")
        from ..metrics import compare_region_relevance

        other = read_heatmap(args.compare)
        cmp = compare_region_relevance(heat.values, other.values, regions,
                                       placement_a=heat.placement, placement_b=other.placement,
                                       label_a="A", label_b="B")
        result["comparison"] = cmp.to_dict()
        result["inputs"]["compare"] = str(args.compare)
        result["inputs"]["provenance_b"] = other.provenance
    scores = result.get("cells", {}).pop("scores", None)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(jsonable(result), indent=1, allow_nan=False))
    if args.csv and scores is not None:
        ids = cells.ids if cells.ids is not None else np.arange(len(scores)).astype(str)
        with open(args.csv, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "row", "col", "class", "score"])
            for i, r, c, k, s in zip(ids, cells.rows, cells.cols, cells.classes, scores):
                w.writerow([i, f"{r:.2f}", f"{c:.2f}", k, "" if np.isnan(s) else f"{s:.6g}"])
    summary = []
    if "roc" in result:
        b = result["baselines"]
        summary.append(f"cell AUC {result['roc']['auc']:.3f} ({result['roc']['n_positive']} vs "
                       f"{result['roc']['n_negative']} cells, {result['cells']['n_off_heatmap']} "
                       f"off the heatmap; random baseline {b['random_mean']:.3f} ± "
                       f"{b['random_std']:.3f})")
    for name, loc in result.get("localization", {}).items():
        summary.append(f"{name}: PxAP {loc['pxap']:.3f}")
    if "regions" in result:
        summary.append(f"{len(result['regions'])} region(s) scored")
    summary += result.get("comparison", {}).get("flags", [])
    print(f"{out}: " + "; ".join(summary))
    return 0
