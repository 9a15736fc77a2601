"""Metrics speed and memory: 100k cells on a 20k x 20k heatmap, and the smaller pieces.

The headline case (goal: < 5 s, < 2 GB working memory): a 20,000 x 20,000 float32 heatmap
(1.6 GB, held in a memory-mapped file so it is not counted as working memory) with 100,000
cells, disc radius 6 µm at 0.5 µm/px (12 px, exact disc integral), one tumour-area region:

- ``cell_scores_100k_20k``: the exact disc means alone;
- ``evaluate_100k_20k_no_random``: `evaluate_heatmap` with everything but the random
  baselines (cell scores, ROC, 1000-resample bootstrap interval, all-zero/all-one baselines,
  per-tile ROC, region relevance, PxAP and threshold curves on the 0.001 grid; the percentile
  table is skipped at this size, as recorded in its output);
- ``one_random_baseline_20k``: one random heatmap's cell AUC (the default is 20 of them).

Working memory is tracemalloc's peak (numpy reports its buffers to it); the process's peak RSS
is recorded too. Smaller pieces as before: cell scores on 4096^2 (step 1 and step 4), cell ROC
and its bootstrap on 100k scores, PxAP on 16 maps, hotspot scan, a full 2048^2 evaluation.

Writes bench/results/metrics.json with the machine and the load average.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "metrics.json"
REPEATS = 3


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__,
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def timed(func, repeats: int = REPEATS) -> dict:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return {"best_s": round(min(times), 4), "median_s": round(statistics.median(times), 4)}


def timed_memory(func, repeats: int = 2) -> dict:
    """Seconds and CPU seconds of untraced calls (median of ``repeats``: tracemalloc slows
    numpy's allocations, most where two threads allocate), then the tracemalloc peak (MB) of
    one more, traced call."""
    runs = []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        func()
        runs.append((time.perf_counter() - start, time.process_time() - cpu))
    seconds, cpu = (statistics.median(v) for v in zip(*runs))
    tracemalloc.start()
    func()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
            "seconds_each": [round(r[0], 3) for r in runs],
            "working_memory_mb": round(peak / 2**20, 1), "load_average": list(os.getloadavg())}


def big_case(folder: Path) -> dict:
    from napari_xhisto.annotations import CellPoints, RegionShape
    from napari_xhisto.metrics import cell_roc, cell_scores
    from napari_xhisto.metrics.disc import RandomMap
    from napari_xhisto.metrics.report import evaluate_heatmap

    side, n = 20_000, 100_000
    heat = np.lib.format.open_memmap(folder / "heat.npy", mode="w+", dtype=np.float32,
                                     shape=(side, side))
    rng = np.random.default_rng(0)
    for r in range(0, side, 1000):  # structure: tumour on the left half, noise everywhere
        block = rng.standard_normal((1000, side), dtype=np.float32)
        block[:, : side // 2] += 1.0
        heat[r:r + 1000] = block
    heat.flush()
    rows, cols = rng.uniform(0, side, n), rng.uniform(0, side, n)
    classes = np.where(cols < side / 2, "tumour", rng.choice(["stroma", "lymphocyte"], n))
    cells = CellPoints(rows, cols, classes)
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    regions = [RegionShape("tumour area", np.stack([side / 2 + side / 4 * np.sin(t),
                                                    side / 4 + side / 5 * np.cos(t)], 1))]
    kw = dict(radius_um=6.0, mpp=0.5)
    out = {"heatmap": f"{side} x {side} float32 memmap ({heat.nbytes / 2**30:.2f} GiB)",
           "cells": n, "radius_px": 12}
    out["cell_scores_100k_20k"] = timed_memory(lambda: cell_scores(heat, cells, **kw))
    out["evaluate_100k_20k_no_random"] = timed_memory(
        lambda: evaluate_heatmap(heat, cells=cells, regions=regions, n_random=0, **kw))
    out["one_random_baseline_20k"] = timed_memory(lambda: cell_roc(cell_scores(
        RandomMap(heat.shape, seed=(0, 0), nan_like=heat), cells, **kw), classes))
    out["peak_rss_mb_so_far"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def small_cases() -> dict:
    from napari_xhisto.annotations import CellPoints, RegionShape
    from napari_xhisto.geometry import Placement
    from napari_xhisto.metrics import auc_interval, cell_roc, cell_scores, find_hotspot, pxap
    from napari_xhisto.metrics.report import evaluate_heatmap

    rng = np.random.default_rng(0)
    n = 100_000
    heat = rng.normal(size=(4096, 4096)).astype(np.float32)
    cells = CellPoints(rng.uniform(0, 4096, n), rng.uniform(0, 4096, n),
                       rng.choice(["tumour", "lymphocyte", "stroma", "other"], n))
    coarse = rng.normal(size=(4096, 4096)).astype(np.float32)
    cells_big = CellPoints(cells.rows * 4, cells.cols * 4, cells.classes)
    scores = cell_scores(heat, cells, radius_um=6, mpp=0.5)
    maps = [rng.random((512, 512)) for _ in range(16)]
    masks = [rng.random((512, 512)) > 0.8 for _ in range(16)]
    mean_map = rng.normal(0, 0.1, (200, 200))
    mean_map[10:15, 170:175] = 1.0
    small = rng.normal(size=(2048, 2048)).astype(np.float32)
    cells_small = CellPoints(rng.uniform(0, 2048, 20_000), rng.uniform(0, 2048, 20_000),
                             rng.choice(["tumour", "stroma"], 20_000))
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    regions = [RegionShape("tumour area" if k % 2 else "necrosis",
                           np.stack([200 + 35 * (k // 7) * 8 + 100 * np.sin(t),
                                     200 + 250 * (k % 7) + 100 * np.cos(t)], 1)) for k in range(50)]
    return {
        "cell_scores_100k_r12px_4096sq": timed(lambda: cell_scores(heat, cells, radius_um=6, mpp=0.5)),
        "cell_scores_100k_r50px_4096sq": timed(lambda: cell_scores(heat, cells, radius_um=25,
                                                                   mpp=0.5), repeats=1),
        "cell_scores_100k_r50px_step4": timed(
            lambda: cell_scores(coarse, cells_big, radius_um=25, mpp=0.5,
                                placement=Placement(0, 0, 4, 4))),
        "cell_roc_100k": timed(lambda: cell_roc(scores, cells.classes)),
        "auc_interval_100k_1000_boot": timed(
            lambda: auc_interval(scores, cells.classes == "tumour", n_boot=1000), repeats=1),
        "pxap_16_maps_512sq_step0.001": timed(lambda: pxap(maps, masks)),
        "find_hotspot_200sq": timed(lambda: find_hotspot(mean_map)),
        "evaluate_heatmap_2048sq_20k_cells_50_regions_20_random": timed(
            lambda: evaluate_heatmap(small, mpp=0.5, cells=cells_small, regions=regions,
                                     radius_um=8, n_random=20), repeats=1),
    }


def main() -> dict:
    out = {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        out["big_100k_cells_20k_heatmap"] = big_case(Path(tmp))
    out["results"] = small_cases()
    out["machine"]["load_average_at_end"] = list(os.getloadavg())
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["notes"] = ("seconds; goal: 100k cells and a 20k x 20k heatmap evaluated in < 5 s with "
                    "< 2 GB working memory; the machine is shared (see load averages)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
