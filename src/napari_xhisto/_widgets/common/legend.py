"""The colour legend of a heatmap or probability layer: a bar with its value range, drawn by Qt.

The bar is the layer's own colormap (napari ``Colormap``, transparency included) composited
over a light grey, as it looks over the grey-scale H&E; below it the low, middle and high
values of the layer's contrast limits, above it a title (method and class, or ``p(class)``;
up to two lines).
Drawn with ``QPainter`` in well under a millisecond on the GUI thread: no matplotlib, no
thread, no timer to lose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from qtpy.QtCore import QRect, QSize, Qt
from qtpy.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPixmap
from qtpy.QtWidgets import QLabel, QSizePolicy

BACKDROP = (205, 205, 205)  # light grey: where the colormap is transparent, the H&E shows
BAR_HEIGHT = 14
MIN_WIDTH, MAX_WIDTH = 160, 360


def format_value(v: float) -> str:
    """Three significant digits, ``0`` for zero (no ``-0``)."""
    v = float(v)
    return "0" if v == 0 else f"{v:.3g}"


@dataclass(frozen=True)
class LegendSpec:
    """What a legend shows: contrast limits ``lo``..``hi`` of ``colormap`` and a ``title``."""

    lo: float
    hi: float
    colormap: object  # a napari Colormap (anything with ``.map(values) -> (N, 4)`` in 0..1)
    title: str
    opacity: float = 1.0

    def ticks(self) -> tuple[str, str, str]:
        """Texts under the bar's left end, centre and right end."""
        return (format_value(self.lo), format_value((self.lo + self.hi) / 2), format_value(self.hi))

    def key(self) -> tuple:
        return (self.lo, self.hi, getattr(self.colormap, "name", id(self.colormap)), self.title,
                self.opacity)


def bar_rgb(colormap, width: int, *, opacity: float = 1.0, backdrop=BACKDROP) -> np.ndarray:
    """``(width, 3)`` uint8: ``colormap`` from 0 to 1, its alpha times ``opacity`` over ``backdrop``."""
    rgba = np.asarray(colormap.map(np.linspace(0.0, 1.0, max(int(width), 2))), np.float64)
    alpha = np.clip(rgba[:, 3:4] * float(opacity), 0.0, 1.0)
    out = rgba[:, :3] * 255 * alpha + np.asarray(backdrop, np.float64) * (1 - alpha)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def legend_font(font: QFont | None = None) -> QFont:
    """The legend's font: ``font`` (default: the application's) a little smaller."""
    font = QFont(font) if font is not None else QFont()
    font.setPointSizeF(max(font.pointSizeF() * 0.9, 7.0))
    return font


def legend_pixmap(spec: LegendSpec, width: int, *, text: QColor | None = None,
                  font: QFont | None = None) -> QPixmap:
    """The legend of ``spec`` as a ``QPixmap`` ``width`` px wide (transparent background)."""
    text = QColor(230, 230, 230) if text is None else text
    font = legend_font(font)
    fm = QFontMetrics(font)
    line = fm.height()
    wrap = int(Qt.AlignmentFlag.AlignHCenter) | int(Qt.TextFlag.TextWordWrap)
    title_h = min(fm.boundingRect(QRect(0, 0, width, 10 * line), wrap, spec.title).height(),
                  2 * line)  # the title wraps onto two lines at most
    height = title_h + 2 + BAR_HEIGHT + 2 + line
    pm = QPixmap(width, height)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    try:
        p.setFont(font)
        p.setPen(text)
        p.drawText(QRect(0, 0, width, title_h), wrap, spec.title)
        rgb = np.ascontiguousarray(np.repeat(bar_rgb(spec.colormap, width, opacity=spec.opacity)
                                             [None], BAR_HEIGHT, axis=0))
        bar = QImage(rgb.data, width, BAR_HEIGHT, 3 * width, QImage.Format.Format_RGB888)
        p.drawImage(0, title_h + 2, bar.copy())
        top = title_h + 2 + BAR_HEIGHT + 2
        lo, mid, hi = spec.ticks()
        p.drawText(QRect(0, top, width, line), int(Qt.AlignmentFlag.AlignLeft), lo)
        p.drawText(QRect(0, top, width, line), int(Qt.AlignmentFlag.AlignHCenter), mid)
        p.drawText(QRect(0, top, width, line), int(Qt.AlignmentFlag.AlignRight), hi)
    finally:
        p.end()
    return pm


class ColourLegend(QLabel):
    """A ``QLabel`` showing :func:`legend_pixmap` for the current :class:`LegendSpec` (or nothing).

    The pixmap follows the label's width (between ``MIN_WIDTH`` and ``MAX_WIDTH``); ``spec``
    and ``ticks`` say what it shows.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.spec: LegendSpec | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)

    @property
    def ticks(self) -> tuple[str, ...]:
        return () if self.spec is None else self.spec.ticks()

    def show_spec(self, spec: LegendSpec | None) -> None:
        if spec is not None and self.spec is not None and spec.key() == self.spec.key():
            return
        self.spec = spec
        self._render()

    def _width(self) -> int:
        return int(min(max(self.width() - 8, MIN_WIDTH), MAX_WIDTH))

    def _render(self) -> None:
        if self.spec is None:
            self.clear()
            self.setToolTip("")
            return
        colour = self.palette().color(self.foregroundRole())
        self.setPixmap(legend_pixmap(self.spec, self._width(), text=colour, font=self.font()))
        self.setToolTip(f"{self.spec.title}: {self.spec.ticks()[0]} (left) to "
                        f"{self.spec.ticks()[2]} (right)")

    def resizeEvent(self, event):  # noqa: N802 - Qt name
        super().resizeEvent(event)
        pm = self.pixmap()
        if self.spec is not None and pm is not None and not pm.isNull() \
                and abs(pm.width() - self._width()) > 4:
            self._render()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt name
        return QSize(MIN_WIDTH, super().minimumSizeHint().height())
