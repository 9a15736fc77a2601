"""npe2 contribution: the Meta widget in a :class:`~..common.docking.ScrollDock` (napari.yaml)."""

from __future__ import annotations

from ..common.docking import ScrollDock


class MetaDock(ScrollDock):
    """*Meta*, scrollable, tabbed with the plugin's other docks (napari.yaml)."""

    def __init__(self, napari_viewer, parent=None):
        from .widget import MetaWidget

        super().__init__(MetaWidget(napari_viewer), parent)
