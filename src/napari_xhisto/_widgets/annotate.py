"""The docked "Annotate" widget: cell points per class, tissue regions, files and autosave.

Thin by design: conversions, file formats and autosave live in ``napari_xhisto.annotations``;
this module reads and writes napari layers. Layers hold world µm (data at scale 1) so they
overlay the slide layer, whose scale is its µm/px; level-0 pixels come back through
``(world - slide translate) / mpp``.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QCheckBox,
    QColorDialog,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .._writer import find_slide_layer, points_to_annotations, shapes_to_annotations
from ..annotations import (
    CELL_CLASSES,
    AnnotationSet,
    AutosaveStore,
    color_for_class,
    qupath_origin,
    read_annotations,
    regions_to_shapes_data,
    write_annotations,
)
from ..annotations.model import concat_annotations, new_ids, unusable_ids
from ..errors import XhistoError

REGION_LAYER_CLASSES = ("necrosis", "artefact", "vessel", "tumour area")
CELL_PREFIX, REGION_PREFIX = "cells: ", "regions: "
POINT_SIZE_UM = 8.0


def _hex(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb))


def _disconnect_all(undo: list) -> None:
    """Run the undo steps of a widget's connections and key bindings, newest first."""
    while undo:
        step = undo.pop()
        try:
            step()
        except (RuntimeError, ValueError, TypeError, KeyError):
            pass


def _swatch(rgb) -> QIcon:
    """A small square of the class colour (text stays readable on any theme)."""
    pixmap = QPixmap(14, 14)
    pixmap.fill(QColor(_hex(rgb)))
    return QIcon(pixmap)


def _raise(error: BaseException):
    raise error


def _unbind_if(layer, key: str, handler) -> None:
    """Unbind ``key`` from ``layer`` if it still runs ``handler`` (not a newer widget's)."""
    from napari.utils.key_bindings import coerce_keybinding

    if layer.keymap.get(coerce_keybinding(key)) is handler:
        layer.bind_key(key, None)


