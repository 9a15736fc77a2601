"""Annotation data: cell points, tissue regions, and the set that carries both with colours.

Everything here is in level-0 pixels as (row, col). x/y appear only in the file formats.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import AnnotationError
from .objects import format_uuids, unique_stable

CELL_CLASSES = ("tumour", "lymphocyte", "stroma", "other")
REGION_CLASSES = ("tumour area", "stroma", "necrosis", "artefact", "vessel")
ARTEFACT_SUBTYPES = ("fold", "pen", "bubble", "blur")

DEFAULT_COLORS: dict[str, tuple[int, int, int]] = {
    "tumour": (200, 0, 0),
    "lymphocyte": (160, 90, 160),
    "stroma": (150, 200, 150),
    "other": (255, 200, 0),
    "tumour area": (230, 60, 60),
    "necrosis": (50, 50, 50),
    "artefact": (0, 160, 220),
    "vessel": (255, 120, 120),
}

def canonical_class(name: str, *, kind: str = "cell") -> str:
    """The suggested plugin role of a class name, or the name itself (stripped) when none fits.

    Reading no longer renames classes (see :mod:`.classmap`); this is the default suggestion of
    :func:`.classmap.suggest_role` kept under its old name.

    Examples
    --------
    >>> canonical_class("Tumor"), canonical_class("Tumor", kind="region")
    ('tumour', 'tumour area')
    >>> canonical_class("Mitosis")
    'Mitosis'
    """
    from .classmap import suggest_role

    return suggest_role(name, kind=kind) or str(name).strip()


def qupath_class_name(name: str) -> str:
    """A class name as QuPath shows it: parts of a derived class joined by ": ", each stripped.

    QuPath's ``PathClass.fromString`` splits on ":" and strips every part; ``toString`` joins the
    parts with ": " (qupath-core ``qupath/lib/objects/classes/PathClass.java``).

    Examples
    --------
    >>> qupath_class_name(" Tumor:Positive "), qupath_class_name("Immune cells")
    ('Tumor: Positive', 'Immune cells')
    """
    text = str(name)
    if ":" not in text:
        return text.strip()
    return ": ".join(part.strip() for part in text.split(":"))


def color_for_class(name: str) -> tuple[int, int, int]:
    """The default colour of a class: ours for canonical names, a stable hash colour otherwise."""
    if name in DEFAULT_COLORS:
        return DEFAULT_COLORS[name]
    digest = hashlib.md5(name.encode("utf-8")).digest()
    # keep colours away from black/white so points stay visible on H&E
    return tuple(int(40 + b * 180 / 255) for b in digest[:3])  # type: ignore[return-value]


def new_ids(n: int) -> np.ndarray:
    """``n`` fresh unique ids: random (version 4) UUID strings, as QuPath uses."""
    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16)
    return format_uuids(raw, 4)


def unusable_ids(ids) -> np.ndarray:
    """Mask of ids that are missing, empty, or repeat an earlier one (vectorised)."""
    values = np.asarray(ids, dtype=object)
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    missing = np.array([v is None or v != v for v in values], dtype=bool)  # None or NaN
    text = np.where(missing, "", values).astype(str)
    _, first = np.unique(text, return_index=True)
    repeated = np.ones(len(text), dtype=bool)
    repeated[first] = False
    return missing | (text == "") | repeated


@dataclass
class CellPoints:
    """N cells as level-0 pixel coordinates with a class each.

    Parameters
    ----------
    rows, cols : np.ndarray
        float64 (N,) level-0 pixel coordinates.
    classes : np.ndarray
        str (N,) class names, e.g. ``"tumour"``.
    ids : np.ndarray or None
        str (N,) unique ids, or None when the cells carry no ids.
    """

    rows: np.ndarray
    cols: np.ndarray
    classes: np.ndarray
    ids: np.ndarray | None = None

    def __post_init__(self):
        self.rows = np.asarray(self.rows, dtype=np.float64).reshape(-1)
        self.cols = np.asarray(self.cols, dtype=np.float64).reshape(-1)
        self.classes = np.asarray(self.classes, dtype=str).reshape(-1)
        n = self.rows.shape[0]
        if self.cols.shape[0] != n or self.classes.shape[0] != n:
            raise ValueError(
                f"CellPoints needs rows, cols and classes of one length, got "
                f"{n}, {self.cols.shape[0]}, {self.classes.shape[0]}"
            )
        if self.ids is not None:
            self.ids = np.asarray(self.ids, dtype=str).reshape(-1)
            if self.ids.shape[0] != n:
                raise ValueError(f"CellPoints got {self.ids.shape[0]} ids for {n} cells")

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @classmethod
    def empty(cls) -> CellPoints:
        """No cells."""
        return cls(np.zeros(0), np.zeros(0), np.zeros(0, dtype=str), None)

    def with_ids(self) -> CellPoints:
        """The same cells with ids everywhere: fresh random ids where missing, stable derived
        ids (:func:`.objects.derived_id`) for repeats, the first of a repeated id keeping it."""
        if self.ids is None:
            ids = new_ids(len(self))
        else:
            ids = self.ids.astype(object)
            missing = np.array([v is None or v != v or v == "" for v in ids.tolist()], dtype=bool)
            if missing.any():
                ids[missing] = new_ids(int(missing.sum()))
            ids, _ = unique_stable(ids.astype(str))
        return CellPoints(self.rows.copy(), self.cols.copy(), self.classes.copy(), ids)

    def counts(self) -> dict[str, int]:
        """Number of cells per class."""
        names, counts = np.unique(self.classes, return_counts=True)
        return {str(k): int(v) for k, v in zip(names, counts)}


@dataclass
class RegionShape:
    """A tissue region: a polygon in level-0 (row, col) pixels, possibly with holes.

    The exterior ring does NOT repeat its first vertex at the end; neither do holes.
    """

    cls: str
    exterior: np.ndarray
    holes: list[np.ndarray] = field(default_factory=list)
    name: str | None = None
    id: str | None = None

    def __post_init__(self):
        self.exterior = np.asarray(self.exterior, dtype=np.float64).reshape(-1, 2)
        self.holes = [np.asarray(h, dtype=np.float64).reshape(-1, 2) for h in self.holes]


@dataclass
class AnnotationSet:
    """Cells, regions and the colour of every class they use.

    Read from a file, a set also carries what the plugin does not score but must write back:
    ``objects`` (id -> :class:`.objects.ObjectRecord`: measurements, metadata, lock, outlines,
    the one id of a MultiPoint/MultiPolygon ...), ``kept`` (features that are neither points nor
    polygons, e.g. lines, as read) and ``skipped`` (reason -> count of objects left out).
    """

    cells: CellPoints
    regions: list[RegionShape]
    colors: dict[str, tuple[int, int, int]]
    objects: dict = field(default_factory=dict)
    kept: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)

    @classmethod
    def empty(cls) -> AnnotationSet:
        """No cells, no regions, no colours."""
        return cls(CellPoints.empty(), [], {})

    def is_empty(self) -> bool:
        return len(self.cells) == 0 and not self.regions

    def classes(self) -> list[str]:
        """Every class used by a cell or a region, cells first, in order of first use."""
        names, first = np.unique(self.cells.classes, return_index=True)
        seen = dict.fromkeys(names[np.argsort(first)].tolist())
        seen.update(dict.fromkeys(r.cls for r in self.regions))
        return list(seen)

    def color_of(self, name: str) -> tuple[int, int, int]:
        """The colour of a class: the set's own, else the default."""
        return tuple(self.colors.get(name, color_for_class(name)))  # type: ignore[return-value]

    def complete_colors(self) -> dict[str, tuple[int, int, int]]:
        """Colours for every class in use (and those already known)."""
        colors = {k: tuple(int(c) for c in v) for k, v in self.colors.items()}
        for name in self.classes():
            colors.setdefault(name, color_for_class(name))
        return colors  # type: ignore[return-value]


