"""Evaluate's work, as one generator that yields progress (no Qt, no viewer).

:func:`iter_evaluate_job` runs in the widget's worker thread (tests run it directly): it reads
the explained part of the heatmap (and the same area of each heatmap it is compared with), keeps
the cells and regions that lie on it, calls
:func:`~napari_xhisto.metrics.multi.iter_evaluate_heatmaps` (every heatmap on the same cells:
AUC intervals, paired differences with DeLong's test, the radius sweep and the localisation
curves), the bias diagnostics and the per-region comparison, and renders the plots (matplotlib
Agg, off the GUI thread), so the GUI thread only fills tables and shows pictures.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ...annotations import CellPoints
from ...annotations.classmap import IGNORE
from ...errors import XhistoError
from ...geometry import Placement
from ...metrics import compare_region_relevance
from ...metrics.localization import REFERENCE_STEP
from ...metrics.multi import iter_evaluate_heatmaps
from .hotspots import SlideHotspot, bias_diagnostics, hotspot_on_slide  # noqa: F401 (re-export)
from .layerdata import (
    HeatmapInput,
    PointsInput,
    ShapesInput,
    cells_from_inputs,
    explained_values,
    mask_uncovered,
    on_explained,
    regions_from_inputs,
)

RADIUS_SWEEP_UM = tuple(float(r) for r in range(1, 13))  # issue #19: 1-12 µm


@dataclass
class EvaluateRequest:
    """The user's choice, taken from the layers on the GUI thread (no data read yet)."""

    heatmap: HeatmapInput
    points: list[PointsInput] = field(default_factory=list)
    shapes: list[ShapesInput] = field(default_factory=list)
    radius_um: float = 8.0
    positive: tuple[str, ...] = ("tumour",)
    localize: tuple[str, ...] = ()
    tile_um: float = 256.0
    n_random: int = 10
    patch_px: int = 64
    prob: HeatmapInput | None = None
    compare: list[HeatmapInput] = field(default_factory=list)
    render: bool = True
    radius_sweep: tuple[float, ...] | None = RADIUS_SWEEP_UM
    n_boot: int = 1000
    ci_level: float = 0.95
    threshold_step: float = REFERENCE_STEP


@dataclass
class EvaluateJob:
    """Plain arrays only (no layers, no lazy data): can be sent to another process."""

    name: str
    values: np.ndarray
    placement: Placement
    offset: tuple[int, int]
    mpp: float
    points: list[PointsInput]
    shapes: list[ShapesInput]
    radius_um: float
    positive: tuple[str, ...]
    localize: tuple[str, ...]
    tile_um: float
    n_random: int
    patch_px: int
    prob: HeatmapInput | None
    compare: list[HeatmapInput]
    render: bool
    radius_sweep: tuple[float, ...] | None = RADIUS_SWEEP_UM
    n_boot: int = 1000
    ci_level: float = 0.95
    threshold_step: float = REFERENCE_STEP


def _plain(p):
    """A points/shapes snapshot without its layer, features cut to what the metrics read."""
    features = p.features
    cols = [c for c in ("class", "name", "id") if c in getattr(features, "columns", ())]
    features = features[cols].copy() if cols else None
    if isinstance(p, PointsInput):
        return replace(p, layer=None, data=np.array(p.data, dtype=np.float64), features=features)
    return replace(p, layer=None, data=[np.array(d, dtype=np.float64) for d in p.data],
                   features=features)


