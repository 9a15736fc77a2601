"""How the plugin's four widgets share the screen: scrollable, tabbed docks that leave the slide
most of the window.

Each widget sits in a :class:`ScrollDock` (a scroll area), so its dock never forces the window
larger than the screen: at most ``MIN_DOCK_WIDTH`` wide and ``MIN_DOCK_HEIGHT`` tall at minimum,
scrolling what does not fit. The docks of this plugin open as tabs of one dock area (also when
opened one by one from *Plugins ▸ napari-xhisto*), and :func:`dock_widgets` gives the area what
the slide canvas can spare: napari's own layer docks take about 304 px on the left, and the
canvas keeps at least ``CANVAS_SHARE`` of the window width (820 px at 1366 x 768, which leaves
about 230 px for the plugin's dock; 324 px at 1600 x 1200).
The ``*Dock`` classes are the npe2 widget contributions (``napari.yaml``).
"""

from __future__ import annotations

from qtpy.QtCore import QSize, Qt, QTimer
from qtpy.QtWidgets import QDockWidget, QFrame, QMainWindow, QScrollArea, QStyle, QTabBar

MIN_DOCK_HEIGHT = 120
MIN_DOCK_WIDTH = 200  # a dock never asks for more; wider content scrolls sideways
CANVAS_SHARE = 0.6  # of the window width kept for the slide canvas
SEPARATORS = 30  # dock separators, frames and the canvas's margins, px


class ScrollDock(QScrollArea):
    """``inner`` in a vertical scroll area, tabbed with this plugin's other docks when shown."""

    def __init__(self, inner, parent=None):
        super().__init__(parent)
        self.inner = inner
        self.setWidget(inner)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self._joined = False

    def _bar(self) -> int:
        return self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent) + 2

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt name
        inner = self.inner.minimumSizeHint()
        return QSize(min(inner.width() + self._bar(), MIN_DOCK_WIDTH), MIN_DOCK_HEIGHT)

    def content_width(self) -> int:
        """Width the inner widget needs without scrolling sideways (scroll bar included)."""
        return self.inner.minimumSizeHint().width() + self._bar()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt name
        inner = self.inner.sizeHint()
        return QSize(inner.width() + self._bar(), inner.height())

    def showEvent(self, event):  # noqa: N802 - Qt name
        super().showEvent(event)
        if not self._joined:
            self._joined = True
            QTimer.singleShot(0, self.join_siblings)

    def dock(self) -> QDockWidget | None:
        w = self.parentWidget()
        while w is not None and not isinstance(w, QDockWidget):
            w = w.parentWidget()
        return w

    def join_siblings(self) -> None:
        """Tab this dock with the plugin's other docks in the same area (if any)."""
        try:
            dock = self.dock()
        except RuntimeError:  # closed meanwhile
            return
        main = dock.parentWidget() if dock is not None else None
        if not isinstance(main, QMainWindow) or dock.isFloating():
            return
        area = main.dockWidgetArea(dock)
        for other in main.findChildren(QDockWidget):
            if (other is not dock and isinstance(other.widget(), ScrollDock)
                    and not other.isFloating() and other.isVisible()
                    and main.dockWidgetArea(other) == area
                    and dock not in main.tabifiedDockWidgets(other)):
                main.tabifyDockWidget(other, dock)
                dock.raise_()
                return


def other_docks_width(main: QMainWindow, area, mine) -> int:
    """Width of the visible docks of the other side areas (napari's layer list and controls)."""
    sides = (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea)
    widths = {}
    for d in main.findChildren(QDockWidget):
        a = main.dockWidgetArea(d)
        if d in mine or not d.isVisible() or d.isFloating() or a not in sides:
            continue
        widths[a] = max(widths.get(a, 0), d.width(), d.minimumSizeHint().width())
    return sum(widths.values())


def dock_width(window_width: int, others: int, docks) -> int:
    """One width for the plugin's dock area: its widest content, within what the canvas spares."""
    need = max((d.widget().content_width() for d in docks), default=MIN_DOCK_WIDTH)
    spare = int((1 - CANVAS_SHARE) * window_width) - others - SEPARATORS
    return int(max(MIN_DOCK_WIDTH, min(need, spare)))


