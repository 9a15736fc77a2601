"""What the Explain widget does, without its window: testable on a plain napari viewer model.

:class:`ExplainController` reads the viewer and an :class:`ExplainSettings` (what the view's
editors say), runs the core generators (``explain_region``, ``predict_region``) through a
``runner`` (a worker thread with progress and Cancel in the widget; anything that drives a
generator and calls back in tests) and adds the results as layers below the annotations, with
an outline around every explained region. It owns no Qt widget.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ...geometry import Region
from .. import layers as L
from ..canvases import CanvasLayers, CanvasPlan, canvas_key
from ..common.workers import leave_a_core_to_the_gui, notify_error, release_thread_caches, scaled
from . import naming
from .outlines import sync_outlines
from .results import ResultLayers

MAX_VIEW_PATCH_COST = 1500.0  # patches x method cost; above it "Explain view" refuses
# modes in which a layer takes the click itself (napari's own), so no explanation starts
PASSIVE_MODES = ("pan_zoom", "transform")


@dataclass
class ExplainSettings:
    """What the user chose; the view builds one for every action."""

    slide: str = ""
    method: str = "lrp-epsilon-plus"
    params: dict = field(default_factory=dict)  # method -> parameters (checked)
    target: str = ""
    size_um: float = 256.0
    overlap: float = 0.1
    normalize: str = "global-max"
    use_canvas: bool = True
    compare: list = field(default_factory=list)  # methods to compare; empty: one method
    with_probability: bool = False
    opacity: float = 0.6
    uncertainty: bool = False  # probability map: MC-dropout mean plus a std layer
    mc_samples: int = 30

    def methods(self) -> list[str]:
        return list(self.compare) or [self.method]

    def jobs(self) -> list[tuple[str, dict]]:
        return [(m, dict(self.params.get(m, {}))) for m in self.methods()]

    def canvas_applies(self) -> bool:
        return self.use_canvas and self.normalize == "global-max"


def click_owner(viewer):
    """The active layer when it takes clicks itself (a Points/Shapes/Labels layer in an add,
    draw, select or paint mode), else ``None``: one click, one action."""
    layer = viewer.layers.selection.active
    mode = str(getattr(layer, "mode", "pan_zoom"))
    if layer is None or not layer.visible or mode in PASSIVE_MODES:
        return None
    return layer


class ExplainController(ResultLayers):
    """Explain regions of the viewer's slide layers; see module docstring.

    Parameters
    ----------
    viewer : napari.components.ViewerModel
    settings : callable
        Returns the current :class:`ExplainSettings` (may raise ``ValueError`` for a bad value).
    runner : callable
        ``runner(make_generator, label, on_result, on_finished)`` starts the work and returns a
        handle with ``quit()`` (the widget's is a napari worker).
    status : callable
        Shows a one-line status text.
    """

    def __init__(self, viewer, *, settings: Callable[[], ExplainSettings], runner, status=print):
        from ...explain import get_explainer, list_explainers

        self.viewer = viewer
        self.settings = settings
        self.runner = runner
        self.status = status
        self.worker = None
        self.explain_mode = False
        self.spec = None
        self.spec_path = None
        self.canvases = CanvasLayers(viewer)
        self.explainers = {m["name"]: get_explainer(m["name"]) for m in list_explainers()}
        self.last_run: dict | None = None  # region and layer names of the latest run
        self._models: dict = {}
        self._slides: dict = {}
        self._lock = threading.Lock()

    # -- model
    def load_spec(self, path):
        """Read a spec (cheap, no weights; ``None`` = the bundled demo) and make it current."""
        from ...models.spec import ModelSpec

        if path is None:
            from ...models.demo import DEMO_SPEC_PATH

            spec = ModelSpec.from_file(DEMO_SPEC_PATH)
        else:
            spec = ModelSpec.from_file(path)
        self.spec, self.spec_path = spec, (None if path is None else str(path))
        return spec

    def model_label(self) -> str:
        return naming.model_label(self.spec, self.spec_path)

    def heat_step(self, mpp: float) -> float:
        """Level-0 px per heatmap px: the model's pixel grid on this slide."""
        spec = self.spec
        if spec is None:
            return 1.0
        return spec.patch_size * spec.mpp / mpp / spec.network_input_size

    def model(self):
        """The loaded model (cached); called in the worker thread."""
        from ...models import load_model

        key = self.spec_path or "demo"
        with self._lock:
            if key not in self._models:
                self._models[key] = load_model(self.spec if self.spec_path else "demo")
            return self._models[key]

    # -- slides
    def slide_names(self) -> list[str]:
        return [ly.name for ly in self.viewer.layers if L.is_slide_layer(ly)]

    def slide_info(self, name: str):
        """(layer, slide path, mpp, level-0 shape) of the slide layer ``name``."""
        if name not in self.viewer.layers:
            raise ValueError("open a slide first (File > Open, or the synthetic sample)")
        layer = self.viewer.layers[name]
        meta = layer.metadata.get("xhisto", {})
        mpp = float(meta.get("mpp") or layer.scale[-1])
        shape = tuple(int(s) for s in (layer.data[0] if layer.multiscale else layer.data).shape[:2])
        return layer, meta.get("slide_path"), mpp, shape

    def slide(self, layer, path):
        """The open Slide of ``layer`` (the reader's), else one opened from ``path``."""
        from ...slide import open_slide

        shared = layer.metadata.get("xhisto_slide")
        if shared is not None:  # the reader's Slide: same tile cache as the display
            return shared
        with self._lock:
            if path not in self._slides:
                self._slides[path] = open_slide(path, mpp=layer.metadata["xhisto"].get("mpp"))
            return self._slides[path]

    def needs_demo_banner(self, slide_name: str) -> bool:
        if slide_name not in self.viewer.layers:
            return False
        meta = self.viewer.layers[slide_name].metadata.get("xhisto", {})
        return naming.needs_demo_banner(self.spec_path, meta)

    # -- canvases, made before the clicks that paint them (see ..canvases)
    def canvas_plans(self, s: ExplainSettings, *, layer, path, mpp, shape) -> list[CanvasPlan]:
        step = self.heat_step(mpp)
        model = self.spec_path or "demo"
        plans = []
        for method, params in s.jobs():
            key = canvas_key(slide=path or layer.name, model=model, method=method,
                             target=s.target, params=params, step=step)
            prov = {"kind": "heatmap", "method": method, "params": dict(params),
                    "target": s.target, "target_class": s.target, "model": self.model_label()}
            name = naming.canvas_name(method, s.target, self.model_label())
            plans.append(CanvasPlan(key, name, shape, step, mpp,
                                    None if path is None else str(path), prov, tuple(layer.units)))
        return plans

    def prepare_canvases(self) -> list:
        """Make the canvas layers the next click will paint, if canvas mode applies.

        Adding a layer stalls napari's GUI thread for 100-250 ms; updating one costs a few ms.
        Silently does nothing without a slide, a model or valid parameters.
        """
        try:
            s = self.settings()
            if not s.canvas_applies() or self.spec is None:
                return []
            layer, path, mpp, shape = self.slide_info(s.slide)
        except ValueError:
            return []
        plans = self.canvas_plans(s, layer=layer, path=path, mpp=mpp, shape=shape)
        return self.canvases.prepare(plans, opacity=s.opacity)

    def update_outlines(self) -> None:
        """Outlines of the current slide again (a heatmap layer was removed)."""
        try:
            layer = self.slide_info(self.settings().slide)[0]
        except ValueError:
            return
        sync_outlines(self.viewer, layer, keep_empty=self.explain_mode)

    def set_explain_mode(self, on: bool) -> None:
        self.explain_mode = bool(on)
        if self.explain_mode:
            self.prepare_canvases()
        else:
            self.canvases.discard_unpainted()
        try:  # the outline layer is made ahead too, and goes when it stays empty
            layer = self.slide_info(self.settings().slide)[0]
        except ValueError:
            return
        sync_outlines(self.viewer, layer, keep_empty=self.explain_mode)

    # -- clicks
    def on_mouse(self, viewer, event):
        """napari mouse-drag callback: a click (no drag) in explain mode explains there."""
        if not self.explain_mode or event.button != 1 or len(event.modifiers) > 0:
            return
        owner = click_owner(viewer)
        if owner is not None:  # the click is the layer's (a cell placed, a region drawn)
            self.status(f"the click went to '{owner.name}' ({owner.mode} mode); switch it to "
                        "pan/zoom to explain there")
            return
        start_world, start_pos = tuple(event.position), np.asarray(event.pos, float)
        yield
        dragged = False
        while event.type == "mouse_move":
            dragged = dragged or np.hypot(*(np.asarray(event.pos, float) - start_pos)) > 4
            yield
        if not dragged:
            self.explain_at(start_world)

    def region_at(self, world_position, s: ExplainSettings) -> Region | None:
        layer, _, mpp, shape = self.slide_info(s.slide)
        row, col = L.world_to_level0(world_position, scale=layer.scale, translate=layer.translate)
        if not (0 <= row < shape[0] and 0 <= col < shape[1]):
            return None
        side = max(1, round(s.size_um / mpp))
        return L.region_centred_at(row, col, side, side, slide_shape=shape,
                                   snap=self.heat_step(mpp))

    def explain_at(self, world_position):
        """Explain the region (size from the settings) centred on a world point (µm)."""
        try:
            region = self.region_at(world_position, self.settings())
        except ValueError as exc:
            notify_error(exc)
            return None
        if region is None:
            self.status("the click is outside the slide")
            return None
        return self.explain_region(region)

    def view_region(self, layer, shape) -> Region:
        cam = self.viewer.scene.camera
        return L.view_region(cam.center, cam.zoom, self.viewer.canvas.size, scale=layer.scale,
                             translate=layer.translate, slide_shape=shape)

    def view_cost(self, region: Region, s: ExplainSettings, mpp: float) -> tuple[int, float]:
        """(model patches in ``region``, patch passes the chosen methods would cost)."""
        foot = self.spec.patch_size * self.spec.mpp / mpp
        n_patches = math.ceil(region.height / foot) * math.ceil(region.width / foot)
        return n_patches, sum(self.explainers[m].cost for m in s.methods()) * n_patches

    def explain_view(self):
        """Explain the field of view; a too costly view returns a message (and nothing runs)."""
        s = self.settings()
        layer, _, mpp, shape = self.slide_info(s.slide)
        region = self.view_region(layer, shape)
        if self.spec is None:
            raise ValueError("choose a model first (its patch size sets the cost)")
        n_patches, cost = self.view_cost(region, s, mpp)
        if cost > MAX_VIEW_PATCH_COST:
            return (f"The view covers {n_patches} model patches; explaining it would cost about "
                    f"{cost:.0f} patch passes (limit {MAX_VIEW_PATCH_COST:.0f}). Zoom in, or "
                    "compute the probability map instead.")
        return self.explain_region(region)

    # -- running the core
    def busy(self) -> bool:
        return self.worker is not None

    def explain_region(self, region: Region, *, methods=None):
        """Start explaining ``region`` (level-0) with the chosen method(s); returns the worker."""
        if self.busy():
            return None
        try:
            s = self.settings()
            if methods:
                s.compare = list(methods)
            layer, path, mpp, shape = self.slide_info(s.slide)
            jobs = s.jobs()
        except ValueError as exc:
            notify_error(exc)
            return None
        with_prob = bool(s.compare) and s.with_probability
        plans = None
        if s.canvas_applies():
            plans = self.canvas_plans(s, layer=layer, path=path, mpp=mpp, shape=shape)
            # made ahead in explain mode; otherwise now, before the work rather than after it
            self.canvases.prepare(plans, opacity=s.opacity, prune=False)

        def run():
            from ...explain import explain_region

            leave_a_core_to_the_gui()
            model, slide = self.model(), self.slide(layer, path)
            target_index = model.spec.class_names.index(s.target)
            results, n = [], len(jobs) + int(with_prob)
            try:
                for k, (method, params) in enumerate(jobs):
                    gen = explain_region(slide, region, model, method, target=target_index,
                                         overlap=s.overlap, normalize=s.normalize, **params)
                    heat = yield from scaled(gen, k, n)
                    # display limit of the run (percentile of |R|: too slow for the GUI thread)
                    limit = L.symmetric_limits(heat.values, percentile=L.DISPLAY_PERCENTILE)[1]
                    results.append(("heatmap", method, limit, heat))
            finally:
                release_thread_caches()
            if with_prob:
                from ...models import predict_region

                results.append(("probability", None, None, (yield from scaled(
                    predict_region(slide, region, model), n - 1, n))))
            return results

        def done(results):
            names = []
            for k, (kind, method, limit, res) in enumerate(results):
                if kind == "probability":
                    names.append(self.add_probability(res, layer, mpp, path, region, s).name)
                elif plans is not None:
                    names.append(self.canvases.paste(plans[k], res, opacity=s.opacity,
                                                     display_limit=limit).name)
                else:
                    names.append(self.add_heatmap(res, method, region, mpp, path, s,
                                                  display_limit=limit).name)
            self.last_run = {"region": region, "layers": names, "slide": layer.name}
            sync_outlines(self.viewer, layer, keep_empty=self.explain_mode)
            self.on_results(plans)

        label = f"{', '.join(s.methods())} on {region.height} x {region.width} px"
        return self._start(run, label, done)

    def on_results(self, plans) -> None:
        """Called after results were added (the widget refreshes limits and the legend)."""

    def probability_map(self, scope: str = "view"):
        """Class probabilities of the view or the whole slide (``predict_region``)."""
        if self.busy():
            return None
        s = self.settings()
        layer, path, mpp, shape = self.slide_info(s.slide)
        region = None if scope == "whole slide" else self.view_region(layer, shape)

        def run():
            from ...models import predict_region
            from ...models.mc_dropout import mc_predict_region

            leave_a_core_to_the_gui()
            if s.uncertainty:  # refused with the reason before any read for a model without
                return (yield from mc_predict_region(  # dropout
                    self.slide(layer, path), region, self.model(), n_samples=s.mc_samples))
            return (yield from predict_region(self.slide(layer, path), region, self.model()))

        def done(res):
            added = [self.add_probability(getattr(res, "mean", res), layer, mpp, path, region, s)]
            if s.uncertainty:
                added.append(self.add_uncertainty(res, layer, mpp, path, region, s))
            self.last_run = {"region": region, "layers": [a.name for a in added],
                             "slide": layer.name}
            sync_outlines(self.viewer, layer, keep_empty=self.explain_mode)
            self.on_results(None)

        what = f"{s.mc_samples} MC-dropout passes" if s.uncertainty else "probability map"
        return self._start(run, f"{what} of the {scope}", done)

    def _start(self, run, label, on_result):
        def finished(cancelled):
            self.worker = None
            self.status("cancelled: nothing was added" if cancelled else "")
            if not self.explain_mode:  # a canvas made for this run only, and left empty
                self.canvases.discard_unpainted()

        self.status(f"running {label} …")
        self.worker = self.runner(run, label, on_result, finished)
        return self.worker

    def close(self) -> None:
        if self.worker is not None:
            self.worker.quit()
