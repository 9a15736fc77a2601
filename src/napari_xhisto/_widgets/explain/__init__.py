"""The Explain widget: :mod:`.view` (Qt layout), :mod:`.controller` (behaviour, no window),
:mod:`.widget` (the two wired together), :mod:`.naming` (words shown), :mod:`.outlines`
(explained areas), :mod:`.compare` and :mod:`.compare_window` (side by side)."""

from .widget import DEMO, SHORTCUT, ExplainWidget

__all__ = ["DEMO", "SHORTCUT", "ExplainWidget"]
