"""``xhisto compress``: a slide as a grid of patch codes (neural image compression, seed 004)."""

from __future__ import annotations

HELP = "compress a slide into a grid of patch codes (SLIDE.nic.zarr)"
DESCRIPTION = (
    "Encode every tissue patch of a slide (or a level-0 region 'row,col,height,width') with a "
    "patch encoder (--encoder: a spec from xhisto train-encoder, or a bundled kind such as "
    "'contrastive' or 'supervised') into a chunked Zarr store of (rows, cols, C) codes placed on "
    "the slide. Resumable: an interrupted run continues from its finished chunks "
    "(<out>.partial); the result is the same as one run. Opens in napari as an RGB layer "
    "(first 3 principal components)."
)


def add_arguments(parser) -> None:
    parser.add_argument("slide", help="slide file (SVS, OME-TIFF, ...)")
    parser.add_argument("--encoder", required=True,
                        help="encoder spec .yaml, or a bundled kind (contrastive, supervised)")
    parser.add_argument("--out", default=None, help="output store (default: SLIDE.nic.zarr)")
    parser.add_argument("--region", default=None,
                        help="level-0 pixels 'row,col,height,width' (default: whole slide)")
    parser.add_argument("--stride", type=int, default=None,
                        help="level-0 px between cells (default: the patch footprint)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tissue-threshold", type=float, default=0.1,
                        help="minimum tissue fraction of a patch to encode it (0: all)")
    parser.add_argument("--chunk", type=int, default=16, help="cells per Zarr chunk side")
    parser.add_argument("--mpp", type=float, default=None,
                        help="override the slide's µm per level-0 pixel")
    parser.add_argument("--workers", type=int, default=None,
                        help="threads that each read and encode a batch (default: torch's "
                             "thread count, at most 8)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing output (once the new one is complete)")


def default_out(slide) -> str:
    from pathlib import Path

    p = Path(slide)
    name = p.name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return str(p.with_name(name[: -len(suffix)] + ".nic.zarr"))
    return str(p.with_suffix(".nic.zarr"))


def run(args) -> int:
    import json
    import sys

    from .. import options
    from ..progress import run_to_end, text_progress

    batch_size = options.batch_size(args.batch_size)
    threshold = options.tissue_threshold(args.tissue_threshold)
    mpp = options.optional(options.mpp, args.mpp, "--mpp")
    workers = options.optional(options.threads, args.workers, "--workers")
    region = options.parse_region(args.region) if args.region else None
    out = args.out or default_out(args.slide)
    from ..nic.encoders import load_encoder

    encoder = load_encoder(args.encoder)
    if args.threads:
        import torch

        torch.set_num_threads(options.threads(args.threads))
    from ..nic.compress import compress_slide, tile_cache
    from ..slide import open_slide

    with open_slide(args.slide, mpp=mpp, cache=tile_cache()) as slide:
        if region is not None:
            region = options.region_on_slide(region, slide.dimensions)
        grid = run_to_end(compress_slide(slide, encoder, region=region, batch_size=batch_size,
                                         out=out, stride=args.stride, tissue_threshold=threshold,
                                         chunk=args.chunk, workers=workers, force=args.force),
                          on_progress=text_progress("compress"))
    prov = grid.provenance
    if prov["n_damaged_cells"]:
        print(f"xhisto compress: warning: {len(prov['damaged_tiles'])} damaged tile(s); "
              f"{prov['n_damaged_cells']} cell(s) have NaN codes (listed in the store's "
              "provenance)", file=sys.stderr)
    summary = {"out": str(out), "shape": list(grid.shape), "code_size": grid.code_size,
               "stride": grid.stride, "patch": grid.patch, "origin": list(grid.origin),
               "mpp": grid.mpp, "encoder": prov["encoder"]["kind"],
               "n_patches": prov["n_patches"], "resumed": prov["resumed"],
               "chunks_reused": prov["chunks_reused"], "seconds": round(prov["seconds"], 2),
               "n_damaged_cells": prov["n_damaged_cells"]}
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
