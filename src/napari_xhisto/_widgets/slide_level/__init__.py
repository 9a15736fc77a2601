"""The docked "Slide-level" widget: p(label) and a slide-wide Grad-CAM map from cached codes."""

from .controller import SlideLevelController, SlideResult, codes_beside
from .widget import SlideLevelWidget

__all__ = ["SlideLevelController", "SlideLevelWidget", "SlideResult", "codes_beside"]
