"""What the Export widget exports, without a window (napari's layer model only).

:class:`ExportController` picks heatmap/probability layers by ``metadata["xhisto"]["kind"]``,
turns one into a tile source whose provenance names the target class, finds the slide under
it and the region in view, and prepares each export: long writes come back as generators
(the widget runs them in a worker), short ones run at once.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ...errors import XhistoError
from ...export.snapshot import provenance_title, target_name
from ...geometry import Placement
from .. import layers as L

EXPORT_KINDS = ("heatmap", "probability")


def _info(layer) -> dict:
    meta = getattr(layer, "metadata", None)
    info = meta.get("xhisto") if isinstance(meta, dict) else None
    return info if isinstance(info, dict) else {}


class ExportController:
    """Layers on offer, their tile source and slide, and the exports of one viewer."""

    def __init__(self, viewer):
        self.viewer = viewer
        self._slides: dict = {}

    def layer_names(self) -> list[str]:
        """Heatmap and probability layers, newest (top) first."""
        return [ly.name for ly in reversed(self.viewer.layers) if _info(ly).get("kind") in EXPORT_KINDS]

    def layer(self, name: str):
        if not name or name not in self.viewer.layers:
            raise XhistoError("no heatmap layer: explain a region or compute a probability map first")
        return self.viewer.layers[name]

    def provenance(self, name: str) -> dict:
        """The layer's provenance with ``target`` as the class NAME (index kept apart)."""
        meta = _info(self.layer(name))
        prov = {"kind": meta.get("kind"), **dict(meta.get("provenance", {}))}
        named = target_name({**prov, "class_name": meta.get("class_name")})
        if named is not None:
            if "target" in prov and str(prov["target"]) != named:
                prov["target_index"] = prov["target"]
            prov["target"] = prov["target_class"] = named
        return prov

    def describe(self, name: str) -> str:
        """One line for the widget: model, method, target class, normalisation."""
        try:
            return provenance_title(self.provenance(name))
        except XhistoError:
            return ""

    def source(self, name: str):
        """The layer as a tile source (level 0 of a multiscale layer, read window by window)."""
        from ...export.tiles import ArrayTiles

        layer = self.layer(name)
        meta = _info(layer)
        data = layer.data[0] if layer.multiscale else layer.data
        return ArrayTiles(data, Placement.from_dict(meta["placement"]), mpp=meta.get("mpp"),
                          provenance=self.provenance(name))

    def slide(self, name: str):
        """The slide under the layer: the reader's Slide of a slide layer, else opened by path."""
        meta = _info(self.layer(name))
        path = meta.get("slide_path")
        for ly in self.viewer.layers:
            shared = ly.metadata.get("xhisto_slide")
            if shared is not None and (path is None or str(getattr(shared, "path", "")) == str(path)):
                return shared
        if path and Path(path).exists():
            if path not in self._slides:
                from ...slide import open_slide

                self._slides[path] = open_slide(path, mpp=meta.get("mpp"))
            return self._slides[path]
        return None

    def view_region(self, source, slide):
        """The level-0 region the viewer shows (slide layers have scale = mpp, translate = 0)."""
        mpp = source.mpp or 1.0
        if slide is not None:
            shape = tuple(slide.dimensions)
        else:
            p = source.placement
            shape = (math.ceil(p.origin_row + source.shape[0] * p.step_row),
                     math.ceil(p.origin_col + source.shape[1] * p.step_col))
        cam = self.viewer.scene.camera
        return L.view_region(cam.center, cam.zoom, self.viewer.canvas.size, scale=(mpp, mpp),
                             translate=(0.0, 0.0), slide_shape=shape)

    # ---- the exports (paths already checked by the widget)
    def ome_tiff(self, name: str, path, *, float16: bool, overwrite: bool):
        """A generator factory writing the pyramidal OME-TIFF."""
        from ...export.tiled_writer import iter_write_heatmap_tiles

        source = self.source(name)
        dtype = "float16" if float16 else "float32"
        return lambda: iter_write_heatmap_tiles(
            path, source.shape, source.read, source.placement, mpp=source.mpp,
            provenance=source.provenance, dtype=dtype, overwrite=overwrite)

    def rgb(self, name: str, path, *, full_slide: bool, blend: bool, overwrite: bool):
        """A generator factory writing the RGB overlay (SVS)."""
        from ...export.rgb import iter_write_rgb_overlay

        source, slide = self.source(name), self.slide(name)
        if full_slide and slide is None:
            raise XhistoError("a whole-slide overlay needs the slide: open it, or untick 'whole slide'")
        vmax = self.layer(name).contrast_limits[1]
        return lambda: iter_write_rgb_overlay(
            path, source, mpp=source.mpp, slide=slide, full_slide=full_slide,
            blend_slide=blend and slide is not None, vmax=abs(vmax) or None, overwrite=overwrite)

    def png(self, name: str, path, *, overwrite: bool):
        """The current view as a PNG snapshot; returns its layout."""
        from ...export.snapshot import write_snapshot

        source, slide, layer = self.source(name), self.slide(name), self.layer(name)
        return write_snapshot(path, self.view_region(source, slide), source, mpp=source.mpp,
                              slide=slide, vmax=abs(layer.contrast_limits[1]) or None,
                              alpha=float(layer.opacity), overwrite=overwrite)

    def contours(self, name: str, path, *, threshold: float, above: bool, overwrite: bool):
        """The thresholded map as GeoJSON polygons; ``EmptyContoursError`` when none (no file)."""
        from ...export.contours import export_contours

        source = self.source(name)
        values = source.read(0, 0, *source.shape)
        return export_contours(path, values, source.placement, threshold=threshold, above=above,
                               overwrite=overwrite)

    def report(self, name: str, path, *, metrics_path: str = "", annotations_path: str = "",
               overwrite: bool):
        """The HTML report with a snapshot of the view (and metrics/annotations when given)."""
        from ...export.report import write_report
        from ...export.snapshot import render_snapshot

        source, slide = self.source(name), self.slide(name)
        metrics = annotations = None
        if metrics_path.strip():
            metrics = json.loads(Path(metrics_path.strip()).read_text(encoding="utf-8"))
        if annotations_path.strip():
            from ...annotations import read_annotations

            annotations = read_annotations(annotations_path.strip())
        snap = render_snapshot(self.view_region(source, slide), source, mpp=source.mpp, slide=slide)
        return write_report(path, slide=slide, heatmap=source, snapshots=[("current view", snap)],
                            metrics=metrics, annotations=annotations, overwrite=overwrite)
