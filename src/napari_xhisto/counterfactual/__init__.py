"""Counterfactual explanations (seed 001): learned in-domain inpainting and what uses it.

Imports torch (never napari or Qt).

>>> from napari_xhisto.counterfactual import load_inpainter     # doctest: +SKIP
>>> inp = load_inpainter("demo")                                # bundled, 64 px at 1 µm/px
>>> filled = inp.inpaint(rgb_patches, hole_masks)               # doctest: +SKIP
"""

from .inpainter import Inpainter, PConvUNet, load_inpainter, save_inpainter
from .partial_conv import PartialConv2d

__all__ = ["Inpainter", "PConvUNet", "PartialConv2d", "load_inpainter", "save_inpainter"]