class AnnotateWidget(QWidget):
    """Cell points (one layer per class, keys 1-9 switch class), regions, import/export, autosave.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    cell_classes, region_classes : sequence of str
        Classes to start with; more can be added in the widget.
    autosave : bool
        Save (debounced) beside the slide, or in the chosen folder, after every change.
    autosave_delay_ms : int
        Quiet time after the last change before saving.
    """

    def __init__(self, napari_viewer, *, cell_classes=CELL_CLASSES,
                 region_classes=REGION_LAYER_CLASSES, autosave: bool = True,
                 autosave_delay_ms: int = 1000):
        from qtpy.QtCore import QTimer

        super().__init__()
        self.viewer = napari_viewer
        self.colors: dict[str, tuple[int, int, int]] = {}
        self.cell_layers: dict = {}
        self.region_layers: dict = {}
        self.store: AutosaveStore | None = None
        self.autosave_folder: Path | None = None
        self._updating = False
        self._connections: list = []
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(int(autosave_delay_ms))
        self._timer.timeout.connect(lambda: self.save_now(background=True))
        self._workers: set = set()
        self._build_ui()
        for name in cell_classes:
            self.add_cell_class(name)
        for name in region_classes:
            self.add_region_class(name)
        self._connect(self.viewer.layers.events.inserted, self._on_layer_inserted)
        self._connect(self.viewer.layers.events.removed, self._on_layer_removed)
        # napari may delete a closed dock widget: its layer callbacks must go with it
        self.destroyed.connect(partial(_disconnect_all, self._connections))
        self.autosave_box.setChecked(autosave)

    def _connect(self, emitter, callback):
        emitter.connect(callback)
        self._connections.append(partial(emitter.disconnect, callback))

    def closeEvent(self, event):  # noqa: N802 (Qt name)
        """Save what is pending, then stop listening to the layers (they stay in the viewer)."""
        if self._timer.isActive():
            self.save_now()
        _disconnect_all(self._connections)
        super().closeEvent(event)

    # ---------------------------------------------------------------- user interface
    def _build_ui(self):
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Cells (keys 1-9 switch class while placing points)"))
        self.cell_list = QListWidget()
        self.cell_list.setMaximumHeight(160)
        self.cell_list.currentRowChanged.connect(self._on_cell_row)
        layout.addWidget(self.cell_list)
        grid = QGridLayout()
        self.new_class = QLineEdit(placeholderText="new class name")
        add_cell, add_region = QPushButton("Add cell class"), QPushButton("Add region class")
        add_cell.clicked.connect(lambda: self._add_typed(self.add_cell_class))
        add_region.clicked.connect(lambda: self._add_typed(self.add_region_class))
        colour = QPushButton("Colour…")
        colour.clicked.connect(self._pick_colour)
        self.target_class = QComboBox()
        set_class = QPushButton("Set class of selected points")
        set_class.clicked.connect(lambda: self._guard(self.set_class_of_selected,
                                                      self.target_class.currentText()))
        grid.addWidget(self.new_class, 0, 0, 1, 2)
        grid.addWidget(add_cell, 1, 0)
        grid.addWidget(add_region, 1, 1)
        grid.addWidget(colour, 2, 0)
        grid.addWidget(self.target_class, 3, 0)
        grid.addWidget(set_class, 3, 1)
        layout.addLayout(grid)
        layout.addWidget(QLabel("Regions (polygon, rectangle, ellipse)"))
        self.region_list = QListWidget()
        self.region_list.setMaximumHeight(130)
        self.region_list.currentRowChanged.connect(self._on_region_row)
        layout.addWidget(self.region_list)
        files = QGridLayout()
        import_button, export_button = QPushButton("Import…"), QPushButton("Export…")
        import_button.clicked.connect(self._import_dialog)
        export_button.clicked.connect(self._export_dialog)
        self.autosave_box = QCheckBox("Autosave")
        self.autosave_box.toggled.connect(lambda on: self._guard(self.set_autosave, on))
        folder = QPushButton("Folder…")
        folder.clicked.connect(self._folder_dialog)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        files.addWidget(import_button, 0, 0)
        files.addWidget(export_button, 0, 1)
        files.addWidget(self.autosave_box, 1, 0)
        files.addWidget(folder, 1, 1)
        layout.addLayout(files)
        layout.addWidget(self.status)
        layout.addStretch(1)

    def _guard(self, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (XhistoError, OSError) as err:
            from napari.utils.notifications import show_error

            show_error(str(err))
            self.status.setText(str(err))
            return None

    def _add_typed(self, adder):
        if self._guard(adder, self.new_class.text()) is not None:
            self.new_class.clear()

    def _pick_colour(self):
        """Colour of the class last chosen in either list (the active layer's class)."""
        active = self.viewer.layers.selection.active
        info = getattr(active, "metadata", {}).get("xhisto", {}) if active is not None else {}
        name = info.get("class") if info.get("kind") in ("cells", "regions") else None
        if name is None:
            return
        colour = QColorDialog.getColor(QColor(_hex(self.colors[name])), self)
        if colour.isValid():
            self.set_class_color(name, (colour.red(), colour.green(), colour.blue()))

    def _on_cell_row(self, row: int):
        names = list(self.cell_layers)
        if 0 <= row < len(names) and not self._updating:
            self.activate_class(names[row])

    def _on_region_row(self, row: int):
        names = list(self.region_layers)
        if 0 <= row < len(names) and not self._updating:
            layer = self.region_layers[names[row]]
            self.viewer.layers.selection.active = layer
            layer.mode = "add_polygon"

    def _refresh_lists(self):
        self._updating = True
        try:
            for widget, layers in ((self.cell_list, self.cell_layers),
                                   (self.region_list, self.region_layers)):
                row = widget.currentRow()
                widget.clear()
                for i, (name, layer) in enumerate(layers.items()):
                    key = f"{i + 1}  " if widget is self.cell_list and i < 9 else ""
                    widget.addItem(f"{key}{name}  ({len(layer.data)})")
                    widget.item(i).setIcon(_swatch(self.colors[name]))
                widget.setCurrentRow(row)
            current = self.target_class.currentText()
            self.target_class.clear()
            self.target_class.addItems(list(self.cell_layers))
            if current in self.cell_layers:
                self.target_class.setCurrentText(current)
        finally:
            self._updating = False

    # ---------------------------------------------------------------- classes and layers
    def slide_frame(self) -> tuple[float, np.ndarray, object]:
        """(µm per px, slide translate, slide layer or None); scale 1 without a slide."""
        layer = find_slide_layer(self.viewer)
        if layer is None:
            return 1.0, np.zeros(2), None
        return float(layer.scale[-1]), np.asarray(layer.translate[-2:], dtype=float), layer

    def _metadata(self, kind: str, name: str) -> dict:
        info = {"kind": kind, "class": name, "holes": {}}
        self._record_frame(info)
        return {"xhisto": info}

    def _record_frame(self, info: dict) -> None:
        """Keep the slide's µm/px in a layer's metadata, so napari's own Save uses it."""
        mpp, translate, slide = self.slide_frame()
        info["mpp"] = mpp if slide is not None else None
        info["slide_translate"] = [float(t) for t in translate]
        info["qupath_origin"] = list(self.file_origin())

    def file_origin(self) -> tuple[float, float]:
        """Level-0 (row, col) of QuPath's (0, 0) for the open slide (openslide bounds)."""
        _, _, slide = self.slide_frame()
        if slide is None:
            return (0.0, 0.0)
        return qupath_origin(slide.metadata["xhisto"].get("properties"))

    def _existing_layer(self, kind: str, name: str):
        """A layer of ours left in the viewer (e.g. by a closed Annotate widget): adopt it."""
        for layer in self.viewer.layers:
            info = layer.metadata.get("xhisto")
            if isinstance(info, dict) and info.get("kind") == kind and info.get("class") == name:
                return layer
        return None

    def add_cell_class(self, name: str, color=None):
        """A points layer for cell class ``name`` (returned; existing layer if already there)."""
        name = str(name).strip()
        if not name:
            raise XhistoError("type a class name first, e.g. 'mitosis'")
        if name in self.cell_layers:
            return self.cell_layers[name]
        self.colors[name] = tuple(color) if color is not None else self.colors.get(
            name, color_for_class(name))
        mpp, _, slide = self.slide_frame()
        layer = self._existing_layer("cells", name) or self.viewer.add_points(
            np.zeros((0, 2)), name=CELL_PREFIX + name, ndim=2,
            size=POINT_SIZE_UM if slide is not None and mpp != 1.0 else 2 * POINT_SIZE_UM,
            features=pd.DataFrame({"class": pd.Series([], dtype=object),
                                   "id": pd.Series([], dtype=object)}),
            feature_defaults={"class": name, "id": ""},
            face_color=_hex(self.colors[name]), border_color="white",
            metadata=self._metadata("cells", name),
        )
        layer.current_face_color = _hex(self.colors[name])
        self._connect(layer.events.data, lambda event, layer=layer: self._on_layer_data(event, layer))
        self.cell_layers[name] = layer
        self._bind_class_keys()
        self._refresh_lists()
        return layer

    def add_region_class(self, name: str, color=None):
        """A shapes layer for region class ``name`` (returned; existing layer if already there)."""
        name = str(name).strip()
        if not name:
            raise XhistoError("type a region class name first, e.g. 'tumour area'")
        if name in self.region_layers:
            return self.region_layers[name]
        self.colors[name] = tuple(color) if color is not None else self.colors.get(
            name, color_for_class(name))
        hex_colour = _hex(self.colors[name])
        layer = self._existing_layer("regions", name) or self.viewer.add_shapes(
            None, ndim=2, name=REGION_PREFIX + name, edge_color=hex_colour,
            face_color=hex_colour + "40", edge_width=2,
            features=pd.DataFrame({"class": pd.Series([], dtype=object),
                                   "name": pd.Series([], dtype=object),
                                   "id": pd.Series([], dtype=object)}),
            feature_defaults={"class": name, "name": "", "id": ""},
            metadata=self._metadata("regions", name),
        )
        layer.current_edge_color, layer.current_face_color = hex_colour, hex_colour + "40"
        self._connect(layer.events.data, lambda event, layer=layer: self._on_layer_data(event, layer))
        self.region_layers[name] = layer
        self._refresh_lists()
        return layer

    def set_class_color(self, name: str, rgb) -> None:
        """Change the colour of a class (its layer and future exports)."""
        self.colors[name] = tuple(int(c) for c in rgb)
        hex_colour = _hex(self.colors[name])
        if name in self.cell_layers:
            layer = self.cell_layers[name]
            layer.current_face_color = hex_colour
            if len(layer.data):
                layer.face_color = hex_colour
        if name in self.region_layers:
            layer = self.region_layers[name]
            layer.current_edge_color, layer.current_face_color = hex_colour, hex_colour + "40"
            if len(layer.data):
                layer.edge_color, layer.face_color = hex_colour, hex_colour + "40"
        self._refresh_lists()
        self._schedule_autosave()

    def _bind_class_keys(self):
        names = list(self.cell_layers)
        for layer in self.cell_layers.values():
            for i in range(9):
                handler = (lambda _layer, n=names[i]: self.activate_class(n)) if i < len(names) else None
                if handler is not None:
                    layer.bind_key(str(i + 1), handler, overwrite=True)
                    self._connections.append(partial(_unbind_if, layer, str(i + 1), handler))

    def activate_class(self, name: str):
        """Make ``name`` the class of new points: select its layer in add mode."""
        layer = self.cell_layers[name]
        self.viewer.layers.selection.active = layer
        layer.mode = "add"
        self._updating = True
        self.cell_list.setCurrentRow(list(self.cell_layers).index(name))
        self._updating = False
        return layer

    @property
    def active_class(self) -> str | None:
        active = self.viewer.layers.selection.active
        for name, layer in self.cell_layers.items():
            if layer is active:
                return name
        return None

    def counts(self) -> dict[str, int]:
        """Cells per class, as shown in the list."""
        return {name: len(layer.data) for name, layer in self.cell_layers.items()}

    # ---------------------------------------------------------------- edits
    def _on_layer_data(self, event, layer):
        if self._updating or str(getattr(event, "action", "")) in ("adding", "removing", "changing"):
            return
        self._normalise_features(layer)
        self._refresh_lists()
        self._schedule_autosave()

    def _normalise_features(self, layer):
        """Every row carries its layer's class and a unique id (new points come without)."""
        info = layer.metadata["xhisto"]
        features = layer.features
        n = len(layer.data)
        if len(features) != n:
            return
        ids = np.asarray(features["id"] if "id" in features else [None] * n, dtype=object)
        bad = unusable_ids(ids)
        wrong_class = "class" not in features or bool((features["class"] != info["class"]).any())
        if bad.any() or wrong_class:
            ids = ids.copy()
            ids[bad] = new_ids(int(bad.sum()))
            features = features.copy()
            features["class"] = pd.Series([info["class"]] * n, dtype=object)
            features["id"] = pd.Series(ids, dtype=object)
            layer.features = features

    def _set_points(self, layer, data, ids):
        name = layer.metadata["xhisto"]["class"]
        self._updating = True
        try:
            layer.selected_data = set()
            layer.data = np.asarray(data, dtype=np.float64).reshape(-1, 2)
            layer.features = pd.DataFrame({"class": pd.Series([name] * len(ids), dtype=object),
                                           "id": pd.Series(list(ids), dtype=object)})
            if len(layer.data):
                layer.face_color = _hex(self.colors[name])
        finally:
            self._updating = False
        self._normalise_features(layer)

    def add_points(self, positions_um, cls: str, *, ids=None):
        """Append cells of class ``cls`` at world positions (N, 2) in µm (as if clicked)."""
        layer = self.add_cell_class(cls)
        positions = np.asarray(positions_um, dtype=np.float64).reshape(-1, 2)
        data = (positions - np.asarray(layer.translate)) / np.asarray(layer.scale)
        new_ids = [None] * len(data) if ids is None else list(ids)
        self._set_points(layer, np.concatenate([layer.data, data]),
                         list(layer.features["id"]) + new_ids)
        self._refresh_lists()
        self._schedule_autosave()
        return layer

    def set_class_of_selected(self, target: str) -> int:
        """Move the selected points of every cell layer to class ``target``; returns how many."""
        target_layer = self.add_cell_class(target)
        moved_data, moved_ids = [], []
        for layer in self.cell_layers.values():
            if layer is target_layer or not layer.selected_data:
                continue
            chosen = np.array(sorted(layer.selected_data), dtype=int)
            keep = np.setdiff1d(np.arange(len(layer.data)), chosen)
            ids = np.asarray(layer.features["id"], dtype=object)
            moved_data.append(layer.data[chosen] * layer.scale + layer.translate)
            moved_ids.extend(ids[chosen])
            self._set_points(layer, layer.data[keep], ids[keep])
        if moved_data:
            world = np.concatenate(moved_data)
            data = (world - np.asarray(target_layer.translate)) / np.asarray(target_layer.scale)
            self._set_points(target_layer, np.concatenate([target_layer.data, data]),
                             list(target_layer.features["id"]) + moved_ids)
            self._refresh_lists()
            self._schedule_autosave()
        return len(moved_ids)

    # ---------------------------------------------------------------- annotations in and out
    def _layer_meta(self, layer, kind: str) -> dict:
        mpp, translate, _ = self.slide_frame()
        info = dict(layer.metadata["xhisto"], mpp=mpp, slide_translate=translate,
                    colors=self.colors)
        meta = {"scale": layer.scale, "translate": layer.translate, "features": layer.features,
                "metadata": {"xhisto": info}}
        if kind == "shapes":
            meta["shape_type"] = layer.shape_type
        return meta

    def annotation_set(self) -> AnnotationSet:
        """Everything in the annotation layers, in level-0 pixels."""
        parts = [points_to_annotations(layer.data, self._layer_meta(layer, "points"))
                 for layer in self.cell_layers.values() if len(layer.data)]
        parts += [shapes_to_annotations(layer.data, self._layer_meta(layer, "shapes"))
                  for layer in self.region_layers.values() if len(layer.data)]
        result = concat_annotations(parts)
        result.colors = {name: self.colors[name] for name in result.classes()}
        return result

    def is_empty(self) -> bool:
        layers = [*self.cell_layers.values(), *self.region_layers.values()]
        return all(len(layer.data) == 0 for layer in layers)

    def clear(self):
        """Remove every annotation (layers stay)."""
        for layer in self.cell_layers.values():
            self._set_points(layer, np.zeros((0, 2)), [])
        for layer in self.region_layers.values():
            self._updating = True
            try:
                layer.data = []
            finally:
                self._updating = False
        self._refresh_lists()

    def load(self, annotations: AnnotationSet, *, mode: str = "merge"):
        """Show ``annotations`` (level-0 px): ``merge`` adds to what is there, ``replace`` clears
        first (after saving the current state when autosave is on, so it stays in the backups).
        Unknown classes get new layers; nothing is dropped."""
        if mode not in ("merge", "replace"):
            raise ValueError(f"mode must be 'merge' or 'replace', got {mode!r}")
        if mode == "replace" and not self.is_empty():
            if self.store is not None:
                self.store.save(self.annotation_set())
            self.clear()
        mpp, translate, _ = self.slide_frame()
        for name, rgb in annotations.colors.items():
            self.colors.setdefault(name, tuple(rgb))
        cells = annotations.cells.with_ids() if len(annotations.cells) else annotations.cells
        taken = {i for layer in self.cell_layers.values() for i in layer.features["id"]}
        for name in dict.fromkeys(cells.classes.tolist()):
            mask = cells.classes == name
            world = np.stack([cells.rows[mask], cells.cols[mask]], axis=1) * mpp + translate
            # an id already shown (a merge of the same file twice) gets a fresh one
            ids = [i if i not in taken else None for i in cells.ids[mask]]
            self.add_points(world, name, ids=ids)
        taken = {i for layer in self.region_layers.values() for i in layer.features["id"]}
        for name in dict.fromkeys(r.cls for r in annotations.regions):
            # a region id already shown gets a fresh one (before its holes are filed under it)
            regions = [r if r.id not in taken else replace(r, id=None)
                       for r in annotations.regions if r.cls == name]
            data, _, features, holes = regions_to_shapes_data(regions, mpp)
            layer = self.add_region_class(name)
            self._updating = True
            try:
                old = layer.features.copy()
                layer.add_polygons([d + translate for d in data])
                layer.features = pd.concat([old, pd.DataFrame(features)], ignore_index=True)
                layer.metadata["xhisto"]["holes"].update(
                    {k: [h + translate for h in v] for k, v in holes.items()})
            finally:
                self._updating = False
            self._normalise_features(layer)
        self._refresh_lists()
        self._schedule_autosave()

    def import_file(self, path, *, mode: str = "merge"):
        """Read a GeoJSON/CSV file and show it (see :meth:`load`)."""
        annotations = read_annotations(path, origin=self.file_origin())
        self.load(annotations, mode=mode)
        self.status.setText(f"imported {len(annotations.cells)} cells, "
                            f"{len(annotations.regions)} regions from {Path(path).name}")
        return annotations

    def export_file(self, path) -> Path:
        """Write all annotations: GeoJSON (cells and regions) or CSV (cells only)."""
        annotations = self.annotation_set()
        csv = Path(path).suffix.lower() in (".csv", ".tsv")
        written = write_annotations(path, annotations, drop_regions=csv,
                                    origin=self.file_origin())
        self.status.setText(f"exported {len(annotations.cells)} cells"
                            + ("" if csv else f", {len(annotations.regions)} regions")
                            + f" to {written.name}")
        return written

    def _import_dialog(self):
        path, _ = QFileDialog.getOpenFileName(self, "Import annotations", "",
                                              "Annotations (*.geojson *.json *.csv)")
        if not path:
            return
        mode = "merge"
        if not self.is_empty():
            box = QMessageBox(QMessageBox.Question, "Import annotations",
                              "The annotation layers are not empty.", parent=self)
            merge = box.addButton("Merge", QMessageBox.AcceptRole)
            replace = box.addButton(
                "Replace (current kept in the autosave backups)" if self.store is not None
                else "Replace (current annotations are discarded)", QMessageBox.DestructiveRole)
            box.addButton(QMessageBox.Cancel)
            box.exec_()
            if box.clickedButton() not in (merge, replace):
                return
            mode = "merge" if box.clickedButton() is merge else "replace"
        self._guard(self.import_file, path, mode=mode)

    def _export_dialog(self):
        path, _ = QFileDialog.getSaveFileName(self, "Export annotations", "annotations.geojson",
                                              "QuPath GeoJSON (*.geojson);;Cell points CSV (*.csv)")
        if path:
            self._guard(self.export_file, path)

    # ---------------------------------------------------------------- autosave
    def _folder_dialog(self):
        folder = QFileDialog.getExistingDirectory(self, "Autosave folder")
        if folder:
            self._guard(self.set_autosave, True, folder=folder)

    def set_autosave(self, on: bool, *, folder=None):
        """Turn autosave on/off; restores the last autosave when the layers are empty."""
        if folder is not None:
            self.autosave_folder = Path(folder)
        self.store = self._make_store() if on else None
        if self.autosave_box.isChecked() != bool(on):
            self.autosave_box.setChecked(bool(on))  # re-enters once with the same state
            return
        if self.store is None:
            self.status.setText("autosave off" if not on else
                                "autosave waits for a slide layer or a folder")
            return
        if self.is_empty():
            latest = self.store.load_latest()
            if latest is not None and not latest.is_empty():
                self.load(latest, mode="merge")
        self.status.setText(f"autosave to {self.store.path}")

    def _make_store(self) -> AutosaveStore | None:
        _, _, slide = self.slide_frame()
        slide_path = slide.metadata["xhisto"].get("slide_path") if slide is not None else None
        if slide_path is None and self.autosave_folder is None:
            return None
        if slide_path is None:
            slide_path = self.autosave_folder / "untitled"
        return AutosaveStore(slide_path, folder=self.autosave_folder, origin=self.file_origin())

    def _schedule_autosave(self):
        if self.store is not None:
            self._timer.start()

    def save_now(self, *, background: bool = False) -> Path | None:
        """Autosave immediately; the timer saves in the background after the quiet time.

        The layers are read here (GUI thread); with ``background`` the file is written in a
        worker thread (saves are serialised by the store), so a 100k-cell save does not stall
        the viewer. Returns the path when saved in the foreground.
        """
        self._timer.stop()
        if self.store is None:
            return None
        snapshot = self._guard(self.annotation_set)
        if snapshot is None:
            return None
        if not background:
            return self._guard(self.store.save, snapshot)
        from napari.qt.threading import create_worker

        worker = create_worker(self.store.save, snapshot)
        worker.errored.connect(lambda err: self._guard(_raise, err))
        worker.returned.connect(lambda path: self.status.setText(f"autosaved to {path}"))
        worker.finished.connect(lambda: self._workers.discard(worker))
        self._workers.add(worker)
        worker.start()
        return None

    def _on_layer_inserted(self, event):
        info = event.value.metadata.get("xhisto") if hasattr(event.value, "metadata") else None
        if isinstance(info, dict) and "kind" not in info:
            index = self.viewer.layers.index(event.value)
            if index > 0:  # the opaque slide goes under the annotation layers
                from qtpy.QtCore import QTimer

                QTimer.singleShot(0, lambda: self._move_to_bottom(event.value))
            for layer in [*self.cell_layers.values(), *self.region_layers.values()]:
                self._record_frame(layer.metadata["xhisto"])
            if self.autosave_box.isChecked():
                self._guard(self.set_autosave, True)

    def _move_to_bottom(self, layer):
        if layer in self.viewer.layers:
            self.viewer.layers.move(self.viewer.layers.index(layer), 0)

    def _on_layer_removed(self, event):
        for layers in (self.cell_layers, self.region_layers):
            for name, layer in list(layers.items()):
                if layer is event.value:
                    del layers[name]
        self._bind_class_keys()
        self._refresh_lists()
