"""The Evaluate widget's Calibration tab: reliability diagram, ECE/MCE and the temperature.

The model runs over the tissue patches of the chosen slide layer; the Evaluate widget's ticked
cell and region layers label them (the rule of ``xhisto calibrate``, see
:mod:`napari_xhisto.metrics.patch_labels`). The temperature is fitted on a seeded validation
split and scored on the test split; the bins are also drawn as box plots over repeated splits
(seed 002). The work runs in a worker (progress, Cancel); "Save calibrated spec…" writes what
``xhisto calibrate`` writes.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ...errors import XhistoError
from ...progress import run_to_end
from ..common.parts import follow_layer_list, set_items
from .calibration_core import CalibrationRequest, iter_calibration_job, summary_rows
from .view import PlotView, caption

RULE_TIP = ("What gives a patch its label. cells: the class of most annotated cells inside it "
            "(a tie goes to the positive class; fewer than the minimum: skipped). regions: the "
            "class of the region covering its centre (none, or regions of different classes: "
            "skipped). auto: cells when there are any.")


def _spin(lo, hi, value, tip) -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setValue(value)
    s.setToolTip(tip)
    return s


class CalibrationPanel(QWidget):
    """Controls, plot and numbers of the Calibration tab.

    Parameters
    ----------
    viewer : napari.Viewer
    annotation_layers : callable
        Returns ``(points layers, shapes layers)`` that label the patches.
    """

    def __init__(self, viewer, annotation_layers, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.annotation_layers = annotation_layers
        self.worker = None
        self.outcome = None
        self.model_box = QComboBox()
        self.model_box.setEditable(True)
        self.model_box.addItem("demo")
        self.model_box.setToolTip("'demo' or a model spec file (.json/.yaml)")
        self.browse_button = QPushButton("…")
        self.browse_button.setToolTip("choose a model spec file")
        self.slide_box = QComboBox()
        self.slide_box.setToolTip("the slide layer whose tissue patches are run")
        self.rule_box = QComboBox()
        self.rule_box.addItems(["auto", "cells", "regions"])
        self.rule_box.setToolTip(RULE_TIP)
        self.min_cells_spin = _spin(1, 1000, 3, "fewest annotated cells a patch needs (cells)")
        self.splits_spin = _spin(1, 1000, 20, "repeated validation/test splits (box plots)")
        self.seed_spin = _spin(0, 2**31 - 1, 0, "seed of the splits")
        self.val_spin = QDoubleSpinBox()
        self.val_spin.setRange(0.05, 0.95)
        self.val_spin.setSingleStep(0.05)
        self.val_spin.setValue(0.5)
        self.val_spin.setToolTip("share of each class's patches used to fit the temperature")
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_box, 1)
        model_row.addWidget(self.browse_button)
        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow("model", model_row)
        form.addRow("slide", self.slide_box)
        form.addRow("patch label from", self.rule_box)
        form.addRow("min. cells per patch", self.min_cells_spin)
        form.addRow("validation share", self.val_spin)
        form.addRow("repeated splits", self.splits_spin)
        form.addRow("seed", self.seed_spin)
        self.run_button = QPushButton("Calibrate")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.save_button = QPushButton("Save calibrated spec…")
        self.save_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        run_row = QHBoxLayout()
        for b in (self.run_button, self.cancel_button):
            run_row.addWidget(b)
        self.status = caption("")
        self.plot = PlotView()
        self.numbers = QFormLayout()
        self.value_labels: dict[str, QLabel] = {}
        self.note = caption("Top-label ECE/MCE with 10 equal-width bins on the test split, "
                            "before (T = 1) → after temperature scaling; the labels come from "
                            "the ticked cell and region layers.")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(form)
        lay.addLayout(run_row)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.plot)
        lay.addLayout(self.numbers)
        lay.addWidget(self.note)
        lay.addWidget(self.save_button)
        self.run_button.clicked.connect(self._on_run)
        self.save_button.clicked.connect(self._ask_save)
        self.browse_button.clicked.connect(self._ask_model)
        follow_layer_list(self, viewer, self.refresh_slides)
        self.refresh_slides()

    # ---- choices
    def slide_layers(self) -> list:
        from ..layers import is_slide_layer

        return [ly for ly in self.viewer.layers if is_slide_layer(ly)]

    def refresh_slides(self, *_) -> None:
        set_items(self.slide_box, [ly.name for ly in self.slide_layers()])

    def request(self) -> CalibrationRequest:
        """The current choices; XhistoError with one line when something is missing."""
        from ...annotations import AnnotationSet, CellPoints
        from .layerdata import cells_from_layers, regions_from_layers

        name = self.slide_box.currentText()
        layer = next((ly for ly in self.slide_layers() if ly.name == name), None)
        if layer is None:
            raise XhistoError("no slide layer: open a slide to calibrate on")
        slide = layer.metadata.get("xhisto_slide") or layer.metadata["xhisto"]["slide_path"]
        mpp = layer.metadata.get("xhisto", {}).get("mpp")
        if not mpp:
            raise XhistoError(f"{name} has no µm per pixel: reopen it with an mpp override")
        points, shapes = self.annotation_layers()
        cells = cells_from_layers(points, float(mpp))[0] if points else None
        regions = regions_from_layers(shapes, float(mpp))[0] if shapes else []
        ann = AnnotationSet(cells if cells is not None else CellPoints.empty(), regions, {})
        if ann.is_empty():
            raise XhistoError("no annotated cells or regions: tick the cell or region layers "
                              "that label the patches (above the tabs)")
        model = self.model_box.currentText().strip() or "demo"
        return CalibrationRequest(model=model, slide=slide, annotations=ann,
                                  rule=self.rule_box.currentText(),
                                  min_cells=self.min_cells_spin.value(),
                                  n_splits=self.splits_spin.value(), seed=self.seed_spin.value(),
                                  val_fraction=round(self.val_spin.value(), 4))

    # ---- running
    def calibrate(self):
        """Calibrate on the GUI thread (scripts and tests); returns the outcome shown."""
        return self.show_outcome(run_to_end(iter_calibration_job(self.request())))

    def _on_run(self) -> None:
        from .._workers import notify_error, start_generator

        if self.worker is not None:
            return
        try:
            req = self.request()
        except (XhistoError, ValueError) as exc:
            notify_error(exc)
            return
        self.run_button.setEnabled(False)
        self.status.setText("calibrating…")

        def finished(cancelled: bool) -> None:
            self.worker = None
            self.run_button.setEnabled(True)
            if cancelled:
                self.status.setText("cancelled: nothing changed")
            elif self.status.text() == "calibrating…":
                self.status.setText("")

        self.worker = start_generator(lambda: iter_calibration_job(req), label="Calibrate",
                                      on_result=self.show_outcome, on_finished=finished,
                                      progress_bar=self.progress,
                                      cancel_button=self.cancel_button, activity_dock=False)

    def show_outcome(self, outcome):
        from ..parts import qimage

        self.outcome = outcome
        self.plot.set_pixmap(qimage(outcome.image))
        while self.numbers.rowCount():
            self.numbers.removeRow(0)
        self.value_labels = {}
        for what, value in summary_rows(outcome):
            label = QLabel(value)
            label.setWordWrap(True)
            self.value_labels[what] = label
            self.numbers.addRow(what, label)
        warn = outcome.report.get("warnings") or []
        self.status.setText(warn[0] if warn else "")
        self.save_button.setEnabled(True)
        return outcome

    # ---- files
    def save(self, path, *, force: bool = False) -> dict:
        """Write the calibrated spec (and its reliability PNG/JSON beside it)."""
        from ...models.calibrate import write_calibration

        if self.outcome is None:
            raise XhistoError("nothing calibrated yet: press Calibrate first")
        o = self.outcome
        settings = {"label_rule": o.request.rule, "min_cells": o.request.min_cells,
                    "seed": o.request.seed, "val_fraction": o.request.val_fraction,
                    "splits": o.request.n_splits, "tissue_threshold": o.request.tissue_threshold,
                    "from": "napari Evaluate widget, Calibration tab"}
        return write_calibration(o.model, o.data, o.report, o.study, path, settings=settings,
                                 force=force)

    def _ask_save(self) -> None:
        from .._workers import notify_error

        path, _ = QFileDialog.getSaveFileName(self, "Save the calibrated spec",
                                              "model-calibrated.yaml", "*.yaml *.yml *.json")
        if not path:
            return
        from ...models.calibrate import output_paths

        try:  # the dialog asked before replacing the spec; a PNG/JSON beside it is never replaced
            p = Path(path)
            beside = [q for k, q in output_paths(p).items() if k != "spec" and q.exists()]
            if beside:
                raise XhistoError(f"{beside[0]} exists: choose another name (it is kept)")
            self.save(p, force=True)
        except (XhistoError, OSError) as exc:
            notify_error(exc)

    def _ask_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model spec", "", "*.json *.yaml *.yml")
        if path:
            self.model_box.setCurrentText(path)


def add_calibration_tab(widget) -> CalibrationPanel:
    """Add the Calibration tab to an Evaluate widget; its ticked annotation layers label."""
    def layers():
        layer_list = widget.viewer.layers
        pts = [layer_list[n] for n in widget._checked_names(widget.points_list) if n in layer_list]
        shp = [layer_list[n] for n in widget._checked_names(widget.shapes_list) if n in layer_list]
        return pts, shp

    panel = CalibrationPanel(widget.viewer, layers)
    widget.tabs.addTab(panel, "Calibration")
    return panel
