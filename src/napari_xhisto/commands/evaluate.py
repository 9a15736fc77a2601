"""``xhisto evaluate``: score heatmap files against cell and region annotations."""

from __future__ import annotations

HELP = "score heatmaps against cell/region annotations: cell ROC with intervals, baselines, PxAP"
DESCRIPTION = (
    "Reads one or more heatmaps (OME-TIFF from `xhisto explain`) and QuPath GeoJSON annotations "
    "(level-0 pixels) and writes JSON with the cell-level ROC/AUC (exact area-weighted mean of "
    "the rectified map over a disc around each cell) with a 95% bootstrap interval, the "
    "all-zero/all-one/random baselines, per-tile AUCs, mean and total relevance per region, and "
    "localisation scores (PxAP on the WSOL evaluator's 0.001 threshold grid, Dice/IoU and the "
    "TP/FP/FN/TN rates against the threshold, Dice/IoU/Hausdorff (level-0 px and µm) at the "
    "50/75/90th percentiles) of the regions named by --localize. With several --heatmap files "
    "(e.g. LRP, Grad-CAM, probability) each is evaluated on the same cells and every pair's AUC "
    "difference gets a paired bootstrap interval and DeLong's p-value. The JSON records the "
    "convention each metric used for signed maps, the units of lengths and the bootstrap "
    "settings.")


def _radii(text: str) -> list[float]:
    """``"1:12"`` / ``"1:12:0.5"`` (stop included) or ``"1,2,4,8"`` as a list of µm."""
    import numpy as np

    try:
        if ":" in text:
            parts = [float(v) for v in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop, step = (*parts, 1.0) if len(parts) == 2 else parts
            if step <= 0 or stop < start:
                raise ValueError
            radii = np.arange(start, stop + step / 2, step)
        else:
            radii = np.array([float(v) for v in text.split(",") if v.strip()])
    except ValueError:
        raise ValueError(f"--radius-sweep takes START:STOP[:STEP] or a list 1,2,4 in µm, "
                         f"got {text!r}") from None
    if radii.size == 0 or (radii < 0).any():
        raise ValueError(f"--radius-sweep needs radii >= 0 µm, got {text!r}")
    return [round(float(r), 6) for r in radii]


def add_arguments(parser) -> None:
    parser.add_argument("--heatmap", required=True, action="append", metavar="HEATMAP",
                        help="heatmap file (.tif / .ome.tif); repeat to evaluate and compare "
                        "several on the same cells")
    parser.add_argument("--label", action="append", default=None, metavar="NAME",
                        help="name of each --heatmap in the output, in the same order (default: "
                        "the method recorded in the file, else the file name)")
    parser.add_argument("--cells", help="cell annotations (.geojson or .csv), level-0 pixels")
    parser.add_argument("--regions", help="region annotations (.geojson); default: regions "
                        "found in the --cells file")
    parser.add_argument("--class-map", default=None, metavar="FILE.json",
                        help="which role (tumour, lymphocyte, tumour area ...) each class name of "
                        "the annotation files plays, as the Annotate widget saves it; classes it "
                        "does not list get the suggested role (QuPath's 'Tumor' is tumour)")
    parser.add_argument("--radius-um", type=float, required=True,
                        help="disc radius around each cell in µm (about half a tumour cell)")
    parser.add_argument("--radius-sweep", nargs="?", const="1:12", default=None, metavar="RADII",
                        help="also the cell AUC (with its interval) against the disc radius: "
                        "START:STOP[:STEP] or 1,2,4 in µm (default when given alone: 1:12)")
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
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                        help="bootstrap resamples of the cells for AUC intervals (default 1000)")
    parser.add_argument("--ci-level", type=float, default=0.95,
                        help="level of the AUC intervals (default 0.95)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the bootstrap and the random baselines (default 0)")
    parser.add_argument("--threshold-step", type=float, default=0.001,
                        help="step of the localisation threshold grid (default 0.001, the WSOL "
                        "evaluator's reference; 0.01 understates PxAP)")
    parser.add_argument("--cell-convention", default="rectified",
                        choices=("rectified", "signed", "absolute"),
                        help="how cell scores read a signed map (default rectified: evidence for "
                        "the class only)")
    parser.add_argument("--localization-convention", default="rectified",
                        choices=("rectified", "signed", "absolute"),
                        help="how PxAP and the threshold metrics read a signed map (default "
                        "rectified)")
    parser.add_argument("--localize", action="append", default=None, metavar="CLASS",
                        help="region class the heatmap should localise (repeatable; default: "
                        "'tumour area')")
    parser.add_argument("--compare", default=None, metavar="HEATMAP_B",
                        help="a second heatmap (model B) of the same tissue: mean relevance per "
                        "region on both, flagged where their signs disagree (sampling bias)")
    parser.add_argument("--study-scale", default=None, metavar="STORE.json",
                        help="rescale each heatmap to the study-wide maximum kept in this JSON "
                        "store per slide/model/method (created and updated; see README)")
    parser.add_argument("--csv", default=None,
                        help="also write one row per cell (id, row, col, class, score per "
                        "heatmap) here")
    parser.add_argument("--no-curves", action="store_true", help="leave full curves out of the JSON")


