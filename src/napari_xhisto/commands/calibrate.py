"""``xhisto calibrate``: fit temperature scaling on annotated slides, write a calibrated spec."""

from __future__ import annotations

HELP = "fit a temperature on annotated slides: calibrated spec + reliability diagram (PNG, JSON)"
DESCRIPTION = (
    "Runs the model over the tissue patches of each slide (patches side by side at the model's "
    "µm/px) and labels each patch from the slide's annotations: with cell points, the class of "
    "most of the cells inside the patch (a tie goes to the positive class; fewer than "
    "--min-cells cells: skipped); with regions only, the class of the region covering the "
    "patch centre (none, or regions of different classes: skipped). Labelled patches are split "
    "into validation and test parts (stratified, seeded); the temperature is fitted on "
    "validation (NLL) and ECE/MCE (top-label, equal-width bins) are reported on test before and "
    "after. Writes a spec naming the same weights file with 'temperature: T' (loading it applies "
    "the temperature in predict, explain and every probability layer) and, beside it, "
    "<out>.reliability.png and <out>.reliability.json (test split and --splits repeated splits "
    "as box plots). Existing outputs are kept unless --force.")


def add_arguments(parser) -> None:
    parser.add_argument("slides", nargs="+", metavar="SLIDE", help="annotated slide(s)")
    parser.add_argument("--model", required=True, help="'demo', a spec .json/.yaml or weights")
    parser.add_argument("--annotations", nargs="+", action="extend", default=None,
                        metavar="GT", help="GeoJSON/CSV annotations (level-0 px), one per slide "
                        "in the same order (default: <slide stem>.geojson beside each slide)")
    parser.add_argument("--out", required=True, help="calibrated spec to write (.yaml or .json)")
    parser.add_argument("--label-rule", default="auto", choices=("auto", "cells", "regions"),
                        help="what labels a patch (default auto: cells when the file has cell "
                        "points, else regions)")
    parser.add_argument("--min-cells", type=int, default=3,
                        help="fewest annotated cells a patch needs under the cells rule (default 3)")
    parser.add_argument("--val-fraction", type=float, default=0.5,
                        help="share of labelled patches (per class) used to fit T (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the splits (default 0)")
    parser.add_argument("--splits", type=int, default=20,
                        help="repeated splits for the box plots (default 20)")
    parser.add_argument("--bins", type=int, default=10, help="equal-width bins (default 10)")
    parser.add_argument("--tissue-threshold", type=float, default=0.1,
                        help="minimum tissue fraction of a patch (default 0.1)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None, help="cpu, cuda (default: CUDA if present)")
    parser.add_argument("--mpp", type=float, default=None,
                        help="override the slides' µm per level-0 pixel")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")


def _check_args(args):
    from pathlib import Path

    from .. import options
    from ..errors import XhistoError
    from ..models.calibrate import check_outputs

    if args.min_cells < 1:
        raise XhistoError(f"--min-cells must be >= 1, got {args.min_cells}")
    if not 0.0 < args.val_fraction < 1.0:
        raise XhistoError(f"--val-fraction must lie strictly between 0 and 1, got "
                          f"{args.val_fraction}")
    if args.splits < 1:
        raise XhistoError(f"--splits must be >= 1, got {args.splits}")
    if not 2 <= args.bins <= 100:
        raise XhistoError(f"--bins must be between 2 and 100, got {args.bins}")
    for s in args.slides:
        if not Path(s).is_file():
            raise XhistoError(f"slide {s} does not exist")
    check_outputs(args.out, force=args.force)
    return {"batch_size": options.batch_size(args.batch_size),
            "tissue_threshold": options.tissue_threshold(args.tissue_threshold),
            "mpp": options.optional(options.mpp, args.mpp, "--mpp")}


def run(args) -> int:
    import json
    import sys

    from ..errors import XhistoError
    from ..metrics.calibration_study import repeated_splits, temperature_report
    from ..models import load_model
    from ..models.calibrate import (
        annotations_for,
        check_outputs,
        iter_collect_logits,
        write_calibration,
    )
    from ..progress import run_to_end, text_progress

    numbers = _check_args(args)
    ann = annotations_for(args.slides, args.annotations)
    model = load_model(args.model, device=args.device, batch_size=numbers["batch_size"])
    check_outputs(args.out, model.spec, force=args.force)
    data = run_to_end(iter_collect_logits(args.slides, ann, model, rule=args.label_rule,
                                          min_cells=args.min_cells,
                                          tissue_threshold=numbers["tissue_threshold"],
                                          batch_size=numbers["batch_size"], mpp=numbers["mpp"]),
                      on_progress=text_progress("calibrate"))
    try:
        report = temperature_report(data.logits, data.labels, val_fraction=args.val_fraction,
                                    seed=args.seed, n_bins=args.bins,
                                    class_names=data.class_names)
        study = repeated_splits(data.logits, data.labels, n_splits=args.splits,
                                val_fraction=args.val_fraction, seed=args.seed,
                                n_bins=args.bins, class_names=data.class_names)
    except ValueError as exc:
        raise XhistoError(str(exc)) from None
    for note in report["warnings"]:
        print(f"xhisto calibrate: warning: {note}", file=sys.stderr)
    settings = {"label_rule": args.label_rule, "min_cells": args.min_cells, "seed": args.seed,
                "val_fraction": args.val_fraction, "splits": args.splits,
                "tissue_threshold": numbers["tissue_threshold"]}
    paths = write_calibration(model, data, report, study, args.out, settings=settings,
                              force=args.force)
    summary = {"spec": str(paths["spec"]), "reliability_png": str(paths["png"]),
               "reliability_json": str(paths["json"]),
               "temperature": round(report["temperature"], 4),
               "n_patches": int(len(data.labels)), "n_val": report["n_val"],
               "n_test": report["n_test"]}
    for key in ("ece", "mce"):
        for when in ("before", "after"):
            summary[f"{key}_{when}"] = round(report[when][key], 4)
    for when in ("before", "after"):
        e = study[when]["ece"]
        summary[f"ece_{when}_over_splits"] = {"mean": round(float(e.mean()), 4),
                                              "std": round(float(e.std()), 4)}
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
