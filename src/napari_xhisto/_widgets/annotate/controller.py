"""The Annotate widget's classes and layers, without a window (napari's layer model only).

A class is a name and a colour; its napari layer (Points for cells, Shapes for regions) is made
only when the class is first used: picked for annotating, imported, restored from an autosave.
So opening the widget adds no empty layers. Layers are made in the slide's frame: the slide
layer's ``scale`` (µm per level-0 px), ``translate`` and ``units`` (µm), so their data are
level-0 pixels and napari never sees inconsistent units.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from ..._writer import find_slide_layer
from ...annotations import AnnotationSet, color_for_class, qupath_origin
from ...annotations.model import new_ids, unusable_ids
from ...errors import XhistoError
from .mapping import KEY as MAP_KEY
from .mapping import ClassMapping
from .records import RecordCache, attach

REGION_LAYER_CLASSES = ("necrosis", "artefact", "vessel", "tumour area")
CELL_PREFIX, REGION_PREFIX = "cells: ", "regions: "
POINT_SIZE_UM = 8.0
REGION_EDGE_UM = 2.0


def hex_colour(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb))


def _info(layer) -> dict:
    meta = getattr(layer, "metadata", None)
    info = meta.get("xhisto") if isinstance(meta, dict) else None
    return info if isinstance(info, dict) else {}


class AnnotationLayers:
    """Cell and region classes of one viewer, their (lazily made) layers and their contents.

    Parameters
    ----------
    viewer : napari.components.ViewerModel
    on_change : callable, optional
        Called with no argument after every change of annotations (counts, autosave).
    on_layer : callable, optional
        Called with ``(kind, name, layer)`` when a class's layer is made or adopted.
    """

    def __init__(self, viewer, *, on_change=None, on_layer=None):
        self.viewer = viewer
        self.colors: dict[str, tuple[int, int, int]] = {}
        self.cell_classes: list[str] = []
        self.region_classes: list[str] = []
        self.cell_layers: dict = {}
        self.region_layers: dict = {}
        self.updating = False
        self._on_change = on_change or (lambda: None)
        self._on_layer = on_layer or (lambda kind, name, layer: None)
        self._listeners: list = []
        self.mapping = ClassMapping()
        self._records = RecordCache()
        self.loose_kept: list = []  # kept features of an import that filled no layer

    # ---- slide frame
    def slide_frame(self) -> tuple[float, np.ndarray, object]:
        """(µm per px, slide translate, slide layer or None); scale 1 without a slide."""
        layer = find_slide_layer(self.viewer)
        if layer is None:
            return 1.0, np.zeros(2), None
        return float(layer.scale[-1]), np.asarray(layer.translate[-2:], dtype=float), layer

    def file_origin(self) -> tuple[float, float]:
        """Level-0 (row, col) of QuPath's (0, 0) for the open slide (openslide bounds)."""
        _, _, slide = self.slide_frame()
        if slide is None:
            return (0.0, 0.0)
        return qupath_origin(slide.metadata["xhisto"].get("properties"))

    def record_frame(self, info: dict) -> None:
        """Keep the slide's µm/px in a layer's metadata, so napari's own Save uses it."""
        mpp, translate, slide = self.slide_frame()
        info["mpp"] = mpp if slide is not None else None
        info["slide_translate"] = [float(t) for t in translate]
        info["qupath_origin"] = list(self.file_origin())

    def refresh_frames(self) -> None:
        for layer in [*self.cell_layers.values(), *self.region_layers.values()]:
            self.record_frame(layer.metadata["xhisto"])

    def _frame_kwargs(self) -> dict:
        """scale, translate and units of the slide layer (none without a slide)."""
        _, _, slide = self.slide_frame()
        if slide is None:
            return {}
        return {"scale": tuple(slide.scale[-2:]), "translate": tuple(slide.translate[-2:]),
                "units": tuple(slide.units[-2:])}

    # ---- classes
    def adopt_existing(self) -> None:
        """Take over the annotation layers already in the viewer (e.g. of a closed widget)."""
        for layer in list(self.viewer.layers):
            info = _info(layer)
            if info.get("kind") == "cells" and info.get("class"):
                self.add_cell_class(info["class"])
                self._adopt("cells", info["class"], layer)
            elif info.get("kind") == "regions" and info.get("class"):
                self.add_region_class(info["class"])
                self._adopt("regions", info["class"], layer)
        self.mapping.from_layers(self.layers())

    def _add_class(self, names: list, name, color, what: str) -> str:
        name = str(name).strip()
        if not name:
            raise XhistoError(f"type a {what} class name first, e.g. "
                              + ("'mitosis'" if what == "cell" else "'tumour area'"))
        if name not in names:
            names.append(name)
        if color is not None:
            self.colors[name] = tuple(int(c) for c in color)
        else:
            self.colors.setdefault(name, tuple(color_for_class(name)))
        return name

    def add_cell_class(self, name: str, color=None) -> str:
        """Offer cell class ``name`` (no layer until it is used); returns the clean name."""
        return self._add_class(self.cell_classes, name, color, "cell")

    def add_region_class(self, name: str, color=None) -> str:
        """Offer region class ``name`` (no layer until it is used); returns the clean name."""
        return self._add_class(self.region_classes, name, color, "region")

    # ---- layers, made when first used
    def _existing(self, kind: str, name: str):
        for layer in self.viewer.layers:
            info = _info(layer)
            if info.get("kind") == kind and info.get("class") == name:
                return layer
        return None

    def _metadata(self, kind: str, name: str) -> dict:
        info = {"kind": kind, "class": name, "holes": {}, MAP_KEY: self.mapping.map.to_dict()}
        self.record_frame(info)
        return {"xhisto": info}

    def _adopt(self, kind: str, name: str, layer):
        table = self.cell_layers if kind == "cells" else self.region_layers
        if table.get(name) is layer:
            return layer
        table[name] = layer
        callback = partial(self._on_data, layer)
        layer.events.data.connect(callback)
        self._listeners.append((layer.events.data, callback))
        self._on_layer(kind, name, layer)
        return layer

    def cell_layer(self, name: str):
        """The points layer of cell class ``name``, made (or adopted) on first use."""
        name = self.add_cell_class(name)
        if name in self.cell_layers:
            return self.cell_layers[name]
        layer = self._existing("cells", name)
        if layer is None:
            mpp, _, slide = self.slide_frame()
            colour = hex_colour(self.colors[name])
            layer = self.viewer.add_points(
                np.zeros((0, 2)), name=CELL_PREFIX + name, ndim=2,
                size=POINT_SIZE_UM / mpp if slide is not None else 2 * POINT_SIZE_UM,
                features=pd.DataFrame({"class": pd.Series([], dtype=object),
                                       "id": pd.Series([], dtype=object)}),
                feature_defaults={"class": name, "id": ""}, face_color=colour,
                border_color="white", metadata=self._metadata("cells", name),
                **self._frame_kwargs())
            layer.current_face_color = colour
        return self._adopt("cells", name, layer)

    def region_layer(self, name: str):
        """The shapes layer of region class ``name``, made (or adopted) on first use."""
        name = self.add_region_class(name)
        if name in self.region_layers:
            return self.region_layers[name]
        layer = self._existing("regions", name)
        if layer is None:
            mpp, _, slide = self.slide_frame()
            colour = hex_colour(self.colors[name])
            layer = self.viewer.add_shapes(
                None, ndim=2, name=REGION_PREFIX + name, edge_color=colour,
                face_color=colour + "40", edge_width=REGION_EDGE_UM / (mpp if slide else 1.0),
                features=pd.DataFrame({"class": pd.Series([], dtype=object),
                                       "name": pd.Series([], dtype=object),
                                       "id": pd.Series([], dtype=object)}),
                feature_defaults={"class": name, "name": "", "id": ""},
                metadata=self._metadata("regions", name), **self._frame_kwargs())
            layer.current_edge_color, layer.current_face_color = colour, colour + "40"
        return self._adopt("regions", name, layer)

    def forget(self, layer) -> None:
        """A layer was deleted: its class stays on offer, a new layer is made when used again."""
        for table in (self.cell_layers, self.region_layers):
            for name, known in list(table.items()):
                if known is layer:
                    del table[name]

    def disconnect(self) -> None:
        while self._listeners:
            emitter, callback = self._listeners.pop()
            try:
                emitter.disconnect(callback)
            except (RuntimeError, ValueError, TypeError):
                pass

    def set_class_color(self, name: str, rgb) -> None:
        """Change the colour of a class (its layer, if made, and future exports)."""
        self.colors[name] = tuple(int(c) for c in rgb)
        colour = hex_colour(self.colors[name])
        if name in self.cell_layers:
            layer = self.cell_layers[name]
            layer.current_face_color = colour
            if len(layer.data):
                layer.face_color = colour
        if name in self.region_layers:
            layer = self.region_layers[name]
            layer.current_edge_color, layer.current_face_color = colour, colour + "40"
            if len(layer.data):
                layer.edge_color, layer.face_color = colour, colour + "40"

    # ---- contents
    def counts(self) -> dict[str, int]:
        """Cells per class (0 for a class without a layer yet)."""
        return {name: len(self.cell_layers[name].data) if name in self.cell_layers else 0
                for name in self.cell_classes}

    def region_counts(self) -> dict[str, int]:
        return {name: len(self.region_layers[name].data) if name in self.region_layers else 0
                for name in self.region_classes}

    def is_empty(self) -> bool:
        layers = [*self.cell_layers.values(), *self.region_layers.values()]
        return all(len(layer.data) == 0 for layer in layers)

    def _on_data(self, layer, event) -> None:
        if self.updating or str(getattr(event, "action", "")) in ("adding", "removing", "changing"):
            return
        self.normalise_features(layer)
        self._on_change()

    def normalise_features(self, layer) -> None:
        """Every row carries its layer's class and a unique id (new points come without)."""
        info = layer.metadata["xhisto"]
        features = layer.features
        n = len(layer.data)
        if len(features) != n:
            return
        ids = np.asarray(features["id"] if "id" in features else [None] * n, dtype=object)
        bad = unusable_ids(ids)
        wrong_class = "class" not in features or bool((features["class"] != info["class"]).any())
        if bad.any() or wrong_class:
            ids = ids.copy()
            ids[bad] = new_ids(int(bad.sum()))
            features = features.copy()
            features["class"] = pd.Series([info["class"]] * n, dtype=object)
            features["id"] = pd.Series(ids, dtype=object)
            layer.features = features

    def _set_points(self, layer, data, ids) -> None:
        name = layer.metadata["xhisto"]["class"]
        self.updating = True
        try:
            layer.selected_data = set()
            layer.data = np.asarray(data, dtype=np.float64).reshape(-1, 2)
            layer.features = pd.DataFrame({"class": pd.Series([name] * len(ids), dtype=object),
                                           "id": pd.Series(list(ids), dtype=object)})
            if len(layer.data):
                layer.face_color = hex_colour(self.colors[name])
        finally:
            self.updating = False
        self.normalise_features(layer)

    @staticmethod
    def _to_data(layer, world) -> np.ndarray:
        return (np.asarray(world, dtype=np.float64).reshape(-1, 2)
                - np.asarray(layer.translate)[-2:]) / np.asarray(layer.scale)[-2:]

    def add_points(self, positions_um, cls: str, *, ids=None):
        """Append cells of class ``cls`` at world positions (N, 2) in µm (as if clicked)."""
        layer = self.cell_layer(cls)
        data = self._to_data(layer, positions_um)
        fresh = [None] * len(data) if ids is None else list(ids)
        self._set_points(layer, np.concatenate([layer.data, data]),
                         list(layer.features["id"]) + fresh)
        self._on_change()
        return layer

    def set_class_of_selected(self, target: str) -> int:
        """Move the selected points of every cell layer to class ``target``; returns how many."""
        moving = [ly for ly in self.cell_layers.values() if ly.selected_data]
        if not moving or (len(moving) == 1 and moving[0] is self.cell_layers.get(target)):
            return 0
        target_layer = self.cell_layer(target)
        moved, moved_ids = [], []
        for layer in moving:
            if layer is target_layer:
                continue
            chosen = np.array(sorted(layer.selected_data), dtype=int)
            keep = np.setdiff1d(np.arange(len(layer.data)), chosen)
            ids = np.asarray(layer.features["id"], dtype=object)
            if same_frame(layer, target_layer):  # level-0 px as they are: no rounding
                moved.append(np.asarray(layer.data[chosen], dtype=np.float64))
            else:
                moved.append(self._to_data(target_layer,
                                           layer.data[chosen] * layer.scale + layer.translate))
            moved_ids.extend(ids[chosen])
            self._set_points(layer, layer.data[keep], ids[keep])
        self._set_points(target_layer, np.concatenate([target_layer.data, *moved]),
                         list(target_layer.features["id"]) + moved_ids)
        self._on_change()
        return len(moved_ids)

    # ---- annotations in and out (level-0 px)
    def layers(self) -> list:
        """The annotation layers (cells, then regions)."""
        return [*self.cell_layers.values(), *self.region_layers.values()]

    def in_slide_frame(self, layer) -> bool:
        """Whether ``layer``'s data are level-0 px (scale and translate of the slide)."""
        mpp, translate, slide = self.slide_frame()
        if slide is None:
            return bool(np.all(np.asarray(layer.scale)[-2:] == 1)
                        and np.all(np.asarray(layer.translate)[-2:] == 0))
        return same_frame(layer, slide)

    def annotation_set(self) -> AnnotationSet:
        """Everything in the annotation layers, in level-0 pixels, with the records and kept
        features of imported files (written back by every export and autosave)."""
        from .transfer import annotations_of

        return annotations_of(self)

    def set_class_map(self, name: str, kind: str, text: str) -> None:
        """Change the role of class ``name`` (``kind`` "cell" or "region"), everywhere."""
        self.mapping.set_role(name, kind, text)
        self.mapping.to_layers(self.layers())
        self._on_change()

    def clear(self) -> None:
        """Remove every annotation (layers stay)."""
        for layer in self.cell_layers.values():
            self._set_points(layer, np.zeros((0, 2)), [])
        for layer in self.region_layers.values():
            self.updating = True
            try:
                layer.data = []
            finally:
                self.updating = False

    def load(self, annotations: AnnotationSet) -> None:
        """Add ``annotations`` (level-0 px) to the layers, making those of new classes; ids
        already shown get fresh ones. Nothing is dropped: the file's records and kept
        features ride along in the metadata of the layers filled, its class names get rows in
        the class map (suggested roles; a choice already made stays)."""
        from .transfer import load_into

        self.mapping.suggest_for(annotations)
        filled = load_into(self, annotations)
        if filled:
            attach(filled, annotations)
        else:
            self.loose_kept.extend(annotations.kept)
        self.mapping.to_layers(self.layers())
        self._on_change()


def same_frame(a, b) -> bool:
    """Whether two layers have the same scale and translate on their last two axes."""
    return (np.array_equal(np.asarray(a.scale)[-2:], np.asarray(b.scale)[-2:])
            and np.array_equal(np.asarray(a.translate)[-2:], np.asarray(b.translate)[-2:]))
