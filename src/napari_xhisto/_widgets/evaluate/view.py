"""The Evaluate widget's layout (Qt only: no napari, no computing).

Plain words on the labels, the details in tooltips; everything below the run button lives in a
scroll area, so the dock stays narrow (minimum width under 400 px) and short.
"""

from __future__ import annotations

from qtpy.QtCore import QSize, Qt
from qtpy.QtGui import QPainter, QPixmap
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

TIPS = {
    "heatmap": "The heatmap (explanation) or probability map to score. Only the area that was "
               "explained is read; the newest heatmap is chosen when one appears.",
    "cells": "Points layers whose cells have classes (ticked: they are scored).",
    "regions": "Shapes layers with classed regions (necrosis, tumour area ...).",
    "positive": "Cells of this class should get high relevance: they are the positives of the "
                "ROC curve, all other cells the negatives.",
    "localize": "Regions of this class are the area the heatmap should outline "
                "(pixel-level AP, Dice, IoU).",
    "radius": "A cell's score is the mean positive relevance within this distance of its "
              "centre (about half a cell diameter).",
    "random": "How many random heatmaps are scored the same way, to show the AUC that chance "
              "alone gives.",
    "tile": "The per-tile table splits the area into squares of this side and gives each its "
            "own AUC (the worst first).",
    "compare": "Other heatmaps scored on the same cells (ticked): one curve each in every "
               "plot, and each AUC difference with its paired 95% interval and DeLong's p. "
               "The Bias tab lists each region's mean relevance on the first one too and flags "
               "regions where they disagree.",
    "sweep": "Also the cell AUC (with its 95% interval) at every radius from .. to (µm): "
             "method rankings can depend on the radius.",
    "boot": "Bootstrap resamples of the cells for the 95% intervals (more: steadier "
            "intervals, slower).",
    "patch": "Side of the model's input patch on the slide. The Bias tab averages relevance "
             "over patches of this size to find places the model always looks at.",
    "prob": "A probability layer that gives each patch its predicted class (>= 0.5), so "
            "hotspots are found per class.",
}