def merge_annotations(base: AnnotationSet, extra: AnnotationSet) -> AnnotationSet:
    """Everything in ``base`` plus everything in ``extra``; nothing is replaced or dropped.

    Cells whose id already exists in ``base`` get a fresh id, so ids stay unique. Colours of
    ``base`` win where both define a class.
    """
    a, b = base.cells.with_ids(), extra.cells.with_ids()
    if len(a) and len(b):
        clash = np.isin(b.ids, a.ids)
        if clash.any():
            b.ids[clash] = new_ids(int(clash.sum()))
    cells = CellPoints(
        np.concatenate([a.rows, b.rows]),
        np.concatenate([a.cols, b.cols]),
        np.concatenate([a.classes, b.classes]),
        np.concatenate([a.ids, b.ids]),
    )
    colors = dict(extra.colors)
    colors.update(base.colors)
    return AnnotationSet(cells, list(base.regions) + list(extra.regions), colors,
                         {**extra.objects, **base.objects}, [*base.kept, *extra.kept],
                         _added_counts([base.skipped, extra.skipped]))


def _added_counts(tables) -> dict:
    total: dict = {}
    for table in tables:
        for key, value in table.items():
            total[key] = total.get(key, 0) + int(value)
    return total


def concat_annotations(parts) -> AnnotationSet:
    """All cells, regions and colours of ``parts`` in one set (one pass, unlike repeated
    :func:`merge_annotations`); repeated or missing cell ids are renewed, the first kept."""
    parts = list(parts)
    if not parts:
        return AnnotationSet.empty()
    cells = [p.cells for p in parts]
    any_ids = any(c.ids is not None for c in cells)
    ids = None
    if any_ids:
        ids = np.concatenate([c.ids if c.ids is not None else np.full(len(c), "") for c in cells])
    joined = CellPoints(
        np.concatenate([c.rows for c in cells]),
        np.concatenate([c.cols for c in cells]),
        np.concatenate([c.classes for c in cells]),
        ids,
    )
    if any_ids and unusable_ids(joined.ids).any():
        joined = joined.with_ids()
    colors: dict = {}
    objects: dict = {}
    for p in parts:
        for name, rgb in p.colors.items():
            colors.setdefault(name, tuple(rgb))
        for key, record in p.objects.items():
            objects.setdefault(key, record)
    return AnnotationSet(joined, [r for p in parts for r in p.regions], colors, objects,
                         [f for p in parts for f in p.kept],
                         _added_counts(p.skipped for p in parts))


def qupath_origin(properties) -> tuple[float, float]:
    """(row, col) of level 0 that QuPath calls (0, 0): openslide's ``bounds-y``, ``bounds-x``.

    QuPath shows only the bounded area of slides that declare bounds (e.g. MRXS), so file
    coordinates are level-0 minus this origin. Slides without bounds: (0, 0).

    Examples
    --------
    >>> qupath_origin({"openslide.bounds-x": "1024", "openslide.bounds-y": "512"})
    (512.0, 1024.0)
    >>> qupath_origin({})
    (0.0, 0.0)
    """
    properties = properties or {}

    def number(key: str) -> float:
        try:
            return float(properties.get(key, 0) or 0)
        except (TypeError, ValueError):
            return 0.0

    return number("openslide.bounds-y"), number("openslide.bounds-x")


def check_class_name(name: str) -> str:
    """A usable class name (non-empty after stripping) or an AnnotationError."""
    text = str(name).strip()
    if not text:
        raise AnnotationError("a class name cannot be empty: type a name such as 'tumour'")
    return text
