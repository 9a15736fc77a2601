"""The Annotate widget's class map: which plugin role each class name plays (no Qt).

Files keep their own class names ("Tumor", "Immune cells"); scoring needs roles (tumour cells,
tumour area ...). The widget shows one row per class in use with a drop-down of the roles of its
kind (``annotations.classmap``: ``CELL_ROLES`` or ``REGION_ROLES``, ``"ignore"``, or its own
name), starting from :func:`suggest_class_map`'s suggestion. The map travels in every
annotation layer's ``metadata["xhisto"]["class_map"]`` (Evaluate reads it there when scoring)
and is saved beside the autosave as ``<slide>.classmap.json`` (``xhisto evaluate --class-map``
reads that file).
"""

from __future__ import annotations

from pathlib import Path

from ...annotations import CELL_ROLES, REGION_ROLES, ClassMap, suggest_class_map
from ...annotations.autosave import SUFFIX
from ...annotations.classmap import IGNORE
from ...annotations.files import atomic_write
from ...errors import AnnotationError

OWN = "(own name)"
KEY = "class_map"
SIDECAR = ".classmap.json"


def role_choices(kind: str) -> list[str]:
    """What a class of ``kind`` ("cell" or "region") can be scored as, as the drop-down shows it."""
    return [OWN, *(CELL_ROLES if kind == "cell" else REGION_ROLES), IGNORE]


def sidecar_path(autosave_path) -> Path:
    """``slide.svs.annotations.geojson`` -> ``slide.svs.classmap.json`` (same folder)."""
    path = Path(autosave_path)
    name = path.name[:-len(SUFFIX)] if path.name.endswith(SUFFIX) else path.stem
    return path.with_name(name + SIDECAR)


class ClassMapping:
    """The current :class:`ClassMap` and what the widget's table shows of it."""

    def __init__(self):
        self.map = ClassMap()

    def role_text(self, name: str, kind: str) -> str:
        role = self.map.cell_role(name) if kind == "cell" else self.map.region_role(name)
        return OWN if role is None else role

    def rows(self, cells, regions) -> list[tuple[str, str, str]]:
        """``(class name, kind, role shown)`` for the cell then region classes given."""
        return ([(n, "cell", self.role_text(n, "cell")) for n in cells]
                + [(n, "region", self.role_text(n, "region")) for n in regions])

    def set_role(self, name: str, kind: str, text: str) -> None:
        """Change one entry as the drop-down names it (``OWN``: scored under its own name)."""
        self.map.set_role(name, None if text == OWN else text, kind=kind)

    def suggest_for(self, annotations) -> None:
        """Entries for the classes of an import that have none yet (a user's choice stays)."""
        suggested = suggest_class_map(annotations)
        for mine, theirs in ((self.map.cells, suggested.cells),
                             (self.map.regions, suggested.regions)):
            for name, role in theirs.items():
                mine.setdefault(name, role)

    def merge(self, other: ClassMap) -> None:
        """Take ``other``'s entries (a saved map restored)."""
        self.map.cells.update(other.cells)
        self.map.regions.update(other.regions)

    # ---- where it travels
    def to_layers(self, layers) -> None:
        data = self.map.to_dict()
        for layer in layers:
            layer.metadata["xhisto"][KEY] = data

    def from_layers(self, layers) -> None:
        for layer in layers:
            data = layer.metadata["xhisto"].get(KEY)
            if data:
                try:
                    self.merge(ClassMap.from_dict(data, source=f"layer {layer.name!r}"))
                except AnnotationError:
                    continue

    def save_beside(self, autosave_path) -> Path | None:
        """Write the map beside the autosave file (nothing when it has no entry)."""
        if not (self.map.cells or self.map.regions):
            return None
        path = sidecar_path(autosave_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        import json

        text = json.dumps(self.map.to_dict(), indent=2, ensure_ascii=False) + "\n"
        if path.exists() and path.read_text(encoding="utf-8") == text:
            return path
        return atomic_write(path, text)

    def load_beside(self, autosave_paths) -> Path | None:
        """Restore the newest map saved beside any of ``autosave_paths``; returns its path."""
        found = [sidecar_path(p) for p in autosave_paths]
        found = [p for p in dict.fromkeys(found) if p.is_file()]
        if not found:
            return None
        newest = max(found, key=lambda p: p.stat().st_mtime)
        self.merge(ClassMap.load(newest))
        return newest
