"""Evaluate's bias diagnostics placed on the slide: centre bias, class means and hotspots.

:func:`bias_diagnostics` fills an outcome's ``profile``, ``class_means`` and ``hotspots`` (each
hotspot a :class:`SlideHotspot`: its box in every patch of its class, in level-0 px) and the
``bias`` part of its result. No Qt, no viewer: it runs in the compute process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import XhistoError
from ...geometry import Placement
from ...metrics import centre_bias_profile, class_mean_heatmaps, find_hotspot
from .layerdata import patch_classes, patches_of


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


def bias_diagnostics(job, out) -> None:
    """Centre-bias profile, mean heatmap per predicted class and hotspots of ``out.values``."""
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
