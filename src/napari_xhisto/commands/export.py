"""``xhisto export``: heatmap files to OME-TIFF, RGB overlays, PNG snapshots, contours and reports."""

from __future__ import annotations

HELP = "export a heatmap: ome-tiff, rgb (openslide-readable SVS), png, contours (GeoJSON), report"
DESCRIPTION = (
    "Exports of a heatmap file written by `xhisto explain` / `xhisto predict`: a pyramidal "
    "OME-TIFF (float32/float16, region or full-slide canvas), a colour-mapped RGB SVS that "
    "OpenSlide opens, a PNG snapshot with legend and scale bar, contours as QuPath GeoJSON, or "
    "one self-contained HTML report. Large outputs are written tile by tile, everything lines up "
    "with the slide, and no existing file is replaced unless --overwrite is given. "
    "Run `xhisto export KIND --help` for each kind's options.")


def _common(p, *, heat=True):
    if heat:
        p.add_argument("heatmap", help="heatmap file (.ome.tif from xhisto explain/predict)")
    p.add_argument("--out", required=True, help="file to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--mpp", type=float, default=None,
                   help="µm per level-0 pixel (default: from the heatmap file, then the slide)")


def _slide_arg(p, *, required=False):
    p.add_argument("--slide", required=required, help="the slide the heatmap was computed on")


def _colour_args(p):
    p.add_argument("--vmax", type=float, default=None,
                   help="symmetric colour limit (default: max |value| of the map)")
    p.add_argument("--cmap", default="bwr", help="diverging matplotlib colormap (default bwr)")
    p.add_argument("--alpha", type=float, default=0.6, help="opacity of the colours (default 0.6)")


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="export_kind", metavar="KIND", required=True)
    p = sub.add_parser("ome-tiff", help="pyramidal OME-TIFF, written tile by tile")
    _common(p)
    _slide_arg(p)
    p.add_argument("--float16", action="store_true", help="store half floats (choice recorded)")
    p.add_argument("--full-slide", action="store_true",
                   help="place the map on a canvas covering the whole slide (needs --slide)")
    p = sub.add_parser("rgb", help="colour-mapped RGB pyramid (Aperio SVS) that OpenSlide opens")
    _common(p)
    _slide_arg(p)
    _colour_args(p)
    p.add_argument("--full-slide", action="store_true", help="same level-0 size as the slide")
    p.add_argument("--blend", action="store_true", help="blend over the grey-scale slide")
    p.add_argument("--compression", default="jpeg", choices=["jpeg", "zlib", "lzw", "none"])
    p = sub.add_parser("png", help="snapshot: heatmap over grey H&E, legend, scale bar, title")
    _common(p)
    _slide_arg(p)
    _colour_args(p)
    p.add_argument("--region", help="level-0 'row,col,height,width' (default: the heatmap's extent)")
    p.add_argument("--max-size", type=int, default=1200, help="longest side in pixels (default 1200)")
    p = sub.add_parser("contours", help="thresholded heatmap as QuPath GeoJSON polygons with holes")
    _common(p)
    p.add_argument("--threshold", type=float, required=True, help="in the map's own units")
    p.add_argument("--below", action="store_true", help="keep values <= threshold (negative evidence)")
    p.add_argument("--class", dest="cls", default="xhisto evidence", help="QuPath class of the regions")
    p.add_argument("--min-pixels", type=float, default=0.0, help="drop regions smaller than this (map px)")
    p.add_argument("--level", type=int, default=0, help="pyramid level of the heatmap to trace")
    p = sub.add_parser("report", help="one self-contained HTML report")
    _common(p, heat=False)
    _slide_arg(p)
    p.add_argument("--heatmap", required=True, help="heatmap file")
    p.add_argument("--metrics", help="metrics JSON from `xhisto evaluate`")
    p.add_argument("--cells", help="annotations (.geojson/.csv) to count per class")
    p.add_argument("--radius-um", type=float, default=None,
                   help="with --cells and no --metrics: compute the metrics here (cell disc radius in µm)")
    p.add_argument("--region", help="level-0 region of the snapshot (default: the heatmap's extent)")
    p.add_argument("--title", default="napari-xhisto report")


