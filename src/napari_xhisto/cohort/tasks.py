"""The tasks a study can run on each slide, by name, and what each writes.

Each task calls the same core functions as its single-slide command (``predict_region`` +
``write_heatmap`` for ``xhisto predict``; ``explain_region`` + ``write_heatmap`` for ``xhisto
explain``; ``iter_evaluate_heatmap`` for ``xhisto evaluate``) and writes the same files into the
slide's folder, plus the JSON summary the command prints.

A new task registers a :class:`Task`: ``run(row, settings, model, workdir, final_dir)`` writes
its files into ``workdir`` (moved into ``final_dir`` when all are written) and returns the
headline numbers of the slide's results row. ``load`` builds what its workers keep loaded
(a model, an encoder) from the settings and a device; ``uses`` names the settings that decide
its results (they enter each slide's key).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import XhistoError

__all__ = ["TASKS", "Task", "get_task", "register_task"]


def _load_classifier(settings, device):
    from ..models import load_model

    return load_model(settings.model, device=device,
                      batch_size=settings.batch_size or 64)


@dataclass(frozen=True)
class Task:
    """A per-slide job of a study."""

    name: str
    help: str
    run: Callable | None
    uses: tuple[str, ...]
    outputs: tuple[str, ...] = ()
    needs_annotations: bool = False
    load: Callable | None = _load_classifier
    missing: str | None = None  # why it cannot run in this version (None: it can)


TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Add (or replace) a task in the registry; returns it."""
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The task called ``name``; ``XhistoError`` for unknown names and tasks not built yet."""
    task = TASKS.get(name)
    if task is None:
        raise XhistoError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    if task.missing or task.run is None:
        raise XhistoError(task.missing or f"--task {name} cannot run in this version")
    return task


# ---- helpers ------------------------------------------------------------------------------
def _write_json(path: Path, obj) -> None:
    from ..metrics.report import jsonable

    path.write_text(json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")


def _evaluate(values, placement, mpp, row, settings, *, radius_um: float):
    """Cell ROC (+ interval), regions and localisation of a map, as ``xhisto evaluate`` does."""
    from ..annotations import read_annotations
    from ..metrics.report import iter_evaluate_heatmap
    from ..progress import run_to_end
    from .summary import auc_interval

    ann = read_annotations(row.annotations)
    cells = ann.cells if ann.cells is not None and len(ann.cells.rows) else None
    regions = list(ann.regions)
    if cells is None and not regions:
        raise XhistoError(f"{row.annotations} holds no cells and no regions")
    try:
        result = run_to_end(iter_evaluate_heatmap(
            values, placement=placement, mpp=mpp, cells=cells, regions=regions,
            radius_um=radius_um, positive=settings.positive, negative=settings.negative,
            tile_um=settings.tile_um, n_random=settings.random_runs,
            localize=settings.localize, curves=True))
    except ValueError as exc:
        raise XhistoError(str(exc)) from exc
    scores = result.get("cells", {}).pop("scores", None)
    if scores is not None and "roc" in result and "ci" not in result["roc"]:
        result["roc"]["ci"] = auc_interval(scores, cells.classes, positive=settings.positive,
                                           negative=settings.negative)
    result["inputs"] = {"cells": str(row.annotations), "regions": str(row.annotations)}
    return result


def _metric_headline(result: dict) -> dict:
    out = {}
    roc = result.get("roc")
    if roc:
        ci = roc.get("ci") or {}
        out.update(cell_auc=roc["auc"], cell_auc_low=ci.get("low"), cell_auc_high=ci.get("high"),
                   n_positive_cells=roc.get("n_positive"), n_negative_cells=roc.get("n_negative"))
        base = result.get("baselines", {})
        if "random_mean" in base:
            out["random_auc"] = base["random_mean"]
    elif (result.get("cells") or {}).get("roc_skipped"):  # e.g. no tumour cell on this slide
        out["note"] = f"no cell AUC: {result['cells']['roc_skipped']}"
    loc = result.get("localization") or {}
    if loc:
        first = next(iter(loc.values()))
        out["pxap"] = first.get("pxap")
    return out


def _whole(slide, region):
    from ..geometry import Region

    return region if region is not None else Region(0, 0, *slide.dimensions)


# ---- predict ------------------------------------------------------------------------------
def run_predict(row, settings, model, workdir: Path, final_dir: Path) -> dict:
    """``xhisto predict``: probability.ome.tif + predict.json (+ metrics.json with annotations)."""
    import numpy as np

    from ..export.heatmap_io import write_heatmap
    from ..models import predict_region
    from ..progress import run_to_end
    from ..slide import open_slide

    bs = settings.batch_size or 64
    with open_slide(row.path, mpp=settings.mpp) as slide:
        pmap = run_to_end(predict_region(slide, row.region, model, batch_size=bs,
                                         stride=settings.stride,
                                         tissue_threshold=settings.tissue_threshold,
                                         workers=settings.reader_threads))
        values = pmap.class_map(settings.class_name).astype(np.float32)
        values[~pmap.tissue_mask] = np.nan
        name = settings.class_name or pmap.positive_class
        prov = {**pmap.provenance, "kind": "probability", "class": name}
        write_heatmap(workdir / "probability.ome.tif", values, pmap.placement, mpp=slide.mpp,
                      provenance=prov)
        mpp = float(slide.mpp) if slide.mpp else None
    mean_p = float(np.nanmean(values)) if pmap.tissue_mask.any() else None
    summary = {"out": str(final_dir / "probability.ome.tif"), "shape": list(values.shape),
               "class": name, "placement": pmap.placement.to_dict(),
               "n_patches": pmap.provenance["n_patches"],
               "seconds": round(pmap.provenance["seconds"], 2), "mean_probability": mean_p}
    _write_json(workdir / "predict.json", summary)
    head = {"mean_p": mean_p, "n_patches": summary["n_patches"], "class": name}
    if row.annotations is not None:
        # the patch probability under each cell (radius 0: the map pixel holding it)
        result = _evaluate(values, pmap.placement, mpp, row, settings,
                           radius_um=settings.radius_um or 0.0)
        result["inputs"]["heatmap"] = str(final_dir / "probability.ome.tif")
        _write_json(workdir / "metrics.json", result)
        head.update(_metric_headline(result))
    return head


# ---- explain ------------------------------------------------------------------------------
def _explain(row, settings, model, workdir: Path, final_dir: Path):
    import numpy as np

    from ..explain import explain_region
    from ..export.heatmap_io import write_heatmap
    from ..progress import run_to_end
    from ..slide import open_slide

    with open_slide(row.path, mpp=settings.mpp) as slide:
        region = _whole(slide, row.region)
        heat = run_to_end(explain_region(slide, region, model, settings.method,
                                         target=settings.target, overlap=settings.overlap,
                                         normalize=settings.normalize,
                                         batch_size=settings.batch_size or 16,
                                         percentile=settings.percentile,
                                         **dict(settings.params)))
        write_heatmap(workdir / "heatmap.ome.tif", heat.values, heat.placement, mpp=slide.mpp,
                      provenance=heat.provenance)
        mpp = float(slide.mpp) if slide.mpp else None
    v = heat.values
    summary = {"out": str(final_dir / "heatmap.ome.tif"), "shape": list(v.shape),
               "method": settings.method, "target_class": heat.provenance["target_class"],
               "placement": heat.placement.to_dict(), "n_patches": heat.provenance["n_patches"],
               "normalize": settings.normalize, "seconds": round(heat.provenance["seconds"], 2),
               "min": float(np.min(v)), "max": float(np.max(v))}
    _write_json(workdir / "explain.json", summary)
    head = {"n_patches": summary["n_patches"], "method": settings.method,
            "heat_min": summary["min"], "heat_max": summary["max"]}
    return heat, mpp, head


def run_explain(row, settings, model, workdir: Path, final_dir: Path) -> dict:
    """``xhisto explain``: heatmap.ome.tif + explain.json (region from the row, else the slide)."""
    return _explain(row, settings, model, workdir, final_dir)[2]


def run_evaluate(row, settings, model, workdir: Path, final_dir: Path) -> dict:
    """``xhisto explain`` then ``xhisto evaluate``: heatmap, explain.json and metrics.json."""
    heat, mpp, head = _explain(row, settings, model, workdir, final_dir)
    if not mpp:
        raise XhistoError(f"{row.path} records no µm per pixel: pass --mpp")
    result = _evaluate(heat.values, heat.placement, mpp, row, settings,
                       radius_um=settings.radius_um)
    result["inputs"]["heatmap"] = str(final_dir / "heatmap.ome.tif")
    result["inputs"]["provenance"] = heat.provenance
    _write_json(workdir / "metrics.json", result)
    return {**head, **_metric_headline(result)}


# ---- compress (neural image compression, issue #17) ----------------------------------------
def _load_encoder(settings, device):
    from ..nic.encoders import load_encoder

    return load_encoder(settings.extra["encoder"])  # CPU: encoders are small


def run_compress(row, settings, encoder, workdir: Path, final_dir: Path) -> dict:
    """``xhisto compress``: <slide-id>.nic.zarr + compress.json.

    Chunks go to ``<slide dir>/.nic-work/`` first, which survives a killed attempt (unlike the
    attempt's work folder), so the next attempt resumes them; the finished store is moved into
    the work folder and committed with the other files.
    """
    import os
    import shutil

    from ..nic.compress import compress_slide, tile_cache
    from ..progress import run_to_end
    from ..slide import open_slide

    name = f"{row.slide_id}.nic.zarr"
    stable = Path(final_dir) / ".nic-work" / name
    stable.parent.mkdir(parents=True, exist_ok=True)
    stride = None if settings.stride is None else round(settings.stride)
    with open_slide(row.path, mpp=settings.mpp, cache=tile_cache()) as slide:
        grid = run_to_end(compress_slide(slide, encoder, region=row.region,
                                         batch_size=settings.batch_size or 64, out=stable,
                                         stride=stride, tissue_threshold=settings.tissue_threshold,
                                         workers=settings.reader_threads, force=True))
    os.replace(stable, workdir / name)
    shutil.rmtree(stable.parent, ignore_errors=True)
    prov = grid.provenance
    summary = {"out": str(Path(final_dir) / name), "shape": list(grid.shape),
               "code_size": grid.code_size, "stride": grid.stride, "patch": grid.patch,
               "origin": list(grid.origin), "mpp": grid.mpp, "encoder": prov["encoder"],
               "n_patches": prov["n_patches"], "resumed": prov["resumed"],
               "chunks_reused": prov["chunks_reused"], "seconds": round(prov["seconds"], 2),
               "n_damaged_cells": prov["n_damaged_cells"]}
    _write_json(workdir / "compress.json", summary)
    return {"n_patches": prov["n_patches"], "code_size": grid.code_size,
            "grid": f"{grid.shape[0]}x{grid.shape[1]}", "encoder": prov["encoder"]["kind"],
            "n_damaged_cells": prov["n_damaged_cells"], "chunks_reused": prov["chunks_reused"]}


_MAP_METRICS = ("radius_um", "positive", "negative", "tile_um", "random_runs", "localize")
_EXPLAIN = ("model", "method", "params", "target", "overlap", "normalize", "percentile", "mpp")

register_task(Task(
    "predict", "probability map per slide (xhisto predict)", run_predict,
    uses=("model", "class_name", "stride", "tissue_threshold", "mpp") + _MAP_METRICS,
    outputs=("probability.ome.tif", "predict.json")))
register_task(Task(
    "explain", "explanation heatmap per slide or region (xhisto explain)", run_explain,
    uses=_EXPLAIN, outputs=("heatmap.ome.tif", "explain.json")))
register_task(Task(
    "evaluate", "heatmap scored against the row's annotations (xhisto explain + evaluate)",
    run_evaluate, uses=_EXPLAIN + _MAP_METRICS,
    outputs=("heatmap.ome.tif", "explain.json", "metrics.json"), needs_annotations=True))
register_task(Task(
    "compress", "neural image compression of each slide to a code grid (xhisto compress)",
    run_compress, uses=("extra", "stride", "tissue_threshold", "mpp"),
    outputs=("<slide-id>.nic.zarr", "compress.json"), load=_load_encoder))
