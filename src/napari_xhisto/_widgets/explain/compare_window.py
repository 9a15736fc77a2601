"""The side-by-side window: one titled panel per compared layer, pan and zoom shared by all.

Each panel shows a :class:`~.compare.ComparePanel` image (the layer over the grey H&E of the
compared region, as napari draws it) in a ``QGraphicsView``; dragging pans and the wheel zooms
every panel together. Nothing else is shown: no annotation layers, no bare slide.
"""

from __future__ import annotations

import math

import numpy as np
from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import (
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QGridLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from .compare import ComparePanel, compare_layers, compare_panels
from .naming import length_label


def rgb_pixmap(rgb: np.ndarray) -> QPixmap:
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QPixmap.fromImage(QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy())


class PanelView(QGraphicsView):
    """A pannable, zoomable view of one panel image."""

    def __init__(self, panel: ComparePanel, parent=None):
        super().__init__(parent)
        self.panel = panel
        scene = QGraphicsScene(self)
        self.item = QGraphicsPixmapItem(rgb_pixmap(panel.rgb))
        scene.addItem(self.item)
        self.setScene(scene)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setMinimumSize(160, 160)
        self.sync = None  # set by the window: called after every pan or zoom

    def centre(self) -> QPointF:
        return self.mapToScene(self.viewport().rect().center())

    def zoom_by(self, factor: float) -> None:
        self.scale(factor, factor)
        if self.sync is not None:
            self.sync(self)

    def wheelEvent(self, event):  # noqa: N802 - Qt name
        self.zoom_by(1.25 if event.angleDelta().y() > 0 else 0.8)

    def scrollContentsBy(self, dx, dy):  # noqa: N802 - Qt name
        super().scrollContentsBy(dx, dy)
        if self.sync is not None:
            self.sync(self)


class CompareWindow(QWidget):
    """A grid of titled :class:`PanelView` s with one camera (see module docstring)."""

    def __init__(self, panels: list[ComparePanel], *, mpp: float | None = None, parent=None):
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle("napari-xhisto: side by side")
        self._syncing = False
        self.views: list[PanelView] = []
        self.titles: list[QLabel] = []
        lay = QVBoxLayout(self)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        lay.addWidget(self.caption)
        self.grid = QGridLayout()
        lay.addLayout(self.grid, 1)
        self.set_panels(panels, mpp=mpp)
        self.resize(1200, 700)

    def set_panels(self, panels: list[ComparePanel], *, mpp: float | None = None) -> None:
        for w in self.views + self.titles:
            self.grid.removeWidget(w)
            w.deleteLater()
        self.views, self.titles, self.panels = [], [], list(panels)
        # one row up to four maps (the usual comparison), a square-ish grid beyond
        cols = len(panels) if len(panels) <= 4 else math.ceil(math.sqrt(len(panels)))
        cols = max(cols, 1)
        for k, panel in enumerate(panels):
            title = QLabel(panel.title)
            title.setWordWrap(True)
            title.setAlignment(Qt.AlignmentFlag.AlignCenter)
            title.setToolTip(f"layer: {panel.layer_name}")
            view = PanelView(panel)
            view.sync = self._sync_from
            r, c = divmod(k, cols)
            self.grid.addWidget(title, 2 * r, c)
            self.grid.addWidget(view, 2 * r + 1, c)
            self.grid.setRowStretch(2 * r + 1, 1)
            self.titles.append(title)
            self.views.append(view)
        if panels:
            reg = panels[0].region
            size = (f"{length_label(reg.height * mpp)} x {length_label(reg.width * mpp)}"
                    if mpp else f"{reg.height} x {reg.width} px")
            self.caption.setText(f"{len(panels)} maps of one {size} region over the grey H&E "
                                 "(drag to pan, wheel to zoom: all panels follow)")

    def fit(self) -> None:
        """Show every panel's whole image (same zoom in all)."""
        for view in self.views:
            view.fitInView(view.item, Qt.AspectRatioMode.KeepAspectRatio)
        if self.views:
            self._sync_from(self.views[0])

    def _sync_from(self, source: PanelView) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            transform, centre = source.transform(), source.centre()
            for view in self.views:
                if view is not source:
                    view.setTransform(transform)
                    view.centerOn(centre)
        finally:
            self._syncing = False

    def showEvent(self, event):  # noqa: N802 - Qt name
        super().showEvent(event)
        self.fit()


def open_compare(widget, window: CompareWindow | None = None) -> CompareWindow:
    """Panels of the widget's latest compared layers (or the selected ones) in ``window``."""
    ctl = widget.controller
    layers, region, slide_name = compare_layers(widget.viewer, ctl.last_run)
    slide_name = slide_name if slide_name in widget.viewer.layers else widget.slide_combo.currentText()
    if slide_name not in widget.viewer.layers:
        raise ValueError("the compared slide is no longer open")
    slide_layer = widget.viewer.layers[slide_name]
    mpp = slide_layer.metadata.get("xhisto", {}).get("mpp")
    panels = compare_panels(slide_layer, layers, region)
    if window is None:
        window = CompareWindow(panels, mpp=mpp, parent=widget)
    else:
        window.set_panels(panels, mpp=mpp)
    window.show()
    window.raise_()
    window.fit()
    return window
