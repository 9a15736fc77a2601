"""Metrics speed: cell scores for 100k cells, cell ROC, PxAP, hotspot scan, full evaluate.

- ``cell_scores``: 100,000 cells on a 4096 x 4096 heatmap (step 1), disc radius 25 µm at
  0.5 µm/px (50 px, as seed 000), and the same cells on a step-4 heatmap of a 16k x 16k region.
- ``cell_roc`` on 100,000 scores; ``pxap`` on 16 maps of 512 x 512;
  ``find_hotspot`` on a 200 x 200 class mean heatmap (all window sizes 1..100);
  ``evaluate_heatmap`` (ROC, 20 random baselines, per-tile, 50 regions, localisation) on 2048^2.

Best and median of 3 runs. Writes bench/results/metrics.json with the machine described.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
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


def main() -> dict:
    from napari_xhisto.annotations import CellPoints, RegionShape
    from napari_xhisto.geometry import Placement
    from napari_xhisto.metrics import cell_roc, cell_scores, find_hotspot, pxap
    from napari_xhisto.metrics.report import evaluate_heatmap

    rng = np.random.default_rng(0)
    n = 100_000
    heat = rng.normal(size=(4096, 4096)).astype(np.float32)
    cells = CellPoints(rng.uniform(0, 4096, n), rng.uniform(0, 4096, n),
                       rng.choice(["tumour", "lymphocyte", "stroma", "other"], n))
    coarse = rng.normal(size=(4096, 4096)).astype(np.float32)
    cells_big = CellPoints(cells.rows * 4, cells.cols * 4, cells.classes)
    scores = cell_scores(heat, cells, radius_um=25, mpp=0.5)
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
    results = {
        "cell_scores_100k_r50px_4096sq": timed(
            lambda: cell_scores(heat, cells, radius_um=25, mpp=0.5)),
        "cell_scores_100k_r50px_step4": timed(
            lambda: cell_scores(coarse, cells_big, radius_um=25, mpp=0.5,
                                placement=Placement(0, 0, 4, 4))),
        "cell_roc_100k": timed(lambda: cell_roc(scores, cells.classes)),
        "pxap_16_maps_512sq": timed(lambda: pxap(maps, masks)),
        "find_hotspot_200sq": timed(lambda: find_hotspot(mean_map)),
        "evaluate_heatmap_2048sq_20k_cells_50_regions_20_random": timed(
            lambda: evaluate_heatmap(small, mpp=0.5, cells=cells_small, regions=regions,
                                     radius_um=8, n_random=20), repeats=1),
    }
    out = {"machine": machine(), "results": results,
           "notes": "seconds; goal: 100k cells scored well under a second"}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
