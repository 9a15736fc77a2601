"""The docked "Explain" widget: the view's editors wired to an :class:`ExplainController`.

Click on a slide to explain the region there. torch, the models and the explainers are imported
when the widget is created, never at napari start.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QFileDialog

from ...geometry import Region
from .. import layers as L
from ..common.parts import ParamForm, set_items
from ..common.workers import AFTER_THE_FRAME_MS, import_heavy_modules, notify_error, start_generator
from . import naming
from .controller import ExplainController, ExplainSettings
from .view import DEMO, SHORTCUT, ExplainView

__all__ = ["DEMO", "SHORTCUT", "ExplainWidget"]


class ExplainWidget(ExplainView):
    """Explain regions of a slide layer with the project's explainers; see module docstring."""

    def __init__(self, napari_viewer, parent=None):
        from ...explain import get_explainer, list_explainers
        from ...explain.tiling import NORMALIZE_MODES

        import_heavy_modules()
        explainers = {m["name"]: get_explainer(m["name"]) for m in list_explainers()}
        super().__init__(explainers, tuple(NORMALIZE_MODES), parent)
        self.viewer = napari_viewer
        self._forms: dict[str, ParamForm] = {}
        self.compare_window = None
        self._legend_source = None  # the layer whose contrast limits the legend follows
        self.controller = ExplainController(napari_viewer, settings=self.settings,
                                            runner=self._run, status=self.status.setText)
        self.controller.on_results = self._after_results
        self._explainers = self.controller.explainers
        # canvas layers for the next click are made ahead, once the selection settles
        self._prepare_timer = QTimer(self)
        self._prepare_timer.setSingleShot(True)
        self._prepare_timer.setInterval(0)
        self._prepare_timer.timeout.connect(self.prepare_canvases)
        self._wire()
        from .whatif import add_whatif_panel  # "What if healthy?" (seed 001, issue #16)

        self.whatif = add_whatif_panel(self)
        self._load_spec(None)
        self._refresh_slides()
        L.watch_for_slides(napari_viewer)
        self.viewer.layers.events.inserted.connect(self._refresh_slides)
        self.viewer.layers.events.removed.connect(self._on_removed)
        self.viewer.layers.selection.events.active.connect(self._update_legend)
        self.viewer.mouse_drag_callbacks.append(self._on_mouse)
        self.viewer.bind_key(SHORTCUT, self._toggle_mode_key, overwrite=True)

    def _wire(self):
        self.slide_combo.currentIndexChanged.connect(self._slide_changed)
        self.model_combo.activated.connect(self._on_model_choice)
        self.method_combo.currentTextChanged.connect(self._show_params)
        self.size_spin.valueChanged.connect(self._update_px_label)
        self.mode_button.toggled.connect(self.set_explain_mode)
        self.view_button.clicked.connect(self.explain_view)
        self.prob_button.clicked.connect(lambda: self.probability_map(self.prob_scope.currentText()))
        self.offer_button.clicked.connect(lambda: self.probability_map("view"))
        self.compare_button.clicked.connect(self.show_compare)
        self.opacity_slider.valueChanged.connect(
            lambda v: self.controller.set_opacity(v / 100))
        self.grey_check.toggled.connect(self.set_greyscale)
        self._show_params(self.method_combo.currentText())
        if "lrp-epsilon-plus" in self._explainers:
            self.method_combo.setCurrentText("lrp-epsilon-plus")
        for sig in (self.slide_combo.currentIndexChanged, self.method_combo.currentTextChanged,
                    self.target_combo.currentTextChanged, self.norm_combo.currentTextChanged,
                    self.canvas_check.toggled, self.compare_box.toggled,
                    self.compare_list.itemChanged):
            sig.connect(self._selection_changed)

    # -- what the editors say
    def settings(self) -> ExplainSettings:
        """The current choices; ``ValueError`` when a parameter is out of range."""
        compare = []
        if self.compare_box.isChecked():
            compare = [self.compare_list.item(i).text() for i in range(self.compare_list.count())
                       if self.compare_list.item(i).checkState() == Qt.CheckState.Checked]
        method = self.method_combo.currentText()
        params = {m: self._params(m) for m in (compare or [method])}
        return ExplainSettings(
            slide=self.slide_combo.currentText(), method=method, params=params,
            target=self.target_combo.currentText(), size_um=self.size_spin.value(),
            overlap=self.overlap_spin.value(), normalize=self.norm_combo.currentText(),
            use_canvas=self.canvas_check.isChecked(), compare=compare,
            with_probability=self.compare_prob.isChecked(), opacity=self._opacity(),
            uncertainty=self.uncertainty_check.isChecked(), mc_samples=self.mc_spin.value())

    def _params(self, method) -> dict:
        form = self._forms.get(method)
        return form.values() if form is not None else self._explainers[method].check_params()

    def _opacity(self) -> float:
        return self.opacity_slider.value() / 100

    def _show_params(self, name):
        if name not in self._forms and name in self._explainers:
            self._forms[name] = ParamForm(self._explainers[name].params)
            self._forms[name].changed.connect(self._selection_changed)
            self.params_stack.addWidget(self._forms[name])
        if name in self._forms:
            self.params_stack.setCurrentWidget(self._forms[name])

    # -- controller passthroughs (kept names: tests, bench and other widgets use them)
    @property
    def worker(self):
        return self.controller.worker

    @property
    def explain_mode(self) -> bool:
        return self.controller.explain_mode

    @property
    def canvases(self):
        return self.controller.canvases

    @property
    def _spec(self):
        return self.controller.spec

    @property
    def _spec_path(self):
        return self.controller.spec_path

    def slide_layer(self):
        name = self.slide_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    # -- model
    def _on_model_choice(self, index):
        if index == 0:
            self._load_spec(None)
            return
        path, _ = QFileDialog.getOpenFileName(self, "Model spec", "",
                                              "Model spec (*.yaml *.yml *.json);;All (*)")
        if path:
            self._load_spec(path)
        else:
            self.model_combo.setCurrentIndex(0 if self._spec_path is None else 1)

    def _load_spec(self, path):
        """Read the spec (cheap, no weights); a bad file is a notification and changes nothing."""
        from ...errors import XhistoError

        try:
            spec = self.controller.load_spec(path)
        except (XhistoError, OSError, ValueError, ImportError) as exc:
            notify_error(exc, context=f"model {Path(path).name if path else 'demo'}")
            self.model_combo.setCurrentIndex(0 if self._spec_path is None else 1)
            return
        self.model_label.setText(f"{spec.name}: {spec.architecture}, {spec.patch_size} px at "
                                 f"{spec.mpp:g} µm/px")
        self.model_label.setToolTip(spec.description if hasattr(spec, "description") else "")
        self.target_combo.clear()
        self.target_combo.addItems(spec.class_names)
        self.target_combo.setCurrentText(spec.positive_class)
        if path is not None:
            self.model_combo.setItemText(1, Path(path).name)
            self.model_combo.setCurrentIndex(1)
        self._update_px_label()
        self._update_banner()
        self._selection_changed()

    # -- slides
    def _refresh_slides(self, event=None):
        set_items(self.slide_combo, self.controller.slide_names())
        self._slide_changed()

    def _on_removed(self, event=None):
        layer = getattr(event, "value", None)
        meta = {} if layer is None else layer.metadata.get("xhisto", {})
        if meta.get("kind") == "greyscale" and meta.get("of") == self.slide_combo.currentText():
            # the user deleted the grey layer: grey is off (not made again)
            self.grey_check.blockSignals(True)
            self.grey_check.setChecked(False)
            self.grey_check.blockSignals(False)
            if meta["of"] in self.viewer.layers:
                self.viewer.layers[meta["of"]].visible = True
        self._refresh_slides()
        if layer is not None and layer.metadata.get("xhisto", {}).get("kind") in (
                "heatmap", "probability", "uncertainty"):
            self.controller.update_outlines()
            self._update_legend()

    def _slide_changed(self, *_):
        self._update_px_label()
        self._update_banner()
        if self.grey_check.isChecked():  # grey stays on for the newly chosen slide
            self.set_greyscale(True)

    def _update_banner(self):
        show = self.controller.needs_demo_banner(self.slide_combo.currentText())
        self.banner.setText(naming.DEMO_BANNER if show else "")
        self.banner.setVisible(show)

    def _update_px_label(self, *_):
        try:
            _, _, mpp, _ = self.controller.slide_info(self.slide_combo.currentText())
        except ValueError:
            self.px_label.setText("(no slide layer)")
            return
        text = f"= {self.size_spin.value() / mpp:.0f} px at {mpp:g} µm/px"
        if self._spec is not None:
            text += f" ({self.size_spin.value() / self._spec.mpp:.0f} px for the model)"
        self.px_label.setText(text)

    # -- explain mode, clicks
    def set_explain_mode(self, on: bool):
        on = bool(on)
        if self.mode_button.isChecked() != on:
            self.mode_button.setChecked(on)  # comes back here through toggled
            return
        if on and not self.explain_mode and not self.grey_check.isChecked():
            self.grey_check.setChecked(True)  # explain mode shows the H&E in grey by default
        self.status.setText("Explain mode: click the slide" if on else "")
        if not on:
            self._prepare_timer.stop()
        self.controller.set_explain_mode(on)

    def _selection_changed(self, *_):
        if self.explain_mode:
            self._prepare_timer.start()  # once, after a burst of changes

    def prepare_canvases(self):
        return self.controller.prepare_canvases()

    def _toggle_mode_key(self, viewer):
        self.set_explain_mode(not self.explain_mode)

    def _on_mouse(self, viewer, event):
        yield from self.controller.on_mouse(viewer, event)

    def explain_at(self, world_position):
        return self.controller.explain_at(world_position)

    def explain_region(self, region: Region, *, methods=None):
        """Start explaining ``region`` (level-0) with the chosen method(s); returns the worker."""
        if self._busy():
            return None
        return self.controller.explain_region(region, methods=methods)

    def explain_view(self):
        """Explain the current field of view, or refuse (offering the probability map) when large."""
        if self._busy():
            return None
        try:
            out = self.controller.explain_view()
        except ValueError as exc:
            notify_error(exc)
            return None
        if isinstance(out, str):
            from napari.utils.notifications import show_warning

            show_warning(out)
            self.status.setText(out)
            self.offer_button.setVisible(True)
            return None
        return out

    def probability_map(self, scope: str = "view"):
        """Class probabilities of the view or the whole slide (``predict_region``)."""
        self.offer_button.setVisible(False)
        if self._busy():
            return None
        try:
            return self.controller.probability_map(scope)
        except ValueError as exc:
            notify_error(exc)
            return None

    def _busy(self) -> bool:
        if self.controller.busy():
            from napari.utils.notifications import show_info

            show_info("An explanation is running: wait for it or press Cancel")
            return True
        return False

    def _run(self, make_generator, label, on_result, on_finished):
        return start_generator(make_generator, label=label, on_result=on_result,
                               on_finished=on_finished, progress_bar=self.progress_bar,
                               cancel_button=self.cancel_button)

    def _after_results(self, plans):
        if plans is not None:  # a redraw of its own: after the one that shows the data
            QTimer.singleShot(3 * AFTER_THE_FRAME_MS, lambda: self._update_display_limits(plans))
        else:
            self._update_legend()
        run = self.controller.last_run or {}
        if len(run.get("layers", [])) > 1:
            self.status.setText(f"{len(run['layers'])} layers: press 'Side by side' to compare")

    def _update_display_limits(self, plans):
        try:
            for plan in plans:
                self.canvases.update_display_limits(plan)
            self._update_legend()
        except RuntimeError:  # the widget was closed meanwhile
            pass

    # -- display
    def set_greyscale(self, on: bool):
        self.controller.set_greyscale(self.slide_combo.currentText(), on)

    def _update_legend(self, *_):
        layer = self.controller.legend_layer()
        if layer is not self._legend_source:  # follow this layer's limits, colormap, opacity
            self._follow(self._legend_source, False)
            self._follow(layer, True)
            self._legend_source = layer
        self.legend.show_spec(self.controller.legend_spec())

    def _follow(self, layer, on: bool) -> None:
        if layer is None:
            return
        for emitter in (layer.events.contrast_limits, layer.events.colormap, layer.events.opacity):
            if on:
                emitter.connect(self._update_legend)
            else:
                emitter.disconnect(self._update_legend)

    def show_compare(self):
        """Open (or refresh) the side-by-side window of the latest compared layers."""
        from .compare_window import open_compare

        try:
            self.compare_window = open_compare(self, self.compare_window)
        except ValueError as exc:
            notify_error(exc)
            return None
        return self.compare_window

    def closeEvent(self, event):  # noqa: N802 - Qt name
        if self._on_mouse in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_mouse)
        self._follow(self._legend_source, False)
        for emitter, slot in ((self.viewer.layers.events.inserted, self._refresh_slides),
                              (self.viewer.layers.events.removed, self._on_removed),
                              (self.viewer.layers.selection.events.active, self._update_legend)):
            emitter.disconnect(slot)
        from napari.utils.key_bindings import coerce_keybinding

        if self.viewer.keymap.get(coerce_keybinding(SHORTCUT)) == self._toggle_mode_key:
            self.viewer.bind_key(SHORTCUT, None)
        self.controller.close()
        if self.compare_window is not None:
            self.compare_window.close()
        super().closeEvent(event)
