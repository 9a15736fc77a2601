"""``xhisto explain``: an attribution heatmap of a slide region as a float OME-TIFF."""

from __future__ import annotations

HELP = "explanation heatmap of a slide region (LRP, CAMs, gradients, occlusion, LIME ...)"
DESCRIPTION = (
    "Explain a level-0 region 'row,col,height,width' of a slide with a patch classifier: "
    "overlapping patches at the model's µm/px are explained with --method (see `xhisto methods`) "
    "and stitched; the float heatmap is written as a pyramidal OME-TIFF that lines up with the "
    "slide, with model, method, parameters and normalisation in its metadata. Method parameters: "
    "--param name=value (repeatable)."
)


def add_arguments(parser) -> None:
    parser.add_argument("slide", help="slide file (SVS, OME-TIFF, ...)")
    parser.add_argument("--model", default="demo", help="'demo', a spec .json or WSInfer config.json")
    parser.add_argument("--method", default="lrp-epsilon-plus", help="explainer name (xhisto methods)")
    parser.add_argument("--region", required=True, help="level-0 pixels 'row,col,height,width'")
    parser.add_argument("--out", required=True, help="output .ome.tif")
    parser.add_argument("--force", action="store_true",
                        help="replace --out if it exists (by default an existing file is kept)")
    parser.add_argument("--target", default=None,
                        help="class name or index to explain (default: the model's positive class)")
    parser.add_argument("--overlap", type=float, default=0.1, help="patch overlap fraction [0, 0.9]")
    parser.add_argument("--normalize", default="global-max",
                        choices=["global-max", "per-patch", "percentile", "none"])
    parser.add_argument("--percentile", type=float, default=99.5,
                        help="clipping percentile of |R| for --normalize percentile")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="method parameter, e.g. --param steps=64 (repeatable)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if present)")
    parser.add_argument("--mpp", type=float, default=None,
                        help="override the slide's µm per level-0 pixel")


def parse_params(items: list[str]) -> dict:
    """``["steps=64", "abs=true"]`` -> ``{"steps": "64", "abs": "true"}`` (checked by the method)."""
    from ..errors import XhistoError

    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise XhistoError(f"--param takes NAME=VALUE, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def run(args) -> int:
    import json
    import sys

    import numpy as np

    from .. import options
    from ..errors import XhistoError
    from ..explain import explain_region, get_explainer
    from ..export.heatmap_io import write_heatmap
    from ..models import load_model
    from ..progress import run_to_end, text_progress
    from ..slide import open_slide
    from . import refuse_existing

    refuse_existing(args.out, args.force)
    batch_size = options.batch_size(args.batch_size)
    overlap = options.overlap(args.overlap)
    percentile = options.percentile(args.percentile)
    mpp = options.optional(options.mpp, args.mpp, "--mpp")
    region = options.parse_region(args.region)
    try:
        explainer = get_explainer(args.method)
        raw = parse_params(args.param)
        params = {k: _convert(explainer.params, k, v) for k, v in raw.items()}
        explainer.check_params(**params)
    except ValueError as exc:
        raise XhistoError(str(exc)) from None
    model = load_model(args.model, device=args.device, batch_size=batch_size)
    with open_slide(args.slide, mpp=mpp) as slide:
        region = options.region_on_slide(region, slide.dimensions)
        if slide.mpp is not None:
            spec = model.spec
            options.patch_fits(spec.patch_size * spec.mpp / float(slide.mpp), slide.dimensions)
        heat = run_to_end(explain_region(slide, region, model, args.method, target=args.target,
                                         overlap=overlap, normalize=args.normalize,
                                         batch_size=batch_size, percentile=percentile,
                                         **params),
                          on_progress=text_progress("explain"))
        v = heat.values
        finite = np.isfinite(v)
        if not finite.any():
            raise XhistoError(f"every patch of the region shows a damaged tile of {slide.path} "
                              "(nothing written): copy the slide again")
        out = write_heatmap(args.out, heat.values, heat.placement, mpp=slide.mpp,
                            provenance=heat.provenance)
    damaged = heat.provenance.get("damaged_tiles", [])
    if damaged:
        print(f"xhisto explain: warning: {len(damaged)} damaged tile(s) in the region; "
              f"{heat.provenance['n_damaged_patches']} patch(es) left out, their area NaN "
              "(listed in the file's provenance)", file=sys.stderr)
    summary = {"out": str(out), "shape": list(v.shape), "method": args.method,
               "target_class": heat.provenance["target_class"],
               "placement": heat.placement.to_dict(), "n_patches": heat.provenance["n_patches"],
               "normalize": args.normalize, "seconds": round(heat.provenance["seconds"], 2),
               "min": float(v[finite].min()), "max": float(v[finite].max()),
               "n_damaged_patches": heat.provenance["n_damaged_patches"],
               "damaged_tiles": damaged}
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _convert(specs: dict, name: str, value: str):
    spec = specs.get(name)
    if spec is None or spec.kind in ("str", "choice", "bool", "ints", "floats"):
        return value  # Param.check converts (and rejects unknown names)
    from .. import options

    if spec.kind == "float":
        return options.real_number(value, f"--param {name}")
    return options.whole_number(value, f"--param {name}")
