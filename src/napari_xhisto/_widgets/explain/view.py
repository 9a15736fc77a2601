"""The Explain widget's layout: editors, buttons, status and legend (Qt only, no behaviour).

Compact for a dock: short labels, long explanations in tooltips, labels that wrap, combo boxes
that do not grow with their longest entry, so the widget is usable about 300 px wide.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ..common.legend import ColourLegend

SHORTCUT = "Shift-E"
DEMO = "demo (bundled)"
BANNER_STYLE = ("QLabel { background: #6b4b00; color: #ffe9a8; border-radius: 3px; "
                "padding: 4px; }")


def compact_combo(min_chars: int = 10) -> QComboBox:
    """A combo box whose width does not follow its longest item (the popup still shows it)."""
    combo = QComboBox()
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(min_chars)
    combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    return combo


def wrapped_label(text: str = "", *, small: bool = False) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    if small:
        font = label.font()
        font.setPointSizeF(font.pointSizeF() * 0.9)
        label.setFont(font)
    return label


class ExplainView(QWidget):
    """All editors of the Explain widget; :class:`~.widget.ExplainWidget` gives them behaviour."""

    def __init__(self, explainers: dict, normalisations, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.banner = wrapped_label()
        self.banner.setStyleSheet(BANNER_STYLE)
        self.banner.setVisible(False)
        lay.addWidget(self.banner)

        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.slide_combo = compact_combo()
        form.addRow("Slide", self.slide_combo)
        self.model_combo = compact_combo()
        self.model_combo.addItems([DEMO, "spec file…"])
        self.model_combo.setToolTip("the classifier to explain: the bundled demo (synthetic "
                                    "tissue only) or a model spec file (.yaml or .json)")
        form.addRow("Model", self.model_combo)
        self.model_label = wrapped_label(small=True)
        form.addRow(self.model_label)
        self.method_combo = compact_combo()
        for name, ex in explainers.items():
            self.method_combo.addItem(name)
            self.method_combo.setItemData(self.method_combo.count() - 1, ex.description,
                                          Qt.ItemDataRole.ToolTipRole)
        form.addRow("Method", self.method_combo)
        self.params_stack = QStackedWidget()
        form.addRow(self.params_stack)
        self.target_combo = compact_combo()
        self.target_combo.setToolTip("the class whose evidence the heatmap shows")
        form.addRow("Class", self.target_combo)
        self.size_spin = QDoubleSpinBox()
        self.size_spin.setRange(1.0, 1e6)
        self.size_spin.setDecimals(1)
        self.size_spin.setSuffix(" µm")
        self.size_spin.setValue(256.0)
        self.size_spin.setToolTip("side of the square region a click explains")
        form.addRow("Region", self.size_spin)
        self.px_label = wrapped_label(small=True)
        form.addRow(self.px_label)
        self.overlap_spin = QDoubleSpinBox()
        self.overlap_spin.setRange(0.0, 0.9)
        self.overlap_spin.setSingleStep(0.05)
        self.overlap_spin.setValue(0.1)
        self.overlap_spin.setToolTip("overlap of neighbouring model patches (fraction)")
        form.addRow("Overlap", self.overlap_spin)
        self.norm_combo = compact_combo()
        self.norm_combo.addItems(list(normalisations))
        self.norm_combo.setToolTip("global-max: divide by the largest |relevance| over all "
                                   "patches (seed 000); per-patch: each patch by its own "
                                   "(display only)")
        form.addRow("Normalise", self.norm_combo)
        self.canvas_check = QCheckBox("one canvas per method")
        self.canvas_check.setChecked(True)
        self.canvas_check.setToolTip("with global-max normalisation, all clicks paint one "
                                     "slide-wide layer per method, normalised by the maximum "
                                     "over all of them")
        form.addRow(self.canvas_check)
        lay.addLayout(form)

        self.compare_box = QGroupBox("Compare methods")
        self.compare_box.setToolTip("explain with every checked method in one go, then see them "
                                    "side by side")
        self.compare_box.setCheckable(True)
        self.compare_box.setChecked(False)
        cl = QVBoxLayout(self.compare_box)
        self.compare_list = QListWidget()
        for name in explainers:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            self.compare_list.addItem(item)
        self.compare_list.setMaximumHeight(96)
        self.compare_prob = QCheckBox("+ probability map")
        cl.addWidget(self.compare_list)
        cl.addWidget(self.compare_prob)
        lay.addWidget(self.compare_box)

        self.mode_button = QPushButton(f"Explain mode ({SHORTCUT})")
        self.mode_button.setToolTip("on: a click on the slide explains the region centred there "
                                    "(clicks on an annotation layer in add or draw mode place "
                                    "the annotation instead)")
        self.mode_button.setCheckable(True)
        self.view_button = QPushButton("Explain view")
        self.view_button.setToolTip("explain everything the viewer shows (refused when large)")
        lay.addWidget(self.mode_button)
        lay.addWidget(self.view_button)
        self.prob_button = QPushButton("Probability map")
        self.prob_button.setToolTip("the model's class probability per patch, of the view or "
                                    "the whole slide; low values and background are transparent")
        self.prob_scope = compact_combo(6)
        self.prob_scope.addItems(["view", "whole slide"])
        row = QFormLayout()
        row.addRow("of", self.prob_scope)
        self.uncertainty_check = QCheckBox("+ uncertainty")
        self.uncertainty_check.setToolTip(
            "Monte-Carlo dropout: run the model's dropout layers N times per patch: the probability map shows the "
            "mean, a second layer the standard deviation (needs a model with dropout)")
        self.mc_spin = QSpinBox()
        self.mc_spin.setRange(2, 1000)
        self.mc_spin.setValue(30)
        self.mc_spin.setToolTip("Monte-Carlo dropout passes per patch (seed 002 uses 100)")
        row.addRow(self.uncertainty_check)
        row.addRow("MC passes", self.mc_spin)
        lay.addWidget(self.prob_button)
        lay.addLayout(row)
        self.compare_button = QPushButton("Side by side…")
        self.compare_button.setToolTip("the latest compared methods (or the selected heatmap "
                                       "layers) over the grey H&E of the same region")
        lay.addWidget(self.compare_button)

        prog = QHBoxLayout()
        self.progress_bar = QProgressBar()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        prog.addWidget(self.progress_bar)
        prog.addWidget(self.cancel_button)
        lay.addLayout(prog)
        self.status = wrapped_label()
        lay.addWidget(self.status)
        self.offer_button = QPushButton("Probability map instead")
        self.offer_button.setToolTip("compute the probability map of the view (cheap)")
        self.offer_button.setVisible(False)
        lay.addWidget(self.offer_button)

        disp = QFormLayout()
        disp.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(60)
        disp.addRow("Opacity", self.opacity_slider)
        self.grey_check = QCheckBox("H&&E in grey")
        self.grey_check.setToolTip("show the slide in grey-scale under the heatmaps (seed 000); "
                                   "on by default in explain mode")
        disp.addRow(self.grey_check)
        lay.addLayout(disp)
        self.legend = ColourLegend()
        lay.addWidget(self.legend)
        lay.addStretch(1)
