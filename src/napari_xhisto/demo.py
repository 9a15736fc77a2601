"""The demo pipeline, headless: synthetic slide -> bundled model -> heatmaps -> metrics -> exports.

``make demo`` runs it through ``xhisto demo --headless`` where there is no display; with a display
``xhisto demo`` opens napari on the same slide with the plugin's widgets docked. Each step uses the
same core functions the widgets call. Nothing the user made is overwritten: outputs go to a fresh
folder (an existing one gets a numbered sibling).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .geometry import Region
from .progress import run_to_end

DEMO_SIZE = 6144
DEMO_SEED = 7
DEMO_METHODS = ("lrp-epsilon-plus", "gradcam", "probability")


@dataclass
class DemoResult:
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, dict] = field(default_factory=dict)  # 95% bootstrap CI per figure


def fresh_dir(path) -> Path:
    """``path`` if it does not exist or is empty, else the first free ``path-2``, ``path-3`` ..."""
    path = Path(path)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        path.mkdir(parents=True, exist_ok=True)
        return path
    for i in range(2, 10_000):
        candidate = path.with_name(f"{path.name}-{i}")
        if not candidate.exists():
            candidate.mkdir(parents=True)
            return candidate
    raise RuntimeError(f"no free output folder next to {path}")


def pick_region(truth, *, size: int, slide_shape: tuple[int, int]) -> Region:
    """A ``size`` x ``size`` region on the edge of the largest tumour area (tumour beside stroma)."""
    tumour = [r for r in truth.regions if r.cls == "tumour area"]
    h, w = slide_shape
    if tumour:
        largest = max(tumour, key=lambda r: np.ptp(r.exterior[:, 0]) * np.ptp(r.exterior[:, 1]))
        ring = largest.exterior
        # the ring vertex closest to the slide centre lies on a tumour/stroma boundary
        k = int(np.argmin(np.hypot(ring[:, 0] - h / 2, ring[:, 1] - w / 2)))
        cr, cc = ring[k]
    else:
        cr, cc = h / 2, w / 2
    r0 = int(np.clip(cr - size / 2, 0, max(h - size, 0)))
    c0 = int(np.clip(cc - size / 2, 0, max(w - size, 0)))
    return Region(r0, c0, min(size, h), min(size, w))


def run_demo(out_dir, *, size: int | None = None, seed: int = DEMO_SEED, region_size: int = 1024,
             methods=None,
             radius_um: float = 6.0, on_progress=None) -> DemoResult:
    """Run the whole headless pipeline; returns the files written and headline figures.

    The synthetic slide is the napari sample's, cached per (size, seed) in the user cache folder.
    """
    from ._sample_data import cached_synthetic_slide
    from .annotations import read_annotations
    from .explain import explain_region
    from .export import write_heatmap
    from .export.contours import export_contours
    from .export.report import write_report
    from .export.snapshot import render_snapshot
    from .export.tiles import ArrayTiles
    from .metrics.report import evaluate_heatmap, jsonable
    from .models import load_model, predict_region
    from .slide import open_slide

    size = DEMO_SIZE if size is None else size
    methods = tuple(DEMO_METHODS if methods is None else methods)
    out = fresh_dir(out_dir)
    result = DemoResult(out_dir=out)
    say = on_progress or (lambda msg: None)

    say("synthetic slide")
    slide_path, truth_path = cached_synthetic_slide(size=size, seed=seed)
    result.files["slide"], result.files["ground truth"] = slide_path, truth_path
    truth = read_annotations(truth_path)
    model = load_model("demo")
    positive = model.spec.positive_class
    target = model.spec.class_names.index(positive)

    with open_slide(slide_path) as slide:
        mpp = slide.mpp
        say("probability map of the whole slide")
        pmap = run_to_end(predict_region(slide, None, model))
        prob = pmap.class_map(positive)
        result.files["probability map"] = write_heatmap(
            out / "probability.ome.tif", prob, pmap.placement, mpp=mpp,
            provenance={"kind": "probability", "model": "demo", "class": positive})

        region = pick_region(truth, size=region_size, slide_shape=slide.dimensions)
        snapshots, metrics_by_method, heatmaps = [], {}, {}
        for method in methods:
            say(f"{method} on region {region.as_tuple()}")
            heat = run_to_end(explain_region(slide, region, model, method, target=target))
            stem = method.replace("-", "_")
            result.files[f"heatmap {method}"] = write_heatmap(
                out / f"heat_{stem}.ome.tif", heat.values, heat.placement, mpp=mpp,
                provenance=heat.provenance)
            metrics = evaluate_heatmap(heat.values, placement=heat.placement, mpp=mpp,
                                       cells=truth.cells, regions=truth.regions,
                                       radius_um=radius_um, positive=(positive,), curves=True)
            metrics_by_method[method] = metrics
            auc = (metrics.get("roc") or {}).get("auc")
            if auc is not None:
                result.figures[f"cell AUC {method}"] = float(auc)
                ci = (metrics.get("roc") or {}).get("ci") or {}
                if ci.get("low") is not None:
                    result.intervals[f"cell AUC {method}"] = ci
            tiles = heatmaps[method] = ArrayTiles(heat.values, heat.placement, mpp=mpp,
                                                  provenance=heat.provenance)
            snap = render_snapshot(region, tiles, mpp=mpp, slide=slide, provenance=heat.provenance)
            (out / f"snapshot_{stem}.png").write_bytes(snap.png)
            result.files[f"snapshot {method}"] = out / f"snapshot_{stem}.png"
            snapshots.append((method, snap.png))

        lrp = metrics_by_method.get(methods[0])
        (out / "metrics.json").write_text(json.dumps(jsonable(metrics_by_method), indent=1))
        result.files["metrics"] = out / "metrics.json"

        say("contours and report")
        heat0 = heatmaps[methods[0]]  # the first method's map, still in memory
        positive_vals = heat0.values[np.isfinite(heat0.values) & (heat0.values > 0)]
        if positive_vals.size:
            thr = float(np.percentile(positive_vals, 90))
            path, _ = export_contours(out / "lrp_contours.geojson", heat0.values, heat0.placement,
                                      threshold=thr)
            result.files["contours"] = path
        result.files["report"] = write_report(
            out / "report.html", title="napari-xhisto demo", slide=slide, heatmap=heat0,
            snapshots=snapshots, metrics=lrp, annotations=truth)
    return result