def _open_slide(args):
    if not getattr(args, "slide", None):
        return None
    from ..slide import open_slide

    return open_slide(args.slide, mpp=args.mpp)


def _mpp(args, source, slide):
    return args.mpp or source.mpp or (slide.mpp if slide is not None else None)


def _extent(source, slide) -> object:
    import math

    from ..geometry import Region

    p = source.placement
    r0, c0 = math.floor(p.origin_row), math.floor(p.origin_col)
    region = Region(r0, c0, math.ceil(p.origin_row + source.shape[0] * p.step_row) - r0,
                    math.ceil(p.origin_col + source.shape[1] * p.step_col) - c0)
    if slide is not None:
        region = region.clip(*slide.dimensions)
    return region


def _region(args, source, slide):
    from .. import options

    if not args.region:
        return _extent(source, slide)
    region = options.parse_region(args.region)
    return region if slide is None else options.region_on_slide(region, slide.dimensions)


def check_options(args) -> None:
    """Every numeric option of the export kind in range (one clear line otherwise)."""
    from .. import options

    options.optional(options.mpp, args.mpp, "--mpp")
    if getattr(args, "vmax", None) is not None:
        options.positive(args.vmax, "--vmax")
    if hasattr(args, "alpha"):
        options.fraction(args.alpha, "--alpha")
    if hasattr(args, "max_size"):
        options.whole_number(args.max_size, "--max-size", minimum=16, maximum=65536)
    if hasattr(args, "threshold"):
        options.real_number(args.threshold, "--threshold")
    if hasattr(args, "min_pixels"):
        options.real_number(args.min_pixels, "--min-pixels", minimum=0.0)
    if hasattr(args, "level"):
        options.whole_number(args.level, "--level", minimum=0)
    if getattr(args, "radius_um", None) is not None:
        options.radius_um(args.radius_um)
    if getattr(args, "region", None):
        options.parse_region(args.region)


def _display_level(source, region, max_size: int) -> int:
    """The coarsest pyramid level still at least as fine as a ``max_size`` picture of ``region``."""
    import math

    shrink = max(region.height, region.width) / max_size
    finest = min(source.placement.step_row, source.placement.step_col)
    if shrink <= finest:
        return 0
    return max(0, min(source.levels - 1, int(math.floor(math.log2(shrink / finest)))))


def _evaluate(source, annotations, *, mpp, radius_um) -> dict:
    """The metrics ``xhisto evaluate`` would write, for the report (cell ROC, regions ...)."""
    from ..errors import XhistoError
    from ..metrics.report import evaluate_heatmap, jsonable

    cells = annotations.cells if len(annotations.cells.rows) else None
    if cells is None and not annotations.regions:
        raise XhistoError("the --cells file holds no cells and no regions to evaluate against")
    if not mpp:
        raise XhistoError("metrics need µm per pixel: pass --mpp")
    try:
        result = evaluate_heatmap(source.read(0, 0, *source.shape), placement=source.placement, mpp=mpp,
                                  cells=cells, regions=list(annotations.regions), radius_um=radius_um)
    except ValueError as exc:
        raise XhistoError(str(exc)) from exc
    result.get("cells", {}).pop("scores", None)
    return jsonable(result)


