"""Seed 000's granularity claim with intervals: LRP vs Grad-CAM vs the probability map, cell AUC.

For each of several synthetic slides (``synth.write_slide``, one seed each), the demo pipeline's
steps on one region at the edge of the largest tumour area (`demo.pick_region`): the bundled
model's probability map, LRP (``lrp-epsilon-plus``) and Grad-CAM of the same region, all three
evaluated on the same cells (those of the region) with `metrics.evaluate_heatmaps`: cell AUC with
a 95% bootstrap interval (1000 resamples over cells), paired bootstrap intervals of the AUC
differences with DeLong's p-value, and the AUC against disc radius (1-12 µm).

Writes bench/results/granularity.json (numbers, settings, load average, seconds).

    PYTHONPATH=src .venv/bin/python bench/granularity.py [--seeds 11 12 13] [--size 3072]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "granularity.json"
METHODS = ("lrp-epsilon-plus", "gradcam")


def run_slide(seed: int, *, size: int, region_size: int, radius_um: float, n_boot: int,
              folder: Path) -> dict:
    from napari_xhisto.annotations import read_annotations
    from napari_xhisto.demo import pick_region
    from napari_xhisto.explain import explain_region
    from napari_xhisto.metrics import evaluate_heatmaps
    from napari_xhisto.metrics.report import jsonable
    from napari_xhisto.models import load_model, predict_region
    from napari_xhisto.progress import run_to_end
    from napari_xhisto.slide import open_slide
    from napari_xhisto.synth.writer import write_slide

    started = time.perf_counter()
    slide_path, truth_path = write_slide(folder / f"synth-seed{seed}.svs", size=size, seed=seed)
    truth = read_annotations(truth_path)
    model = load_model("demo")
    positive = model.spec.positive_class
    target = model.spec.class_names.index(positive)
    heatmaps = {}
    with open_slide(slide_path) as slide:
        mpp = slide.mpp
        region = pick_region(truth, size=region_size, slide_shape=slide.dimensions)
        pmap = run_to_end(predict_region(slide, region, model))
        heatmaps["probability"] = (pmap.class_map(positive), pmap.placement)
        for method in METHODS:
            heat = run_to_end(explain_region(slide, region, model, method, target=target))
            heatmaps[method] = (heat.values, heat.placement)
    r0, c0, h, w = region.as_tuple()
    inside = ((truth.cells.rows >= r0) & (truth.cells.rows < r0 + h)
              & (truth.cells.cols >= c0) & (truth.cells.cols < c0 + w))
    cells = truth.cells.subset(inside) if hasattr(truth.cells, "subset") else _subset(
        truth.cells, inside)
    out = evaluate_heatmaps(heatmaps, cells=cells, regions=truth.regions, mpp=mpp,
                            radius_um=radius_um, positive=(positive,), n_random=5,
                            n_boot=n_boot, seed=0, radius_sweep=list(range(1, 13)), curves=False)
    summary = {"seed": seed, "slide_px": size, "region": list(region.as_tuple()), "mpp": mpp,
               "n_cells": int(inside.sum()), "seconds": round(time.perf_counter() - started, 1),
               "auc": {}, "differences": [], "radius_sweep": {}}
    for label, m in out["heatmaps"].items():
        roc = m["roc"]
        summary["auc"][label] = {"auc": roc["auc"], "low": roc["ci"]["low"],
                                 "high": roc["ci"]["high"], "n_positive": roc["n_positive"],
                                 "n_negative": roc["n_negative"],
                                 "heatmap_um_per_px": float(m["heatmap"]["placement"]["step_row"]
                                                            * mpp)}
        summary["radius_sweep"][label] = [
            {"radius_um": e["radius_um"], "auc": e.get("auc"), "low": e.get("low"),
             "high": e.get("high")} for e in m.get("radius_sweep", [])]
    for c in out["auc_comparisons"]:
        summary["differences"].append({k: c.get(k) for k in (
            "a", "b", "difference", "low", "high", "delong_p", "interval_excludes_zero")})
    return jsonable(summary)


def _subset(cells, keep):
    from napari_xhisto.annotations import CellPoints

    ids = None if cells.ids is None else np.asarray(cells.ids)[keep]
    return CellPoints(np.asarray(cells.rows)[keep], np.asarray(cells.cols)[keep],
                      np.asarray(cells.classes)[keep], ids=ids)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    parser.add_argument("--size", type=int, default=3072, help="slide side in level-0 px")
    parser.add_argument("--region", type=int, default=1024, help="region side in level-0 px")
    parser.add_argument("--radius-um", type=float, default=6.0)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args(argv)
    load_start = list(os.getloadavg())
    slides = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            slides.append(run_slide(seed, size=args.size, region_size=args.region,
                                    radius_um=args.radius_um, n_boot=args.bootstrap,
                                    folder=Path(tmp)))
            print(json.dumps(slides[-1]["auc"]), flush=True)
    out = {"what": "cell AUC (95% bootstrap interval) of LRP, Grad-CAM and the probability map "
                   "on the same cells of one region per synthetic slide; paired intervals of "
                   "the differences and DeLong p; AUC against disc radius",
           "settings": {"radius_um": args.radius_um, "n_boot": args.bootstrap,
                        "slide_px": args.size, "region_px": args.region, "model": "demo",
                        "cell_convention": "rectified", "disc": "exact area-weighted"},
           "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                       "load_average_at_start": load_start,
                       "load_average_at_end": list(os.getloadavg())},
           "slides": slides}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
