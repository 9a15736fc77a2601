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


def output_paths(out) -> dict:
    """The spec and the reliability PNG/JSON written beside it."""
    from pathlib import Path

    out = Path(out)
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return {"spec": out, "png": out.with_name(f"{stem}.reliability.png"),
            "json": out.with_name(f"{stem}.reliability.json")}


def _check_args(args):
    from pathlib import Path

    from .. import options
    from ..errors import XhistoError

    out = Path(args.out)
    if out.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise XhistoError(f"--out {out.name}: a spec ends in .yaml, .yml or .json")
    if out.is_dir():
        raise XhistoError(f"--out {out} is a folder: give a spec file name, e.g. "
                          f"{out / 'model-calibrated.yaml'}")
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
    paths = output_paths(out)
    if not args.force:
        for p in paths.values():
            if p.exists():
                raise XhistoError(f"{p} exists: choose another --out or pass --force to replace it")
    return paths, {"batch_size": options.batch_size(args.batch_size),
                   "tissue_threshold": options.tissue_threshold(args.tissue_threshold),
                   "mpp": options.optional(options.mpp, args.mpp, "--mpp")}


def run(args) -> int:
    import json
    import sys
    from pathlib import Path

    from ..errors import XhistoError
    from ..export.reliability import reliability_figure
    from ..metrics.calibration_study import repeated_splits, temperature_report
    from ..metrics.report import jsonable
    from ..models import load_model
    from ..models.calibrate import annotations_for, iter_collect_logits, write_calibrated_spec
    from ..progress import run_to_end, text_progress

    paths, numbers = _check_args(args)
    ann = annotations_for(args.slides, args.annotations)
    model = load_model(args.model, device=args.device, batch_size=numbers["batch_size"])
    src = Path(model.spec.source).resolve() if model.spec.source else None
    if src is not None and src == paths["spec"].resolve():
        raise XhistoError(f"--out {paths['spec'].name} is the model's own spec: choose another "
                          "name (the original stays as it is)")
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
    t = report["temperature"]
    record = {"temperature": t, "command": "xhisto calibrate",
              "slides": [Path(s).name for s in args.slides],
              "annotations": [Path(a).name for a in ann], "label_rule": args.label_rule,
              "min_cells": args.min_cells, "seed": args.seed, "val_fraction": args.val_fraction,
              "n_val": report["n_val"], "n_test": report["n_test"], "n_bins": args.bins,
              "ece_before": report["before"]["ece"], "ece_after": report["after"]["ece"],
              "mce_before": report["before"]["mce"], "mce_after": report["after"]["mce"],
              "input_spec": str(src) if src else model.spec.name,
              "input_temperature": float(getattr(model.spec, "temperature", 1.0))}
    write_calibrated_spec(model.spec, paths["spec"], t, record=record)
    fig = reliability_figure(report, study)
    fig.savefig(paths["png"], dpi=150)
    doc = {"spec": str(paths["spec"]), "model": model.provenance(), "temperature": t,
           "labelling": {"rule": args.label_rule, "min_cells": args.min_cells,
                         "slides": data.slides},
           "n_patches": int(len(data.labels)),
           "per_class": {c: int((data.labels == i).sum()) for i, c in enumerate(data.class_names)},
           "test_split": report, "repeated_splits": study}
    paths["json"].write_text(json.dumps(jsonable(doc), indent=2) + "\n")
    summary = {"spec": str(paths["spec"]), "reliability_png": str(paths["png"]),
               "reliability_json": str(paths["json"]), "temperature": round(t, 4),
               "n_patches": int(len(data.labels)), "n_val": report["n_val"],
               "n_test": report["n_test"],
               "ece_before": round(report["before"]["ece"], 4),
               "ece_after": round(report["after"]["ece"], 4),
               "mce_before": round(report["before"]["mce"], 4),
               "mce_after": round(report["after"]["mce"], 4),
               "ece_after_over_splits": [round(float(study["after"]["ece"].mean()), 4),
                                         round(float(study["after"]["ece"].std()), 4)],
               "ece_before_over_splits": [round(float(study["before"]["ece"].mean()), 4),
                                          round(float(study["before"]["ece"].std()), 4)]}
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
