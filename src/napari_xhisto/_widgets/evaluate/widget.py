"""The docked "Evaluate" widget: its view wired to its controller, the work in a worker thread.

Pressing Evaluate snapshots the chosen layers (GUI thread, no data read) and runs
:func:`~.core.iter_evaluate_job` in a napari worker with a progress bar and Cancel: the worker
reads the explained area and hands the computing to a separate process (:mod:`.process`); the
result fills the tables and shows the plots (already drawn there).
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog, QListWidgetItem

from ...errors import XhistoError
from ...progress import run_to_end
from ..common.parts import set_items
from .controller import NONE, EvaluateController, Settings
from .core import iter_evaluate_job
from .view import EvaluateView, fill


def _checked(lst) -> list[str]:
    return [lst.item(i).text() for i in range(lst.count())
            if lst.item(i).checkState() == Qt.CheckState.Checked]


class EvaluateWidget(EvaluateView):
    """Cell ROC, region relevance, localisation and bias diagnostics of a heatmap layer."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.controller = EvaluateController(napari_viewer)
        self.worker = None
        self._patch_for: str | None = None
        self._user_prob = False  # a probability layer is proposed until the user picks here
        self.prob_box.activated.connect(lambda _i: setattr(self, "_user_prob", True))
        self.run_button.clicked.connect(self._on_run)
        self.json_button.clicked.connect(self._ask_json)
        self.csv_button.clicked.connect(self._ask_csv)
        self.plots_button.clicked.connect(self._ask_png)
        self.tile_table.cellClicked.connect(lambda row, _c: self.controller.select_tile(row))
        self.region_table.cellClicked.connect(lambda row, _c: self.controller.select_region(row))
        self.hotspot_table.cellClicked.connect(lambda row, _c: self.controller.show_hotspot(row))
        self.heatmap_box.currentTextChanged.connect(lambda _t: self._heatmap_changed())
        self.points_list.itemChanged.connect(lambda _i: self._refresh_classes())
        self.shapes_list.itemChanged.connect(lambda _i: self._refresh_classes())
        layers = self.viewer.layers.events
        layers.inserted.connect(self._on_inserted)
        layers.removed.connect(self.refresh_layers)
        self.destroyed.connect(lambda *_: self._disconnect(layers))
        self.refresh_layers()
        from .calibration import add_calibration_tab

        self.calibration = add_calibration_tab(self)  # temperature scaling (seed 002)

    def _disconnect(self, layers) -> None:
        for ev, cb in ((layers.inserted, self._on_inserted), (layers.removed, self.refresh_layers)):
            try:
                ev.disconnect(cb)
            except (TypeError, ValueError, RuntimeError):
                pass

    # ---- choices
    def _on_inserted(self, event) -> None:
        self.controller.note_inserted(event.value)
        name = event.value.name
        newest = (name if name in self.controller.heatmap_names()
                  and not self.controller.is_unpainted_canvas(name) else None)
        self.refresh_layers(newest=newest)

    @staticmethod
    def _fill_checkable(lst, names, default=lambda name: False) -> None:
        """Refill a checkable list, keeping the ticks; new names ticked by ``default``."""
        checked = set(_checked(lst))
        known = {lst.item(i).text() for i in range(lst.count())}
        lst.blockSignals(True)
        lst.clear()
        for name in names:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            on = name in checked or (name not in known and default(name))
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
            lst.addItem(item)
        lst.blockSignals(False)

    def _heatmap_changed(self) -> None:
        current = self.heatmap_box.currentText()
        self._fill_checkable(self.compare_list,
                             [n for n in self.controller.heatmap_names() if n != current])
        self._refresh_classes()

    def refresh_layers(self, *_, newest: str | None = None) -> None:
        """Refill the choices; a heatmap layer that just arrived becomes the chosen one."""
        c = self.controller
        self._fill_checkable(self.points_list, c.points_names(), c.checked_by_default)
        self._fill_checkable(self.shapes_list, c.shapes_names(), c.checked_by_default)
        heatmaps = c.heatmap_names()
        set_items(self.heatmap_box, heatmaps, newest)
        if self.heatmap_box.currentText() not in heatmaps and heatmaps:
            self.heatmap_box.setCurrentIndex(0)  # the newest
        current = self.heatmap_box.currentText()
        self._fill_checkable(self.compare_list, [n for n in heatmaps if n != current])
        probs = c.probability_names()
        propose = probs[0] if probs and not self._user_prob else None
        set_items(self.prob_box, [NONE, *probs],
                   None if self.prob_box.currentText() in probs else propose)
        self._refresh_classes()

    def _refresh_classes(self) -> None:
        c, heatmap = self.controller, self.heatmap_box.currentText() or None
        classes = c.cell_classes(_checked(self.points_list), heatmap)
        current = self.positive_box.currentText()
        set_items(self.positive_box, classes,
                   current if current in classes else c.default_positive(heatmap, classes))
        regions = c.region_classes(_checked(self.shapes_list))
        default = "tumour area" if "tumour area" in regions else None
        set_items(self.localize_box, [NONE, *regions],
                   None if self.localize_box.currentText() in regions else default)
        if heatmap != self._patch_for:
            self._patch_for = heatmap
            patch_um = c.default_patch_um(heatmap)
            if patch_um:
                self.patch_spin.setValue(patch_um)

    def set_checked(self, lst, names) -> None:
        """Tick exactly the layers ``names`` in ``lst`` (points, shapes or compare list)."""
        for i in range(lst.count()):
            on = lst.item(i).text() in names
            lst.item(i).setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    _checked_names = staticmethod(_checked)

    def settings(self) -> Settings:
        return Settings(
            heatmap=self.heatmap_box.currentText() or None, points=_checked(self.points_list),
            shapes=_checked(self.shapes_list), positive=self.positive_box.currentText() or None,
            localize=self.localize_box.currentText() or None, radius_um=self.radius_spin.value(),
            tile_um=self.tile_spin.value(), n_random=self.random_spin.value(),
            patch_um=self.patch_spin.value(), compare=_checked(self.compare_list),
            prob=self.prob_box.currentText() or None, radius_sweep=self.sweep_box.isChecked(),
            sweep_from_um=self.sweep_from.value(), sweep_to_um=self.sweep_to.value(),
            n_boot=self.boot_spin.value())

    # ---- running
    def showEvent(self, event):  # noqa: N802 (Qt name)
        """Start the compute process when the widget is first seen, so Evaluate answers fast."""
        from .process import SERVER

        SERVER.start_soon()
        super().showEvent(event)

    @property
    def result(self) -> dict | None:
        return self.controller.result

    def _on_run(self) -> None:
        """Evaluate in a worker thread (progress bar, Cancel); fill the tabs at the end."""
        from .._workers import notify_error, start_generator

        if self.worker is not None:
            return
        self._refresh_classes()  # a class map changed in Annotate changes the roles on offer
        settings = self.settings()
        try:
            job = self.controller.job(settings)
        except (XhistoError, ValueError) as exc:
            notify_error(exc)
            return
        self.run_button.setEnabled(False)
        self.summary.setText("evaluating…")

        def finished(cancelled: bool) -> None:
            self.worker = None
            self.run_button.setEnabled(True)
            if cancelled:
                self.summary.setText("cancelled: nothing changed")
            elif self.summary.text() == "evaluating…":
                self.summary.setText("")

        self.worker = start_generator(
            lambda: iter_evaluate_job(job, in_process=True), label="Evaluate",
            on_result=lambda outcome: self._show(outcome, settings), on_finished=finished,
            progress_bar=self.progress, cancel_button=self.cancel_button,
            # the widget's own bar is enough: a second one in the activity dock is one more
            # window repaint per update (a frame's cost under Mesa)
            activity_dock=False)

    def evaluate(self) -> dict:
        """Evaluate on the GUI thread (scripts and tests) and fill the tabs; returns the metrics."""
        self._refresh_classes()
        settings = self.settings()
        return self._show(run_to_end(iter_evaluate_job(self.controller.job(settings))), settings)

    def _show(self, outcome, settings) -> dict:
        from ..parts import qimage

        c = self.controller
        result = c.accept(outcome, settings)
        fill(self.auc_table, c.auc_rows())
        fill(self.diff_table, c.difference_rows())
        headers = c.radius_headers()
        self.radius_table.setColumnCount(max(len(headers), 2))
        self.radius_table.setHorizontalHeaderLabels(headers or ["radius µm", "AUC"])
        fill(self.radius_table, c.radius_rows())
        captions = c.captions()
        for label, key in ((self.auc_caption, "auc"), (self.radius_caption, "radius"),
                           (self.loc_caption, "localisation")):
            label.setText(captions[key])
        fill(self.tile_table, c.tile_table())
        fill(self.region_table, c.region_rows())
        fill(self.loc_table, c.localisation_rows())
        fill(self.hotspot_table, c.hotspot_rows())
        fill(self.compare_table, c.compare_rows())
        self.bias_label.setText(c.flags_text())
        for view, key in ((self.roc_plot, "roc"), (self.radius_plot, "radius"),
                          (self.loc_plot, "dice"), (self.rates_plot, "rates"),
                          (self.bias_plot, "bias")):
            if key in outcome.images:
                view.set_pixmap(qimage(outcome.images[key]))
        self.summary.setText(c.summary())
        return result

    # what the last run found (None before the first)
    def _outcome(self, name):
        outcome = self.controller.outcome
        return None if outcome is None else getattr(outcome, name)

    profile = property(lambda self: self._outcome("profile"))
    class_means = property(lambda self: self._outcome("class_means"))
    hotspots = property(lambda self: self._outcome("hotspots"))
    comparison = property(lambda self: self._outcome("comparison"))

    def export_json(self, path):
        return self.controller.export_json(path)

    def export_csv(self, path):
        return self.controller.export_csv(path)

    def save_plots(self, folder):
        return self.controller.save_plots(folder)

    def _guarded(self, func, *args):
        from .._workers import notify_error

        try:
            return func(*args)
        except (XhistoError, OSError) as exc:
            notify_error(exc)
            return None

    def _ask_json(self):
        path, _ = QFileDialog.getSaveFileName(self, "Save the numbers (JSON)", "metrics.json", "*.json")
        if path:
            self._guarded(self.export_json, path)

    def _ask_csv(self):
        path, _ = QFileDialog.getSaveFileName(self, "Save the tables (CSV)", "metrics.csv", "*.csv")
        if path:
            self._guarded(self.export_csv, path)

    def _ask_png(self):
        folder = QFileDialog.getExistingDirectory(self, "Folder for the plots (PNG)")
        if folder:
            self._guarded(self.save_plots, folder)
