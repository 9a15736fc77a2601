"""The docked "Meta" widget: meta-explanations of a slide (seed 002), run in a worker thread.

Pick a slide layer, the model (the demo or a spec file), a method, the number of patches and
(optionally) the annotations; Run samples, predicts and explains the patches in a napari worker
with a progress bar and Cancel. The result shows the mean-map grid (class x confidence bin)
and the t-SNE embedding with thumbnails: clicking a point or a thumbnail jumps the viewer to
that patch on the slide; the confident disagreements with the annotations are listed below,
and clicking one jumps there too.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..common.workers import (
    import_heavy_modules,
    leave_a_core_to_the_gui,
    notify_error,
    release_thread_caches,
    start_generator,
)
from .controller import MetaController, MetaSettings

DISPLAY_WIDTH = 300  # px the figures are shown at in the dock (scaled, aspect kept)


class FigureView(QLabel):
    """An RGBA image shown scaled to ``DISPLAY_WIDTH``; clicks come out in image pixels."""

    clicked = Signal(float, float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.factor = 1.0
        self._image = None
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)

    def set_rgba(self, rgba: np.ndarray, width: int = DISPLAY_WIDTH) -> None:
        rgba = np.ascontiguousarray(rgba[..., :4], dtype=np.uint8)
        h, w = rgba.shape[:2]
        self._image = QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
        self.factor = min(1.0, width / w)
        pix = QPixmap.fromImage(self._image)
        if self.factor < 1.0:
            pix = pix.scaledToWidth(int(round(w * self.factor)),
                                    Qt.TransformationMode.SmoothTransformation)
        self.setPixmap(pix)
        self.setFixedSize(pix.size())

    def mousePressEvent(self, event):  # noqa: N802 - Qt name
        pos = event.position() if hasattr(event, "position") else event.pos()
        self.clicked.emit(pos.x() / self.factor, pos.y() / self.factor)
        super().mousePressEvent(event)


class MetaWidget(QWidget):
    """Meta-explanations: class x confidence mean maps, t-SNE clusters, disagreements."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.controller = MetaController(napari_viewer)
        self.worker = None
        self._build()
        self.run_button.clicked.connect(self._on_run)
        self.model_button.clicked.connect(self._ask_model)
        self.ann_button.clicked.connect(self._ask_annotations)
        self.save_button.clicked.connect(self._ask_save)
        self.slide_box.currentTextChanged.connect(self._slide_changed)
        self.embedding_view.clicked.connect(self._on_embedding_click)
        self.disagreement_list.currentRowChanged.connect(self._on_disagreement)
        layers = self.viewer.layers.events
        layers.inserted.connect(self.refresh_slides)
        layers.removed.connect(self.refresh_slides)
        self.destroyed.connect(lambda *_: self._disconnect(layers))
        self.refresh_slides()

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        form = QFormLayout()
        self.slide_box = QComboBox()
        form.addRow("Slide", self.slide_box)
        row = QHBoxLayout()
        self.model_label = QLabel("demo")
        self.model_button = QPushButton("Model…")
        row.addWidget(self.model_label, 1)
        row.addWidget(self.model_button)
        form.addRow("Model", row)
        self.method_box = QComboBox()
        self.method_box.addItems(self.controller.methods())
        if self.method_box.findText("gradcam") >= 0:
            self.method_box.setCurrentText("gradcam")
        form.addRow("Method", self.method_box)
        self.n_spin = QSpinBox()
        self.n_spin.setRange(4, 100_000)
        self.n_spin.setValue(2000)
        form.addRow("Patches", self.n_spin)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        form.addRow("Seed", self.seed_spin)
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setRange(0.0, 0.999)
        self.threshold_spin.setDecimals(3)
        self.threshold_spin.setSingleStep(0.05)
        self.threshold_spin.setValue(0.9)
        self.threshold_spin.setToolTip("list patches whose other-than-label class has p above")
        form.addRow("Disagree p >", self.threshold_spin)
        row = QHBoxLayout()
        self.ann_edit = QLineEdit()
        self.ann_edit.setPlaceholderText("ground truth GeoJSON/CSV (optional)")
        self.ann_button = QPushButton("…")
        row.addWidget(self.ann_edit, 1)
        row.addWidget(self.ann_button)
        form.addRow("Annotations", row)
        outer.addLayout(form)
        row = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        outer.addLayout(row)
        self.progress = QProgressBar()
        outer.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        outer.addWidget(self.status)
        outer.addWidget(QLabel("Mean map by predicted class × confidence"))
        self.grid_view = FigureView()
        outer.addWidget(self.grid_view)
        outer.addWidget(QLabel("Embedding (click a point or a thumbnail)"))
        self.embedding_view = FigureView()
        outer.addWidget(self.embedding_view)
        outer.addWidget(QLabel("Confident disagreements with the annotations"))
        self.disagreement_list = QListWidget()
        self.disagreement_list.setMinimumHeight(80)
        outer.addWidget(self.disagreement_list)
        self.save_button = QPushButton("Save figures and tables…")
        self.save_button.setEnabled(False)
        outer.addWidget(self.save_button)
        outer.addStretch(1)

    def _disconnect(self, layers) -> None:
        for ev in (layers.inserted, layers.removed):
            try:
                ev.disconnect(self.refresh_slides)
            except (TypeError, ValueError, RuntimeError):
                pass

    # ---- inputs
    def refresh_slides(self, *_):
        current = self.slide_box.currentText()
        names = self.controller.slide_names()
        self.slide_box.blockSignals(True)
        self.slide_box.clear()
        self.slide_box.addItems(names)
        if current in names:
            self.slide_box.setCurrentText(current)
        self.slide_box.blockSignals(False)
        if self.slide_box.currentText() != current:
            self._slide_changed(self.slide_box.currentText())

    def _slide_changed(self, name: str) -> None:
        if name and not self.ann_edit.text():
            self.ann_edit.setText(self.controller.default_annotations(name))

    def _ask_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model spec", "", "Model spec (*.json *.yaml)")
        if path:
            self.controller.spec_path = path
            self.model_label.setText(path.rsplit("/", 1)[-1])

    def _ask_annotations(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Annotations", "",
                                              "Annotations (*.geojson *.json *.csv)")
        if path:
            self.ann_edit.setText(path)

    def _ask_save(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save meta-explanation outputs")
        if folder:
            self.save_to(folder)

    def save_to(self, folder):
        files = self.controller.save(folder)
        self.status.setText(f"saved to {files['summary'].parent}")
        return files

    def settings(self) -> MetaSettings:
        return MetaSettings(slide=self.slide_box.currentText(),
                            method=self.method_box.currentText(), n=self.n_spin.value(),
                            seed=self.seed_spin.value(), annotations=self.ann_edit.text().strip(),
                            threshold=self.threshold_spin.value())

    # ---- running
    def _on_run(self) -> None:
        try:
            make = self.controller.job(self.settings())
        except Exception as exc:  # the user's input: say so in a notification
            notify_error(exc, context="Meta")
            return
        import_heavy_modules()

        def run():
            leave_a_core_to_the_gui()
            gen = make()
            try:
                return (yield from gen)
            finally:
                release_thread_caches()

        self.run_button.setEnabled(False)
        self.status.setText("sampling, predicting and explaining patches…")
        self.worker = start_generator(run, label="Meta-explanations", on_result=self.show_result,
                                      on_finished=self._finished, progress_bar=self.progress,
                                      cancel_button=self.cancel_button)

    def _finished(self, cancelled: bool) -> None:
        self.run_button.setEnabled(True)
        self.worker = None
        if cancelled:
            self.status.setText("cancelled; the last result is kept")

    def show_result(self, result) -> None:
        c = self.controller
        c.set_result(result)
        self.grid_view.set_rgba(c.grid_rgba)
        self.embedding_view.set_rgba(c.embedding_rgba)
        self.disagreement_list.clear()
        self.disagreement_list.addItems(c.disagreement_rows())
        self.status.setText(c.summary_text())
        self.save_button.setEnabled(True)

    # ---- clicks
    def _on_embedding_click(self, x: float, y: float) -> None:
        index = self.controller.patch_at(x, y)
        if index is not None:
            self.controller.jump_to(index)

    def _on_disagreement(self, row: int) -> None:
        if row >= 0:
            self.controller.jump_to_disagreement(row)
