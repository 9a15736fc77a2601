"""Results of the Explain controller as napari layers, and what the display shows of them.

A mixin of :class:`~.controller.ExplainController` (no Qt): heatmap and probability layers are
named with class, model and position (:mod:`.naming`), carry the slide's units and go below the
annotation layers; the legend describes the selected result layer.
"""

from __future__ import annotations

from .. import layers as L
from . import naming


class ResultLayers:
    """Needs ``self.viewer`` and ``self.model_label()``."""

    # -- results to layers (below the annotations, in the slide's units)
    def add_heatmap(self, heat, method, region, mpp, path, s, *,
                    display_limit=None):
        name = naming.heatmap_name(method, s.target, self.model_label(), region, mpp)
        prov = {**heat.provenance, "target_class": s.target, "model_label": self.model_label()}
        data, kwargs, _ = L.heatmap_layer_data(heat.values, heat.placement, mpp=mpp,
                                               provenance=prov, name=name, slide_path=path,
                                               opacity=s.opacity, display_limit=display_limit)
        kwargs["metadata"]["xhisto"]["provenance"]["display_limits"] = list(
            kwargs["contrast_limits"])
        return L.add_below_annotations(self.viewer, data, self._units_of_slide(kwargs, s))

    def add_probability(self, pmap, layer, mpp, path, region, s):
        names = list(pmap.class_names)
        idx = names.index(s.target) if s.target in names else len(names) - 1
        prov = {**pmap.provenance, "target_class": names[idx], "model_label": self.model_label()}
        data, kwargs, _ = L.probability_layer_data(
            pmap.probs, pmap.placement, class_index=idx, class_names=names, mpp=mpp,
            provenance=prov, name=naming.probability_name(names[idx], self.model_label(), region,
                                                          mpp),
            slide_path=path, opacity=s.opacity, tissue_mask=getattr(pmap, "tissue_mask", None))
        return L.add_below_annotations(self.viewer, data, self._units_of_slide(kwargs, s))

    def add_uncertainty(self, umap, layer, mpp, path, region, s):
        """The MC-dropout std of the target class as its own layer (own colormap, legend),
        above the probability layer and below the annotations."""
        from .uncertainty import uncertainty_layer_data

        names = list(umap.mean.class_names)
        cls = s.target if s.target in names else names[-1]
        prov = {**umap.provenance, "target_class": cls, "model_label": self.model_label()}
        name = "std " + naming.probability_name(cls, self.model_label(), region, mpp)
        data, kwargs = uncertainty_layer_data(umap, cls, mpp=mpp, provenance=prov, name=name,
                                              slide_path=path, opacity=s.opacity)
        return L.add_below_annotations(self.viewer, data, self._units_of_slide(kwargs, s))

    def _units_of_slide(self, kwargs: dict, s) -> dict:
        if s.slide in self.viewer.layers:
            kwargs["units"] = self.viewer.layers[s.slide].units
        return kwargs

    # -- display
    def result_layers(self) -> list:
        return [ly for ly in self.viewer.layers
                if ly.metadata.get("xhisto", {}).get("kind") in ("heatmap", "probability",
                                                                  "uncertainty")]

    def set_opacity(self, opacity: float) -> None:
        for ly in self.result_layers():
            ly.opacity = opacity

    def set_greyscale(self, slide_name: str, on: bool):
        if slide_name in self.viewer.layers:
            return L.set_greyscale(self.viewer, self.viewer.layers[slide_name], bool(on))
        return None

    def legend_layer(self):
        """The layer the legend describes: the selected result layer, else the newest one."""
        active = self.viewer.layers.selection.active
        cands = self.result_layers()
        return active if active in cands else (cands[-1] if cands else None)

    def legend_spec(self):
        from ..common.legend import LegendSpec

        layer = self.legend_layer()
        if layer is None:
            return None
        lo, hi = (float(v) for v in layer.contrast_limits)
        meta = layer.metadata["xhisto"]
        if meta["kind"] == "probability":
            title = f"p({meta.get('class_name', '')}): clear when low"
        elif meta["kind"] == "uncertainty":
            n = meta.get("provenance", {}).get("mc_dropout", {}).get("n_samples", "?")
            title = f"std of p({meta.get('class_name', '')}), {n} MC-dropout passes"
        else:
            prov = meta.get("provenance", {})
            target = prov.get("target_class") or prov.get("target", "the class")
            title = f"{prov.get('method', '')}: red for {target}, blue against"
        return LegendSpec(lo, hi, layer.colormap, title, opacity=float(layer.opacity))
