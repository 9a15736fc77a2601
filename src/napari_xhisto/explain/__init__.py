"""Attribution engine: a registry of explainers and their tiling over slide regions.

>>> from napari_xhisto.explain import get_explainer, list_explainers
>>> "lrp-epsilon-plus" in [m["name"] for m in list_explainers()]
True
"""

from .registry import Explainer, Param, get_explainer, list_explainers, register_explainer

__all__ = ["Explainer", "Param", "get_explainer", "list_explainers", "register_explainer",
           "explain_region", "explain_patches", "Heatmap"]


def __getattr__(name):  # tiling pulls in the slide and models packages: load it on demand
    if name in ("explain_region", "explain_patches", "Heatmap"):
        from . import tiling

        return getattr(tiling, name)
    raise AttributeError(name)
