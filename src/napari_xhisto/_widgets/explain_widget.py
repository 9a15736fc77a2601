"""The docked "Explain" widget: click on a slide to explain the region there.

Thin on purpose: it reads the viewer, calls the core generators (``explain_region``,
``predict_region``) in a worker thread (:mod:`._workers`) and adds layers (:mod:`.layers`).
torch, the models and the explainers are imported when the widget is created, never at napari
start.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSlider,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ..geometry import Region
from . import layers as L
from ._workers import (
    AFTER_THE_FRAME_MS,
    import_heavy_modules,
    leave_a_core_to_the_gui,
    notify_error,
    release_thread_caches,
    scaled,
    start_generator,
    warm_matplotlib,
)
from .canvases import CanvasLayers, CanvasPlan, canvas_key
from .parts import ParamForm, Relay, qimage

SHORTCUT = "Shift-E"
DEMO = "demo (bundled)"
MAX_VIEW_PATCH_COST = 1500.0  # patches x method cost; above it "Explain view" refuses


# ---- the widget ----------------------------------------------------------------------------

class ExplainWidget(QWidget):
    """Explain regions of a slide layer with the project's explainers; see module docstring."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        from ..explain import get_explainer, list_explainers
        from ..explain.tiling import NORMALIZE_MODES

        import_heavy_modules()
        threading.Thread(target=warm_matplotlib, name="xhisto-warm-matplotlib", daemon=True).start()

        self.viewer = napari_viewer
        self.worker = None
        self.explain_mode = False
        self._models: dict = {}
        self._slides: dict = {}
        self.canvases = CanvasLayers(napari_viewer)
        self._legends: dict = {}
        self._legend_wanted = None
        self._legend_relay = Relay(self)  # legend images from their thread to the GUI thread
        self._legend_relay.ready.connect(self._show_legend)
        self._lock = threading.Lock()
        self._spec = None
        self._spec_path = None
        self._explainers = {m["name"]: get_explainer(m["name"]) for m in list_explainers()}
        self._forms: dict[str, ParamForm] = {}
        self._normalisations = tuple(NORMALIZE_MODES)
        # canvas layers for the next click are made ahead, once the selection settles
        self._prepare_timer = QTimer(self)
        self._prepare_timer.setSingleShot(True)
        self._prepare_timer.setInterval(0)
        self._prepare_timer.timeout.connect(self.prepare_canvases)
        self._build()
        self._load_spec(None)
        self._refresh_slides()
        self.viewer.layers.events.inserted.connect(self._refresh_slides)
        self.viewer.layers.events.removed.connect(self._refresh_slides)
        self.viewer.layers.selection.events.active.connect(self._update_legend)
        self.viewer.mouse_drag_callbacks.append(self._on_mouse)
        self.viewer.bind_key(SHORTCUT, self._toggle_mode_key, overwrite=True)

    # -- layout
    def _build(self):
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.slide_combo = QComboBox()
        self.slide_combo.currentIndexChanged.connect(self._update_px_label)
        form.addRow("Slide layer", self.slide_combo)
        self.model_combo = QComboBox()
        self.model_combo.addItems([DEMO, "spec file…"])
        self.model_combo.activated.connect(self._on_model_choice)
        self.model_label = QLabel()
        self.model_label.setWordWrap(True)
        form.addRow("Model", self.model_combo)
        form.addRow("", self.model_label)
        self.method_combo = QComboBox()
        for name, ex in self._explainers.items():
            self.method_combo.addItem(name)
            self.method_combo.setItemData(self.method_combo.count() - 1, ex.description, Qt.ToolTipRole)
        self.params_stack = QStackedWidget()
        self.method_combo.currentTextChanged.connect(self._show_params)
        form.addRow("Method", self.method_combo)
        form.addRow(self.params_stack)
        self.target_combo = QComboBox()
        form.addRow("Target class", self.target_combo)
        self.size_spin = QDoubleSpinBox()
        self.size_spin.setRange(1.0, 1e6)
        self.size_spin.setDecimals(1)
        self.size_spin.setSuffix(" µm")
        self.size_spin.setValue(256.0)
        self.size_spin.valueChanged.connect(self._update_px_label)
        self.px_label = QLabel()
        form.addRow("Region size", self.size_spin)
        form.addRow("", self.px_label)
        self.overlap_spin = QDoubleSpinBox()
        self.overlap_spin.setRange(0.0, 0.9)
        self.overlap_spin.setSingleStep(0.05)
        self.overlap_spin.setValue(0.1)
        form.addRow("Overlap", self.overlap_spin)
        self.norm_combo = QComboBox()
        self.norm_combo.addItems(list(self._normalisations))
        self.norm_combo.setToolTip("global-max: divide by the largest |relevance| over all patches "
                                   "(seed 000); per-patch: each patch by its own (display only)")
        form.addRow("Normalisation", self.norm_combo)
        self.canvas_check = QCheckBox("keep clicks on one slide-wide canvas per method")
        self.canvas_check.setChecked(True)
        self.canvas_check.setToolTip("with global normalisation, all clicks share one layer per "
                                     "method, normalised by the maximum over all of them")
        form.addRow(self.canvas_check)
        lay.addLayout(form)

        self.compare_box = QGroupBox("Compare methods (explain with all checked)")
        self.compare_box.setCheckable(True)
        self.compare_box.setChecked(False)
        cl = QVBoxLayout(self.compare_box)
        self.compare_list = QListWidget()
        for name in self._explainers:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Unchecked)
            self.compare_list.addItem(item)
        self.compare_list.setMaximumHeight(110)
        self.compare_prob = QCheckBox("with the probability map")
        cl.addWidget(self.compare_list)
        cl.addWidget(self.compare_prob)
        lay.addWidget(self.compare_box)

        self.mode_button = QPushButton(f"Explain mode: click the slide ({SHORTCUT})")
        self.mode_button.setCheckable(True)
        self.mode_button.toggled.connect(self.set_explain_mode)
        self.view_button = QPushButton("Explain view")
        self.view_button.clicked.connect(self.explain_view)
        row = QHBoxLayout()
        self.prob_button = QPushButton("Probability map of")
        self.prob_button.clicked.connect(lambda: self.probability_map(self.prob_scope.currentText()))
        self.prob_scope = QComboBox()
        self.prob_scope.addItems(["view", "whole slide"])
        row.addWidget(self.prob_button)
        row.addWidget(self.prob_scope)
        for w in (self.mode_button, self.view_button):
            lay.addWidget(w)
        lay.addLayout(row)

        prog = QHBoxLayout()
        self.progress_bar = QProgressBar()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        prog.addWidget(self.progress_bar)
        prog.addWidget(self.cancel_button)
        lay.addLayout(prog)
        self.status = QLabel()
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.offer_button = QPushButton("Compute the probability map of the view instead")
        self.offer_button.clicked.connect(lambda: self.probability_map("view"))
        self.offer_button.setVisible(False)
        lay.addWidget(self.offer_button)

        disp = QFormLayout()
        self.opacity_slider = QSlider(Qt.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(60)
        self.opacity_slider.valueChanged.connect(self._apply_opacity)
        disp.addRow("Heatmap opacity", self.opacity_slider)
        self.grey_check = QCheckBox("H&&E in grey-scale")
        self.grey_check.toggled.connect(self.set_greyscale)
        self.grid_check = QCheckBox("side by side (grid)")
        self.grid_check.toggled.connect(self._set_grid)
        disp.addRow(self.grey_check, self.grid_check)
        lay.addLayout(disp)
        self.legend = QLabel()
        lay.addWidget(self.legend)
        lay.addStretch(1)
        self._show_params(self.method_combo.currentText())
        if "lrp-epsilon-plus" in self._explainers:
            self.method_combo.setCurrentText("lrp-epsilon-plus")
        for sig in (self.slide_combo.currentIndexChanged, self.method_combo.currentTextChanged,
                    self.target_combo.currentTextChanged, self.norm_combo.currentTextChanged,
                    self.canvas_check.toggled, self.compare_box.toggled,
                    self.compare_list.itemChanged):
            sig.connect(self._selection_changed)

    def _show_params(self, name):
        if name not in self._forms and name in self._explainers:
            self._forms[name] = ParamForm(self._explainers[name].params)
            self._forms[name].changed.connect(self._selection_changed)
            self.params_stack.addWidget(self._forms[name])
        if name in self._forms:
            self.params_stack.setCurrentWidget(self._forms[name])

    # -- model
    def _on_model_choice(self, index):
        if index == 0:
            self._load_spec(None)
            return
        path, _ = QFileDialog.getOpenFileName(self, "Model spec", "", "Model spec (*.json);;All (*)")
        if path:
            self._load_spec(path)
        else:
            self.model_combo.setCurrentIndex(0 if self._spec_path is None else 1)

    def _load_spec(self, path):
        """Read the spec (cheap, no weights); a bad file is a notification and changes nothing."""
        from ..errors import XhistoError
        from ..models.spec import ModelSpec

        try:
            if path is None:
                from ..models.demo import DEMO_SPEC_PATH

                spec = ModelSpec.from_file(DEMO_SPEC_PATH)
            else:
                spec = ModelSpec.from_file(path)
        except (XhistoError, OSError, ValueError, ImportError) as exc:
            notify_error(exc, context=f"model {Path(path).name if path else 'demo'}")
            self.model_combo.setCurrentIndex(0 if self._spec_path is None else 1)
            return
        self._spec, self._spec_path = spec, path
        self.model_label.setText(f"{spec.name}: {spec.architecture}, {spec.patch_size} px at "
                                 f"{spec.mpp:g} µm/px ({spec.patch_um:g} µm patches)")
        self.target_combo.clear()
        self.target_combo.addItems(spec.class_names)
        self.target_combo.setCurrentText(spec.positive_class)
        if path is not None:
            self.model_combo.setItemText(1, Path(path).name)
            self.model_combo.setCurrentIndex(1)
        self._update_px_label()
        self._selection_changed()

    def _heat_step(self, mpp: float) -> float:
        """Level-0 px per heatmap px: the model's pixel grid on this slide."""
        spec = self._spec
        if spec is None:
            return 1.0
        return spec.patch_size * spec.mpp / mpp / spec.network_input_size

    def _model(self):
        """The loaded model (cached); called in the worker thread."""
        from ..models import load_model

        key = self._spec_path or "demo"
        with self._lock:
            if key not in self._models:
                self._models[key] = load_model(self._spec if self._spec_path else "demo")
            return self._models[key]

    # -- slides
    def slide_layer(self):
        name = self.slide_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _refresh_slides(self, event=None):
        names = [ly.name for ly in self.viewer.layers if getattr(ly, "rgb", False)
                 and ("xhisto_slide" in ly.metadata or "slide_path" in ly.metadata.get("xhisto", {}))]
        current = self.slide_combo.currentText()
        self.slide_combo.blockSignals(True)
        self.slide_combo.clear()
        self.slide_combo.addItems(names)
        if current in names:
            self.slide_combo.setCurrentText(current)
        self.slide_combo.blockSignals(False)
        self._update_px_label()
        self._selection_changed()

    def _slide_info(self):
        """(layer, slide path, mpp, level-0 shape) of the chosen slide layer."""
        layer = self.slide_layer()
        if layer is None:
            raise ValueError("open a slide first (File > Open, or the synthetic sample)")
        meta = layer.metadata.get("xhisto", {})
        mpp = float(meta.get("mpp") or layer.scale[-1])
        shape = tuple(int(s) for s in (layer.data[0] if layer.multiscale else layer.data).shape[:2])
        return layer, meta.get("slide_path"), mpp, shape

    def _slide(self, layer, path):
        """The open Slide of ``layer`` (the reader's), else one opened from ``path``."""
        from ..slide import open_slide

        shared = layer.metadata.get("xhisto_slide")
        if shared is not None:  # the reader's Slide: same tile cache as the display
            return shared
        with self._lock:
            if path not in self._slides:
                self._slides[path] = open_slide(path, mpp=layer.metadata["xhisto"].get("mpp"))
            return self._slides[path]

    def _update_px_label(self, *_):
        try:
            _, _, mpp, _ = self._slide_info()
        except ValueError:
            self.px_label.setText("(no slide layer)")
            return
        px = self.size_spin.value() / mpp
        extra = ""
        if self._spec is not None:
            extra = f", {self.size_spin.value() / self._spec.mpp:.0f} px at the model's scale"
        self.px_label.setText(f"= {px:.0f} px at the slide's {mpp:g} µm/px{extra}")

    # -- explain mode and clicks
    def set_explain_mode(self, on: bool):
        self.explain_mode = bool(on)
        if self.mode_button.isChecked() != self.explain_mode:
            self.mode_button.setChecked(self.explain_mode)
        self.status.setText("Explain mode: click the slide" if on else "")
        if self.explain_mode:
            self.prepare_canvases()
        else:
            self._prepare_timer.stop()
            self.canvases.discard_unpainted()

    # -- canvas layers, made before the clicks that paint them (see .canvases)
    def _selection_changed(self, *_):
        if self.explain_mode:
            self._prepare_timer.start()  # once, after a burst of changes

    def _uses_canvas(self) -> bool:
        return self.canvas_check.isChecked() and self.norm_combo.currentText() == "global-max"

    def _canvas_plans(self, jobs, *, layer, path, mpp, shape, target) -> list[CanvasPlan]:
        step = self._heat_step(mpp)
        model = self._spec_path or "demo"
        plans = []
        for method, params in jobs:
            key = canvas_key(slide=path or layer.name, model=model, method=method, target=target,
                             params=params, step=step)
            prov = {"kind": "heatmap", "method": method, "params": dict(params), "target": target,
                    "model": self._spec.name if self._spec else model}
            plans.append(CanvasPlan(key, f"{method} {target} (canvas)", shape, step, mpp,
                                    None if path is None else str(path), prov, tuple(layer.units)))
        return plans

    def prepare_canvases(self):
        """Make the canvas layers the next click will paint, if canvas mode applies.

        Adding a layer stalls napari's GUI thread for 100-250 ms; updating one costs a few ms.
        Doing it now (explain mode on, selection changed) keeps the viewer smooth when results
        arrive. Silently does nothing without a slide, a model or valid parameters.
        """
        if not self._uses_canvas() or self._spec is None:
            return []
        try:
            layer, path, mpp, shape = self._slide_info()
            jobs = [(m, self._params(m)) for m in self._methods()]
        except ValueError:
            return []
        plans = self._canvas_plans(jobs, layer=layer, path=path, mpp=mpp, shape=shape,
                                   target=self.target_combo.currentText())
        return self.canvases.prepare(plans, opacity=self._opacity())

    def _toggle_mode_key(self, viewer):
        self.set_explain_mode(not self.explain_mode)

    def _on_mouse(self, viewer, event):
        if not self.explain_mode or event.button != 1 or len(event.modifiers) > 0:
            return
        start_world, start_pos = tuple(event.position), np.asarray(event.pos, float)
        yield
        dragged = False
        while event.type == "mouse_move":
            dragged = dragged or np.hypot(*(np.asarray(event.pos, float) - start_pos)) > 4
            yield
        if not dragged:
            self.explain_at(start_world)

    def explain_at(self, world_position):
        """Explain the region (size from the widget) centred on a world point (µm)."""
        try:
            layer, _, mpp, shape = self._slide_info()
        except ValueError as exc:
            notify_error(exc)
            return None
        tf = {"scale": layer.scale, "translate": layer.translate}
        row, col = L.world_to_level0(world_position, **tf)
        if not (0 <= row < shape[0] and 0 <= col < shape[1]):
            self.status.setText("the click is outside the slide")
            return None
        side = max(1, round(self.size_spin.value() / mpp))
        snap = self._heat_step(mpp)
        region = L.region_centred_at(row, col, side, side, slide_shape=shape, snap=snap)
        return self.explain_region(region)

    def explain_view(self):
        """Explain the current field of view, or refuse (offering the probability map) when large."""
        try:
            layer, _, mpp, shape = self._slide_info()
            region = self._view_region(layer, shape)
        except ValueError as exc:
            notify_error(exc)
            return None
        spec = self._spec
        if spec is None:
            notify_error(ValueError("choose a model first (its patch size sets the cost)"))
            return None
        foot = spec.patch_size * spec.mpp / mpp
        n_patches = math.ceil(region.height / foot) * math.ceil(region.width / foot)
        cost = sum(self._explainers[m].cost for m in self._methods()) * n_patches
        if cost > MAX_VIEW_PATCH_COST:
            from napari.utils.notifications import show_warning

            msg = (f"The view covers {n_patches} model patches ({region.height} x {region.width} px); "
                   f"explaining it would cost about {cost:.0f} patch passes (limit "
                   f"{MAX_VIEW_PATCH_COST:.0f}). Zoom in, or compute the probability map instead.")
            show_warning(msg)
            self.status.setText(msg)
            self.offer_button.setVisible(True)
            return None
        return self.explain_region(region)

    def _view_region(self, layer, shape) -> Region:
        cam = self.viewer.scene.camera
        return L.view_region(cam.center, cam.zoom, self.viewer.canvas.size, scale=layer.scale,
                             translate=layer.translate, slide_shape=shape)

    # -- running the core
    def _methods(self) -> list[str]:
        if self.compare_box.isChecked():
            checked = [self.compare_list.item(i).text() for i in range(self.compare_list.count())
                       if self.compare_list.item(i).checkState() == Qt.Checked]
            if checked:
                return checked
        return [self.method_combo.currentText()]

    def _params(self, method) -> dict:
        form = self._forms.get(method)
        return form.values() if form is not None else self._explainers[method].check_params()

    def _busy(self) -> bool:
        if self.worker is not None:
            from napari.utils.notifications import show_info

            show_info("An explanation is running: wait for it or press Cancel")
            return True
        return False

    def explain_region(self, region: Region, *, methods=None):
        """Start explaining ``region`` (level-0) with the chosen method(s); returns the worker."""
        if self._busy():
            return None
        try:
            layer, path, mpp, shape = self._slide_info()
            methods = list(methods or self._methods())
            jobs = [(m, self._params(m)) for m in methods]
        except ValueError as exc:
            notify_error(exc)
            return None
        with_prob = self.compare_box.isChecked() and self.compare_prob.isChecked()
        target = self.target_combo.currentText()
        normalize = self.norm_combo.currentText()
        settings = {"target": target, "overlap": self.overlap_spin.value(), "normalize": normalize}
        plans = None
        if self._uses_canvas():
            plans = self._canvas_plans(jobs, layer=layer, path=path, mpp=mpp, shape=shape,
                                       target=target)
            # made ahead in explain mode; otherwise now, before the work rather than after it
            self.canvases.prepare(plans, opacity=self._opacity(), prune=False)

        def run():
            from ..explain import explain_region

            leave_a_core_to_the_gui()
            model, slide = self._model(), self._slide(layer, path)
            target_index = model.spec.class_names.index(target)
            results, n = [], len(jobs) + int(with_prob)
            try:
                for k, (method, params) in enumerate(jobs):
                    gen = explain_region(slide, region, model, method, target=target_index,
                                         overlap=settings["overlap"],
                                         normalize=settings["normalize"], **params)
                    heat = yield from scaled(gen, k, n)
                    # display limit of the run (percentile of |R|: too slow for the GUI thread)
                    limit = L.symmetric_limits(heat.values, percentile=L.DISPLAY_PERCENTILE)[1]
                    results.append(("heatmap", method, limit, heat))
            finally:
                release_thread_caches()
            if with_prob:
                from ..models import predict_region

                results.append(("probability", None, {}, (yield from scaled(
                    predict_region(slide, region, model), n - 1, n))))
            return results

        def done(results):
            for k, (kind, method, limit, res) in enumerate(results):
                if kind == "probability":
                    self._add_probability(res, layer, mpp, path, region)
                elif plans is not None:
                    self.canvases.paste(plans[k], res, opacity=self._opacity(),
                                        display_limit=limit)
                else:
                    self._add_heatmap(res, method, region, mpp, path, display_limit=limit)
            if plans is not None:  # a redraw of its own: after the one that shows the data
                QTimer.singleShot(3 * AFTER_THE_FRAME_MS,  # after the tidy-up
                                  lambda: self._update_display_limits(plans))
            else:
                self._update_legend()
            if len(results) > 1 and not self.grid_check.isChecked():
                self.status.setText(f"{len(results)} layers added: tick 'side by side' to compare")

        label = f"{', '.join(methods)} on {region.height} x {region.width} px"
        return self._start(run, label, done)

    def probability_map(self, scope: str = "view"):
        """Class probabilities of the view or the whole slide (``predict_region``)."""
        self.offer_button.setVisible(False)
        if self._busy():
            return None
        try:
            layer, path, mpp, shape = self._slide_info()
            region = None if scope == "whole slide" else self._view_region(layer, shape)
        except ValueError as exc:
            notify_error(exc)
            return None

        def run():
            from ..models import predict_region

            leave_a_core_to_the_gui()
            return (yield from predict_region(self._slide(layer, path), region, self._model()))

        return self._start(run, f"probability map of the {scope}",
                           lambda pmap: (self._add_probability(pmap, layer, mpp, path, region),
                                         self._update_legend()))

    def _start(self, run, label, on_result):
        def finished(cancelled):
            self.worker = None
            self.status.setText("cancelled: nothing was added" if cancelled else "")
            if not self.explain_mode:  # a canvas made for this run only, and left empty
                self.canvases.discard_unpainted()

        self.status.setText(f"running {label} …")
        self.worker = start_generator(run, label=label, on_result=on_result, on_finished=finished,
                                      progress_bar=self.progress_bar,
                                      cancel_button=self.cancel_button)
        return self.worker

    # -- results to layers
    def _add_heatmap(self, heat, method, region, mpp, path, *, display_limit=None):
        name = f"{method} {self.target_combo.currentText()} @{region.level0_row},{region.level0_col}"
        data, kwargs, _ = L.heatmap_layer_data(heat.values, heat.placement, mpp=mpp,
                                               provenance=heat.provenance, name=name,
                                               slide_path=path, opacity=self._opacity(),
                                               display_limit=display_limit)
        return self.viewer.add_image(data, **self._units_of_slide(kwargs))

    def _update_display_limits(self, plans):
        try:
            for plan in plans:
                self.canvases.update_display_limits(plan)
            self._update_legend()
        except RuntimeError:  # the widget was closed meanwhile
            pass

    def _add_probability(self, pmap, layer, mpp, path, region):
        target = self.target_combo.currentText()
        idx = list(pmap.class_names).index(target) if target in pmap.class_names else -1
        where = "slide" if region is None else f"@{region.level0_row},{region.level0_col}"
        data, kwargs, _ = L.probability_layer_data(
            pmap.probs, pmap.placement, class_index=idx, class_names=pmap.class_names, mpp=mpp,
            provenance=pmap.provenance, name=f"p({pmap.class_names[idx]}) {where}",
            slide_path=path, opacity=self._opacity())
        self.viewer.add_image(data, **self._units_of_slide(kwargs))

    # -- display
    def _units_of_slide(self, kwargs: dict) -> dict:
        layer = self.slide_layer()
        if layer is not None:
            kwargs["units"] = layer.units
        return kwargs

    def _opacity(self) -> float:
        return self.opacity_slider.value() / 100

    def _xhisto_layers(self):
        return [ly for ly in self.viewer.layers
                if ly.metadata.get("xhisto", {}).get("kind") in ("heatmap", "probability")]

    def _apply_opacity(self, *_):
        for ly in self._xhisto_layers():
            ly.opacity = self._opacity()

    def set_greyscale(self, on: bool):
        layer = self.slide_layer()
        if layer is not None:
            L.set_greyscale(self.viewer, layer, bool(on))

    def _set_grid(self, on: bool):
        grid = self.viewer.canvas.grid if hasattr(self.viewer, "canvas") else self.viewer.grid
        grid.enabled = bool(on)
        layers = self._xhisto_layers()
        if on and layers:  # every cell shows the compared region, not the whole slide
            self.fit_camera(layers[-1])

    def fit_camera(self, layer):
        """Centre and zoom the camera (all grid cells share it) on ``layer``'s extent."""
        lo, hi = (np.asarray(v, float)[-2:] for v in layer.extent.world)
        box = np.asarray(self.viewer.canvas.viewbox_size(self.viewer.layers), float)[-2:]
        span = np.maximum(hi - lo, 1e-9)
        self.viewer.scene.camera.center = tuple((lo + hi) / 2)
        self.viewer.scene.camera.zoom = float(np.min(box / span)) * 0.95

    def _update_legend(self, *_):
        active = self.viewer.layers.selection.active
        cands = self._xhisto_layers()
        layer = active if active in cands else (cands[-1] if cands else None)
        if layer is None:
            self.legend.clear()
            return
        lo, hi = layer.contrast_limits
        meta = layer.metadata["xhisto"]
        label = (f"p({meta.get('class_name', '')})" if meta["kind"] == "probability"
                 else f"{meta['provenance'].get('method', '')}: red for, blue against")
        cmap = L.PROBABILITY_COLORMAP if meta["kind"] == "probability" else L.HEATMAP_COLORMAP
        args = (float(lo), float(hi), cmap, label)
        self._legend_wanted = args
        if args in self._legends:
            self.legend.setPixmap(self._legends[args])
            return
        # matplotlib takes 20-50 ms a legend: drawn in a plain thread, shown when ready. Not in
        # Qt's global pool: Qt converts images (the activity dock's spinner) in that pool while
        # the GUI thread holds the GIL, so a pool thread waiting for the GIL deadlocks both.
        def draw():
            rgba = L.legend_rgba(lo, hi, colormap=cmap, label=label)
            try:
                self._legend_relay.ready.emit(args, rgba)
            except RuntimeError:  # the widget was closed meanwhile
                pass

        # started once the frame in progress is drawn: matplotlib holds the GIL in bursts, and a
        # frame drawn beside it took 70 ms instead of 45
        QTimer.singleShot(2 * AFTER_THE_FRAME_MS, threading.Thread(
            target=draw, name="xhisto-legend", daemon=True).start)

    def _show_legend(self, args, rgba):
        if len(self._legends) >= 64:  # one per contrast range: keep the newest
            self._legends.pop(next(iter(self._legends)))
        self._legends[args] = qimage(rgba)
        if self._legend_wanted == args:
            self.legend.setPixmap(self._legends[args])

    def closeEvent(self, event):  # noqa: N802 - Qt name
        if self._on_mouse in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_mouse)
        for emitter, slot in ((self.viewer.layers.events.inserted, self._refresh_slides),
                              (self.viewer.layers.events.removed, self._refresh_slides),
                              (self.viewer.layers.selection.events.active, self._update_legend)):
            emitter.disconnect(slot)
        from napari.utils.key_bindings import coerce_keybinding

        if self.viewer.keymap.get(coerce_keybinding(SHORTCUT)) == self._toggle_mode_key:
            self.viewer.bind_key(SHORTCUT, None)
        if self.worker is not None:
            self.worker.quit()
        super().closeEvent(event)
