"""``xhisto compress`` throughput vs the encoder's forward-only throughput; memory vs slide size.

One run, synthetic slides of two sizes (default 4096 and 8192 px at 1.0 µm/px), the bundled
contrastive encoder (128 px patches, C = 128), CPU. Per size, in separate child processes:

1. forward-only: the slide's tissue patches (the same cells ``compress`` encodes, up to
   ``--forward-cap``), read into memory beforehand, encoded in the same batches (64):
   patches/s;
2. ``compress_slide`` to a fresh ``.nic.zarr`` (tissue mask, reads prefetched on threads,
   chunk-wise Zarr writes): patches/s and the child's peak RSS;
3. repeated ``--reps`` times, interleaved, then forward-only once more: the ratio is of the
   medians (single runs on a shared 2-core machine swing by tens of percent).

Goal: compress >= 85% of forward-only; peak RSS flat in slide size (the codes go to disk chunk
by chunk). The load average is recorded beside the figures. On a shared machine the wall-clock
share a process gets swings with the load, so patches per CPU second (all threads of the child:
reading, encoding, writing) are recorded too: that ratio is what the pipeline itself costs.

Usage: python bench/compress.py [--sizes 4096 8192] [--encoder contrastive] [--out JSON]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _loadavg() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def child_forward(slide_path: str, encoder: str, cap: int, batch: int) -> dict:
    from napari_xhisto.models.inference import plan_patches, read_patch_batch
    from napari_xhisto.nic.compress import _footprint
    from napari_xhisto.nic.encoders import load_encoder
    from napari_xhisto.slide import open_slide

    enc = load_encoder(encoder)
    from types import SimpleNamespace

    with open_slide(slide_path) as slide:
        patch = _footprint(slide, enc)
        spec = SimpleNamespace(patch_size=patch, mpp=float(slide.mpp),
                               network_input_size=enc.patch_px)
        plan = plan_patches(slide, None, spec)
        cells = plan.cells[:cap]
        images = read_patch_batch(slide, plan, cells)
    enc.encode(images[:batch], batch_size=batch)  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    for a in range(0, len(images), batch):
        enc.encode(images[a:a + batch], batch_size=batch)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"n_patches": len(images), "seconds": dt, "patches_per_s": len(images) / dt,
            "cpu_seconds": cpu, "patches_per_cpu_s": len(images) / cpu}


def child_compress(slide_path: str, encoder: str, batch: int, out: str) -> dict:
    import dask.array  # noqa: F401 - one-time imports are not the compressor's speed
    import numpy as np
    import zarr  # noqa: F401

    import napari_xhisto.cohort.fingerprint  # noqa: F401
    import napari_xhisto.models.inference  # noqa: F401
    from napari_xhisto.nic.compress import compress_slide
    from napari_xhisto.nic.encoders import load_encoder
    from napari_xhisto.progress import run_to_end

    enc = load_encoder(encoder)
    enc.encode(np.full((batch, enc.patch_px, enc.patch_px, 3), 200, np.uint8))  # warm-up
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0, c0 = time.perf_counter(), time.process_time()
    grid = run_to_end(compress_slide(slide_path, enc, batch_size=batch, out=out))
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = grid.provenance["n_patches"]
    return {"n_patches": n, "grid": list(grid.shape), "seconds": dt, "patches_per_s": n / dt,
            "cpu_seconds": cpu, "patches_per_cpu_s": n / cpu,
            "read_wait_seconds": grid.provenance["read_wait_seconds"],
            "compute_seconds": grid.provenance["compute_seconds"],
            "rss_before_mb": rss0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(*args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
    res = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    ap.add_argument("--mpp", type=float, default=1.0)
    ap.add_argument("--encoder", default="contrastive")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--forward-cap", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=3, help="interleaved forward/compress runs")
    ap.add_argument("--work", default=None, help="folder for the slides (kept between runs)")
    ap.add_argument("--out", default=str(HERE / "results" / "compress.json"))
    ap.add_argument("--child", nargs="+", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "forward":
            r = child_forward(rest[0], rest[1], int(rest[2]), int(rest[3]))
        else:
            r = child_compress(rest[0], rest[1], int(rest[2]), rest[3])
        print(json.dumps(r))
        return
    from napari_xhisto.synth.writer import write_slide

    work = Path(args.work or tempfile.mkdtemp(prefix="xhisto-bench-compress-"))
    work.mkdir(parents=True, exist_ok=True)
    from napari_xhisto.nic.compress import CACHE_BYTES

    results = {"bench": "compress", "encoder": args.encoder, "batch": args.batch,
               "tile_cache_mb": CACHE_BYTES / 2**20,
               "slide_mpp": args.mpp, "cpus": os.cpu_count(),
               "torch_threads_env": os.environ.get("OMP_NUM_THREADS"),
               "loadavg_start": _loadavg(), "sizes": []}
    for size in args.sizes:
        slide = work / f"synth{size}.svs"
        if not slide.exists():
            write_slide(slide, size=size, seed=3, mpp=args.mpp, workers=2, ground_truth=False)
        out = work / f"synth{size}.nic.zarr"
        fw, cs = [], []
        for _ in range(args.reps):  # interleaved, so both see the same machine
            fw.append(_child("forward", slide, args.encoder, args.forward_cap, args.batch))
            if out.exists():
                import shutil

                shutil.rmtree(out)
            cs.append(_child("compress", slide, args.encoder, args.batch, out))
        fw.append(_child("forward", slide, args.encoder, args.forward_cap, args.batch))
        med = statistics.median
        fwd = med(f["patches_per_s"] for f in fw)
        fwd_cpu = med(f["patches_per_cpu_s"] for f in fw)
        c = min(cs, key=lambda r: abs(r["patches_per_s"] - med(x["patches_per_s"] for x in cs)))
        row = {"size_px": size, "compress": c, "compress_runs": cs, "forward_only": fw,
               "forward_patches_per_s": fwd,
               "compress_patches_per_s": med(x["patches_per_s"] for x in cs),
               "ratio": med(x["patches_per_s"] for x in cs) / fwd,
               "forward_patches_per_cpu_s": fwd_cpu,
               "ratio_cpu": med(x["patches_per_cpu_s"] for x in cs) / fwd_cpu,
               "peak_rss_mb_max": max(x["peak_rss_mb"] for x in cs), "loadavg": _loadavg()}
        results["sizes"].append(row)
        print(f"{size} px: compress {c['patches_per_s']:.1f} patches/s "
              f"({c['n_patches']} patches), forward-only {fwd:.1f}/s, ratio {row['ratio']:.2f} "
              f"(per CPU second: {row['ratio_cpu']:.2f}), "
              f"peak RSS {c['peak_rss_mb']:.0f} MB, load {row['loadavg']}", flush=True)
    rss = [r["peak_rss_mb_max"] for r in results["sizes"]]
    results["peak_rss_mb"] = rss
    results["loadavg_end"] = _loadavg()
    results["goal"] = "compress >= 0.85 x forward-only; peak RSS flat in slide size"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
