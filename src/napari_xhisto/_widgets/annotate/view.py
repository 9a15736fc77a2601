"""The Annotate widget's layout (Qt only: no napari, no annotation logic)."""

from __future__ import annotations

from qtpy.QtCore import Signal
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .mapping import role_choices

MAP_TIP = ("Which role each class plays when Evaluate scores (and in xhisto evaluate "
           "--class-map): the names themselves are never changed. 'ignore' leaves the class "
           "out; '(own name)' scores it under its name. Saved with the autosave, beside it.")


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
    """Class lists, class editing, class mapping, files and autosave controls; no behaviour.

    ``map_changed(name, kind, role)`` is emitted when a mapping drop-down is changed.
    """

    map_changed = Signal(str, str, str)

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
        self.map_label = _wrapped("Class mapping: scored as (Evaluate)", MAP_TIP)
        self.map_table = QTableWidget(0, 2)
        self.map_table.setHorizontalHeaderLabels(["class (kind)", "scored as"])
        self.map_table.setToolTip(MAP_TIP)
        self.map_table.verticalHeader().setVisible(False)
        self.map_table.horizontalHeader().setStretchLastSection(True)
        self.map_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.map_table.setMaximumHeight(200)
        self.map_label.setVisible(False)
        self.map_table.setVisible(False)
        layout.addWidget(self.map_label)
        layout.addWidget(self.map_table)
        self._map_rows: list = []
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

    def show_mapping(self, rows: list) -> None:
        """One row per ``(class name, kind, role shown)``, the role a drop-down of the roles of
        its kind; hidden while there is no class in use. Rebuilt only when the rows change."""
        if rows == self._map_rows:
            return
        table = self.map_table
        if [r[:2] for r in rows] == [r[:2] for r in self._map_rows]:  # only roles changed
            for i, (_, _, role) in enumerate(rows):
                box = table.cellWidget(i, 1)
                box.blockSignals(True)
                box.setCurrentText(role)
                box.blockSignals(False)
            self._map_rows = list(rows)
            return
        self._map_rows = list(rows)
        table.setRowCount(len(rows))
        for i, (name, kind, role) in enumerate(rows):
            item = QTableWidgetItem(f"{name} ({kind})")
            item.setToolTip(f"{kind} class {name!r} as the file or you named it")
            table.setItem(i, 0, item)
            box = QComboBox()
            box.addItems(role_choices(kind))
            box.setCurrentText(role)
            box.currentTextChanged.connect(
                lambda text, name=name, kind=kind: self.map_changed.emit(name, kind, text))
            table.setCellWidget(i, 1, box)
        table.resizeColumnToContents(0)
        self.map_label.setVisible(bool(rows))
        table.setVisible(bool(rows))

    def mapping_box(self, name: str, kind: str) -> QComboBox | None:
        """The drop-down of class ``name`` of ``kind`` (None when it has no row)."""
        for i, (n, k, _) in enumerate(self._map_rows):
            if (n, k) == (name, kind):
                return self.map_table.cellWidget(i, 1)
        return None
