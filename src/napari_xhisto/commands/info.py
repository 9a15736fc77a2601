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
    parser.add_argument("--check", action="store_true",
                        help="decode every tile of every level and list the damaged ones "
                             "(reads the whole file)")


def check_tiles(slide):
    """Decode every native tile of every file level, one row of tiles at a time (through the
    slide's bounded cache): a generator of (done, total) rows; damage ends up in
    ``slide.damaged_tiles``."""
    rows = [(level, r) for level in range(slide.level_count)
            for r in range(-(-slide.levels[level].shape[0] // slide.levels[level].tile[0]))]
    yield 0, len(rows)
    for done, (level, r) in enumerate(rows, 1):
        lv = slide.levels[level]
        th = lv.tile[0]
        slide._read_level(level, r * th, 0, min(th, lv.shape[0] - r * th), lv.shape[1])
        yield done, len(rows)


def run(args) -> int:
    import json

    from .. import options
    from ..slide import open_slide

    mpp = options.optional(options.mpp, args.mpp, "--mpp")
    with open_slide(args.slide, mpp=mpp) as slide:
        info = slide.info()
        if args.properties:
            info["properties"] = slide.properties
        if args.check:
            from ..progress import run_to_end, text_progress

            run_to_end(check_tiles(slide), on_progress=text_progress("check"))
            info["checked_every_tile"] = True
        info["damaged_tiles"] = slide.damaged_tiles
    print(json.dumps(info, indent=2, ensure_ascii=False))
    return 0
