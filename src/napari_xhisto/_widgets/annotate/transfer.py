"""Annotations into the Annotate widget's layers and back out, in level-0 pixels, losslessly.

The layers are made in the slide's frame (scale = µm per level-0 px, translate = the slide's), so
their data *are* level-0 pixels: an import writes the file's positions into them as they are and
an export reads them back as they are, with no µm round trip (which would turn 100.5 into
100.50000000000001 and make every untouched QuPath object look moved). Layers in another frame
(made before the slide was opened) go through world µm as napari places them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from ..._writer import points_to_annotations, shapes_to_annotations
from ...annotations import AnnotationSet, regions_to_shapes_data
from ...annotations.model import concat_annotations

_IDENTITY = {"scale": (1.0, 1.0), "translate": (0.0, 0.0)}


def _layer_meta(ctrl, layer, kind: str) -> dict:
    """The layer state the npe2 writer functions read, in level-0 px when that is exact."""
    mpp, translate, _ = ctrl.slide_frame()
    info = dict(layer.metadata["xhisto"], colors=ctrl.colors)
    if ctrl.in_slide_frame(layer):
        meta = dict(_IDENTITY)
        info.update(mpp=1.0, slide_translate=[0.0, 0.0])
    else:
        meta = {"scale": layer.scale, "translate": layer.translate}
        info.update(mpp=mpp, slide_translate=translate)
    meta.update(features=layer.features, metadata={"xhisto": info})
    if kind == "shapes":
        meta["shape_type"] = layer.shape_type
    return meta


def annotations_of(ctrl) -> AnnotationSet:
    """Everything in ``ctrl``'s layers, with the records and kept features of the imports."""
    parts = [points_to_annotations(layer.data, _layer_meta(ctrl, layer, "points"))
             for layer in ctrl.cell_layers.values() if len(layer.data)]
    parts += [shapes_to_annotations(layer.data, _layer_meta(ctrl, layer, "shapes"))
              for layer in ctrl.region_layers.values() if len(layer.data)]
    result = concat_annotations(parts)
    result.colors = {name: ctrl.colors[name] for name in result.classes()}
    objects, kept = ctrl._records.collect(ctrl.layers())
    result.objects = objects
    result.kept = kept + [k for k in ctrl.loose_kept if all(k is not j for j in kept)]
    return result


def load_into(ctrl, annotations: AnnotationSet) -> list:
    """Add ``annotations`` to ``ctrl``'s layers (making those of new classes); returns the
    layers filled. Ids already shown get fresh ones."""
    mpp, translate, _ = ctrl.slide_frame()
    for name, rgb in annotations.colors.items():
        ctrl.colors.setdefault(name, tuple(rgb))
    filled = []
    cells = annotations.cells.with_ids() if len(annotations.cells) else annotations.cells
    taken = {i for layer in ctrl.cell_layers.values() for i in layer.features["id"]}
    for name in dict.fromkeys(cells.classes.tolist()):
        mask = cells.classes == name
        rc = np.stack([cells.rows[mask], cells.cols[mask]], axis=1)
        ids = [i if i not in taken else None for i in cells.ids[mask]]
        layer = ctrl.cell_layer(name)
        data = rc if ctrl.in_slide_frame(layer) else ctrl._to_data(layer, rc * mpp + translate)
        ctrl._set_points(layer, np.concatenate([layer.data, data]),
                         list(layer.features["id"]) + ids)
        filled.append(layer)
    taken = {i for layer in ctrl.region_layers.values() for i in layer.features["id"]}
    for name in dict.fromkeys(r.cls for r in annotations.regions):
        # a region id already shown gets a fresh one (before its holes are filed under it)
        regions = [r if r.id not in taken else replace(r, id=None)
                   for r in annotations.regions if r.cls == name]
        layer = ctrl.region_layer(name)
        exact = ctrl.in_slide_frame(layer)
        data, _, features, holes = regions_to_shapes_data(regions, 1.0 if exact else mpp)

        def to_data(d, layer=layer, exact=exact):
            return np.asarray(d, dtype=np.float64) if exact else ctrl._to_data(layer, d + translate)

        ctrl.updating = True
        try:
            old = layer.features.copy()
            layer.add_polygons([to_data(d) for d in data])
            layer.features = pd.concat([old, pd.DataFrame(features)], ignore_index=True)
            layer.metadata["xhisto"]["holes"].update(
                {k: [to_data(h) for h in v] for k, v in holes.items()})
        finally:
            ctrl.updating = False
        ctrl.normalise_features(layer)
        filled.append(layer)
    return filled
