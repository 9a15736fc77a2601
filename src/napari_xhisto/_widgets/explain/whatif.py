""""What if healthy?" in the Explain widget: inpaint a drawn region and re-score its patches.

The user draws (or selects) a shape in a Shapes layer and presses the button; the region is
filled with healthy tissue by the inpainter (``napari_xhisto.counterfactual.whatif``, in a worker
with progress), and the panel adds

* an RGBA image layer with the inpainted tissue, aligned on the slide (transparent outside the
  region, so the slide shows around it);
* two probability layers, p(class) before and after, one cell per patch the region touches;
* a table of those numbers (patch, p before, p after, change) and a one-line summary.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from .. import layers as L
from ..common.workers import notify_error

TOOLTIP = ("fill the selected shape (or the last shape of the active Shapes layer) with healthy "
           "tissue painted by the inpainter, and show p(class) before and after for the patches "
           "it touches")


def region_polygon(viewer, slide_layer) -> np.ndarray:
    """Level-0 (row, col) vertices of the shape to fill; ``ValueError`` when there is none.

    The shape is the first selected one of the active Shapes layer, else its last shape, else
    the last shape of any Shapes layer.
    """
    from napari.layers import Shapes

    active = viewer.layers.selection.active
    candidates = [active] if isinstance(active, Shapes) else []
    candidates += [ly for ly in reversed(list(viewer.layers))
                   if isinstance(ly, Shapes) and ly is not active]
    for layer in candidates:
        if len(layer.data) == 0:
            continue
        selected = sorted(layer.selected_data)
        index = selected[0] if selected else len(layer.data) - 1
        verts = np.asarray(layer.data[index], np.float64)[:, -2:]
        if len(verts) < 3:
            continue  # a line or a point has no inside
        world = np.array([layer.data_to_world(v)[-2:] for v in verts])
        return np.array([L.world_to_level0(p, scale=slide_layer.scale,
                                           translate=slide_layer.translate) for p in world])
    raise ValueError("draw a rectangle or polygon in a Shapes layer (and select it) to ask "
                     "'what if healthy?'")


def result_layers(result, *, mpp: float, slide_name: str, slide_path=None) -> list[tuple]:
    """LayerData tuples: the inpainted tissue (RGBA) and p(class) before / after."""
    rgba = np.concatenate([result.after, np.where(result.hole, 255, 0).astype(np.uint8)[..., None]],
                          axis=-1)
    meta = {"kind": "what-if", "of": slide_name, "summary": result.summary(),
            "patches": result.patches, "provenance": result.provenance,
            "placement": result.placement.to_dict()}
    out = [(rgba, {"name": f"what-if healthy: {slide_name}", "rgb": True,
                   **result.placement.layer_transform(mpp), "units": L.UNITS,
                   "metadata": {"xhisto": meta}}, "image")]
    cls = result.class_name
    for which, probs in (("before", result.p_before), ("after", result.p_after)):
        data, kwargs, kind = L.probability_layer_data(
            probs, result.grid_placement, class_index=0, class_names=[cls], mpp=mpp,
            provenance={**result.provenance, "what_if": which}, slide_path=slide_path,
            name=f"p({cls}) {which} what-if: {slide_name}", opacity=0.5)
        out.append((data, kwargs, kind))
    return out


def summary_text(result) -> str:
    s = result.summary()
    if not s["n_patches"]:
        return "the region touches no patch"
    return (f"p({s['class']}) over {s['n_patches']} patch(es): mean {s['mean_p_before']:.3f} → "
            f"{s['mean_p_after']:.3f}, max {s['max_p_before']:.3f} → {s['max_p_after']:.3f}")


class WhatIfPanel(QGroupBox):
    """The "What if healthy?" box of the Explain widget (``widget``: the ExplainWidget)."""

    def __init__(self, widget, parent=None):
        super().__init__("What if healthy?", parent)
        self.widget = widget
        self.inpainter_path = None  # None: the bundled demo inpainter
        self.result = None
        self.layers = []
        self.worker = None
        lay = QVBoxLayout(self)
        self.run_button = QPushButton("What if healthy?")
        self.run_button.setToolTip(TOOLTIP)
        self.inpainter_button = QPushButton("Inpainter: demo")
        self.inpainter_button.setToolTip("the inpainter (YAML spec from xhisto train-inpainter); "
                                         "it must match the model's patch size and µm/px")
        lay.addWidget(self.run_button)  # one per row: the dock must not need sideways scrolling
        lay.addWidget(self.inpainter_button)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        lay.addWidget(self.summary)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["patch", "before", "after", "Δp"])
        for col, tip in enumerate(["patch (row, col) of the model's grid", "p(class) before",
                                   "p(class) after inpainting", "after - before"]):
            self.table.horizontalHeaderItem(col).setToolTip(tip)
        self.table.verticalHeader().setVisible(False)
        # the four columns share the dock's width: no sideways scrolling inside the table
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setMinimumWidth(120)  # scrolls inside itself rather than widening the dock
        self.table.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.table.setVisible(False)
        lay.addWidget(self.table)
        self.run_button.clicked.connect(self.run)
        self.inpainter_button.clicked.connect(self._choose_inpainter)

    def _choose_inpainter(self):
        path, _ = QFileDialog.getOpenFileName(self, "Inpainter spec", "",
                                              "Inpainter spec (*.yaml *.yml);;All (*)")
        self.set_inpainter(path or None)

    def set_inpainter(self, path):
        self.inpainter_path = path
        name = "demo" if not path else str(path).replace("\\", "/").rsplit("/", 1)[-1]
        self.inpainter_button.setText(f"Inpainter: {name}")

    def run(self):
        """Start the what-if for the chosen shape; returns the worker (None when refused)."""
        w = self.widget
        if w._busy():
            return None
        if self.worker is not None:
            from napari.utils.notifications import show_info

            show_info("a what-if is running: wait for it or press Cancel")
            return None
        try:
            layer, path, mpp, _ = w.controller.slide_info(w.slide_combo.currentText())
            polygon = region_polygon(w.viewer, layer)
        except ValueError as exc:
            notify_error(exc)
            return None
        target = w.target_combo.currentText() or None
        slide_name = layer.name
        inpainter = self.inpainter_path or "demo"

        def make():
            from ...counterfactual.whatif import what_if_healthy

            slide = w.controller.slide(layer, path)
            model = w.controller.model()
            return what_if_healthy(slide, polygon, model, inpainter, target=target)

        def done(result):
            self.show_result(result, mpp=mpp, slide_name=slide_name, slide_path=path)

        def finished(cancelled):
            self.worker = None
            if cancelled:
                self.summary.setText("cancelled")

        self.summary.setText("inpainting the region…")
        self.worker = w._run(make, "what if healthy?", done, finished)
        return self.worker

    def show_result(self, result, *, mpp: float, slide_name: str, slide_path=None):
        viewer = self.widget.viewer
        for ly in self.layers:  # the previous what-if's layers are replaced, nothing else
            if ly in viewer.layers:
                viewer.layers.remove(ly)
        self.layers = []
        for data, kwargs, kind in result_layers(result, mpp=mpp, slide_name=slide_name,
                                                slide_path=slide_path):
            self.layers.append(L.add_below_annotations(viewer, data, kwargs, kind))
        self.result = result
        self.summary.setText(summary_text(result))
        self.table.setRowCount(len(result.patches))
        for i, p in enumerate(result.patches):
            cells = (f"({p['row']}, {p['col']})", f"{p['p_before']:.3f}", f"{p['p_after']:.3f}",
                     f"{p['p_after'] - p['p_before']:+.3f}")
            for j, text in enumerate(cells):
                self.table.setItem(i, j, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.table.setVisible(bool(result.patches))


def add_whatif_panel(widget) -> WhatIfPanel:
    """Put the panel into the Explain widget's layout, above the progress bar."""
    panel = WhatIfPanel(widget)
    lay = widget.layout()
    index = lay.indexOf(widget.compare_button)
    lay.insertWidget(index + 1 if index >= 0 else lay.count(), panel)
    return panel