def _in_box(heat: HeatmapInput, placement: Placement, shape) -> HeatmapInput:
    """``heat`` read over the level-0 box of an explained area (NaN outside ``heat``)."""
    p = heat.placement
    top, left = placement.origin_row, placement.origin_col
    bottom, right = top + shape[0] * placement.step_row, left + shape[1] * placement.step_col
    H, W = heat.data.shape[-2:]
    i0 = min(max(int(np.floor((top - p.origin_row) / p.step_row)), 0), H)
    i1 = min(max(int(np.ceil((bottom - p.origin_row) / p.step_row)), i0), H)
    j0 = min(max(int(np.floor((left - p.origin_col) / p.step_col)), 0), W)
    j1 = min(max(int(np.ceil((right - p.origin_col) / p.step_col)), j0), W)
    values = np.asarray(heat.data[i0:i1, j0:j1], dtype=np.float64)
    box = Placement(p.origin_row + i0 * p.step_row, p.origin_col + j0 * p.step_col, p.step_row,
                    p.step_col)
    if heat.meta.get("canvas") and values.size:
        values = mask_uncovered(values, box, heat.meta.get("pastes"))
    return HeatmapInput(heat.name, values, box, heat.mpp, {k: v for k, v in heat.meta.items()
                                                           if k in ("class_name", "kind")})


def read_inputs(request: EvaluateRequest) -> EvaluateJob:
    """Read what ``request`` needs (in the worker thread): the explained area of the heatmap,
    the same area of the probability and comparison layers, the annotation arrays."""
    values, placement, offset = explained_values(request.heatmap)
    return EvaluateJob(
        request.heatmap.name, values, placement, offset, request.heatmap.mpp,
        [_plain(p) for p in request.points], [_plain(s) for s in request.shapes],
        request.radius_um, tuple(request.positive), tuple(request.localize), request.tile_um,
        int(request.n_random), int(request.patch_px),
        None if request.prob is None else _in_box(request.prob, placement, values.shape),
        [_in_box(b, placement, values.shape) for b in request.compare
         if b.name != request.heatmap.name],
        request.render, request.radius_sweep, int(request.n_boot), float(request.ci_level),
        float(request.threshold_step))


@dataclass
class EvaluateOutcome:
    """What one evaluation found; ``cell_index``/``region_index`` number the cells and regions
    kept (on the explained area) among all those of the request, in layer order."""

    result: dict
    cells: CellPoints | None
    cell_index: np.ndarray
    region_index: np.ndarray
    values: np.ndarray
    placement: Placement
    profile: object = None
    class_means: dict = field(default_factory=dict)
    hotspots: dict = field(default_factory=dict)
    comparison: object = None
    flags: list = field(default_factory=list)
    images: dict = field(default_factory=dict)
    cell_source: list = field(default_factory=list)
    region_source: list = field(default_factory=list)


def _meets(regions, placement: Placement, shape) -> np.ndarray:
    """Indices of the regions whose bounding box meets the explained area (level-0 px)."""
    top, left = placement.origin_row, placement.origin_col
    bottom, right = top + shape[0] * placement.step_row, left + shape[1] * placement.step_col
    return np.array([k for k, r in enumerate(regions)
                     if r.exterior[:, 0].max() >= top and r.exterior[:, 0].min() <= bottom
                     and r.exterior[:, 1].max() >= left and r.exterior[:, 1].min() <= right],
                    dtype=np.int64)


STEPS = 1000  # progress steps per heatmap evaluated (a step per random map or radius)


