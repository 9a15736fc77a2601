"""Kept import path (napari.yaml, other widgets): the widget lives in :mod:`.explain`."""

from .explain import DEMO, SHORTCUT, ExplainWidget
from .explain.controller import MAX_VIEW_PATCH_COST

__all__ = ["DEMO", "MAX_VIEW_PATCH_COST", "SHORTCUT", "ExplainWidget"]
