"""Whole-slide probability map throughput vs the model's own forward throughput.

One run, one synthetic slide, the bundled demo model:
1. ``predict_region`` over the whole slide (tissue mask, reads prefetched on threads, batched
   forward): end-to-end patches/s.
2. The same patches, read beforehand into memory in the same batches: forward-only patches/s,
   one batch at a time on all torch threads ("omp") and a batch per thread with one torch
   thread each ("streams", predict_region's CPU scheme); the faster is the baseline.
Repeated ``--reps`` times, interleaved; medians.
3. Reading alone (same reader, same batches, no model): patches/s.
The goal is end-to-end >= 85% of forward-only (reading and resampling hidden behind compute).

TIAToolbox / WSInfer side by side: tried only when importable (see ``peers`` in the JSON).

Usage: python bench/predict.py [--size 8192] [--slide PATH] [--device cpu|cuda] [--out JSON]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def machine() -> dict:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    try:
        info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                           if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def peers_status() -> dict:
    out = {}
    for name, why in [
        ("tiatoolbox", "not installed: `pip install tiatoolbox` (2.1.3) resolves 133 packages "
                       "here, including torch 2.12.1 / torchvision 0.27.1 (replacing the pinned "
                       "torch 2.14.1 every other module uses), numpy, pandas, opencv, jupyterlab "
                       "and Sphinx; too heavy and it would break the shared environment"),
        ("wsinfer", "not run: wsinfer 0.6.1 installs (13 packages, tried with pip --target "
                    "outside the shared venv) but fails at import: `from zarr.storage import "
                    "KVStore` raises ImportError under zarr 3, which this environment uses; "
                    "downgrading zarr would break the slide/napari stack"),
    ]:
        try:
            __import__(name)
            out[name] = "importable but not wired into this benchmark"
        except ImportError:
            out[name] = why
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192, help="synthetic slide side, level-0 px")
    ap.add_argument("--slide", default=None, help="use this slide instead of a synthetic one")
    ap.add_argument("--device", default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--reps", type=int, default=3, help="interleaved end-to-end/forward runs")
    ap.add_argument("--out", default=str(HERE / "results" / "predict.json"))
    args = ap.parse_args(argv)

    import torch

    from napari_xhisto.models import load_model, plan_patches, predict_region, read_patch_batch
    from napari_xhisto.progress import run_to_end
    from napari_xhisto.slide import TileCache, open_slide

    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    if args.slide:
        slide_path = Path(args.slide)
    else:
        try:
            from napari_xhisto.synth import write_slide
        except ImportError:
            from napari_xhisto.synth.writer import write_slide

        t = time.perf_counter()
        slide_path, _ = write_slide(Path(tmp.name) / "bench.svs", size=args.size, seed=11,
                                    ground_truth=False)
        slide_path = Path(slide_path)
        print(f"synthetic slide {args.size} px written in {time.perf_counter() - t:.1f} s",
              file=sys.stderr)
    model = load_model("demo", device=args.device, batch_size=args.batch_size)
    result = {"benchmark": "predict", "machine": machine(), "device": str(model.device),
              "model": model.spec.name, "architecture": model.spec.architecture,
              "patch_size": model.spec.patch_size, "model_mpp": model.spec.mpp,
              "batch_size": args.batch_size, "peers": peers_status()}
    load_before = os.getloadavg()
    size = model.spec.network_input_size
    model.predict_proba(np.zeros((args.batch_size, size, size, 3), np.uint8))  # warm-up
    with open_slide(slide_path, cache=TileCache()) as slide:
        result["slide"] = {"path": slide_path.name, "dimensions": list(slide.dimensions),
                           "mpp": slide.mpp, "backend": slide.backend}
        t = time.perf_counter()
        plan = plan_patches(slide, None, model.spec)
        batches = [plan.cells[i:i + args.batch_size]
                   for i in range(0, len(plan.cells), args.batch_size)]
        images = [read_patch_batch(slide, plan, b) for b in batches]
        read_s = time.perf_counter() - t

    def sync():
        if model.device.type == "cuda":
            torch.cuda.synchronize()

    def forward_omp():  # one batch at a time on all torch threads
        sync()
        t = time.perf_counter()
        for im in images:
            model.predict_proba(im, batch_size=args.batch_size)
        sync()
        return time.perf_counter() - t

    def forward_streams():  # predict_region's CPU scheme: run_batches without reads
        from napari_xhisto.models.inference import batch_threads, run_batches

        def run(ims):
            list(run_batches(range(len(ims)), ims.__getitem__,
                             lambda im: model.predict_proba(im, batch_size=args.batch_size),
                             workers=batch_threads()))

        run(images[:2])  # warm-up: one-thread kernels
        t = time.perf_counter()
        run(images)
        return time.perf_counter() - t

    e2e, fwd = [], {"omp": [], "streams": []}
    for _ in range(args.reps):  # interleaved; each end-to-end run decodes cold
        with open_slide(slide_path, cache=TileCache()) as slide:
            t = time.perf_counter()
            pmap = run_to_end(predict_region(slide, None, model, batch_size=args.batch_size))
            e2e.append(time.perf_counter() - t)
            n = pmap.provenance["n_patches"]
        fwd["omp"].append(forward_omp())
        if model.device.type == "cpu":
            fwd["streams"].append(forward_streams())
    med = statistics.median
    e2e_s = med(e2e)
    fwd = {k: v for k, v in fwd.items() if v}
    best = min(fwd, key=lambda k: med(fwd[k]))  # the faster forward-only scheme is the baseline
    fwd_s = med(fwd[best])
    result["load_average_1min_before_after"] = [round(load_before[0], 2),
                                                round(os.getloadavg()[0], 2)]

    result.update({
        "n_patches": int(n), "grid": list(plan.shape),
        "tissue_fraction": float(plan.tissue_mask.mean()),
        "end_to_end_seconds": round(e2e_s, 3),
        "end_to_end_patches_per_s": round(n / e2e_s, 1),
        "forward_only_seconds": round(fwd_s, 3),
        "forward_only_patches_per_s": round(n / fwd_s, 1),
        "read_only_patches_per_s": round(n / read_s, 1),
        "read_only_note": "tissue mask + all patch reads from the main thread, cold tile cache "
                          "(the slide decodes missing tiles on its own thread pool)",
        "reps": args.reps, "end_to_end_seconds_runs": [round(v, 3) for v in e2e],
        "forward_only_seconds_runs": {k: [round(x, 3) for x in v] for k, v in fwd.items()},
        "forward_baseline": best,
        "end_to_end_over_forward": round(fwd_s / e2e_s, 3),
        "goal": "end_to_end_over_forward >= 0.85",
        "batch_threads_in_end_to_end": pmap.provenance["workers"],
        "mean_tumour_probability_on_tissue": float(pmap.positive[pmap.tissue_mask].mean()),
    })
    result["goal_met"] = result["end_to_end_over_forward"] >= 0.85
    result["note"] = ("the in-run ratio is the figure: on a shared machine absolute patches/s "
                      "follow the load average recorded above"
                      + ("" if torch.cuda.is_available() else "; no GPU was lent to this run"))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
