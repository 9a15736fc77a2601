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
        self.slide_combo.currentTextChanged.connect(self._slide_changed)
        follow_layer_list(self, self.viewer, self._refresh)
        self._refresh()

    def _refresh(self, event=None):
        names = [ly.name for ly in self.controller.slide_layers()]
        if set_items(self.slide_combo, names):
            self._slide_changed(self.slide_combo.currentText())

    def _slide_changed(self, name: str):
        found = self.controller.codes_for(self.controller.layer(name))
        if found is not None:
            self.codes_edit.setText(str(found))

    def _pick_codes(self):
        path = QFileDialog.getExistingDirectory(self, "Compressed slide (*.nic.zarr)")
        if path:
            self.codes_edit.setText(path)

    def _pick_model(self):
        path = QFileDialog.getExistingDirectory(self, "Slide-level model folder")
        if path:
            self.model_edit.setText(path)

    def run(self):
        """Start the prediction in a worker (the result shows when it ends)."""
        if self.worker is not None:
            return None
        codes, model = self.codes_edit.text().strip(), self.model_edit.text().strip()
        augment = self.augment_box.isChecked()
        slide_layer = self.controller.layer(self.slide_combo.currentText())
        self.run_button.setEnabled(False)
        self.progress.setVisible(True)

        def done(cancelled: bool):
            self.worker = None
            self.run_button.setEnabled(True)
            self.progress.setVisible(False)

        def failed(exc):
            self.result_label.setText(f"failed: {exc}")
            notify_error(exc, context="slide-level")

        self.worker = start_generator(
            lambda: self.controller.run(codes, model, augment=augment), label="slide-level",
            on_result=lambda r: self.show_result(r, slide_layer), on_error=failed,
            on_finished=done, progress_bar=self.progress, activity_dock=False)
        return self.worker

    def show_result(self, result, slide_layer=None):
        self.result = result
        self.result_layer = self.controller.add_result(result, slide_layer)
        self.result_label.setText(result.text())
        self.legend.show_spec(self.controller.legend_spec(self.result_layer))
