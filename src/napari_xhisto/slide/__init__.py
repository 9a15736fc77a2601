"""Whole-slide images: ``open_slide`` -> ``Slide`` (levels, µm/px, cached parallel tile reads,
``read_region`` / ``read_scaled`` in level-0 pixels, lazy dask pyramid for napari).

numpy, dask, tifffile/imagecodecs and openslide only: no torch, no napari.
"""

from .cache import TileCache
from .core import Level, Slide, shared_tile_cache
from .detect import looks_like_slide
from .opening import open_slide

__all__ = ["Level", "Slide", "TileCache", "looks_like_slide", "open_slide", "shared_tile_cache"]
