"""The Annotate widget's layout (Qt only: no napari, no annotation logic)."""

from __future__ import annotations

from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


def swatch(hex_colour: str) -> QIcon:
    """A small square of the class colour (text stays readable on any theme)."""
    pixmap = QPixmap(14, 14)
    pixmap.fill(QColor(hex_colour))
    return QIcon(pixmap)


def _wrapped(text: str, tip: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setToolTip(tip)
    return label


class AnnotateView(QWidget):
    """Class lists, class editing, files and autosave controls; no behaviour."""

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.addWidget(_wrapped(
            "Cells: pick a class, then click on the slide (keys 1-9 switch class)",
            "A layer is made for a class the first time it is used."))
        self.cell_list = QListWidget()
        self.cell_list.setMaximumHeight(150)
        layout.addWidget(self.cell_list)
        move = QHBoxLayout()
        self.target_class = QComboBox()
        self.target_class.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.target_class.setMinimumContentsLength(8)
        self.set_class_button = QPushButton("Move selected to")
        self.set_class_button.setToolTip("Give the selected points (any cell layer) this class")
        move.addWidget(self.set_class_button)
        move.addWidget(self.target_class, 1)
        layout.addLayout(move)
        layout.addWidget(_wrapped("Regions: pick a class, then draw (polygon, rectangle, ellipse)"))
        self.region_list = QListWidget()
        self.region_list.setMaximumHeight(110)
        layout.addWidget(self.region_list)
        grid = QGridLayout()
        self.new_class = QLineEdit(placeholderText="new class name")
        self.add_cell_button, self.add_region_button = QPushButton("+ cell"), QPushButton("+ region")
        self.add_cell_button.setToolTip("Add the typed name as a cell class")
        self.add_region_button.setToolTip("Add the typed name as a region class")
        self.colour_button = QPushButton("Colour…")
        self.colour_button.setToolTip("Colour of the class of the selected annotation layer")
        grid.addWidget(self.new_class, 0, 0, 1, 3)
        grid.addWidget(self.add_cell_button, 1, 0)
        grid.addWidget(self.add_region_button, 1, 1)
        grid.addWidget(self.colour_button, 1, 2)
        layout.addLayout(grid)
        files = QGridLayout()
        self.import_button, self.export_button = QPushButton("Import…"), QPushButton("Export…")
        self.import_button.setToolTip("QuPath GeoJSON or CSV: merged with what is shown")
        self.export_button.setToolTip("QuPath GeoJSON (cells and regions) or CSV (cells)")
        self.autosave_box = QCheckBox("Autosave")
        self.autosave_box.setToolTip("Saved a second after every change, beside the slide (or in "
                                     "your data folder when the slide's folder is read-only)")
        self.folder_button = QPushButton("Folder…")
        self.folder_button.setToolTip("Autosave into a project folder instead")
        files.addWidget(self.import_button, 0, 0)
        files.addWidget(self.export_button, 0, 1)
        files.addWidget(self.autosave_box, 1, 0)
        files.addWidget(self.folder_button, 1, 1)
        layout.addLayout(files)
        self.status = _wrapped("")
        layout.addWidget(self.status)
        layout.addStretch(1)

    def show_lists(self, cells: list, regions: list, target_choices: list) -> None:
        """Fill the class lists: ``[(text, hex colour)]`` each; keep the rows and choices."""
        for widget, rows in ((self.cell_list, cells), (self.region_list, regions)):
            row = widget.currentRow()
            widget.blockSignals(True)
            widget.clear()
            for i, (text, colour) in enumerate(rows):
                widget.addItem(text)
                widget.item(i).setIcon(swatch(colour))
            widget.setCurrentRow(row)
            widget.blockSignals(False)
        current = self.target_class.currentText()
        self.target_class.clear()
        self.target_class.addItems(target_choices)
        if current in target_choices:
            self.target_class.setCurrentText(current)