def run(args) -> int:
    from ..errors import XhistoError
    from ..export.tiles import HeatmapTileReader
    from ..progress import text_progress

    kind = args.export_kind
    check_options(args)
    slide = _open_slide(args)
    heat_path = args.heatmap
    try:
        with HeatmapTileReader(heat_path, level=getattr(args, "level", 0)) as source:
            mpp = _mpp(args, source, slide)
            if kind == "ome-tiff":
                from ..export.tiled_writer import write_heatmap_tiles
                from ..export.tiles import full_slide_canvas

                if args.full_slide and slide is None:
                    raise XhistoError("--full-slide needs --slide (the canvas takes the slide's size)")
                shape, placement, tile_source = ((source.shape, source.placement, source.read)
                                                 if not args.full_slide
                                                 else full_slide_canvas(source, slide.dimensions))
                out = write_heatmap_tiles(args.out, shape, tile_source, placement, mpp=mpp,
                                          provenance=source.provenance,
                                          dtype="float16" if args.float16 else "float32",
                                          overwrite=args.overwrite,
                                          on_progress=text_progress("ome-tiff"))
                print(f"{out}: {shape[0]} x {shape[1]} map px, origin ({placement.origin_row:g}, "
                      f"{placement.origin_col:g}), {placement.step_row:g} level-0 px per map px")
            elif kind == "rgb":
                from ..export.rgb import write_rgb_overlay

                out = write_rgb_overlay(args.out, source, mpp=mpp, slide=slide, full_slide=args.full_slide,
                                        blend_slide=args.blend, vmax=args.vmax, cmap=args.cmap,
                                        alpha=args.alpha, compression=args.compression,
                                        overwrite=args.overwrite, on_progress=text_progress("rgb"))
                print(f"{out}: RGB overlay ({'whole slide' if args.full_slide else 'region'})")
            elif kind == "png":
                from ..export.snapshot import write_snapshot

                region = _region(args, source, slide)
                # a picture of a large region reads a coarse pyramid level, not the whole map
                with HeatmapTileReader(heat_path, level=_display_level(source, region, args.max_size)) as view:
                    layout = write_snapshot(args.out, region, view, mpp=mpp, slide=slide, vmax=args.vmax,
                                            cmap=args.cmap, alpha=args.alpha, max_size=args.max_size,
                                            overwrite=args.overwrite)
                print(f"{args.out}: {layout.size[1]} x {layout.size[0]} px PNG of {region}")
            elif kind == "contours":
                import numpy as np

                from ..export.contours import export_contours

                values = source.read(0, 0, *source.shape)
                out, regions = export_contours(args.out, values, source.placement, threshold=args.threshold,
                                               above=not args.below, cls=args.cls,
                                               min_pixels=args.min_pixels, overwrite=args.overwrite)
                holes = sum(len(r.holes) for r in regions)
                with np.errstate(invalid="ignore"):
                    inside = values <= args.threshold if args.below else values >= args.threshold
                print(f"{out}: {len(regions)} polygon(s), {holes} hole(s), "
                      f"{int(inside.sum())} map px inside")
            elif kind == "report":
                import json

                from ..export.report import write_report
                from ..export.snapshot import render_snapshot

                metrics = annotations = None
                if args.metrics:
                    try:
                        metrics = json.loads(open(args.metrics, encoding="utf-8").read())
                    except (OSError, json.JSONDecodeError) as exc:
                        raise XhistoError(f"cannot read metrics {args.metrics}: {exc}") from exc
                if args.cells:
                    from ..annotations import read_annotations

                    annotations = read_annotations(args.cells)
                    if metrics is None and args.radius_um:
                        metrics = _evaluate(source, annotations, mpp=mpp, radius_um=args.radius_um)
                region = _region(args, source, slide)
                with HeatmapTileReader(heat_path, level=_display_level(source, region, 1024)) as view:
                    snap = render_snapshot(region, view, mpp=mpp, slide=slide)
                out = write_report(args.out, title=args.title, slide=slide, heatmap=source,
                                   snapshots=[(f"heatmap over {region}", snap)], metrics=metrics,
                                   annotations=annotations, overwrite=args.overwrite)
                print(f"{out}: report")
    finally:
        if slide is not None:
            slide.close()
    return 0
