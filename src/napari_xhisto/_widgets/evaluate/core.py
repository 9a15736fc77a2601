"""Evaluate's work, as one generator that yields progress (no Qt, no viewer).

:func:`iter_evaluate_job` runs in the widget's worker thread (tests run it directly): it reads
the explained part of the heatmap, keeps the cells and regions that lie on it, calls
:func:`~napari_xhisto.metrics.report.iter_evaluate_heatmap`, the bias diagnostics and the A-vs-B
comparison, and renders the plots (matplotlib Agg, off the GUI thread), so the GUI thread only
fills tables and shows pictures when the result arrives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...annotations import CellPoints
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
    crop_to,
    explained_values,
    mask_uncovered,
    on_explained,
    patch_classes,
    patches_of,
    regions_from_inputs,
)


@dataclass
class EvaluateJob:
    """Everything one evaluation needs, taken from the layers on the GUI thread."""

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
    result: dict
    cells: CellPoints | None
    cell_source: list
    region_source: list
    values: np.ndarray
    placement: Placement
    profile: object = None
    class_means: dict = field(default_factory=dict)
    hotspots: dict = field(default_factory=dict)
    comparison: object = None
    flags: list = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)


def _keep_regions(regions, source, placement: Placement, shape):
    """Regions whose bounding box meets the explained area (level-0 px)."""
    top, left = placement.origin_row, placement.origin_col
    bottom, right = top + shape[0] * placement.step_row, left + shape[1] * placement.step_col
    keep = [k for k, r in enumerate(regions)
            if r.exterior[:, 0].max() >= top and r.exterior[:, 0].min() <= bottom
            and r.exterior[:, 1].max() >= left and r.exterior[:, 1].min() <= right]
    return [regions[k] for k in keep], [source[k] for k in keep]


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
    return SlideHotspot(name, spot, boxes, int(np.argmax(held)) if held else 0, mpp)


def _bias(job: EvaluateJob, out: EvaluateOutcome, offset) -> None:
    size = int(job.patch_px)
    try:
        patches, corners = patches_of(out.values, size, offset=offset)
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
                                              out.placement, job.heatmap.mpp)
        if spot.flag():
            out.flags.append("look for an artefact correlated with the class: "
                             + out.hotspots[name].describe())
    out.result["bias"] = {
        "patch_size": size, "centre_bias": out.profile.to_dict(),
        "classes": {k: {"count": v["count"],
                        "hotspot": out.hotspots[k].spot.to_dict() if k in out.hotspots else None,
                        "on_slide": out.hotspots[k].to_dict() if k in out.hotspots else None}
                    for k, v in out.class_means.items()}}


def _compare(job: EvaluateJob, out: EvaluateOutcome, regions) -> None:
    b = job.compare
    if b is None or not regions:
        return
    rows = np.concatenate([r.exterior[:, 0] for r in regions])
    cols = np.concatenate([r.exterior[:, 1] for r in regions])
    values_b, placement_b = crop_to(b.data, b.placement, rows, cols, margin=0)
    if b.meta.get("canvas"):
        values_b = mask_uncovered(values_b, placement_b, b.meta.get("pastes"))
    out.comparison = compare_region_relevance(
        out.values, values_b, regions, placement_a=out.placement, placement_b=placement_b,
        label_a=job.heatmap.name, label_b=b.name)
    out.result["comparison"] = out.comparison.to_dict()
    out.flags += out.comparison.flags


def iter_evaluate_job(job: EvaluateJob):
    """Evaluate ``job``: yields ``(done, total)``, returns an :class:`EvaluateOutcome`.

    Only the explained area of the heatmap is read, and only the cells on it are scored (a
    slide-wide ground truth of 22k cells around one explained region scores the few hundred
    that the region holds); regions are kept when they meet it.
    """
    total = 6 + (3 + int(job.n_random) if job.points else 0)
    done = 0
    yield done, total
    mpp = job.heatmap.mpp
    values, placement, offset = explained_values(job.heatmap)
    done += 1
    yield done, total
    cells, cell_source = cells_from_inputs(job.points, mpp)
    n_checked = 0 if cells is None else len(cells.rows)
    if cells is not None:
        keep = on_explained(values, placement, cells.rows, cells.cols)
        cells = CellPoints(cells.rows[keep], cells.cols[keep], cells.classes[keep])
        cell_source = [s for s, k in zip(cell_source, keep) if k]
        if len(cells.rows) == 0:
            cells = None
    regions, region_source = regions_from_inputs(job.shapes, mpp)
    regions, region_source = _keep_regions(regions, region_source, placement, values.shape)
    done += 1
    yield done, total
    if cells is None and not regions:
        raise XhistoError(
            f"none of the {n_checked} cells and no region lie on the explained area of "
            f"'{job.heatmap.name}': explain where the annotations are, or check other layers")
    gen = iter_evaluate_heatmap(values, placement=placement, mpp=mpp, cells=cells, regions=regions,
                                radius_um=job.radius_um, positive=job.positive or ("tumour",),
                                tile_um=job.tile_um, n_random=job.n_random,
                                localize=list(job.localize))
    base = done
    while True:
        try:
            step, sub_total = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        total = base + sub_total + 4
        yield base + step, total
    done = total - 4
    result["explained_area"] = {
        "placement": placement.to_dict(), "shape": list(values.shape),
        "n_cells_checked": n_checked, "n_cells_on_area": 0 if cells is None else len(cells.rows),
        "n_regions_on_area": len(regions)}
    out = EvaluateOutcome(result, cells, cell_source, region_source, values, placement)
    _bias(job, out, offset)
    done += 1
    yield done, total
    _compare(job, out, regions)
    done += 1
    yield done, total
    if job.render:
        from . import plots

        out.figures = plots.all_figures(out)
        done += 1
        yield done, total
        out.images = {k: plots.rgba(fig) for k, fig in out.figures.items()}
    yield total, total
    return out
