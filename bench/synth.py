"""Benchmark: seconds to write a synthetic slide and the writer's peak memory, at two sizes.

Each size runs in its own subprocess (peak RSS = that process's ru_maxrss). Goals (issue 2):
a 20k x 20k slide in <= 60 s on 2 cores, peak RSS < 1 GB and independent of the slide size.

    python bench/synth.py [--sizes 10000 20000] [--out bench/results/synth.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# cpu_seconds (user + system of the writer process, imports included) does not depend on what
# else runs on the machine; cpu_seconds / 2 is the wall time to expect on 2 idle cores when
# both are kept busy.
CHILD = r"""
import json, resource, sys, time
from pathlib import Path
size, seed, fmt, gt, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1", sys.argv[5]
t0 = time.perf_counter()
from napari_xhisto.synth.writer import iter_write_slide
t_import = time.perf_counter() - t0
gen = iter_write_slide(out, size=size, seed=seed, format=fmt, ground_truth=gt, workers=2)
marks = []
t1 = time.perf_counter()
try:
    while True:
        marks.append((next(gen), time.perf_counter() - t1))
except StopIteration as stop:
    slide, geojson = stop.value
total = time.perf_counter() - t1
ru = resource.getrusage(resource.RUSAGE_SELF)
rss = ru.ru_maxrss * 1024
cpu = ru.ru_utime + ru.ru_stime
level0 = marks[0][1] if marks else None
pyramid = marks[-2][1] - level0 if len(marks) >= 2 else None
print(json.dumps({"seconds": total, "seconds_level0": level0, "seconds_pyramid": pyramid,
                  "seconds_ground_truth": total - marks[-2][1] if gt and len(marks) >= 2 else 0.0,
                  "seconds_import": t_import, "peak_rss_bytes": rss, "cpu_seconds": cpu,
                  "slide_bytes": Path(slide).stat().st_size,
                  "geojson_bytes": Path(geojson).stat().st_size if geojson else 0}))
"""


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    import numpy
    import tifffile

    return {"cpu": cpu, "cpus_usable": affinity, "cpu_count": os.cpu_count(),
            "load_average_at_start": list(os.getloadavg()), "python": platform.python_version(),
            "numpy": numpy.__version__, "tifffile": tifffile.__version__,
            "platform": platform.platform()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10000, 20000])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", default="svs", choices=["svs", "ome-tiff"])
    p.add_argument("--no-ground-truth", action="store_true")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "synth.json"))
    p.add_argument("--note", default="", help="free text stored with the results")
    args = p.parse_args(argv)
    info = machine()
    runs = []
    with tempfile.TemporaryDirectory(prefix="xhisto-bench-") as tmp:
        for size in args.sizes:
            out = Path(tmp) / f"bench_{size}.{'svs' if args.format == 'svs' else 'ome.tif'}"
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, "-c", CHILD, str(size), str(args.seed),
                                  args.format, "0" if args.no_ground_truth else "1", str(out)],
                                 capture_output=True, text=True)
            if res.returncode != 0:
                print(res.stderr, file=sys.stderr)
                return 1
            r = json.loads(res.stdout.strip().splitlines()[-1])
            r.update(size=size, wall_seconds_with_start=time.perf_counter() - t0,
                     megapixels=size * size / 1e6)
            r["megapixels_per_second"] = r["megapixels"] / r["seconds"]
            r["peak_rss_mb"] = r["peak_rss_bytes"] / 2**20
            runs.append(r)
            r["cpu_seconds_per_core_2"] = r["cpu_seconds"] / 2
            print(f"{size} x {size}: {r['seconds']:.1f} s, CPU {r['cpu_seconds']:.0f} s (level 0 {r['seconds_level0']:.1f} s, "
                  f"pyramid {r['seconds_pyramid']:.1f} s, ground truth "
                  f"{r['seconds_ground_truth']:.1f} s), peak RSS {r['peak_rss_mb']:.0f} MB")
            for f in Path(tmp).iterdir():
                f.unlink()
    by_size = {r["size"]: r for r in runs}
    goals = {}
    if 20000 in by_size:
        goals["seconds_20k_le_60"] = by_size[20000]["seconds"] <= 60
    goals["peak_rss_lt_1GB"] = all(r["peak_rss_bytes"] < 2**30 for r in runs)
    if len(runs) >= 2:
        goals["peak_rss_growth_ratio"] = runs[-1]["peak_rss_bytes"] / runs[0]["peak_rss_bytes"]
    result = {"benchmark": "synthetic slide writer (napari_xhisto.synth.write_slide)",
              "format": args.format, "ground_truth": not args.no_ground_truth,
              "workers": 2, "machine": info, "note": args.note, "runs": runs, "goals": goals}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