def table(headers, tips=()) -> QTableWidget:
    t = QTableWidget(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    for k, tip in enumerate(tips):
        t.horizontalHeaderItem(k).setToolTip(tip)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.verticalHeader().setVisible(False)
    t.horizontalHeader().setStretchLastSection(True)
    t.setMinimumHeight(80)
    return t


def fill(t: QTableWidget, rows) -> None:
    t.setRowCount(len(rows))
    for i, row in enumerate(rows):
        for j, text in enumerate(row):
            t.setItem(i, j, QTableWidgetItem(str(text)))
    t.resizeColumnsToContents()
    if any("\n" in str(text) for row in rows for text in row):
        t.resizeRowsToContents()


class PlotView(QWidget):
    """A picture (a plot drawn elsewhere) scaled to the widget's width, aspect kept."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.pixmap = QPixmap()
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def set_pixmap(self, pixmap: QPixmap) -> None:
        self.pixmap = pixmap
        self.updateGeometry()
        self.update()

    def hasHeightForWidth(self) -> bool:  # noqa: N802 (Qt name)
        return not self.pixmap.isNull()

    def heightForWidth(self, width: int) -> int:  # noqa: N802
        if self.pixmap.isNull():
            return 0
        return int(width * self.pixmap.height() / max(self.pixmap.width(), 1))

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(370, 260) if self.pixmap.isNull() else self.pixmap.size()

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return QSize(120, 60)

    def paintEvent(self, event):  # noqa: N802
        if self.pixmap.isNull():
            return
        painter = QPainter(self)
        scaled = self.pixmap.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                    Qt.TransformationMode.SmoothTransformation)
        painter.drawPixmap(0, 0, scaled)


def _spin(lo, hi, value, suffix, decimals=1) -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setRange(lo, hi)
    s.setDecimals(decimals)
    s.setValue(value)
    s.setSuffix(suffix)
    return s


def _wrapped(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    return label


def caption(text: str = "") -> QLabel:
    """A small wrapped note under a table: the conventions its numbers follow."""
    label = _wrapped(text)
    font = label.font()
    font.setPointSizeF(max(font.pointSizeF() - 1.5, 7.0))
    label.setFont(font)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class EvaluateView(QWidget):
    """All controls of the Evaluate widget, laid out; no behaviour."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.heatmap_box, self.prob_box = QComboBox(), QComboBox()
        self.positive_box, self.localize_box = QComboBox(), QComboBox()
        for box in (self.heatmap_box, self.prob_box, self.positive_box, self.localize_box):
            box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(12)
        self.points_list, self.shapes_list = QListWidget(), QListWidget()
        self.compare_list = QListWidget()
        for w in (self.points_list, self.shapes_list, self.compare_list):
            w.setMaximumHeight(70)
        self.sweep_box = QCheckBox("AUC against radius")
        self.sweep_box.setChecked(True)
        self.sweep_from = _spin(0.1, 1000, 1.0, " µm")
        self.sweep_to = _spin(0.1, 1000, 12.0, " µm")
        sweep = QHBoxLayout()
        sweep.setContentsMargins(0, 0, 0, 0)
        for w in (self.sweep_from, QLabel("to"), self.sweep_to):
            sweep.addWidget(w)
        self.sweep_row = QWidget()
        self.sweep_row.setLayout(sweep)
        self.sweep_box.toggled.connect(self.sweep_row.setEnabled)
        self.boot_spin = QSpinBox()
        self.boot_spin.setRange(10, 100000)
        self.boot_spin.setValue(1000)
        self.radius_spin = _spin(0.1, 1000, 8.0, " µm")
        self.tile_spin = _spin(1, 100000, 256.0, " µm", 0)
        self.patch_spin = _spin(1, 100000, 64.0, " µm")
        self.random_spin = QSpinBox()
        self.random_spin.setRange(0, 1000)
        self.random_spin.setValue(10)

        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        rows = (("heatmap", "heatmap", self.heatmap_box), ("cell layers", "cells", self.points_list),
                ("region layers", "regions", self.shapes_list),
                ("cells that should light up", "positive", self.positive_box),
                ("region to outline", "localize", self.localize_box),
                ("cell neighbourhood radius", "radius", self.radius_spin),
                ("random maps for chance level", "random", self.random_spin),
                ("tile side (per-tile table)", "tile", self.tile_spin),
                ("compare with", "compare", self.compare_list),
                ("resamples for 95% intervals", "boot", self.boot_spin),
                ("model patch side", "patch", self.patch_spin),
                ("patch class from", "prob", self.prob_box))
        for text, key, w in rows:
            label = _wrapped(text)
            label.setToolTip(TIPS[key])
            w.setToolTip(TIPS[key])
            form.addRow(label, w)
            if key == "radius":  # the sweep belongs with the radius
                self.sweep_box.setToolTip(TIPS["sweep"])
                self.sweep_row.setToolTip(TIPS["sweep"])
                form.addRow(self.sweep_box, self.sweep_row)

        self.run_button = QPushButton("Evaluate")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.cancel_button)
        self.summary = _wrapped("")
        self.json_button, self.csv_button = QPushButton("JSON…"), QPushButton("CSV…")
        self.plots_button = QPushButton("Plots…")
        export_row = QHBoxLayout()
        export_row.addWidget(QLabel("save:"))
        for b, tip in ((self.json_button, "all numbers as JSON"),
                       (self.csv_button, "every table as one CSV"),
                       (self.plots_button, "the plots as PNG files in a folder")):
            b.setToolTip(tip)
            export_row.addWidget(b)

        self.roc_plot, self.loc_plot, self.bias_plot = PlotView(), PlotView(), PlotView()
        self.radius_plot, self.rates_plot = PlotView(), PlotView()
        self.auc_table = table(["curve", "AUC [95% interval]"],
                               ["", "area under the ROC curve [percentile bootstrap over cells]; "
                                    "n: positive / negative cells scored"])
        self.diff_table = table(["B − A", "AUC difference [95% interval]"],
                                ["", "AUC of B minus AUC of A on the same cells [paired "
                                     "bootstrap over cells]; p: DeLong's test of equal AUCs"])
        self.radius_table = table(["radius µm", "AUC [95% interval]"],
                                  ["radius of the disc a cell's score averages over"])
        self.auc_caption, self.radius_caption, self.loc_caption = (
            caption(), caption(), caption())
        self.tile_table = table(["x, y (µm)", "AUC", "+", "-"],
                                ["top-left corner of the tile on the slide"])
        self.region_table = table(["#", "class", "name", "pixels", "mean", "mean +"])
        self.loc_table = table(["heatmap", "PxAP", "pct", "Dice", "IoU", "hits"],
                               ["", "pixel-level average precision of the region to outline",
                                "the map is cut at this percentile of its values", "", "",
                                "regions found (IoU >= 0.5) / regions"])
        self.hotspot_table = table(["class", "x, y (µm)", "side µm", "share", "flag"],
                                   ["predicted class of the patches",
                                    "where the hotspot is strongest on the slide (click: go there)",
                                    "side of the square", "relevance share over area share"])
        self.compare_table = table(["#", "class", "mean A", "mean B", "B - A"])
        self.bias_label = _wrapped("")

        self.tabs = QTabWidget()
        self.tabs.setUsesScrollButtons(True)
        for title, widgets in (
                ("ROC", (self.roc_plot, self.auc_table, self.auc_caption,
                         QLabel("compared on the same cells"), self.diff_table,
                         QLabel("per tile (worst first)"), self.tile_table)),
                ("Radius", (self.radius_plot, self.radius_caption, self.radius_table)),
                ("Regions", (self.region_table,)),
                ("Localisation", (self.loc_plot, self.rates_plot, self.loc_caption,
                                  self.loc_table)),
                ("Bias", (self.bias_plot, self.bias_label,
                          QLabel("hotspots (click a row: show on the slide)"), self.hotspot_table,
                          QLabel("compared per region"), self.compare_table))):
            page = QWidget()
            lay = QVBoxLayout(page)
            lay.setContentsMargins(2, 2, 2, 2)
            for w in widgets:
                lay.addWidget(w)
            self.tabs.addTab(page, title)

        content = QWidget()
        main = QVBoxLayout(content)
        main.addLayout(form)
        main.addLayout(run_row)
        main.addWidget(self.progress)
        main.addWidget(self.summary)
        main.addLayout(export_row)
        main.addWidget(self.tabs)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.scroll = scroll
        # as narrow as the content allows (never cut off sideways), as short as one wants
        bar = scroll.verticalScrollBar().sizeHint().width()
        scroll.setMinimumWidth(content.minimumSizeHint().width() + bar)
