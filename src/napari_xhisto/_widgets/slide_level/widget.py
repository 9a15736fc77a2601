"""The docked "Slide-level" widget: its view wired to :class:`SlideLevelController`."""

from __future__ import annotations

from qtpy.QtWidgets import QFileDialog

from ..common.parts import follow_layer_list, set_items
from ..common.workers import notify_error, start_generator
from .controller import SlideLevelController
from .view import SlideLevelView


class SlideLevelWidget(SlideLevelView):
    """Pick a slide layer, its compressed codes and a slide-level model; show p(label) and the
    slide-wide Grad-CAM map (computed in a worker)."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.controller = SlideLevelController(napari_viewer)
        self.worker = None
        self.result = None
        self.result_layer = None
        self.run_button.clicked.connect(self.run)
        self.codes_button.clicked.connect(self._pick_codes)
        self.model_button.clicked.connect(self._pick_model)
        self.encoder_button.clicked.connect(self._pick_encoder)
        self.slide_combo.currentTextChanged.connect(self._slide_changed)
        follow_layer_list(self, self.viewer, self._refresh)
        self._refresh()

    def _refresh(self, event=None):
        names = [ly.name for ly in self.controller.slide_layers()]
        if set_items(self.slide_combo, names):
            self._slide_changed(self.slide_combo.currentText())

    def _slide_changed(self, name: str):
        # never keep another slide's codes in the field: empty means "compress this slide"
        found = self.controller.codes_for(self.controller.layer(name))
        self.codes_edit.setText(str(found) if found is not None else "")

    def _pick_codes(self):
        path = QFileDialog.getExistingDirectory(self, "Compressed slide (*.nic.zarr)")
        if path:
            self.codes_edit.setText(path)

    def _pick_model(self):
        path = QFileDialog.getExistingDirectory(self, "Slide-level model folder")
        if path:
            self.model_edit.setText(path)

    def _pick_encoder(self):
        path, _ = QFileDialog.getOpenFileName(self, "Encoder spec", "", "*.yaml *.yml")
        if path:
            self.encoder_edit.setText(path)

    def run(self):
        """Start the prediction in a worker (the result shows when it ends); a slide without
        codes is compressed first (progress and Cancel; a cancelled run resumes next time)."""
        if self.worker is not None:
            return None
        codes, model = self.codes_edit.text().strip(), self.model_edit.text().strip()
        encoder = self.encoder_edit.text().strip() or None
        augment = self.augment_box.isChecked()
        slide_layer = self.controller.layer(self.slide_combo.currentText())
        slide_path = self.controller.slide_path(slide_layer)
        self.run_button.setEnabled(False)
        self.progress.setVisible(True)
        self.result_label.setText("")

        def done(cancelled: bool):
            self.worker = None
            self.run_button.setEnabled(True)
            self.progress.setVisible(False)
            if cancelled:
                self.result_label.setText("cancelled: nothing was added; codes compressed so "
                                          "far are kept and the next run goes on from there")

        def failed(exc):
            self.result_label.setText(f"failed: {exc}")
            notify_error(exc, context="slide-level")

        self.worker = start_generator(
            lambda: self.controller.run(codes, model, slide_path=slide_path, encoder=encoder,
                                        augment=augment),
            label="slide-level", on_result=lambda r: self.show_result(r, slide_layer),
            on_error=failed, on_finished=done, progress_bar=self.progress,
            cancel_button=self.cancel_button, activity_dock=False)
        return self.worker

    def show_result(self, result, slide_layer=None):
        self.result = result
        if result.compressed is not None:  # the codes exist now: the next run reads them
            self.codes_edit.setText(str(result.codes_path))
        self.result_layer = self.controller.add_result(result, slide_layer)
        self.result_label.setText(result.text())
        self.legend.show_spec(self.controller.legend_spec(self.result_layer))
