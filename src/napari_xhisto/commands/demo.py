"""``xhisto demo``: the demo slide, bundled model and widgets (headless where there is no display)."""

from __future__ import annotations

import os
import sys

HELP = "run the demo: synthetic slide, bundled model, heatmaps, metrics and exports"
DESCRIPTION = (
    "With a display, opens napari on a synthetic H&E slide with its ground-truth annotations and the "
    "Explain, Annotate, Evaluate and Export widgets docked. With --headless (or no display), runs the same "
    "pipeline without a window and writes its outputs (probability map, heatmaps, snapshots, metrics, "
    "contours, HTML report) to the folder given by --out."
)


def add_arguments(parser) -> None:
    parser.add_argument("--headless", action="store_true", help="no window: write outputs only")
    parser.add_argument("--out", default="demo_out",
                        help="output folder (an existing non-empty one gets a numbered sibling)")
    parser.add_argument("--cache", default=None,
                        help="folder for the demo slide (default: a user cache folder)")


def run(args) -> int:
    if args.cache:
        os.environ["XHISTO_CACHE_DIR"] = os.path.abspath(args.cache)
    headless = args.headless or not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                      or sys.platform in ("darwin", "win32"))
    if headless:
        from ..demo import run_demo

        result = run_demo(args.out, on_progress=lambda msg: print(f"demo: {msg} ...", file=sys.stderr))
        print(f"demo outputs written to {result.out_dir.resolve()}")
        for name, path in result.files.items():
            print(f"  {name:<28} {path}")
        for name, value in result.figures.items():
            ci = result.intervals.get(name)
            tail = (f"  95% CI {ci['low']:.3f}-{ci['high']:.3f}, {ci['n_positive']} positive /"
                    f" {ci['n_negative']} other cells" if ci else "")
            print(f"  {name:<28} {value:.3f}{tail}")
        return 0
    from .._widgets.launch import launch_demo_viewer

    launch_demo_viewer()
    return 0