def fit_docks(main: QMainWindow, docks) -> int:
    """Resize the plugin's dock area to :func:`dock_width`; returns the width asked for."""
    docks = list(docks)
    if not docks:
        return 0
    area = main.dockWidgetArea(docks[0])
    width = dock_width(main.width(), other_docks_width(main, area, docks), docks)
    main.resizeDocks([docks[0]], [width], Qt.Orientation.Horizontal)
    return width


def dock_widgets(viewer, widgets: dict, *, area: str = "right", raise_first: bool = True) -> dict:
    """Dock ``{name: widget}`` as scrollable tabs of one area; return ``{name: dock}``.

    The area's width is set now and again once the window has laid itself out.
    """
    docks = {}
    for name, widget in widgets.items():
        wrapped = widget if isinstance(widget, ScrollDock) else ScrollDock(widget)
        wrapped._joined = True  # tabbed here, explicitly
        docks[name] = viewer.window.add_dock_widget(wrapped, name=name, area=area, tabify=True)
    if docks:
        main = viewer.window._qt_window
        first = next(iter(docks.values()))
        if raise_first:
            first.raise_()
        fit_docks(main, docks.values())
        canvas = viewer.window._qt_viewer.canvas.native
        QTimer.singleShot(0, lambda: _refit(main, list(docks.values()), canvas, raise_first))
    return docks


def readable_tabs(main, docks) -> list:
    """The tab bars that hold ``docks``: names in full (no "Ex…" for both Explain and Export),
    scroll arrows when they do not fit. Returns those tab bars."""
    titles = {d.windowTitle() for d in docks}
    bars = [bar for bar in main.findChildren(QTabBar)
            if any(bar.tabText(i) in titles for i in range(bar.count()))]
    for bar in bars:
        bar.setElideMode(Qt.TextElideMode.ElideNone)
        bar.setUsesScrollButtons(True)
    return bars


def _refit(main, docks, canvas, raise_first: bool) -> None:
    """Once laid out: the area's width again, then less by what the canvas still lacks; the
    tabs' names in full."""
    try:
        readable_tabs(main, docks)
        if raise_first:
            docks[0].raise_()
        fit_docks(main, docks)
        lacking = int(CANVAS_SHARE * main.width() + 0.999) - canvas.width()
        current = max(d.width() for d in docks if not d.visibleRegion().isEmpty()) \
            if any(not d.visibleRegion().isEmpty() for d in docks) else docks[0].width()
        if lacking > 0 and canvas.isVisible():
            main.resizeDocks([docks[0]], [max(MIN_DOCK_WIDTH, current - lacking)],
                             Qt.Orientation.Horizontal)
    except RuntimeError:  # the window was closed meanwhile
        pass


# ---- npe2 widget contributions: each widget in a scroll area ---------------------------------

class ExplainDock(ScrollDock):
    """*Explain*, scrollable (napari.yaml)."""

    def __init__(self, napari_viewer, parent=None):
        from ..explain import ExplainWidget

        super().__init__(ExplainWidget(napari_viewer), parent)


class AnnotateDock(ScrollDock):
    """*Annotate*, scrollable (napari.yaml)."""

    def __init__(self, napari_viewer, parent=None):
        from ..annotate import AnnotateWidget

        super().__init__(AnnotateWidget(napari_viewer), parent)


class EvaluateDock(ScrollDock):
    """*Evaluate*, scrollable (napari.yaml)."""

    def __init__(self, napari_viewer, parent=None):
        from ..evaluate import EvaluateWidget

        super().__init__(EvaluateWidget(napari_viewer), parent)


class ExportDock(ScrollDock):
    """*Export*, scrollable (napari.yaml)."""

    def __init__(self, napari_viewer, parent=None):
        from ..export_widget import ExportWidget

        super().__init__(ExportWidget(napari_viewer), parent)


class SlideLevelDock(ScrollDock):
    """*Slide-level* (NIC: p(label) and slide-wide Grad-CAM), scrollable (napari.yaml)."""

    def __init__(self, napari_viewer, parent=None):
        from ..slide_level import SlideLevelWidget

        super().__init__(SlideLevelWidget(napari_viewer), parent)
