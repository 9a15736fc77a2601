"""Kept import path: the small Qt parts live in :mod:`napari_xhisto._widgets.common.parts`."""

from .common.parts import ParamForm, Relay, qimage  # noqa: F401
