"""The docked "Export" widget: save a heatmap or probability layer in every export format.

``controller`` (layers, tile source, slide, the exports; no window), ``view`` (Qt layout) and
``widget`` (file dialogs, confirmation, worker). The PNG snapshot is the current view, through
the same :func:`~napari_xhisto.export.snapshot.write_snapshot` the CLI uses.
"""

from .controller import EXPORT_KINDS, ExportController
from .widget import ExportWidget

__all__ = ["EXPORT_KINDS", "ExportController", "ExportWidget"]
