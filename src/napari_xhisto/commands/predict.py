"""``xhisto predict``: a probability map of a slide (or a region) as a pyramidal OME-TIFF."""

from __future__ import annotations

HELP = "probability map of a slide region from a patch classifier (OME-TIFF)"
DESCRIPTION = (
    "Run a patch classifier over a slide (or a level-0 region 'row,col,height,width') at the "
    "model's µm/px, skipping background, and write the positive-class probability as a float "
    "OME-TIFF that lines up with the slide (NaN where no tissue). --model is 'demo' (the bundled "
    "classifier), a model spec JSON, or a WSInfer config.json. --mc-dropout N (a model with "
    "dropout layers) runs N stochastic passes per patch: --out gets their mean and a second file "
    "(NAME-std.ome.tif, or --std-out) their standard deviation, placed alike."
)


def add_arguments(parser) -> None:
    parser.add_argument("slide", help="slide file (SVS, OME-TIFF, ...)")
    parser.add_argument("--model", default="demo", help="'demo', a spec .json or WSInfer config.json")
    parser.add_argument("--region", default=None,
                        help="level-0 pixels 'row,col,height,width' (default: whole slide)")
    parser.add_argument("--out", required=True, help="output .ome.tif")
    parser.add_argument("--force", action="store_true",
                        help="replace --out if it exists (by default an existing file is kept)")
    parser.add_argument("--class", dest="class_name", default=None,
                        help="class whose probability is written (default: the model's positive class)")
    parser.add_argument("--stride", type=float, default=None,
                        help="level-0 px between patch centres (default: patch footprint)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tissue-threshold", type=float, default=0.1,
                        help="minimum tissue fraction of a patch to run it (0: run all)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if present)")
    parser.add_argument("--mpp", type=float, default=None,
                        help="override the slide's µm per level-0 pixel")
    parser.add_argument("--workers", type=int, default=None,
                        help="batch threads on CPU, each reading and running a batch (default: "
                             "torch's thread count, at most 8); reader threads on a GPU")
    parser.add_argument("--mc-dropout", type=int, default=None, metavar="N",
                        help="Monte-Carlo dropout: N stochastic passes per patch (30 is usual); "
                             "writes the mean to --out and the standard deviation beside it")
    parser.add_argument("--mc-seed", type=int, default=0, help="seed of the dropout masks")
    parser.add_argument("--std-out", default=None,
                        help="file of the standard deviation map (default: --out with '-std' "
                             "before its suffix)")


def run(args) -> int:
    import json
    import sys

    import numpy as np

    from .. import options
    from ..errors import XhistoError
    from ..export.heatmap_io import write_heatmap
    from ..models import load_model, predict_region
    from ..progress import run_to_end, text_progress
    from ..slide import open_slide
    from . import refuse_existing

    refuse_existing(args.out, args.force)
    batch_size = options.batch_size(args.batch_size)
    threshold = options.tissue_threshold(args.tissue_threshold)
    stride = options.optional(options.positive, args.stride, "--stride")
    workers = options.optional(options.threads, args.workers, "--workers")
    mpp = options.optional(options.mpp, args.mpp, "--mpp")
    region = options.parse_region(args.region) if args.region else None
    model = load_model(args.model, device=args.device, batch_size=batch_size)
    mc, std_out = args.mc_dropout, None
    if mc is not None:
        from ..models.mc_dropout import (
            check_samples,
            mc_predict_region,
            require_dropout,
            std_path,
        )

        mc = check_samples(mc)
        std_out = std_path(args.out, args.std_out)
        refuse_existing(std_out, args.force)
        require_dropout(model)
    with open_slide(args.slide, mpp=mpp) as slide:
        if region is not None:
            region = options.region_on_slide(region, slide.dimensions)
        kw = dict(batch_size=batch_size, stride=stride, tissue_threshold=threshold,
                  workers=workers)
        if mc is None:
            pmap = run_to_end(predict_region(slide, region, model, **kw),
                              on_progress=text_progress("predict"))
        else:
            umap = run_to_end(mc_predict_region(slide, region, model, n_samples=mc,
                                                seed=args.mc_seed, **kw),
                              on_progress=text_progress(f"predict ({mc} dropout passes)"))
            pmap = umap.mean
        options.require_patches(pmap.provenance["n_patches"], tissue_threshold=threshold)
        values = pmap.class_map(args.class_name).astype(np.float32)
        values[~pmap.tissue_mask] = np.nan
        finite = np.isfinite(values)
        if not finite.any():
            raise XhistoError(f"every patch with tissue shows a damaged tile of {slide.path} "
                              "(nothing written): copy the slide again")
        name = args.class_name or pmap.positive_class
        prov = {**pmap.provenance, "kind": "probability", "class": name}
        if mc is not None:
            prov["statistic"] = "mean"
            std = umap.std_map(args.class_name).astype(np.float32)
            std[~pmap.tissue_mask] = np.nan
            write_heatmap(std_out, std, pmap.placement, mpp=slide.mpp,
                          provenance={**prov, "kind": "probability-std", "statistic": "std"})
        out = write_heatmap(args.out, values, pmap.placement, mpp=slide.mpp, provenance=prov)
    damaged = pmap.provenance.get("damaged_tiles", [])
    if damaged:
        print(f"xhisto predict: warning: {len(damaged)} damaged tile(s) in the region; "
              f"{pmap.provenance['n_damaged_cells']} cell(s) left NaN (listed in the file's "
              "provenance)", file=sys.stderr)
    summary = {"out": str(out), "shape": list(values.shape), "class": name,
               "placement": pmap.placement.to_dict(), "n_patches": pmap.provenance["n_patches"],
               "seconds": round(pmap.provenance["seconds"], 2),
               "mean_probability": float(values[finite].mean()) if finite.any() else None,
               "n_damaged_cells": pmap.provenance["n_damaged_cells"],
               "damaged_tiles": damaged}
    if mc is not None:
        fin = np.isfinite(std)
        summary.update({"std_out": str(std_out), "mc_dropout": mc, "mc_seed": args.mc_seed,
                        "mean_std": float(std[fin].mean()) if fin.any() else None})
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
