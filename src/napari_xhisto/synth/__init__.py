"""Synthetic H&E tissue with exact ground truth, bias hooks, and a streaming slide writer.

``generate_tissue`` renders a field in memory; ``sample_patches`` draws labelled patches
(centre-cell or tumour-fraction labels, translation on/off, exclusions, tumour ratio,
class-correlated square); ``write_slide`` streams an Aperio SVS or OME-TIFF pyramid tile by
tile with its ground truth as QuPath GeoJSON. Everything is deterministic by seed.
"""

from .cells import CELL_CLASSES
from .layout import TISSUE_CODES
from .necrosis import NECROSIS_STYLES, NecrosisStyle
from .patches import PatchSet, add_square, sample_patches
from .render import SynthWorld
from .tissue import SynthTissue, generate_tissue

__all__ = [
    "CELL_CLASSES",
    "NECROSIS_STYLES",
    "NecrosisStyle",
    "TISSUE_CODES",
    "PatchSet",
    "SynthTissue",
    "SynthWorld",
    "add_square",
    "generate_tissue",
    "sample_patches",
]
