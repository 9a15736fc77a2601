"""npe2 writer for heatmap and probability image layers: ``File > Save Selected Layers`` as OME-TIFF.

No napari import here: npe2 calls :func:`write_heatmap_layer` with the layer's data and
attributes. napari's save dialog has already asked before replacing a file, so an existing
file is replaced.
"""

from __future__ import annotations

from ..errors import XhistoError
from ..geometry import Placement
from .tiled_writer import write_heatmap_tiles
from .tiles import ArrayTiles


def layer_placement(attributes: dict) -> tuple[Placement, float | None, dict]:
    """(placement, mpp, provenance) of an image layer, from our metadata or its scale/translate.

    Layers we made carry the exact placement in ``metadata["xhisto"]``; for any other 2-D image
    the world units are taken as level-0 pixels (mpp unknown) and the placement inverts napari's
    pixel-centre convention (``translate`` is the centre of pixel 0).
    """
    meta = (attributes.get("metadata") or {}).get("xhisto") or {}
    if "placement" in meta:
        prov = {"kind": meta.get("kind", "heatmap"), **dict(meta.get("provenance") or {})}
        if meta.get("class_name"):
            prov.setdefault("target", meta["class_name"])
        return Placement.from_dict(meta["placement"]), meta.get("mpp"), prov
    scale = [float(s) for s in (attributes.get("scale") or (1.0, 1.0))][-2:]
    translate = [float(t) for t in (attributes.get("translate") or (0.0, 0.0))][-2:]
    placement = Placement(translate[0] - (scale[0] - 1) / 2, translate[1] - (scale[1] - 1) / 2,
                          scale[0], scale[1])
    return placement, None, {"kind": "image", "name": attributes.get("name", "")}


def write_heatmap_layer(path: str, data, attributes: dict) -> list[str]:
    """Write one 2-D image layer (a heatmap, probability map or any float image) as OME-TIFF.

    Multiscale layers are written from their full-resolution level, window by window.
    """
    # napari hands a multiscale layer's data as its MultiScaleData (a sequence, not a list)
    multiscale = isinstance(data, list | tuple) or bool(attributes.get("multiscale"))
    level0 = data[0] if multiscale else data
    if len(getattr(level0, "shape", ())) != 2:
        raise XhistoError(f"only single-channel 2-D layers are saved as heatmaps; "
                          f"{attributes.get('name', 'this layer')} has shape {getattr(level0, 'shape', None)}")
    placement, mpp, prov = layer_placement(attributes)
    prov.setdefault("name", attributes.get("name", ""))
    if attributes.get("contrast_limits") is not None:  # opens again as it was shown
        prov["display_limits"] = [float(v) for v in attributes["contrast_limits"]]
    source = ArrayTiles(level0, placement, mpp=mpp, provenance=prov)
    out = write_heatmap_tiles(path, source.shape, source.read, placement, mpp=mpp, provenance=prov,
                              overwrite=True)
    return [str(out)]
