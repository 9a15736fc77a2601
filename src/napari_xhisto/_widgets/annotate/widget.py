"""The docked "Annotate" widget: its view wired to :class:`AnnotationLayers`, plus autosave.

Thin by design: conversions, file formats and autosave live in ``napari_xhisto.annotations``;
the controller keeps the classes and their layers (made only when a class is first used).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QColorDialog, QFileDialog, QMessageBox

from ...annotations import (
    CELL_CLASSES,
    AnnotationSet,
    AutosaveStore,
    read_annotations,
    read_report,
)
from ...annotations import write_annotations as _write
from ...errors import XhistoError
from .autosave import AutosaveControls
from .controller import REGION_LAYER_CLASSES, AnnotationLayers, hex_colour
from .view import AnnotateView


def _disconnect_all(undo: list) -> None:
    """Run the undo steps of a widget's connections and key bindings, newest first."""
    while undo:
        step = undo.pop()
        try:
            step()
        except (RuntimeError, ValueError, TypeError, KeyError):
            pass


def _unbind_if(layer, key: str, handler) -> None:
    """Unbind ``key`` from ``layer`` if it still runs ``handler`` (not a newer widget's)."""
    from napari.utils.key_bindings import coerce_keybinding

    if layer.keymap.get(coerce_keybinding(key)) is handler:
        layer.bind_key(key, None)


