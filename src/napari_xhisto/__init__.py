"""napari-xhisto: see why a tissue classifier decides what it decides, on whole-slide images.

Core modules (``slide``, ``synth``, ``models``, ``explain``, ``metrics``, ``annotations``,
``export``) run headless; ``_widgets`` and the npe2 contributions are thin layers over them.
Nothing heavy is imported here, so napari can discover the plugin cheaply.
"""

__version__ = "0.1.0"

from .errors import XhistoError  # noqa: E402
from .geometry import Placement, Region  # noqa: E402

__all__ = ["Placement", "Region", "XhistoError", "__version__"]
