"""Which plugin role each class of an annotation file plays: an explicit, editable mapping.

Files keep their own class names ("Tumor", "Immune cells", "Tumor: Positive" ...). Scoring
needs the plugin's roles (cells: tumour / lymphocyte / stroma / other; regions: tumour area /
stroma / necrosis / artefact / vessel). A :class:`ClassMap` says which name plays which role,
separately for cells and regions (a "Tumor" point is a tumour cell, a "Tumor" polygon a tumour
area). It is plain data: shown and edited in the Annotate widget, saved as JSON, and passed to
``xhisto evaluate --class-map FILE.json``. The names in the annotations never change; only
:func:`apply_class_map` makes a scoring copy that carries roles instead of names.

Role ``None`` means "no role": the class is scored under its own name (e.g. "Mitosis").
Role ``"ignore"`` leaves the class out of scoring (QuPath's "Ignore*" class suggests it).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import AnnotationError

CELL_ROLES = ("tumour", "lymphocyte", "stroma", "other")
REGION_ROLES = ("tumour area", "stroma", "necrosis", "artefact", "vessel")
IGNORE = "ignore"
FORMAT_VERSION = 1

# the default suggestion: QuPath's standard class names (PathClass.StandardPathClasses:
# "Tumor", "Stroma", "Immune cells", "Necrosis", "Other", "Ignore*"), common spellings, and our
# own role names (which map to themselves)
_CELL_SUGGESTIONS = {
    "tumour": "tumour", "tumor": "tumour", "tumour cell": "tumour", "tumor cell": "tumour",
    "tumour cells": "tumour", "tumor cells": "tumour", "neoplastic": "tumour",
    "lymphocyte": "lymphocyte", "lymphocytes": "lymphocyte", "immune cells": "lymphocyte",
    "immune cell": "lymphocyte", "immune": "lymphocyte",
    "stroma": "stroma", "stromal": "stroma", "stromal cell": "stroma", "fibroblast": "stroma",
    "other": "other", "other cells": "other",
    "ignore*": IGNORE, "ignore": IGNORE,
}
_REGION_SUGGESTIONS = {
    "tumour area": "tumour area", "tumor area": "tumour area", "tumour": "tumour area",
    "tumor": "tumour area", "tumour region": "tumour area", "tumor region": "tumour area",
    "stroma": "stroma",
    "necrosis": "necrosis", "necrotic": "necrosis",
    "artefact": "artefact", "artifact": "artefact", "artefacts": "artefact",
    "artifacts": "artefact", "fold": "artefact", "pen": "artefact", "pen mark": "artefact",
    "bubble": "artefact", "blur": "artefact",
    "vessel": "vessel", "vessels": "vessel", "blood vessel": "vessel",
    "ignore*": IGNORE, "ignore": IGNORE,
}


def _roles(kind: str) -> tuple[str, ...]:
    return (CELL_ROLES if kind == "cell" else REGION_ROLES) + (IGNORE,)


def suggest_role(name: str, *, kind: str = "cell") -> str | None:
    """The default role of a class name (None when nothing fits).

    Exact (case-insensitive) matches first; a derived QuPath class ("Tumor: Positive") falls
    back to its base class.

    Examples
    --------
    >>> suggest_role("Tumor"), suggest_role("Tumor", kind="region")
    ('tumour', 'tumour area')
    >>> suggest_role("Tumor: Positive"), suggest_role("Artefact", kind="region")
    ('tumour', 'artefact')
    >>> suggest_role("Mitosis") is None
    True
    """
    table = _REGION_SUGGESTIONS if kind == "region" else _CELL_SUGGESTIONS
    key = str(name).strip().lower()
    if key in table:
        return table[key]
    base = key.split(":")[0].strip()
    return table.get(base)


def _check_role(role, kind: str, where: str) -> str | None:
    if role is None:
        return None
    allowed = _roles(kind)
    if isinstance(role, str) and role in allowed:
        return role
    close = difflib.get_close_matches(str(role), allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise AnnotationError(
        f"{where}: {role!r} is not a {kind} role; use one of {', '.join(map(repr, allowed))} "
        f"or null (scored under its own name){hint}")


@dataclass
class ClassMap:
    """File class name -> plugin role, for cells and for regions.

    Names missing from a table get :func:`suggest_role`'s suggestion, so a map that lists only
    the names a user changed is enough.
    """

    cells: dict[str, str | None] = field(default_factory=dict)
    regions: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self):
        self.cells = {str(k): _check_role(v, "cell", f"class {k!r}") for k, v in self.cells.items()}
        self.regions = {str(k): _check_role(v, "region", f"class {k!r}")
                        for k, v in self.regions.items()}

    def cell_role(self, name: str) -> str | None:
        """The role of cells of class ``name`` (None: scored under the name itself)."""
        return self.cells[name] if name in self.cells else suggest_role(name, kind="cell")

    def region_role(self, name: str) -> str | None:
        """The role of regions of class ``name`` (None: scored under the name itself)."""
        return self.regions[name] if name in self.regions else suggest_role(name, kind="region")

    def set_role(self, name: str, role: str | None, *, kind: str = "cell") -> None:
        """Change one entry (what the widget's mapping table calls)."""
        table = self.cells if kind == "cell" else self.regions
        table[str(name)] = _check_role(role, kind, f"class {name!r}")

    def to_dict(self) -> dict:
        """Plain JSON data: ``{"version": 1, "cells": {...}, "regions": {...}}``."""
        return {"version": FORMAT_VERSION, "cells": dict(self.cells), "regions": dict(self.regions)}

    @classmethod
    def from_dict(cls, data, *, source: str = "class map") -> ClassMap:
        """A map from :meth:`to_dict`'s form; AnnotationError naming the problem otherwise."""
        if not isinstance(data, dict):
            raise AnnotationError(f"{source}: expected an object {{\"cells\": {{...}}, "
                                  f"\"regions\": {{...}}}}, got {type(data).__name__}")
        unknown = set(data) - {"version", "cells", "regions"}
        if unknown:
            key = sorted(unknown)[0]
            close = difflib.get_close_matches(key, ["cells", "regions", "version"], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise AnnotationError(f"{source}: unknown key {key!r} (use 'cells' and 'regions', "
                                  f"each mapping a class name to a role){hint}")
        tables = {}
        for kind, key in (("cell", "cells"), ("region", "regions")):
            table = data.get(key, {})
            if not isinstance(table, dict):
                raise AnnotationError(f"{source}: {key!r} must map class names to roles, got "
                                      f"{type(table).__name__}")
            tables[key] = {str(k): _check_role(v, kind, f"{source}: {key}[{k!r}]")
                           for k, v in table.items()}
        return cls(tables["cells"], tables["regions"])

    def save(self, path) -> Path:
        """Write the map as JSON (indented, readable, editable by hand)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n",
                        encoding="utf-8")
        return path

    @classmethod
    def load(cls, path) -> ClassMap:
        """Read a map written by :meth:`save` (or by hand)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise AnnotationError(f"class map not found: {path}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise AnnotationError(f"{path.name}: cannot read the class map ({err})") from None
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as err:
            raise AnnotationError(f"{path.name}: the class map is not valid JSON ({err})") from None
        return cls.from_dict(data, source=path.name)


def used_classes(annotations) -> tuple[list[str], list[str]]:
    """(cell classes, region classes) in use, in order of first use."""
    names, first = np.unique(annotations.cells.classes, return_index=True)
    cells = names[np.argsort(first)].tolist()
    regions = list(dict.fromkeys(r.cls for r in annotations.regions))
    return cells, regions


def suggest_class_map(annotations) -> ClassMap:
    """The default map for every class ``annotations`` uses (what the widget shows first)."""
    cells, regions = used_classes(annotations)
    return ClassMap({n: suggest_role(n, kind="cell") for n in cells},
                    {n: suggest_role(n, kind="region") for n in regions})


def load_class_map(path=None, annotations=None) -> ClassMap:
    """The map for a ``--class-map FILE.json`` option: the file's entries over the suggestion.

    Parameters
    ----------
    path : str or Path, optional
        A JSON file as :meth:`ClassMap.save` writes; None gives the suggestion alone.
    annotations : AnnotationSet, optional
        When given, every class it uses gets an explicit entry (shown in reports).
    """
    base = suggest_class_map(annotations) if annotations is not None else ClassMap()
    if path is None:
        return base
    given = ClassMap.load(path)
    base.cells.update(given.cells)
    base.regions.update(given.regions)
    return base


def cell_roles(classes, class_map: ClassMap | None = None) -> np.ndarray:
    """The scoring class of each cell: its role, or its own name when it has none."""
    class_map = class_map or ClassMap()
    classes = np.asarray(classes, dtype=str)
    names, inverse = np.unique(classes, return_inverse=True)
    mapped = [class_map.cell_role(n) or n for n in names.tolist()]
    return np.asarray(mapped, dtype=str)[inverse.reshape(-1)] if len(names) else classes.copy()


def apply_class_map(annotations, class_map: ClassMap | None = None):
    """A scoring copy of ``annotations`` whose classes are roles (never write it back).

    Cells and regions with role ``"ignore"`` are left out; classes without a role keep their
    name. Ids, positions and shapes are shared with the original.
    """
    from .model import AnnotationSet, CellPoints, RegionShape

    class_map = class_map or ClassMap()
    cells = annotations.cells
    roles = cell_roles(cells.classes, class_map)
    keep = roles != IGNORE
    scored = CellPoints(cells.rows[keep], cells.cols[keep], roles[keep],
                        None if cells.ids is None else cells.ids[keep])
    regions = []
    for region in annotations.regions:
        role = class_map.region_role(region.cls) or region.cls
        if role != IGNORE:
            regions.append(RegionShape(role, region.exterior, region.holes, region.name, region.id))
    colors = {}
    for name, rgb in annotations.colors.items():
        for role in (class_map.cell_role(name), class_map.region_role(name)):
            if role and role != IGNORE:
                colors.setdefault(role, tuple(rgb))
        colors.setdefault(name, tuple(rgb))
    return AnnotationSet(scored, regions, colors)