class AnnotateWidget(AutosaveControls, AnnotateView):
    """Cell points (one layer per class, keys 1-9 switch class), regions, files, autosave.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    cell_classes, region_classes : sequence of str
        Classes offered from the start (their layers are made when first used).
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
        self.store: AutosaveStore | None = None
        self.autosave_folder: Path | None = None
        self._connections: list = []
        self._workers: set = set()
        self._warned_fallback = False
        self.annotations = AnnotationLayers(napari_viewer, on_change=self._changed,
                                            on_layer=self._layer_made)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(int(autosave_delay_ms))
        self._timer.timeout.connect(lambda: self.save_now(background=True))
        self._wire()
        for name in cell_classes:
            self.annotations.add_cell_class(name)
        for name in region_classes:
            self.annotations.add_region_class(name)
        self.annotations.adopt_existing()
        self._connect(self.viewer.layers.events.inserted, self._on_layer_inserted)
        self._connect(self.viewer.layers.events.removed, self._on_layer_removed)
        # napari may delete a closed dock widget: its layer callbacks must go with it
        self.destroyed.connect(partial(_disconnect_all, self._connections))
        self._connections.append(self.annotations.disconnect)
        self._refresh_lists()
        self.autosave_box.setChecked(autosave)

    def _wire(self) -> None:
        self.cell_list.currentRowChanged.connect(self._on_cell_row)
        self.region_list.currentRowChanged.connect(self._on_region_row)
        self.add_cell_button.clicked.connect(lambda: self._add_typed(self.add_cell_class))
        self.add_region_button.clicked.connect(lambda: self._add_typed(self.add_region_class))
        self.colour_button.clicked.connect(self._pick_colour)
        self.set_class_button.clicked.connect(
            lambda: self._guard(self.set_class_of_selected, self.target_class.currentText()))
        self.map_changed.connect(lambda name, kind, text: self._guard(
            self.set_class_map, name, kind, text))
        self.import_button.clicked.connect(self._import_dialog)
        self.export_button.clicked.connect(self._export_dialog)
        self.autosave_box.toggled.connect(lambda on: self._guard(self.set_autosave, on))
        self.folder_button.clicked.connect(self._folder_dialog)

    def _connect(self, emitter, callback):
        emitter.connect(callback)
        self._connections.append(partial(emitter.disconnect, callback))

    def closeEvent(self, event):  # noqa: N802 (Qt name)
        """Save what is pending, then stop listening to the layers (they stay in the viewer)."""
        if self._timer.isActive():
            self.save_now()
        _disconnect_all(self._connections)
        super().closeEvent(event)

    # ---- the controller's state, for scripts and tests
    cell_layers = property(lambda self: self.annotations.cell_layers)
    region_layers = property(lambda self: self.annotations.region_layers)
    colors = property(lambda self: self.annotations.colors)

    def slide_frame(self):
        return self.annotations.slide_frame()

    def file_origin(self):
        return self.annotations.file_origin()

    def counts(self) -> dict[str, int]:
        return self.annotations.counts()

    def annotation_set(self) -> AnnotationSet:
        return self.annotations.annotation_set()

    def is_empty(self) -> bool:
        return self.annotations.is_empty()

    # ---- classes
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

    def add_cell_class(self, name: str, color=None) -> str:
        name = self.annotations.add_cell_class(name, color)
        self._bind_class_keys()
        self._refresh_lists()
        return name

    def add_region_class(self, name: str, color=None) -> str:
        name = self.annotations.add_region_class(name, color)
        self._refresh_lists()
        return name

    def set_class_color(self, name: str, rgb) -> None:
        self.annotations.set_class_color(name, rgb)
        self._refresh_lists()
        self._schedule_autosave()

    def _pick_colour(self):
        """Colour of the class of the active annotation layer."""
        active = self.viewer.layers.selection.active
        info = getattr(active, "metadata", {}).get("xhisto", {}) if active is not None else {}
        name = info.get("class") if info.get("kind") in ("cells", "regions") else None
        if name is None:
            self.status.setText("pick a class first: its colour is the one that changes")
            return
        colour = QColorDialog.getColor(QColor(hex_colour(self.colors[name])), self)
        if colour.isValid():
            self.set_class_color(name, (colour.red(), colour.green(), colour.blue()))

    def _on_cell_row(self, row: int):
        names = self.annotations.cell_classes
        if 0 <= row < len(names):
            self.activate_class(names[row])

    def _on_region_row(self, row: int):
        names = self.annotations.region_classes
        if 0 <= row < len(names):
            self.activate_region(names[row])

    def activate_class(self, name: str):
        """Make ``name`` the class of new points: its layer (made now if new), in add mode."""
        layer = self.annotations.cell_layer(name)
        self.viewer.layers.selection.active = layer
        layer.mode = "add"
        self.cell_list.blockSignals(True)
        self.cell_list.setCurrentRow(self.annotations.cell_classes.index(name))
        self.cell_list.blockSignals(False)
        return layer

    def activate_region(self, name: str):
        """Draw regions of class ``name``: its shapes layer (made now if new), polygon mode."""
        layer = self.annotations.region_layer(name)
        self.viewer.layers.selection.active = layer
        layer.mode = "add_polygon"
        return layer

    @property
    def active_class(self) -> str | None:
        active = self.viewer.layers.selection.active
        for name, layer in self.cell_layers.items():
            if layer is active:
                return name
        return None

    def _bind_class_keys(self):
        names = self.annotations.cell_classes
        for layer in self.cell_layers.values():
            for i, name in enumerate(names[:9]):
                handler = partial(self._key_activate, name)
                layer.bind_key(str(i + 1), handler, overwrite=True)
                self._connections.append(partial(_unbind_if, layer, str(i + 1), handler))

    def _key_activate(self, name, _layer):
        self.activate_class(name)

    def _layer_made(self, kind, name, layer):
        if kind == "cells":
            self._bind_class_keys()
        self._refresh_lists()

    def _refresh_lists(self):
        a = self.annotations
        counts, region_counts = a.counts(), a.region_counts()
        cells = [(f"{i + 1}  " if i < 9 else "") + f"{name}  ({counts[name]})"
                 for i, name in enumerate(a.cell_classes)]
        regions = [f"{name}  ({region_counts[name]})" for name in a.region_classes]
        self.show_lists(
            [(t, hex_colour(a.colors[n])) for t, n in zip(cells, a.cell_classes)],
            [(t, hex_colour(a.colors[n])) for t, n in zip(regions, a.region_classes)],
            list(a.cell_classes))
        used_cells = [n for n in a.cell_classes if counts[n] or n in a.mapping.map.cells]
        used_regions = [n for n in a.region_classes
                        if region_counts[n] or n in a.mapping.map.regions]
        self.show_mapping(a.mapping.rows(used_cells, used_regions))

    # ---- edits
    def _changed(self):
        self._refresh_lists()
        self._schedule_autosave()

    def add_points(self, positions_um, cls: str, *, ids=None):
        """Append cells of class ``cls`` at world positions (N, 2) in µm (as if clicked)."""
        return self.annotations.add_points(positions_um, cls, ids=ids)

    def set_class_of_selected(self, target: str) -> int:
        """Move the selected points of every cell layer to class ``target``; returns how many."""
        return self.annotations.set_class_of_selected(target)

    def set_class_map(self, name: str, kind: str, text: str) -> None:
        """Score class ``name`` (``kind`` "cell"/"region") as role ``text`` (a drop-down
        choice: a role, "ignore" or "(own name)"); saved with the autosave."""
        self.annotations.set_class_map(name, kind, text)

    @property
    def class_map(self):
        """The :class:`~napari_xhisto.annotations.ClassMap` in use."""
        return self.annotations.mapping.map

    def clear(self):
        """Remove every annotation (layers stay)."""
        self.annotations.clear()
        self._refresh_lists()

    # ---- files
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
        self.annotations.load(annotations)

    def slide_shape(self) -> tuple[int, int] | None:
        """Level-0 (height, width) of the open slide, up to its far corner in level-0 px
        (a bounded slide starts at its translate); None without a slide."""
        mpp, translate, slide = self.slide_frame()
        if slide is None:
            return None
        shape = np.asarray(slide.level_shapes[0][-2:], dtype=float)  # colour axis left out
        return tuple(int(np.ceil(v)) for v in shape + np.maximum(translate / mpp, 0))

    def import_file(self, path, *, mode: str = "merge"):
        """Read a GeoJSON/CSV file and show it (see :meth:`load`); objects off the slide or
        unusable are skipped, and the status line and a notification say how many."""
        annotations = read_annotations(path, origin=self.file_origin(),
                                       image_shape=self.slide_shape(), warn=False)
        self.load(annotations, mode=mode)
        report = read_report(annotations)
        n_cells, n_regions = len(annotations.cells), len(annotations.regions)
        text = (f"imported {n_cells} cell{'s' * (n_cells != 1)}, {n_regions} "
                f"region{'s' * (n_regions != 1)} from {Path(path).name}"
                + (f"; {report}" if report else ""))
        self.status.setText(text)
        if report:
            from napari.utils.notifications import show_warning

            show_warning(f"{Path(path).name}: {report}")
        return annotations

    def export_file(self, path) -> Path:
        """Write all annotations: GeoJSON (cells and regions) or CSV (cells only)."""
        annotations = self.annotation_set()
        csv = Path(path).suffix.lower() in (".csv", ".tsv")
        written = _write(path, annotations, drop_regions=csv, origin=self.file_origin())
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
            box = QMessageBox(QMessageBox.Icon.Question, "Import annotations",
                              "The annotation layers are not empty.", parent=self)
            merge = box.addButton("Merge", QMessageBox.ButtonRole.AcceptRole)
            replace = box.addButton(
                "Replace (current kept in the autosave backups)" if self.store is not None
                else "Replace (current annotations are discarded)",
                QMessageBox.ButtonRole.DestructiveRole)
            box.addButton(QMessageBox.StandardButton.Cancel)
            box.exec()
            if box.clickedButton() not in (merge, replace):
                return
            mode = "merge" if box.clickedButton() is merge else "replace"
        self._guard(self.import_file, path, mode=mode)

    def _export_dialog(self):
        path, _ = QFileDialog.getSaveFileName(self, "Export annotations", "annotations.geojson",
                                              "QuPath GeoJSON (*.geojson);;Cell points CSV (*.csv)")
        if path:
            self._guard(self.export_file, path)

    def _on_layer_inserted(self, event):
        info = event.value.metadata.get("xhisto") if hasattr(event.value, "metadata") else None
        if isinstance(info, dict) and "kind" not in info:
            index = self.viewer.layers.index(event.value)
            if index > 0:  # the opaque slide goes under the annotation layers
                from qtpy.QtCore import QTimer

                QTimer.singleShot(0, lambda: self._move_to_bottom(event.value))
            self.annotations.refresh_frames()
            if self.autosave_box.isChecked():
                self._guard(self.set_autosave, True)

    def _move_to_bottom(self, layer):
        if layer in self.viewer.layers:
            self.viewer.layers.move(self.viewer.layers.index(layer), 0)

    def _on_layer_removed(self, event):
        self.annotations.forget(event.value)
        self._refresh_lists()
