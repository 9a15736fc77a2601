"""Slide-wide canvas layers of the Explain widget: made before the clicks that paint them.

Adding an image layer costs napari 100-250 ms on the GUI thread (vispy visual, layer controls,
the first draw's shader compile under Mesa); updating an existing layer's data costs a few ms.
So the canvas layer a click will paint (one per slide, model, method, target and parameters,
seed 000's globally normalised tiles) is created when explain mode is switched on or the
selection changes, and a finished explanation only pastes into it and refreshes it: the viewer
does not freeze when results arrive.

A canvas lives in its layer's ``metadata["xhisto_canvas"]``: deleting the layer deletes the
canvas, and the next click starts a fresh one. Layers that were made ahead but never painted
hold nothing the user made; they are re-targeted (cheap) when the selection changes and removed
when explain mode ends. Canvas pixels no click explained are NaN (drawn transparent), and new
canvas layers go below the annotation layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from . import layers as L

KEY = "xhisto_canvas_key"
CANVAS = "xhisto_canvas"
AUTO_LIMITS = "xhisto_auto_limits"  # the contrast limits the last paste set
NORMALIZE_NOTE = "global-max over all clicks on this canvas"


@dataclass(frozen=True)
class CanvasPlan:
    """What one canvas layer shows and where: everything needed to make it before any result."""

    key: tuple
    name: str
    slide_shape: tuple[int, int]
    step: float
    mpp: float
    slide_path: str | None
    provenance: dict = field(hash=False, compare=False)
    units: tuple = L.UNITS


def canvas_key(*, slide, model, method: str, target: str, params: dict, step: float) -> tuple:
    """The identity of a canvas: maps of separate clicks share one only when all of this agrees."""
    return (str(slide), str(model), method, target,
            tuple(sorted((k, str(v)) for k, v in params.items())), round(float(step), 9))


def is_painted(layer) -> bool:
    canvas = layer.metadata.get(CANVAS)
    return canvas is not None and bool(canvas.pastes)


class CanvasLayers:
    """Find, make ahead, re-target and paint the canvas layers of one viewer."""

    def __init__(self, viewer):
        self.viewer = viewer

    def find(self, key):
        for layer in self.viewer.layers:
            if layer.metadata.get(KEY) == key:
                return layer
        return None

    def unpainted(self) -> list:
        return [ly for ly in self.viewer.layers if KEY in ly.metadata and not is_painted(ly)]

    def prepare(self, plans: list[CanvasPlan], *, opacity: float, prune: bool = True) -> list:
        """Make sure a layer exists for every plan; return them in order.

        A missing layer takes over a never-painted one that no plan needs (new data, name and
        metadata: a few ms) before a new layer is added. With ``prune``, never-painted layers
        that no plan needs are removed.
        """
        wanted = {p.key for p in plans}
        spare = [ly for ly in self.unpainted() if ly.metadata[KEY] not in wanted]
        out = []
        for plan in plans:
            layer = self.find(plan.key)
            if layer is None:
                layer = self._retarget(spare.pop(0), plan) if spare else self._add(plan, opacity)
            out.append(layer)
        if prune:
            for layer in spare:
                self.viewer.layers.remove(layer)
        return out

    def discard_unpainted(self) -> None:
        """Remove every canvas layer that was made ahead and never painted."""
        for layer in self.unpainted():
            self.viewer.layers.remove(layer)

    def paste(self, plan: CanvasPlan, heat, *, opacity: float, display_limit: float | None = None):
        """Paste ``heat`` (a normalised ``Heatmap``) on its canvas and refresh the layer.

        The values go back to raw relevance (times the run's ``normalization_scale``); the
        canvas divides everything by the largest patch maximum of all its clicks (seed 000).
        ``display_limit`` (in ``heat.values``' units, e.g. their 99.5th percentile of |R|) is
        kept, as raw relevance, for :meth:`update_display_limits`: display only (LRP maps are
        sparse: limits at the maximum hide most of them).
        """
        layer = self.find(plan.key) or self._add(plan, opacity)
        canvas = layer.metadata[CANVAS]
        scale = float(heat.provenance.get("normalization_scale") or 1.0)
        canvas.paste(heat.values * scale, heat.placement, provenance=heat.provenance, peak=scale)
        prov = {**heat.provenance, "normalize": NORMALIZE_NOTE,
                "normalization_scale": canvas.scale_value}
        layer.metadata["xhisto"] = self._metadata(plan, canvas, prov)
        if display_limit is not None and display_limit > 0:
            canvas.display_peak = max(canvas.display_peak, float(display_limit) * scale)
        layer.refresh()
        return layer

    def update_display_limits(self, plan: CanvasPlan) -> None:
        """Contrast limits +-(largest display peak / global max) unless the user set their own.

        Separate from :meth:`paste`: a change of limits is a redraw of its own (25 ms under
        Mesa), so the widget applies it once the frame with the new data is drawn.
        """
        layer = self.find(plan.key)
        if layer is None:
            return
        canvas = layer.metadata[CANVAS]
        if canvas.display_peak <= 0 or canvas.scale_value <= 0:
            return
        auto = layer.metadata.get(AUTO_LIMITS, (-1.0, 1.0))
        m = min(1.0, canvas.display_peak / canvas.scale_value)
        if tuple(layer.contrast_limits) == tuple(auto) and not math.isclose(m, auto[1]):
            layer.contrast_limits = (-m, m)
            layer.metadata[AUTO_LIMITS] = tuple(layer.contrast_limits)
        # a file written from this layer opens again with the limits shown (export.layer_reader)
        layer.metadata["xhisto"]["provenance"]["display_limits"] = [
            float(v) for v in layer.contrast_limits]

    # -- internals
    @staticmethod
    def _metadata(plan: CanvasPlan, canvas, provenance: dict) -> dict:
        return L.heatmap_metadata(kind="heatmap", placement=canvas.placement, mpp=plan.mpp,
                                  provenance=provenance, slide_path=plan.slide_path, canvas=True,
                                  global_max=canvas.scale_value, pastes=list(canvas.pastes))

    def _new_canvas(self, plan: CanvasPlan):
        canvas = L.SparseCanvas(plan.slide_shape, step=plan.step)
        prov = {**plan.provenance, "normalize": NORMALIZE_NOTE}
        return canvas, {"xhisto": self._metadata(plan, canvas, prov), CANVAS: canvas, KEY: plan.key}

    def _add(self, plan: CanvasPlan, opacity: float):
        canvas, metadata = self._new_canvas(plan)
        kwargs = {"multiscale": True, "name": plan.name,
                  **canvas.placement.layer_transform(plan.mpp), "units": plan.units,
                  "colormap": L.heatmap_colormap(), "contrast_limits": (-1.0, 1.0),
                  "opacity": opacity, "blending": "translucent", "interpolation2d": "nearest",
                  "metadata": metadata}
        # below the annotations: a canvas never hides the cells and regions drawn on the slide
        return L.add_below_annotations(self.viewer, canvas.levels(), kwargs)

    def _retarget(self, layer, plan: CanvasPlan):
        canvas, metadata = self._new_canvas(plan)
        tf = canvas.placement.layer_transform(plan.mpp)
        layer.metadata = metadata
        layer.data = canvas.levels()
        layer.scale, layer.translate = tf["scale"], tf["translate"]
        layer.name = plan.name
        return layer
