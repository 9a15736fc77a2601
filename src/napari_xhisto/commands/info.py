"""``xhisto info SLIDE``: what the slide is and how it will be read, as JSON."""

from __future__ import annotations

HELP = "describe a slide as JSON: backend, vendor, levels, downsamples, µm/px, tiles"
DESCRIPTION = (
    "Open a whole-slide image the way the viewer does and print JSON: path, backend (tifffile "
    "reads native tiles directly; openslide otherwise), vendor, level dimensions (height, width), "
    "exact downsamples (rows, cols), µm/px and where it came from, synthetic coarse levels, tile "
    "and chunk sizes."
)


def add_arguments(parser) -> None:
    parser.add_argument("slide", help="slide file (SVS, NDPI, MRXS, OME-TIFF, tiled TIFF ...)")
    parser.add_argument("--mpp", type=float, default=None,
                        help="µm per level-0 pixel, overriding the file's metadata")
    parser.add_argument("--properties", action="store_true",
                        help="also print every metadata property of the file")


def run(args) -> int:
    import json

    from .. import options
    from ..slide import open_slide

    mpp = options.optional(options.mpp, args.mpp, "--mpp")
    with open_slide(args.slide, mpp=mpp) as slide:
        info = slide.info()
        if args.properties:
            info["properties"] = slide.properties
    print(json.dumps(info, indent=2, ensure_ascii=False))
    return 0
