"""``xhisto predict``: a probability map of a slide (or a region) as a pyramidal OME-TIFF."""

from __future__ import annotations

HELP = "probability map of a slide region from a patch classifier (OME-TIFF)"
DESCRIPTION = (
    "Run a patch classifier over a slide (or a level-0 region 'row,col,height,width') at the "
    "model's µm/px, skipping background, and write the positive-class probability as a float "
    "OME-TIFF that lines up with the slide (NaN where no tissue). --model is 'demo' (the bundled "
    "classifier), a model spec JSON, or a WSInfer config.json."
)


def add_arguments(parser) -> None:
    parser.add_argument("slide", help="slide file (SVS, OME-TIFF, ...)")
    parser.add_argument("--model", default="demo", help="'demo', a spec .json or WSInfer config.json")
    parser.add_argument("--region", default=None,
                        help="level-0 pixels 'row,col,height,width' (default: whole slide)")
    parser.add_argument("--out", required=True, help="output .ome.tif")
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
    parser.add_argument("--workers", type=int, default=None, help="reader threads")


def run(args) -> int:
    import json
    import sys

    import numpy as np

    from ..errors import XhistoError
    from ..export.heatmap_io import write_heatmap
    from ..geometry import Region
    from ..models import load_model, predict_region
    from ..progress import run_to_end, text_progress
    from ..slide import open_slide

    try:
        region = Region.parse(args.region) if args.region else None
    except ValueError as exc:
        raise XhistoError(str(exc)) from None
    model = load_model(args.model, device=args.device, batch_size=args.batch_size)
    with open_slide(args.slide, mpp=args.mpp) as slide:
        pmap = run_to_end(predict_region(slide, region, model, batch_size=args.batch_size,
                                         stride=args.stride,
                                         tissue_threshold=args.tissue_threshold,
                                         workers=args.workers),
                          on_progress=text_progress("predict"))
        values = pmap.class_map(args.class_name).astype(np.float32)
        values[~pmap.tissue_mask] = np.nan
        name = args.class_name or pmap.positive_class
        prov = {**pmap.provenance, "kind": "probability", "class": name}
        out = write_heatmap(args.out, values, pmap.placement, mpp=slide.mpp, provenance=prov)
    summary = {"out": str(out), "shape": list(values.shape), "class": name,
               "placement": pmap.placement.to_dict(), "n_patches": pmap.provenance["n_patches"],
               "seconds": round(pmap.provenance["seconds"], 2),
               "mean_probability": (float(np.nanmean(values)) if pmap.tissue_mask.any()
                                    else None)}
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
