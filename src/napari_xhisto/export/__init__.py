"""Exports: heatmaps as pyramidal OME-TIFF (and later PNG snapshots, contours, reports)."""

from .heatmap_io import HeatmapFile, read_heatmap, write_heatmap

__all__ = ["HeatmapFile", "read_heatmap", "write_heatmap"]
