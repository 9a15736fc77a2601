"""What an imported file says beyond positions and classes, carried in the layers' metadata.

A QuPath export holds measurements, metadata, locks, per-object colours, MultiPoint/MultiPolygon
grouping, cell and nucleus outlines and features the plugin does not score (lines ...). Reading
keeps them in :attr:`AnnotationSet.objects` (records) and :attr:`AnnotationSet.kept`; the widget
carries both as plain JSON in ``metadata["xhisto"]["objects"]`` / ``["kept"]`` of the layers an
import filled, and gives them back to every export and autosave, so import -> edit -> export
loses nothing. A layer that is deleted takes its share with it; a record whose cells or regions
are all gone is not written (the writer skips it).
"""

from __future__ import annotations

from ...annotations.objects import objects_from_json, objects_to_json

OBJECTS, KEPT, VERSION = "objects", "kept", "objects_version"


def attach(layers, annotations) -> None:
    """Put the records and kept features of ``annotations`` in each of ``layers``' metadata.

    The same JSON dicts are shared by the layers (no copies); a record already there is
    replaced by the newer import's.
    """
    records = objects_to_json(annotations.objects) if annotations.objects else {}
    kept = list(annotations.kept)
    if not records and not kept:
        return
    for layer in layers:
        info = layer.metadata["xhisto"]
        if records:
            info.setdefault(OBJECTS, {}).update(records)
            info[VERSION] = info.get(VERSION, 0) + 1
        if kept:
            have = {id(item) for item in info.setdefault(KEPT, [])}
            info[KEPT].extend(item for item in kept if id(item) not in have)


class RecordCache:
    """The records of a set of layers as :class:`ObjectRecord` objects, rebuilt only when a
    layer's record table changed (autosave reads them after every edit)."""

    def __init__(self):
        self._key = None
        self._objects: dict = {}

    def collect(self, layers) -> tuple[dict, list]:
        """``(objects, kept)`` of ``layers``: records by id, kept features once each."""
        infos = [layer.metadata["xhisto"] for layer in layers]
        tables = [info.get(OBJECTS) or {} for info in infos]
        key = tuple((id(t), len(t), info.get(VERSION, 0)) for t, info in zip(tables, infos))
        if key != self._key:
            merged: dict = {}
            for table in tables:
                merged.update(table)
            self._objects = objects_from_json(merged)
            self._key = key
        kept, seen = [], set()
        for layer in layers:
            for item in layer.metadata["xhisto"].get(KEPT) or ():
                if id(item) not in seen:
                    seen.add(id(item))
                    kept.append(item)
        return dict(self._objects), kept