def _labels(args, heats) -> list[str]:
    from pathlib import Path

    from ..errors import XhistoError

    if args.label:
        if len(args.label) != len(heats):
            raise XhistoError(f"give one --label per --heatmap ({len(heats)}), got "
                              f"{len(args.label)}")
        names = list(args.label)
    else:
        names = []
        for path, heat in zip(args.heatmap, heats):
            method = (heat.provenance or {}).get("method") or (heat.provenance or {}).get("kind")
            names.append(str(method) if method else Path(path).name.split(".")[0])
    out, seen = [], {}
    for name in names:  # the same method twice: number the repeats
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def run(args) -> int:
    import json
    from pathlib import Path

    from .. import options
    from ..errors import XhistoError
    from ..export.heatmap_io import read_heatmap
    from ..metrics.multi import iter_evaluate_heatmaps
    from ..metrics.report import jsonable
    from ..progress import run_to_end, text_progress

    if not args.cells and not args.regions:
        raise XhistoError("nothing to evaluate against: give --cells and/or --regions")
    numbers = _check_numbers(args)
    try:
        sweep = _radii(args.radius_sweep) if args.radius_sweep else None
    except ValueError as exc:
        raise XhistoError(str(exc)) from exc
    heats = [read_heatmap(p) for p in args.heatmap]
    labels = _labels(args, heats)
    mpps = {h.mpp for h in heats if h.mpp}
    mpp = numbers["mpp"] or (mpps.pop() if len(mpps) == 1 else None)
    if not mpp:
        raise XhistoError("the heatmap files record no (or different) µm per pixel: pass --mpp")
    mpp = options.mpp(mpp, "the heatmap files' µm per pixel")
    cells, regions, class_map = _annotations(args)
    scales = {}
    if args.study_scale:
        from ..metrics.study_scale import rescale_to_study

        for label, heat, path in zip(labels, heats, args.heatmap):
            try:
                heat.values, scales[label] = rescale_to_study(args.study_scale, heat.values,
                                                              heat.provenance, source=str(path))
            except ValueError as exc:
                raise XhistoError(f"{path}: {exc}") from exc
    try:
        multi = run_to_end(iter_evaluate_heatmaps(
            {label: (h.values, h.placement) for label, h in zip(labels, heats)}, cells=cells,
            regions=regions, mpp=mpp, radius_um=numbers["radius_um"],
            positive=tuple(args.positive or ("tumour",)),
            negative=None if args.negative is None else tuple(args.negative),
            tile_um=numbers["tile_um"], n_random=numbers["random_runs"], localize=args.localize,
            curves=not args.no_curves, threshold_step=numbers["threshold_step"],
            cell_convention=args.cell_convention,
            localization_convention=args.localization_convention, n_boot=numbers["bootstrap"],
            ci_level=numbers["ci_level"], seed=numbers["seed"], radius_sweep=sweep),
            on_progress=text_progress("evaluate"))
    except ValueError as exc:
        raise XhistoError(str(exc)) from exc
    for label, heat, path in zip(labels, heats, args.heatmap):
        res = multi["heatmaps"][label]
        res["inputs"] = {"heatmap": str(path), "cells": args.cells, "regions": args.regions,
                         "provenance": heat.provenance, "target": _target(heat.provenance),
                         "class_map_file": args.class_map, "class_map": class_map.to_dict()}
        if label in scales:
            res["study_scale"] = scales[label]
    if len(labels) == 1:
        result = multi["heatmaps"][labels[0]]
    else:
        result = {"labels": labels, "heatmaps": multi["heatmaps"],
                  "auc_comparisons": multi["auc_comparisons"]}
    if args.compare:
        if not regions:
            raise XhistoError("--compare needs region annotations (--regions or regions in --cells)")
        from ..metrics import compare_region_relevance

        other = read_heatmap(args.compare)
        cmp = compare_region_relevance(heats[0].values, other.values, regions,
                                       placement_a=heats[0].placement,
                                       placement_b=other.placement, label_a="A", label_b="B")
        result["comparison"] = cmp.to_dict()
        result.setdefault("inputs", {})["compare"] = str(args.compare)
        result["inputs"]["provenance_b"] = other.provenance
    scores = {label: multi["heatmaps"][label].get("cells", {}).pop("scores", None)
              for label in labels}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(jsonable(result), indent=1, allow_nan=False))
    if args.csv and cells is not None:
        _write_csv(args.csv, cells, labels, scores)
    flags = result.get("comparison", {}).get("flags", [])
    mapped = [f"{k} -> {v}" for table in (class_map.cells, class_map.regions)
              for k, v in table.items() if v and v != k]
    roles = [f"classes scored as {', '.join(dict.fromkeys(mapped))}"] if mapped else []
    print(f"{out}: " + "; ".join(_summary(multi, labels) + roles + flags))
    return 0