def compute(job: EvaluateJob):
    """Evaluate ``job``: yields ``(done, total)``, returns an :class:`EvaluateOutcome`.

    Only the cells on the explained area are scored (a slide-wide ground truth of 22k cells
    around one explained region scores the few hundred that the region holds); regions are
    kept when they meet it.
    """
    total = 4 + STEPS * (2 + len(job.compare))
    yield 0, total
    cells, _ = cells_from_inputs(job.points, job.mpp)
    n_checked = 0 if cells is None else len(cells.rows)
    cell_index = np.zeros(0, dtype=np.int64)
    if cells is not None:
        cell_index = np.flatnonzero(on_explained(job.values, job.placement, cells.rows, cells.cols)
                                    & (cells.classes != IGNORE))  # the class map's "ignore"
        cells = CellPoints(cells.rows[cell_index], cells.cols[cell_index], cells.classes[cell_index])
        if len(cells.rows) == 0:
            cells = None
    regions, _ = regions_from_inputs(job.shapes, job.mpp)
    region_index = np.array([k for k in _meets(regions, job.placement, job.values.shape)
                             if regions[k].cls != IGNORE], dtype=np.int64)
    regions = [regions[k] for k in region_index]
    yield 1, total
    if cells is None and not regions:
        raise XhistoError(
            f"none of the {n_checked} cells and no region lie on the explained area of "
            f"'{job.name}': explain where the annotations are, or tick other layers")
    heatmaps = {job.name: (job.values, job.placement)}
    heatmaps.update({b.name: (b.data, b.placement) for b in job.compare})
    gen = iter_evaluate_heatmaps(heatmaps, cells=cells, regions=regions, mpp=job.mpp,
                                 radius_um=job.radius_um, positive=job.positive or ("tumour",),
                                 tile_um=job.tile_um, n_random=job.n_random,
                                 localize=list(job.localize), n_boot=job.n_boot,
                                 ci_level=job.ci_level, threshold_step=job.threshold_step,
                                 radius_sweep=list(job.radius_sweep or ()) or None)
    while True:
        try:
            done, sub_total = next(gen)
        except StopIteration as stop:
            multi = stop.value
            break
        total = 1 + STEPS * sub_total + 3
        yield 1 + int(STEPS * done), total
    total = 1 + STEPS * len(heatmaps) + STEPS + 3
    result = multi["heatmaps"][job.name]
    for name, m in multi["heatmaps"].items():
        m["heatmap"]["layer"] = name
    result["compared"] = {k: v for k, v in multi["heatmaps"].items() if k != job.name}
    result["auc_comparisons"] = multi["auc_comparisons"]
    result["explained_area"] = {
        "placement": job.placement.to_dict(), "shape": list(job.values.shape),
        "n_cells_checked": n_checked, "n_cells_on_area": 0 if cells is None else len(cells.rows),
        "n_regions_on_area": len(regions)}
    out = EvaluateOutcome(result, cells, cell_index, region_index, job.values, job.placement)
    bias_diagnostics(job, out)
    yield total - 2, total
    if job.compare and regions:
        b = job.compare[0]
        out.comparison = compare_region_relevance(
            job.values, b.data, regions, placement_a=job.placement, placement_b=b.placement,
            label_a=job.name, label_b=b.name)
        out.result["comparison"] = out.comparison.to_dict()
        out.flags += out.comparison.flags
    yield total - 1, total
    if job.render:
        from . import plots

        out.images = {k: plots.rgba(fig) for k, fig in plots.all_figures(out).items()}
    yield total, total
    return out


# ---- where the work runs ---------------------------------------------------------------------

def _sources(inputs, index) -> list:
    """``(layer, i)`` of the kept items ``index`` (numbered over ``inputs`` in order)."""
    counts = np.array([len(p.data) for p in inputs], dtype=np.int64)
    ends = np.cumsum(counts)
    which = np.searchsorted(ends, index, side="right")
    starts = ends - counts
    return [(inputs[w].layer, int(k - starts[w])) for w, k in zip(which, index)]


def iter_evaluate_job(request: EvaluateRequest, *, in_process: bool = False):
    """Read the inputs of ``request`` and evaluate them; yields ``(done, total)``.

    With ``in_process`` the computing runs in a separate Python process (see
    :class:`~.process.ComputeProcess`): the metrics call C code that holds the GIL for seconds
    (``skimage.draw.polygon`` on large region outlines), which in a thread would freeze the
    viewer just as much as on the GUI thread.
    """
    yield 0, 1
    job = read_inputs(request)
    if in_process:
        from .process import SERVER

        work = SERVER.run(job)
    else:
        work = compute(job)
    try:
        out = yield from work
    finally:
        work.close()
    out.cell_source = _sources(request.points, out.cell_index)
    out.region_source = _sources(request.shapes, out.region_index)
    return out
