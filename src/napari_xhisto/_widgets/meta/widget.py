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
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..common.parts import follow_layer_list, qimage, set_items
from ..common.workers import (
    import_heavy_modules,
    leave_a_core_to_the_gui,
    notify_error,
    release_thread_caches,
    start_generator,
)
from ..explain.view import compact_combo, wrapped_label
from .controller import MetaController, MetaSettings

DISPLAY_WIDTH = 300  # px the figures are shown at in the dock (scaled, aspect kept)


class FigureView(QLabel):
    """An RGBA image shown scaled to the dock's width (at most its own, ``DISPLAY_WIDTH`` until
    shown); clicks come out in image pixels."""

    clicked = Signal(float, float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.factor = 1.0
        self._full = None  # the figure at full resolution
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(120)

    def set_rgba(self, rgba: np.ndarray, width: int | None = None) -> None:
        self._full = qimage(np.asarray(rgba[..., :4], dtype=np.uint8))
        self._rescale(width or (self.width() if self.isVisible() else DISPLAY_WIDTH))

    def _rescale(self, width: int) -> None:
        w = self._full.width()
        width = max(1, min(int(width), w))
        self.factor = width / w
        pix = self._full
        if width < w:
            pix = pix.scaledToWidth(width, Qt.TransformationMode.SmoothTransformation)
        self.setPixmap(pix)
        self.setFixedHeight(pix.height())

    def resizeEvent(self, event):  # noqa: N802 - Qt name
        super().resizeEvent(event)
        if self._full is not None:
            target = min(self.width(), self._full.width())
            if abs(self.pixmap().width() - target) > 1:
                self._rescale(target)

    def mousePressEvent(self, event):  # noqa: N802 - Qt name
        pos = event.position() if hasattr(event, "position") else event.pos()
        self.clicked.emit(pos.x() / self.factor, pos.y() / self.factor)
        super().mousePressEvent(event)


class FigureWindow(QScrollArea):
    """A figure at its full resolution in its own window (the dock shows it scaled down)."""

    def __init__(self, title: str, parent=None):
        super().__init__(parent)
        self.setWindowFlag(Qt.WindowType.Window, True)
        self.setWindowTitle(title)
        self.image = QLabel()
        self.setWidget(self.image)

    def show_rgba(self, rgba: np.ndarray) -> None:
        h, w = rgba.shape[:2]
        self.image.setPixmap(qimage(np.asarray(rgba[..., :4], dtype=np.uint8)))
        self.image.resize(w, h)
        self.resize(min(w + 24, 1400), min(h + 24, 1000))
        self.show()
        self.raise_()


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
        self.grid_view.clicked.connect(lambda *_: self.enlarge_grid())
        self.grid_window = None
        self.disagreement_list.currentRowChanged.connect(self._on_disagreement)
        follow_layer_list(self, self.viewer, self.refresh_slides)
        self.refresh_slides()

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)  # narrow docks
        self.slide_box = compact_combo(8)
        form.addRow("Slide", self.slide_box)
        row = QHBoxLayout()
        self.model_label = wrapped_label("demo")
        self.model_button = QPushButton("Model…")
        row.addWidget(self.model_label, 1)
        row.addWidget(self.model_button)
        form.addRow("Model", row)
        self.method_box = compact_combo(8)
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
        outer.addWidget(wrapped_label("Mean map by predicted class × confidence "
                                      "(click to enlarge)"))
        self.grid_view = FigureView()
        outer.addWidget(self.grid_view)
        outer.addWidget(wrapped_label("Embedding (click a point or a thumbnail)"))
        self.embedding_view = FigureView()
        outer.addWidget(self.embedding_view)
        outer.addWidget(wrapped_label("Confident disagreements with the annotations"))
        self.disagreement_list = QListWidget()
        self.disagreement_list.setMinimumHeight(80)
        self.disagreement_list.setWordWrap(True)
        self.disagreement_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer.addWidget(self.disagreement_list)
        self.save_button = QPushButton("Save figures and tables…")
        self.save_button.setEnabled(False)
        outer.addWidget(self.save_button)
        outer.addStretch(1)

    # ---- inputs
    def refresh_slides(self, *_):
        if set_items(self.slide_box, self.controller.slide_names()):
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
        for text in c.disagreement_rows():
            item = QListWidgetItem(text)
            item.setToolTip(text.replace("\n  ", ""))
            self.disagreement_list.addItem(item)
        if self.grid_window is not None and self.grid_window.isVisible():
            self.grid_window.show_rgba(c.grid_rgba)
        self.status.setText(c.summary_text())
        self.save_button.setEnabled(True)

    # ---- clicks
    def enlarge_grid(self):
        """The mean-map grid at full resolution in its own window (returned)."""
        if self.controller.result is None:
            return None
        if self.grid_window is None:
            self.grid_window = FigureWindow("Meta: mean map by predicted class × confidence",
                                            self)
        self.grid_window.show_rgba(self.controller.grid_rgba)
        return self.grid_window

    def _on_embedding_click(self, x: float, y: float) -> None:
        index = self.controller.patch_at(x, y)
        if index is not None:
            self.controller.jump_to(index)

    def _on_disagreement(self, row: int) -> None:
        if row >= 0:
            self.controller.jump_to_disagreement(row)
