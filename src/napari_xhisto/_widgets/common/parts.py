"""Small Qt parts of the Explain widget: an explainer's parameter form, a legend pixmap, a relay.

``ParamForm`` builds one editor per declared parameter (type, range and help from the
explainer's ``Param``) and says when any of them changes; ``qimage`` turns an RGBA array into a
``QPixmap``; ``Relay`` carries a value from a worker thread to the GUI thread.
"""

from __future__ import annotations

import math

import numpy as np
from qtpy.QtCore import QObject, Signal
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QWidget,
)


class ParamForm(QWidget):
    """Editors for one explainer's declared parameters (type, range, help as tooltip)."""

    changed = Signal()

    def __init__(self, params: dict, parent=None):
        super().__init__(parent)
        self.params = params
        self.editors = {}
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        for name, p in params.items():
            editor = self._editor(p)
            editor.setToolTip(f"{p.help} ({p.describe()})".strip())
            form.addRow(name.replace("_", " "), editor)
            self.editors[name] = editor
            self._relay_changes(editor)
        if not params:
            form.addRow(QLabel("no parameters"))

    def _relay_changes(self, w):
        if isinstance(w, QCheckBox):
            sig = w.toggled
        elif isinstance(w, QComboBox):
            sig = w.currentTextChanged
        elif isinstance(w, QSpinBox | QDoubleSpinBox):
            sig = w.valueChanged
        else:
            sig = w.editingFinished
        sig.connect(lambda *_: self.changed.emit())

    @staticmethod
    def _editor(p):
        if p.kind == "bool":
            w = QCheckBox()
            w.setChecked(bool(p.default))
        elif p.kind == "choice":
            w = QComboBox()
            w.addItems([str(c) for c in p.choices])
            w.setCurrentText(str(p.default))
        elif p.kind == "int":
            w = QSpinBox()
            w.setRange(int(p.low if p.low is not None else -(2**31) + 1),
                       int(p.high if p.high is not None else 2**31 - 1))
            w.setValue(int(p.default))
        elif p.kind == "float":
            w = QDoubleSpinBox()
            d = float(p.default)
            w.setDecimals(min(10, max(3, 2 - math.floor(math.log10(abs(d)))) if d else 3))
            w.setRange(p.low if p.low is not None else -1e9, p.high if p.high is not None else 1e9)
            w.setSingleStep(10 ** -min(w.decimals(), 3))
            w.setValue(d)
        else:  # "str" (None allowed), "ints", "floats"
            w = QLineEdit()
            if p.kind in ("ints", "floats"):
                w.setText(", ".join(str(v) for v in p.default))
            else:
                w.setPlaceholderText("default" if p.default is None else str(p.default))
        return w

    def values(self) -> dict:
        """Current values, converted and range-checked by each ``Param`` (``ValueError``)."""
        out = {}
        for name, w in self.editors.items():
            p = self.params[name]
            if isinstance(w, QCheckBox):
                v = w.isChecked()
            elif isinstance(w, QComboBox):
                v = w.currentText()
            elif isinstance(w, QSpinBox | QDoubleSpinBox):
                v = w.value()
            else:
                v = w.text().strip() or (None if p.kind == "str" else p.default)
            out[name] = p.check(name, v)
        return out


def set_items(box, items, preferred=None) -> bool:
    """Refill a combo box without emitting signals, keeping the current choice when it is
    still there (``preferred`` first when given); True when the shown text changed."""
    current = box.currentText()
    box.blockSignals(True)
    box.clear()
    box.addItems(list(items))
    if preferred in items:
        box.setCurrentText(preferred)
    elif current in items:
        box.setCurrentText(current)
    box.blockSignals(False)
    return box.currentText() != current


def qimage(rgba: np.ndarray) -> QPixmap:
    rgba = np.ascontiguousarray(rgba)
    h, w = rgba.shape[:2]
    img = QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888)
    return QPixmap.fromImage(img.copy())


class Relay(QObject):
    """Carries ``(key, value)`` from a worker thread to a slot in the GUI thread (queued)."""

    ready = Signal(object, object)


def follow_layer_list(widget: QWidget, viewer, slot) -> None:
    """Call ``slot`` whenever a layer is added to or removed from ``viewer``, until ``widget``
    is destroyed (then the connections are dropped, so no slot runs on a deleted widget)."""
    events = viewer.layers.events
    events.inserted.connect(slot)
    events.removed.connect(slot)

    def disconnect(*_):
        for ev in (events.inserted, events.removed):
            try:
                ev.disconnect(slot)
            except (TypeError, ValueError, RuntimeError):
                pass

    widget.destroyed.connect(disconnect)
