"""The Slide-level widget's layout (Qt only)."""

from __future__ import annotations

from qtpy.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..common.legend import ColourLegend
from ..explain.view import compact_combo

NO_CODES_YET = "none yet: Run compresses the slide into SLIDE.nic.zarr"


def _path_row(placeholder: str):
    row = QWidget()
    lay = QHBoxLayout(row)
    lay.setContentsMargins(0, 0, 0, 0)
    edit = QLineEdit()
    edit.setPlaceholderText(placeholder)
    edit.setMinimumWidth(60)  # long paths scroll inside the field, not the dock sideways
    edit.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    button = QPushButton("…")
    button.setMaximumWidth(32)
    lay.addWidget(edit, 1)
    lay.addWidget(button)
    return row, edit, button


class SlideLevelView(QWidget):
    """Slide, codes, model, Run; then p(label) and the heatmap's legend."""

    def __init__(self, parent=None):
        super().__init__(parent)
        outer = QVBoxLayout(self)
        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)  # narrow docks
        self.slide_combo = compact_combo(8)
        form.addRow("Slide", self.slide_combo)
        row, self.codes_edit, self.codes_button = _path_row(NO_CODES_YET)
        self.codes_edit.setToolTip("the compressed slide; when it does not exist yet, Run "
                                   "compresses the slide into it first (resumable)")
        form.addRow("Codes", row)
        row, self.model_edit, self.model_button = _path_row("folder from xhisto train-slide")
        form.addRow("Slide model", row)
        row, self.encoder_edit, self.encoder_button = _path_row("the model's (bundled)")
        self.encoder_edit.setToolTip("encoder for compressing a slide without codes: by default "
                                     "the bundled one the slide model was trained on; a .yaml "
                                     "from xhisto train-encoder otherwise")
        form.addRow("Encoder", row)
        self.augment_box = QCheckBox("8 flips/rotations")
        self.augment_box.setToolTip("average p(label) and the map over the 8 flips/rotations "
                                    "of the code grid")
        form.addRow("Average", self.augment_box)
        outer.addLayout(form)
        self.run_button = QPushButton("Predict and explain the slide")
        outer.addWidget(self.run_button)
        bar = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip("stop; the chunks compressed so far are kept and the "
                                      "next run goes on from there")
        bar.addWidget(self.progress, 1)
        bar.addWidget(self.cancel_button)
        outer.addLayout(bar)
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        outer.addWidget(self.result_label)
        self.legend = ColourLegend()
        outer.addWidget(self.legend)
        outer.addStretch(1)
