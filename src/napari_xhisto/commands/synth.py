"""``xhisto synth OUT.svs``: write a synthetic H&E slide and its ground truth GeoJSON."""

from __future__ import annotations

HELP = "write a synthetic H&E slide (SVS or OME-TIFF) with ground-truth cells and regions"
DESCRIPTION = (
    "Render a synthetic H&E section (tumour nests, stroma, lymphocytes, necrosis, vessels, and "
    "artefacts: fold, pen mark, air bubble, out-of-focus patch) tile by tile, deterministic by "
    "seed, as an Aperio-style SVS (openslide vendor 'aperio') or a pyramidal OME-TIFF with JPEG "
    "tiles. The ground truth goes beside it as OUT.geojson (QuPath layout: cells as detection "
    "Points, regions as annotation Polygons)."
)


MAX_SIDE = 2**20  # px: 1M x 1M is beyond any scanner


def _size(text: str):
    from .. import options

    parts = [p for p in str(text).lower().replace("x", ",").split(",") if p.strip()]
    if len(parts) not in (1, 2):
        raise options.OptionError(f"--size is N or HEIGHTxWIDTH in pixels, got {text!r}")
    values = [options.whole_number(p, "--size", minimum=64, maximum=MAX_SIDE) for p in parts]
    return values[0] if len(values) == 1 else tuple(values)


def add_arguments(parser) -> None:
    parser.add_argument("out", help="output slide: OUT.svs, or OUT.ome.tif for OME-TIFF")
    parser.add_argument("--size", default="20000",
                        help="level-0 size in pixels: N (square) or HEIGHTxWIDTH (default 20000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--format", choices=["svs", "ome-tiff"], default=None,
                        help="file format (default: from the file name; .svs otherwise)")
    parser.add_argument("--mpp", type=float, default=0.5,
                        help="µm per level-0 pixel (default 0.5, i.e. 20x)")
    parser.add_argument("--quality", type=int, default=85, help="JPEG quality (default 85)")
    parser.add_argument("--no-ground-truth", action="store_true",
                        help="do not write OUT.geojson")
    parser.add_argument("--workers", type=int, default=2, help="worker threads (default 2)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")


def run(args) -> int:
    import time
    from pathlib import Path

    from .. import options
    from ..errors import XhistoError

    size = _size(args.size)
    sides = (size, size) if isinstance(size, int) else size
    options.real_number(args.mpp, "--mpp", minimum=0.05, maximum=10.0)
    options.whole_number(args.quality, "--quality", minimum=1, maximum=100)
    options.seed(args.seed)
    options.threads(args.workers, "--workers")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise XhistoError(f"{out} exists; choose another name or pass --overwrite")

    from ..progress import run_to_end, text_progress
    from ..synth.writer import iter_write_slide

    gen = iter_write_slide(out, size=size, seed=args.seed, format=args.format, mpp=args.mpp,
                           quality=args.quality, ground_truth=not args.no_ground_truth,
                           workers=args.workers)
    start = time.perf_counter()
    slide_path, geojson = run_to_end(gen, on_progress=text_progress(f"writing {out.name}"))
    print(f"wrote {slide_path} ({sides[0]} x {sides[1]} px, {args.mpp} µm/px, seed {args.seed}) "
          f"in {time.perf_counter() - start:.1f} s")
    if geojson is not None:
        print(f"ground truth: {geojson}")
    return 0
