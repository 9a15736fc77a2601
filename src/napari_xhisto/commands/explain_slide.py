"""``xhisto explain-slide SLIDE.nic.zarr --slide-model M --out heat.ome.tif``."""

from __future__ import annotations

HELP = "slide-level p(label) and its slide-wide Grad-CAM heatmap from a compressed slide"
DESCRIPTION = (
    "Run a slide-level model (xhisto train-slide) on a compressed slide (*.nic.zarr) and write "
    "the Grad-CAM map of its first layer (or --layer) as a float OME-TIFF placed on the slide, "
    "as patch heatmaps are (same colormap, legend, export paths). Prints p(label) as JSON. "
    "With --lesion MASK (a lesions/<slide>.lesion.tif of xhisto synth-cohort) the map is "
    "scored against it: PxAP, and Dice/IoU/Hausdorff/weak localisation at percentiles."
)


def add_arguments(parser) -> None:
    parser.add_argument("codes", help="compressed slide (SLIDE.nic.zarr)")
    parser.add_argument("--slide-model", required=True, help="slide model folder or its slide_model.yaml")
    parser.add_argument("--out", default=None, help="output heatmap .ome.tif (optional)")
    parser.add_argument("--layer", default=None, help="Grad-CAM layer (default: the first, blocks.0)")
    parser.add_argument("--augment", action="store_true",
                        help="average over the 8 flips/rotations")
    parser.add_argument("--lesion", default=None, help="lesion mask to score the map against")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def run(args) -> int:
    import json
    import sys
    from pathlib import Path

    from ..errors import XhistoError
    from ..export.heatmap_io import write_heatmap
    from ..nic.codes import read_codes
    from ..nic.slide_explain import evaluate_against_mask, explain_slide
    from ..nic.slide_model import load_slide_model

    if args.out and Path(args.out).exists() and not args.overwrite:
        raise XhistoError(f"{args.out} exists; choose another name or pass --overwrite")
    model = load_slide_model(args.slide_model)
    grid = read_codes(args.codes)
    heat = explain_slide(model, grid, layer=args.layer, augment=args.augment,
                         codes_path=args.codes)
    summary = {"codes": str(args.codes), "label": model.spec.positive,
               "p_label": heat.provenance["p_label"], "layer": heat.provenance["layer"],
               "shape": list(heat.values.shape), "placement": heat.placement.to_dict()}
    if args.out:
        write_heatmap(args.out, heat.values, heat.placement, mpp=grid.mpp,
                      provenance=heat.provenance)
        summary["out"] = str(args.out)
    if args.lesion:
        from ..synth.cohort import read_lesion_mask

        scores = evaluate_against_mask(heat, read_lesion_mask(args.lesion))
        summary["localization"] = scores
    json.dump(summary, sys.stdout, indent=2, default=float)
    sys.stdout.write("\n")
    return 0
