"""The Export widget's layout (Qt only: no napari, no exporting)."""

from __future__ import annotations

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

BUTTONS = (("ome-tiff", "OME-TIFF…", "The values themselves, pyramidal, float32 (or float16): "
                                      "re-opens in napari and QuPath"),
           ("rgb", "RGB overlay…", "Coloured overlay as an SVS file (blended over the grey slide)"),
           ("png", "Snapshot (PNG)…", "The current view with legend, scale bar and title"),
           ("contours", "Contours…", "Where the map passes the threshold, as QuPath GeoJSON "
                                     "polygons"),
           ("report", "Report (HTML)…", "One page: slide, model, method, a snapshot, metrics"))


def _wrapped(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    return label


class ExportView(QWidget):
    """Layer choice, export options and one button per format; no behaviour."""

    def __init__(self, parent=None):
        super().__init__(parent)
        box = QVBoxLayout(self)
        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.layer_combo = QComboBox()
        self.layer_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.layer_combo.setMinimumContentsLength(14)
        self.layer_combo.setToolTip("Heatmap and probability layers (newest first)")
        form.addRow("heatmap", self.layer_combo)
        self.description = _wrapped()
        self.description.setToolTip("model, method, target class and normalisation of the layer")
        form.addRow(self.description)
        self.float16_box = QCheckBox("float16 (half the size)")
        self.float16_box.setToolTip("OME-TIFF values stored as float16 instead of float32")
        form.addRow("OME-TIFF", self.float16_box)
        self.full_slide_box = QCheckBox("whole slide")
        self.full_slide_box.setToolTip("Overlay as large as the slide (else the heatmap's area)")
        self.blend_box = QCheckBox("over grey H&&E")
        self.blend_box.setChecked(True)
        rgb_row = QHBoxLayout()
        rgb_row.addWidget(self.full_slide_box)
        rgb_row.addWidget(self.blend_box)
        form.addRow("RGB overlay", rgb_row)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(-1e6, 1e6)
        self.threshold.setDecimals(3)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(0.5)
        self.threshold.setToolTip("In the layer's own units (relevance or probability)")
        self.below_box = QCheckBox("below")
        self.below_box.setToolTip("Outline where the map is at or below the threshold "
                                  "(negative evidence)")
        th_row = QHBoxLayout()
        th_row.addWidget(self.threshold)
        th_row.addWidget(self.below_box)
        form.addRow("contour threshold", th_row)
        self.metrics_edit = QLineEdit()
        self.metrics_edit.setPlaceholderText("metrics JSON (optional)")
        self.metrics_edit.setToolTip("Numbers from Evaluate (Save JSON) or xhisto evaluate")
        self.annotations_edit = QLineEdit()
        self.annotations_edit.setPlaceholderText("annotations (optional)")
        self.annotations_edit.setToolTip("GeoJSON or CSV annotations counted in the report")
        form.addRow("report", self._with_browse(self.metrics_edit, "JSON (*.json)"))
        form.addRow("", self._with_browse(self.annotations_edit,
                                          "Annotations (*.geojson *.json *.csv)"))
        box.addLayout(form)
        grid = QGridLayout()
        self.buttons = {}
        for k, (key, text, tip) in enumerate(BUTTONS):
            button = QPushButton(text)
            button.setToolTip(tip)
            grid.addWidget(button, k // 2, k % 2)
            self.buttons[key] = button
        box.addLayout(grid)
        row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        row.addWidget(self.progress)
        row.addWidget(self.cancel_button)
        box.addLayout(row)
        self.status = _wrapped()
        box.addWidget(self.status)
        box.addStretch(1)

    def _with_browse(self, edit, filt):
        holder = QWidget()
        row = QHBoxLayout(holder)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit)
        button = QPushButton("…")
        button.setToolTip("Choose a file")
        button.setMaximumWidth(30)
        button.clicked.connect(lambda: edit.setText(
            QFileDialog.getOpenFileName(self, "Choose a file", "", filt)[0] or edit.text()))
        row.addWidget(button)
        return holder
