"""Seconds and peak RSS to export a large heatmap tile by tile.

Cases (each in a fresh child process, so its peak RSS is its own):
- ``ome-tiff``: a 20k x 20k level-0 canvas at step 2 (10k x 10k float32 map, 400 MB if it were
  in memory) streamed into a pyramidal OME-TIFF by ``write_heatmap_tiles``;
- ``rgb``: the colour-mapped RGB overlay (JPEG, Aperio SVS) of that map on the level-0 grid
  (20k x 20k RGB, 1.2 GB if it were in memory), read back tile by tile from the OME-TIFF.

Usage: ``python bench/export.py [--size 20000] [--step 2] [--skip-rgb]``; writes
``bench/results/export.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "export.json"


def _field(r, c, h, w):
    import numpy as np

    rr = np.arange(r, r + h, dtype=np.float32)[:, None]
    cc = np.arange(c, c + w, dtype=np.float32)[None, :]
    return np.sin(rr / 211.0) * np.cos(cc / 157.0)


def _case(name: str, size: int, step: int, workdir: Path) -> dict:
    """Run one case in this process; return seconds, peak RSS and output size."""
    from napari_xhisto.export.rgb import write_rgb_overlay
    from napari_xhisto.export.tiled_writer import write_heatmap_tiles
    from napari_xhisto.export.tiles import HeatmapTileReader
    from napari_xhisto.geometry import Placement

    shape = (-(-size // step), -(-size // step))
    heat = workdir / "heat.ome.tif"
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if name == "ome-tiff":
        out = write_heatmap_tiles(heat, shape, _field, Placement(0, 0, step, step), mpp=0.25,
                                  provenance={"method": "bench"}, overwrite=True)
    else:
        with HeatmapTileReader(heat) as source:
            out = write_rgb_overlay(workdir / "overlay.svs", source, mpp=0.25, vmax=1.0, overwrite=True)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"case": name, "map_shape": list(shape), "level0_canvas": [size, size], "step": step,
            "seconds": round(seconds, 2), "peak_rss_mib": round(peak / 1024, 1),
            "rss_before_mib": round(start_rss / 1024, 1),
            "output_mib": round(out.stat().st_size / 2**20, 1),
            "in_memory_equivalent_mib": round(shape[0] * shape[1] * 4 / 2**20, 1) if name == "ome-tiff"
            else round(size * size * 3 / 2**20, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20000, help="level-0 canvas side (px)")
    parser.add_argument("--step", type=int, default=2, help="level-0 px per heatmap px")
    parser.add_argument("--skip-rgb", action="store_true")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:  # child process
        print(json.dumps(_case(args.case, args.size, args.step, Path(args.workdir))))
        return 0
    cases = ["ome-tiff"] + ([] if args.skip_rgb else ["rgb"])
    results = []
    with tempfile.TemporaryDirectory(prefix="xhisto-bench-") as tmp:
        for case in cases:
            proc = subprocess.run([sys.executable, __file__, "--case", case, "--size", str(args.size),
                                   "--step", str(args.step), "--workdir", tmp],
                                  capture_output=True, text=True, check=True)
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]))
    import tifffile

    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "python": platform.python_version(),
               "tifffile": tifffile.__version__,
               "note": "2 cores shared with other work; times are indicative"}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    # cases not run this time keep their last figures
    kept = []
    if RESULTS.exists():
        ran = {(r["case"], r["step"], tuple(r["level0_canvas"])) for r in results}
        kept = [r for r in json.loads(RESULTS.read_text()).get("results", [])
                if (r["case"], r["step"], tuple(r["level0_canvas"])) not in ran]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for r in results:
        r["measured"] = stamp
    RESULTS.write_text(json.dumps({"benchmark": "export tile by tile", "machine": machine,
                                   "results": kept + results}, indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
