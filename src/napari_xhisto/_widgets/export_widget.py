"""The docked "Export" widget: save a heatmap or probability layer in every export format.

Thin: it picks a layer by ``metadata["xhisto"]["kind"]``, asks for a file, confirms before
replacing one, and calls :mod:`napari_xhisto.export` (long writes in a worker thread with
progress and Cancel). The PNG snapshot is the current view, through the same
:func:`~napari_xhisto.export.snapshot.write_snapshot` the CLI uses.
"""

from __future__ import annotations

import json
from pathlib import Path

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..errors import XhistoError
from ..geometry import Placement
from . import layers as L
from ._workers import notify_error, start_generator

EXPORT_KINDS = ("heatmap", "probability")


class ExportWidget(QWidget):
    """Exports of the chosen heatmap layer: OME-TIFF, RGB SVS, PNG of the view, contours, report."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.worker = None
        self._slides: dict = {}
        self._build()
        self.viewer.layers.events.inserted.connect(self._refresh)
        self.viewer.layers.events.removed.connect(self._refresh)
        self._refresh()

    # -- layout
    def _build(self):
        box = QVBoxLayout(self)
        form = QFormLayout()
        self.layer_combo = QComboBox()
        form.addRow("heatmap layer", self.layer_combo)
        self.float16_box = QCheckBox("store float16 (half the size)")
        form.addRow("OME-TIFF", self.float16_box)
        self.full_slide_box = QCheckBox("whole-slide canvas")
        self.blend_box = QCheckBox("blend over grey H&E")
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
        self.below_box = QCheckBox("below (negative evidence)")
        th_row = QHBoxLayout()
        th_row.addWidget(self.threshold)
        th_row.addWidget(self.below_box)
        form.addRow("contour threshold", th_row)
        self.metrics_edit = QLineEdit()
        self.metrics_edit.setPlaceholderText("optional metrics JSON (xhisto evaluate)")
        self.annotations_edit = QLineEdit()
        self.annotations_edit.setPlaceholderText("optional annotations (.geojson / .csv)")
        form.addRow("report metrics", self._with_browse(self.metrics_edit, "JSON (*.json)"))
        form.addRow("report annotations", self._with_browse(self.annotations_edit,
                                                             "Annotations (*.geojson *.json *.csv)"))
        box.addLayout(form)
        self.buttons = {}
        for key, text in (("ome-tiff", "Save OME-TIFF…"), ("rgb", "Save RGB overlay (SVS)…"),
                          ("png", "Snapshot of the view (PNG)…"), ("contours", "Contours (GeoJSON)…"),
                          ("report", "Report (HTML)…")):
            button = QPushButton(text)
            button.clicked.connect(lambda _=False, k=key: self.export(k))
            box.addWidget(button)
            self.buttons[key] = button
        row = QHBoxLayout()
        self.progress = QProgressBar()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        row.addWidget(self.progress)
        row.addWidget(self.cancel_button)
        box.addLayout(row)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        box.addWidget(self.status)
        box.addStretch(1)

    def _with_browse(self, edit, filt):
        holder = QWidget()
        row = QHBoxLayout(holder)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit)
        button = QPushButton("…")
        button.clicked.connect(lambda: edit.setText(
            QFileDialog.getOpenFileName(self, "Choose a file", "", filt)[0] or edit.text()))
        row.addWidget(button)
        return holder

    def _refresh(self, event=None):
        names = [ly.name for ly in self.viewer.layers
                 if ly.metadata.get("xhisto", {}).get("kind") in EXPORT_KINDS]
        current = self.layer_combo.currentText()
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        for button in self.buttons.values():
            button.setEnabled(bool(names))

    # -- what to export
    def heatmap_layer(self):
        name = self.layer_combo.currentText()
        if name not in self.viewer.layers:
            raise XhistoError("no heatmap layer: explain a region or compute a probability map first")
        return self.viewer.layers[name]

    def source(self):
        """The chosen layer as a tile source (level 0 of a multiscale layer, read window by window)."""
        from ..export.tiles import ArrayTiles

        layer = self.heatmap_layer()
        meta = layer.metadata["xhisto"]
        data = layer.data[0] if layer.multiscale else layer.data
        prov = {"kind": meta.get("kind"), **dict(meta.get("provenance", {}))}
        if meta.get("class_name"):
            prov.setdefault("target", meta["class_name"])
        return ArrayTiles(data, Placement.from_dict(meta["placement"]), mpp=meta.get("mpp"),
                          provenance=prov)

    def slide(self):
        """The slide under the layer: the reader's Slide of a slide layer, else opened by path."""
        meta = self.heatmap_layer().metadata["xhisto"]
        path = meta.get("slide_path")
        for ly in self.viewer.layers:
            shared = ly.metadata.get("xhisto_slide")
            if shared is not None and (path is None or str(getattr(shared, "path", "")) == str(path)):
                return shared
        if path and Path(path).exists():
            if path not in self._slides:
                from ..slide import open_slide

                self._slides[path] = open_slide(path, mpp=meta.get("mpp"))
            return self._slides[path]
        return None

    def view_region(self, source, slide):
        """The level-0 region the viewer shows (slide layers have scale = mpp, translate = 0)."""
        import math

        mpp = source.mpp or 1.0
        if slide is not None:
            shape = tuple(slide.dimensions)
        else:
            p = source.placement
            shape = (math.ceil(p.origin_row + source.shape[0] * p.step_row),
                     math.ceil(p.origin_col + source.shape[1] * p.step_col))
        cam = self.viewer.scene.camera
        return L.view_region(cam.center, cam.zoom, self.viewer.canvas.size, scale=(mpp, mpp),
                             translate=(0.0, 0.0), slide_shape=shape)

    # -- files
    _FILTERS = {"ome-tiff": ("OME-TIFF (*.ome.tif *.ome.tiff)", ".ome.tif"), "rgb": ("SVS (*.svs)", ".svs"),
                "png": ("PNG (*.png)", ".png"), "contours": ("GeoJSON (*.geojson)", ".geojson"),
                "report": ("HTML (*.html)", ".html")}

    def ask_save_path(self, kind: str) -> Path | None:
        """A file to write (None when cancelled); the name gets the format's suffix."""
        filt, suffix = self._FILTERS[kind]
        name = f"{self.layer_combo.currentText() or 'heatmap'}{suffix}".replace(" ", "_")
        path, _ = QFileDialog.getSaveFileName(self, f"Export {kind}", name, filt,
                                              options=QFileDialog.DontConfirmOverwrite)
        if not path:
            return None
        if not path.lower().endswith(suffix):
            path += suffix
        return Path(path)

    def confirm_overwrite(self, path: Path) -> bool:
        """Ask before replacing a file the user already has."""
        answer = QMessageBox.question(self, "Replace file?", f"{path} exists. Replace it?",
                                      QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return answer == QMessageBox.Yes

    # -- exporting
    def export(self, kind: str, path=None):
        """Export the chosen layer as ``kind``; asks for ``path`` when not given."""
        if self.worker is not None:
            from napari.utils.notifications import show_info

            show_info("An export is running: wait for it or press Cancel")
            return None
        try:
            source = self.source()
            path = Path(path) if path is not None else self.ask_save_path(kind)
            if path is None:
                return None
            overwrite = path.exists()
            if overwrite and not self.confirm_overwrite(path):
                return None
            return getattr(self, "_export_" + kind.replace("-", "_"))(path, source, overwrite)
        except (XhistoError, ValueError, OSError) as exc:
            notify_error(exc, context=f"export {kind}")
            self.status.setText(f"export {kind} failed: {exc}")
            return None

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

    def _export_ome_tiff(self, path, source, overwrite):
        from ..export.tiled_writer import iter_write_heatmap_tiles

        dtype = "float16" if self.float16_box.isChecked() else "float32"
        return self._run(lambda: iter_write_heatmap_tiles(
            path, source.shape, source.read, source.placement, mpp=source.mpp,
            provenance=source.provenance, dtype=dtype, overwrite=overwrite), "export OME-TIFF")

    def _export_rgb(self, path, source, overwrite):
        from ..export.rgb import iter_write_rgb_overlay

        slide = self.slide()
        full, blend = self.full_slide_box.isChecked(), self.blend_box.isChecked() and slide is not None
        if full and slide is None:
            raise XhistoError("a whole-slide overlay needs the slide: open it, or untick 'whole-slide'")
        vmax = self.heatmap_layer().contrast_limits[1]
        return self._run(lambda: iter_write_rgb_overlay(
            path, source, mpp=source.mpp, slide=slide, full_slide=full, blend_slide=blend,
            vmax=abs(vmax) or None, overwrite=overwrite), "export RGB overlay")

    def _export_png(self, path, source, overwrite):
        from ..export.snapshot import write_snapshot

        slide = self.slide()
        layer = self.heatmap_layer()
        region = self.view_region(source, slide)
        layout = write_snapshot(path, region, source, mpp=source.mpp, slide=slide,
                                vmax=abs(layer.contrast_limits[1]) or None, alpha=float(layer.opacity),
                                overwrite=overwrite)
        self._done(path)
        return layout

    def _export_contours(self, path, source, overwrite):
        from ..export.contours import export_contours

        values = source.read(0, 0, *source.shape)
        out, regions = export_contours(path, values, source.placement, threshold=self.threshold.value(),
                                       above=not self.below_box.isChecked(), overwrite=overwrite)
        self._done(f"{out} ({len(regions)} polygons)")
        return regions

    def _export_report(self, path, source, overwrite):
        from ..export.report import write_report
        from ..export.snapshot import render_snapshot

        slide = self.slide()
        metrics = annotations = None
        if self.metrics_edit.text().strip():
            metrics = json.loads(Path(self.metrics_edit.text().strip()).read_text(encoding="utf-8"))
        if self.annotations_edit.text().strip():
            from ..annotations import read_annotations

            annotations = read_annotations(self.annotations_edit.text().strip())
        region = self.view_region(source, slide)
        snap = render_snapshot(region, source, mpp=source.mpp, slide=slide)
        out = write_report(path, slide=slide, heatmap=source, snapshots=[("current view", snap)],
                           metrics=metrics, annotations=annotations, overwrite=overwrite)
        self._done(out)
        return out
