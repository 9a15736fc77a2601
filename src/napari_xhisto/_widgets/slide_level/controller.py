"""What the Slide-level widget does, without Qt: find the codes, run the model, place the map.

The compute runs in a worker through :meth:`run`, a plain generator: when the slide has no codes
yet it is compressed first (``nic.compress.compress_slide`` into ``SLIDE.nic.zarr`` beside it,
with the encoder the slide model was trained on; resumable, so a cancelled run goes on where it
stopped), then ``nic.slide_explain.explain_slide``. :meth:`add_result` puts the slide-wide
heatmap on the viewer exactly as patch heatmaps are put there (``heatmap_layer_data``: same
colormap, provenance, export paths), above the slide and below the annotations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..layers import add_below_annotations, heatmap_layer_data, is_slide_layer

CODES_SUFFIX = ".nic.zarr"
_SLIDE_SUFFIXES = (".ome.tiff", ".ome.tif", ".svs", ".tiff", ".tif", ".ndpi", ".mrxs", ".scn",
                   ".bif", ".qptiff", ".svslide")


def codes_path_for(slide_path) -> Path:
    """Where a slide's codes go: ``SLIDE.nic.zarr`` next to ``SLIDE.svs`` (any slide suffix)."""
    p = Path(slide_path)
    name = p.name
    for suffix in _SLIDE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return p.with_name(name + CODES_SUFFIX)


def codes_beside(slide_path) -> Path | None:
    """``SLIDE.nic.zarr`` next to ``SLIDE.svs`` (any slide suffix), or None when absent."""
    if not slide_path:
        return None
    cand = codes_path_for(slide_path)
    return cand if cand.is_dir() else None


def encoder_for(model_spec, chosen: str | None = None):
    """The encoder to compress a slide with for a slide model: ``chosen`` (a spec file or a
    bundled kind) when given, else the bundled encoder whose weights the model was trained on.

    Raises
    ------
    XhistoError
        When the model's encoder is not a bundled one (name the file), or ``chosen`` is not
        the encoder the model was trained on (its codes would not fit).
    """
    from ...errors import XhistoError
    from ...nic.encoders import KINDS, load_encoder

    want = dict(getattr(model_spec, "encoder", None) or {})
    kind, sha = want.get("kind"), want.get("sha256")
    if chosen:
        enc = load_encoder(chosen)
    elif kind in KINDS:
        enc = load_encoder(kind)
    else:
        raise XhistoError(f"the slide model was trained on codes of encoder "
                          f"{want.get('name') or kind or '(unknown)'}, which is not bundled: "
                          "choose its .yaml under Encoder, or run xhisto compress SLIDE "
                          "--encoder ENC.yaml --out SLIDE.nic.zarr")
    have = enc.weights_sha256
    if sha and have != sha:
        raise XhistoError(f"encoder {enc.spec.get('name', enc.kind)} (sha256 "
                          f"{str(have)[:12]}) is not the one the slide model was trained on "
                          f"({want.get('name') or kind}, sha256 {sha[:12]}): choose that "
                          "encoder's .yaml under Encoder")
    return enc


@dataclass
class SlideResult:
    """A slide-level prediction and its map, ready to show."""

    heatmap: object          # explain.tiling.Heatmap
    p_label: float
    label: str
    mpp: float
    codes_path: Path
    model_path: Path
    seconds: float           # from the codes: load the model and codes, predict, explain
    compressed: dict | None = None  # when this run compressed the slide first: its provenance

    def text(self) -> str:
        head = (f"p({self.label}) = {self.p_label:.3f}  "
                f"({'present' if self.p_label >= 0.5 else 'absent'} at 0.5; ")
        if self.compressed is None:
            return head + f"{self.seconds:.2f} s from cached codes)"
        c = self.compressed
        return head + (f"{self.seconds:.2f} s from the codes, after compressing the slide: "
                       f"{c['n_encoded_this_run']} patches in {c['seconds']:.1f} s into "
                       f"{self.codes_path.name})")


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
    def run(codes_path, model_path, *, slide_path=None, encoder=None, augment: bool = False):
        """Generator: load the model; compress the slide when its codes do not exist yet (into
        ``codes_path``, default ``SLIDE.nic.zarr`` beside the slide); read the codes; predict
        and explain. Yields (done, total); returns a :class:`SlideResult`.

        Closing the generator (Cancel) while compressing keeps the finished chunks in
        ``<codes>.partial``: the next run resumes there.
        """
        import time

        from ...errors import XhistoError

        if not model_path:
            raise XhistoError("choose a slide-level model (a folder from xhisto train-slide)")
        codes_path = Path(codes_path) if codes_path else (
            codes_path_for(slide_path) if slide_path else None)
        if codes_path is None or (not codes_path.exists() and not slide_path):
            raise XhistoError(f"no compressed slide at {codes_path or '(none chosen)'}: run "
                              "xhisto compress SLIDE --out SLIDE.nic.zarr, or choose the codes")
        from ...nic.codes import read_codes
        from ...nic.slide_explain import explain_slide
        from ...nic.slide_model import load_slide_model

        start = time.perf_counter()
        model = load_slide_model(model_path)
        compressed, grid, total, compress_s = None, None, 3, 0.0
        yield 1, total
        if not codes_path.exists():
            t_compress = time.perf_counter()
            import os

            from ...nic.compress import compress_slide

            enc = encoder_for(model.spec, encoder)
            folder = codes_path.parent
            if not folder.is_dir() or not os.access(folder, os.W_OK):
                raise XhistoError(f"cannot write the codes into {folder} (missing or read-only):"
                                  " type a writable path ending in .nic.zarr under Codes")
            gen = compress_slide(slide_path, enc, out=codes_path)
            try:
                while True:
                    done, n = next(gen)
                    total = n + 3
                    yield 1 + done, total
            except StopIteration as stop:  # the new store, opened lazily: no second open
                grid = stop.value
                compressed = grid.provenance
            finally:
                gen.close()
            compress_s = time.perf_counter() - t_compress
        if grid is None:
            grid = read_codes(codes_path)
        yield total - 1, total
        heat = explain_slide(model, grid, augment=augment, codes_path=codes_path)
        yield total, total
        return SlideResult(heat, float(heat.provenance["p_label"]), model.spec.positive,
                           float(grid.mpp), Path(codes_path), Path(model_path),
                           time.perf_counter() - start - compress_s, compressed)

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
