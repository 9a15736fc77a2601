"""The docked "Export" widget: its view wired to :class:`ExportController`.

It asks for a file, confirms before replacing one, runs long writes in a worker thread with
progress and Cancel, and says in a warning (not an error) when an export would be empty.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QFileDialog, QMessageBox

from ...errors import XhistoError
from .._workers import notify_error, start_generator
from ..common.parts import follow_layer_list, set_items
from .controller import ExportController
from .view import ExportView

FILTERS = {"ome-tiff": ("OME-TIFF (*.ome.tif *.ome.tiff)", ".ome.tif"), "rgb": ("SVS (*.svs)", ".svs"),
           "png": ("PNG (*.png)", ".png"), "contours": ("GeoJSON (*.geojson)", ".geojson"),
           "report": ("HTML (*.html)", ".html")}


class ExportWidget(ExportView):
    """Exports of the chosen heatmap layer: OME-TIFF, RGB SVS, PNG of the view, contours, report."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.controller = ExportController(napari_viewer)
        self.worker = None
        for key, button in self.buttons.items():
            button.clicked.connect(lambda _=False, k=key: self.export(k))
        self.layer_combo.currentTextChanged.connect(self._describe)
        follow_layer_list(self, self.viewer, self._refresh)
        self._refresh()

    def _refresh(self, event=None):
        names = self.controller.layer_names()
        set_items(self.layer_combo, names)
        for button in self.buttons.values():
            button.setEnabled(bool(names))
        self._describe()

    def _describe(self, *_):
        name = self.layer_combo.currentText()
        self.description.setText(self.controller.describe(name) if name else "")

    # ---- what to export (kept for scripts and tests)
    def heatmap_layer(self):
        return self.controller.layer(self.layer_combo.currentText())

    def source(self):
        return self.controller.source(self.layer_combo.currentText())

    def slide(self):
        return self.controller.slide(self.layer_combo.currentText())

    def view_region(self, source, slide):
        return self.controller.view_region(source, slide)

    # ---- files
    def ask_save_path(self, kind: str) -> Path | None:
        """A file to write (None when cancelled); the name gets the format's suffix."""
        filt, suffix = FILTERS[kind]
        name = f"{self.layer_combo.currentText() or 'heatmap'}{suffix}".replace(" ", "_")
        path, _ = QFileDialog.getSaveFileName(self, f"Export {kind}", name, filt,
                                              options=QFileDialog.Option.DontConfirmOverwrite)
        if not path:
            return None
        if not path.lower().endswith(suffix):
            path += suffix
        return Path(path)

    def confirm_overwrite(self, path: Path) -> bool:
        """Ask before replacing a file the user already has."""
        answer = QMessageBox.question(
            self, "Replace file?", f"{path} exists. Replace it?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    # ---- exporting
    def export(self, kind: str, path=None):
        """Export the chosen layer as ``kind``; asks for ``path`` when not given."""
        from napari.utils.notifications import show_info, show_warning

        from ...export.contours import EmptyContoursError

        if self.worker is not None:
            show_info("An export is running: wait for it or press Cancel")
            return None
        name = self.layer_combo.currentText()
        try:
            self.controller.layer(name)
            path = Path(path) if path is not None else self.ask_save_path(kind)
            if path is None:
                return None
            overwrite = path.exists()
            if overwrite and not self.confirm_overwrite(path):
                return None
            return self._export(kind, name, path, overwrite)
        except EmptyContoursError as exc:
            show_warning(str(exc))
            self.status.setText(f"contours: {exc}")
            return None
        except (XhistoError, ValueError, OSError) as exc:
            notify_error(exc, context=f"export {kind}")
            self.status.setText(f"export {kind} failed: {exc}")
            return None

    def _export(self, kind: str, name: str, path: Path, overwrite: bool):
        c = self.controller
        if kind == "ome-tiff":
            return self._run(c.ome_tiff(name, path, float16=self.float16_box.isChecked(),
                                        overwrite=overwrite), "export OME-TIFF")
        if kind == "rgb":
            return self._run(c.rgb(name, path, full_slide=self.full_slide_box.isChecked(),
                                   blend=self.blend_box.isChecked(), overwrite=overwrite),
                             "export RGB overlay")
        if kind == "png":
            layout = c.png(name, path, overwrite=overwrite)
            self._done(path)
            return layout
        if kind == "contours":
            out, regions = c.contours(name, path, threshold=self.threshold.value(),
                                      above=not self.below_box.isChecked(), overwrite=overwrite)
            self._done(f"{out} ({len(regions)} polygons)")
            return regions
        if kind == "report":
            out = c.report(name, path, metrics_path=self.metrics_edit.text(),
                           annotations_path=self.annotations_edit.text(), overwrite=overwrite)
            self._done(out)
            return out
        raise ValueError(f"unknown export {kind!r}")

    def _done(self, path):
        from napari.utils.notifications import show_info

        self.status.setText(f"saved {path}")
        show_info(f"saved {path}")

    def _run(self, make_generator, label):
        def finished(cancelled):
            self.worker = None
            if cancelled:
                self.status.setText(f"{label}: cancelled")

        self.worker = start_generator(make_generator, label=label, on_result=self._done,
                                      on_finished=finished, progress_bar=self.progress,
                                      cancel_button=self.cancel_button)
        return self.worker
