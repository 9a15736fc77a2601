"""Evaluate's work, as one generator that yields progress (no Qt, no viewer).

:func:`iter_evaluate_job` runs in the widget's worker thread (tests run it directly): it reads
the explained part of the heatmap, keeps the cells and regions that lie on it, calls
:func:`~napari_xhisto.metrics.report.iter_evaluate_heatmap`, the bias diagnostics and the A-vs-B
comparison, and renders the plots (matplotlib Agg, off the GUI thread), so the GUI thread only
fills tables and shows pictures when the result arrives.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ...annotations import CellPoints
from ...annotations.classmap import IGNORE
from ...errors import XhistoError
from ...geometry import Placement
from ...metrics import (
    centre_bias_profile,
    class_mean_heatmaps,
    compare_region_relevance,
    find_hotspot,
)
from ...metrics.report import iter_evaluate_heatmap
from .layerdata import (
    HeatmapInput,
    PointsInput,
    ShapesInput,
    cells_from_inputs,
    explained_values,
    mask_uncovered,
    on_explained,
    patch_classes,
    patches_of,
    regions_from_inputs,
)


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
    compare: HeatmapInput | None = None
    render: bool = True


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
    compare: HeatmapInput | None
    render: bool


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
        None if request.compare is None else _in_box(request.compare, placement, values.shape),
        request.render)


@dataclass
class SlideHotspot:
    """A class's bias hotspot placed on the slide: one box per patch of that class.

    ``boxes`` are level-0 ``(row, col, height, width)``; ``strongest`` indexes the patch where
    the window holds the most relevance (the one to look at first).
    """

    cls: str
    spot: object
    boxes: np.ndarray
    strongest: int
    mpp: float
    held: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def strongest_first(self, n: int) -> np.ndarray:
        """Indices of the ``n`` boxes holding the most relevance, strongest first."""
        order = np.argsort(-self.held, kind="stable") if len(self.held) else np.arange(len(self.boxes))
        return order[:n]

    @property
    def centre_level0(self) -> tuple[float, float]:
        r, c, h, w = self.boxes[self.strongest]
        return float(r + h / 2), float(c + w / 2)

    @property
    def centre_um(self) -> tuple[float, float]:
        r, c = self.centre_level0
        return r * self.mpp, c * self.mpp

    def describe(self) -> str:
        """Plain words, slide µm: where the window is in each patch and where it is strongest."""
        _, _, h, _ = self.boxes[self.strongest]
        y, x = self.centre_um
        share = 100 * self.spot.share
        return (f"{self.cls}: {share:.0f}% of the {self.spot.sign} relevance in a "
                f"{h * self.mpp:.1f} µm square ({self.spot.enrichment:.0f}x its area); "
                f"strongest at x {x:.0f} µm, y {y:.0f} µm")

    def to_dict(self) -> dict:
        y, x = self.centre_um
        return {"class": self.cls, "boxes_level0": self.boxes.tolist(),
                "strongest_level0": list(self.centre_level0), "strongest_um": [y, x],
                "flag": self.spot.flag()}


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


def hotspot_on_slide(name, spot, values, corners, labels, placement: Placement,
                     mpp: float) -> SlideHotspot:
    """Level-0 boxes of ``spot`` (patch px) in every patch of class ``name``."""
    mine = corners[labels == name]
    rows = placement.origin_row + (mine[:, 0] + spot.row) * placement.step_row
    cols = placement.origin_col + (mine[:, 1] + spot.col) * placement.step_col
    boxes = np.stack([rows, cols, np.full(len(mine), spot.size * placement.step_row),
                      np.full(len(mine), spot.size * placement.step_col)], axis=1)
    sign = 1.0 if spot.sign == "positive" else -1.0
    held = [np.nansum(np.maximum(sign * values[i + spot.row:i + spot.row + spot.size,
                                               j + spot.col:j + spot.col + spot.size], 0))
            for i, j in mine]
    return SlideHotspot(name, spot, boxes, int(np.argmax(held)) if held else 0, mpp,
                        np.asarray(held, dtype=np.float64))


def _bias(job: EvaluateJob, out: EvaluateOutcome) -> None:
    size = int(job.patch_px)
    try:
        patches, corners = patches_of(out.values, size, offset=job.offset)
        out.profile = centre_bias_profile(patches)
    except (XhistoError, ValueError) as exc:
        out.flags.append(f"centre bias not computed: {exc}")
        return
    labels = (np.full(len(patches), "all patches") if job.prob is None else
              patch_classes(corners, size, out.placement, job.prob))
    out.class_means = class_mean_heatmaps(patches, labels)
    out.flags += [f for f in [out.profile.flag()] if f]
    for name, entry in out.class_means.items():
        try:
            spot = find_hotspot(entry["mean"], label=name)
        except ValueError:  # an all-zero mean map has no hotspot
            continue
        out.hotspots[name] = hotspot_on_slide(name, spot, out.values, corners, labels,
                                              out.placement, job.mpp)
        if spot.flag():
            out.flags.append("look for an artefact correlated with the class: "
                             + out.hotspots[name].describe())
    out.result["bias"] = {
        "patch_size": size, "centre_bias": out.profile.to_dict(),
        "classes": {k: {"count": v["count"],
                        "hotspot": out.hotspots[k].spot.to_dict() if k in out.hotspots else None,
                        "on_slide": out.hotspots[k].to_dict() if k in out.hotspots else None}
                    for k, v in out.class_means.items()}}


def compute(job: EvaluateJob):
    """Evaluate ``job``: yields ``(done, total)``, returns an :class:`EvaluateOutcome`.

    Only the cells on the explained area are scored (a slide-wide ground truth of 22k cells
    around one explained region scores the few hundred that the region holds); regions are
    kept when they meet it.
    """
    total = 5 + (3 + int(job.n_random) if job.points else 0)
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
    gen = iter_evaluate_heatmap(job.values, placement=job.placement, mpp=job.mpp, cells=cells,
                                regions=regions, radius_um=job.radius_um,
                                positive=job.positive or ("tumour",), tile_um=job.tile_um,
                                n_random=job.n_random, localize=list(job.localize))
    while True:
        try:
            step, sub_total = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        total = 1 + sub_total + 3
        yield 1 + step, total
    result["explained_area"] = {
        "placement": job.placement.to_dict(), "shape": list(job.values.shape),
        "n_cells_checked": n_checked, "n_cells_on_area": 0 if cells is None else len(cells.rows),
        "n_regions_on_area": len(regions)}
    out = EvaluateOutcome(result, cells, cell_index, region_index, job.values, job.placement)
    _bias(job, out)
    yield total - 2, total
    if job.compare is not None and regions:
        b = job.compare
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
