"""What the Slide-level widget does, without Qt: find the codes, run the model, place the map.

The compute (``nic.slide_explain.explain_slide``) runs in a worker through :meth:`run`, a plain
generator; :meth:`add_result` puts the slide-wide heatmap on the viewer exactly as patch
heatmaps are put there (``heatmap_layer_data``: same colormap, provenance, export paths),
above the slide and below the annotations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..layers import add_below_annotations, heatmap_layer_data, is_slide_layer

CODES_SUFFIX = ".nic.zarr"
_SLIDE_SUFFIXES = (".ome.tiff", ".ome.tif", ".svs", ".tiff", ".tif", ".ndpi", ".mrxs", ".scn",
                   ".bif", ".qptiff", ".svslide")


def codes_beside(slide_path) -> Path | None:
    """``SLIDE.nic.zarr`` next to ``SLIDE.svs`` (any slide suffix), or None when absent."""
    if not slide_path:
        return None
    p = Path(slide_path)
    name = p.name
    for suffix in _SLIDE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    cand = p.with_name(name + CODES_SUFFIX)
    return cand if cand.is_dir() else None


@dataclass
class SlideResult:
    """A slide-level prediction and its map, ready to show."""

    heatmap: object          # explain.tiling.Heatmap
    p_label: float
    label: str
    mpp: float
    codes_path: Path
    model_path: Path
    seconds: float

    def text(self) -> str:
        return (f"p({self.label}) = {self.p_label:.3f}  "
                f"({'present' if self.p_label >= 0.5 else 'absent'} at 0.5; "
                f"{self.seconds:.2f} s from cached codes)")


class SlideLevelController:
    """Slide layers, their codes, the run, and the layer it adds."""

    def __init__(self, viewer):
        self.viewer = viewer

    def slide_layers(self) -> list:
        return [ly for ly in self.viewer.layers if is_slide_layer(ly)]

    def layer(self, name: str):
        return next((ly for ly in self.viewer.layers if ly.name == name), None)

    @staticmethod
    def slide_path(layer) -> str | None:
        meta = layer.metadata.get("xhisto", {}) if layer is not None else {}
        return meta.get("slide_path")

    def codes_for(self, layer) -> Path | None:
        return codes_beside(self.slide_path(layer))

    @staticmethod
    def run(codes_path, model_path, *, augment: bool = False):
        """Generator: load the model and codes, explain; yields (done, 3), returns SlideResult."""
        import time

        from ...errors import XhistoError

        start = time.perf_counter()
        if not codes_path or not Path(codes_path).exists():
            raise XhistoError(f"no compressed slide at {codes_path or '(none chosen)'}: run "
                              "xhisto compress SLIDE --out SLIDE.nic.zarr, or choose the codes")
        if not model_path:
            raise XhistoError("choose a slide-level model (a folder from xhisto train-slide)")
        from ...nic.codes import read_codes
        from ...nic.slide_explain import explain_slide
        from ...nic.slide_model import load_slide_model

        model = load_slide_model(model_path)
        yield 1, 3
        grid = read_codes(codes_path)
        yield 2, 3
        heat = explain_slide(model, grid, codes_path=codes_path)
        yield 3, 3
        return SlideResult(heat, float(heat.provenance["p_label"]), model.spec.positive,
                           float(grid.mpp), Path(codes_path), Path(model_path),
                           time.perf_counter() - start)

    def add_result(self, result: SlideResult, slide_layer=None):
        """Add the slide-wide heatmap above the slide, below the annotations; returns the layer."""
        mpp = result.mpp
        if slide_layer is not None and tuple(slide_layer.units)[0] != "pixel":
            mpp = float(slide_layer.scale[-1])
        heat = result.heatmap
        name = f"slide-level Grad-CAM ({result.label}, p = {result.p_label:.2f})"
        data, kwargs, kind = heatmap_layer_data(
            heat.values, heat.placement, mpp=mpp, provenance=heat.provenance, name=name,
            slide_path=self.slide_path(slide_layer))
        return add_below_annotations(self.viewer, data, kwargs, kind)

    @staticmethod
    def legend_spec(layer):
        """The legend of a slide-level heatmap layer (as the Explain widget's)."""
        from ..common.legend import LegendSpec

        if layer is None:
            return None
        lo, hi = (float(v) for v in layer.contrast_limits)
        prov = layer.metadata["xhisto"]["provenance"]
        title = (f"slide-level {prov.get('method', 'gradcam')} ({prov.get('layer', '')}): "
                 f"red for {prov.get('target_class', 'the label')}")
        return LegendSpec(lo, hi, layer.colormap, title, opacity=float(layer.opacity))