def _check_numbers(args) -> dict:
    """The numeric options, checked as every command checks them (one line, exit 1)."""
    from .. import options

    return {
        "radius_um": options.radius_um(args.radius_um),
        "mpp": options.optional(options.mpp, args.mpp, "--mpp"),
        "tile_um": options.positive(args.tile_um, "--tile-um", maximum=1e7),
        "random_runs": options.whole_number(args.random_runs, "--random-runs", minimum=0,
                                            maximum=10_000),
        "bootstrap": options.whole_number(args.bootstrap, "--bootstrap", minimum=1,
                                          maximum=1_000_000),
        "ci_level": options.real_number(args.ci_level, "--ci-level", minimum=0.0, maximum=1.0,
                                        low_open=True, high_open=True),
        "seed": options.seed(args.seed),
        "threshold_step": options.real_number(args.threshold_step, "--threshold-step",
                                              minimum=0.0, maximum=0.5, low_open=True),
    }


def _annotations(args):
    """(cells or None, regions, class map): the files read, their class names mapped to the
    plugin's roles (--class-map over the suggested map) for scoring; the names themselves
    stay as written in the files."""
    from ..annotations import apply_class_map, load_class_map, read_annotations
    from ..errors import XhistoError

    sources = [read_annotations(args.cells)] if args.cells else []
    if args.regions:
        sources.append(read_annotations(args.regions))
    class_map = None
    for ann in sources:
        found = load_class_map(args.class_map, ann)
        if class_map is None:
            class_map = found
        else:
            class_map.cells.update(found.cells)
            class_map.regions.update(found.regions)
    scored = [apply_class_map(ann, class_map) for ann in sources]
    cells = scored[0].cells if args.cells else None
    regions = list(scored[-1].regions)  # --regions replaces the regions of --cells
    if cells is not None and len(cells.rows) == 0:
        cells = None
    if cells is None and not regions:
        raise XhistoError("the annotation files hold no cells and no regions (after the class "
                          "map: classes mapped to 'ignore' are left out)")
    if cells is not None:  # a class named on the command line that no cell has: a typo
        import numpy as np

        present = sorted(set(np.asarray(cells.classes).astype(str).tolist()))
        for flag in ("positive", "negative"):
            for name in getattr(args, flag) or ():
                if name not in present:
                    raise XhistoError(f"--{flag} {name}: no cell of that class in {args.cells} "
                                      f"(its classes: {', '.join(present)}); give one of those "
                                      "or map names with --class-map")
    return cells, regions, class_map


def _target(provenance) -> str | None:
    """The target class by name (index in brackets) from a heatmap's provenance."""
    prov = provenance or {}
    name, index = prov.get("target_class") or prov.get("class"), prov.get("target")
    if name is None:
        return None if index is None else f"class index {index}"
    return f"{name} (class {index})" if index is not None else str(name)


def _write_csv(path, cells, labels, scores) -> None:
    import csv

    import numpy as np

    ids = cells.ids if cells.ids is not None else np.arange(len(cells.rows)).astype(str)
    cols = [label for label in labels if scores.get(label) is not None]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "row", "col", "class"] + (["score"] if len(labels) == 1 else
                                                    [f"score_{c}" for c in cols]))
        for k, (i, r, c, cls) in enumerate(zip(ids, cells.rows, cells.cols, cells.classes)):
            vals = [scores[c][k] for c in cols]
            w.writerow([i, f"{r:.2f}", f"{c:.2f}", cls]
                       + ["" if np.isnan(s) else f"{s:.6g}" for s in vals])


def _summary(multi, labels) -> list[str]:
    parts = []
    for label in labels:
        res = multi["heatmaps"][label]
        pre = f"{label}: " if len(labels) > 1 else ""
        if "roc" in res:
            roc, b, ci = res["roc"], res["baselines"], res["roc"]["ci"]
            parts.append(f"{pre}cell AUC {roc['auc']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}] "
                         f"({roc['n_positive']} vs {roc['n_negative']} cells, "
                         f"{res['cells']['n_off_heatmap']} off the heatmap; random baseline "
                         f"{b['random_mean']:.3f} ± {b['random_std']:.3f})")
        elif (res.get("cells") or {}).get("roc_skipped"):
            parts.append(f"{pre}no cell AUC: {res['cells']['roc_skipped']}")
        for name, loc in res.get("localization", {}).items():
            parts.append(f"{pre}{name}: PxAP {loc['pxap']:.3f}")
        if "regions" in res and len(labels) == 1:
            parts.append(f"{len(res['regions'])} region(s) scored")
    for c in multi.get("auc_comparisons", []):
        if "difference" in c:
            parts.append(f"AUC {c['b']} - {c['a']} {c['difference']:+.3f} [{c['low']:+.3f}, "
                         f"{c['high']:+.3f}], DeLong p {c['delong_p']:.2g}")
    return parts
