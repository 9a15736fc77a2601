"""STUDY.csv: the slides of a study, one row per slide (or per slide region), checked up front.

Columns (header names are case-insensitive; order is free):

``path`` (required)
    The slide file; relative paths are read relative to the CSV's folder.
``annotations``
    QuPath GeoJSON (or cell CSV) in level-0 pixels; needed by ``--task evaluate``.
``label``
    The slide's label (e.g. ``tumour``/``normal`` or ``1``/``0``); gives a slide-level AUC.
``region``
    Level-0 pixels ``row,col,height,width`` (quote it: it holds commas); empty = whole slide.
``id``
    The slide's folder name under ``--out``; default: the file name without its extension
    (with the region appended when one slide appears with several regions).

Other columns are carried to ``results.csv`` untouched.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import XhistoError
from ..geometry import Region

__all__ = ["StudyRow", "read_study", "slide_stem"]

KNOWN = ("path", "annotations", "label", "region", "id")
_SLIDE_SUFFIXES = (".ome.tiff", ".ome.tif", ".svs", ".tiff", ".tif", ".ndpi", ".mrxs", ".scn",
                   ".bif", ".vms", ".vmu", ".svslide", ".dcm")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class StudyRow:
    """One line of a study: a slide (or a region of one) and what goes with it."""

    line: int  # 1-based line number in the CSV (the header is line 1)
    slide_id: str
    path: Path
    annotations: Path | None = None
    label: str | None = None
    region: Region | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"line": self.line, "slide_id": self.slide_id, "path": str(self.path),
                "annotations": None if self.annotations is None else str(self.annotations),
                "label": self.label,
                "region": None if self.region is None else list(self.region.as_tuple()),
                "extra": dict(self.extra)}

    @classmethod
    def from_dict(cls, d: dict) -> StudyRow:
        return cls(line=int(d["line"]), slide_id=d["slide_id"], path=Path(d["path"]),
                   annotations=None if d.get("annotations") is None else Path(d["annotations"]),
                   label=d.get("label"),
                   region=None if d.get("region") is None else Region(*d["region"]),
                   extra=dict(d.get("extra") or {}))


def slide_stem(path) -> str:
    """``/data/A-12.ome.tif`` -> ``A-12`` (the slide's name without its extension)."""
    name = Path(path).name
    for suffix in _SLIDE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return Path(name).stem or name


def _safe_id(text: str) -> str:
    return _SAFE.sub("_", text.strip()).strip("._") or "slide"


def read_study(path, *, need_annotations: bool = False, check_files: bool = True,
               max_errors: int = 10) -> list[StudyRow]:
    """Read and check STUDY.csv; every problem names its line.

    Parameters
    ----------
    path : str or Path
        The CSV file (comma separated, a header line with at least ``path``).
    need_annotations : bool
        Every row must name an annotations file (``--task evaluate``).
    check_files : bool
        Slide and annotation files must exist (on the machine reading the CSV).
    max_errors : int
        Problems listed before giving up (all rows are checked).

    Returns
    -------
    list of StudyRow

    Raises
    ------
    XhistoError
        One message listing the problems, e.g. ``study.csv line 4: region '1,2,3' is not
        'row,col,height,width' ...``.
    """
    path = Path(path)
    if not path.is_file():
        raise XhistoError(f"study file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise XhistoError(f"{path} is not a UTF-8 text file; save the study as CSV (UTF-8)") from None
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if not header or not any(h.strip() for h in header):
        raise XhistoError(f"{path} is empty; it needs a header line with a 'path' column")
    names = [h.strip().lower() for h in header]
    if "path" not in names:
        raise XhistoError(f"{path} line 1: no 'path' column (found {', '.join(map(repr, names))}); "
                          "the header needs at least 'path' (optional: annotations, label, region, id)")
    dupes = sorted({n for n in names if names.count(n) > 1 and n})
    if dupes:
        raise XhistoError(f"{path} line 1: column(s) {', '.join(dupes)} appear more than once")
    base = path.parent.resolve()  # workers may run elsewhere: absolute paths
    errors: list[str] = []
    rows: list[StudyRow] = []
    for line, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values) or values[0].lstrip().startswith("#"):
            continue  # blank lines and comment lines
        if len(values) > len(names):
            errors.append(f"line {line}: {len(values)} fields but the header has {len(names)} "
                          "(quote a region: \"row,col,height,width\")")
            continue
        cells = {n: (values[i].strip() if i < len(values) else "") for i, n in enumerate(names)}
        try:
            rows.append(_row(line, cells, base, need_annotations, check_files))
        except ValueError as exc:
            errors.append(f"line {line}: {exc}")
    if not rows and not errors:
        raise XhistoError(f"{path} lists no slides (only a header)")
    errors += _duplicate_ids(rows)
    if errors:
        shown = errors[:max_errors]
        more = f" (and {len(errors) - len(shown)} more)" if len(errors) > len(shown) else ""
        raise XhistoError(f"{path}: " + "; ".join(shown) + more)
    return _assign_ids(rows)


def _row(line: int, cells: dict, base: Path, need_annotations: bool, check_files: bool) -> StudyRow:
    raw_path = cells.get("path", "")
    if not raw_path:
        raise ValueError("the path is empty")
    slide = _resolve(raw_path, base)
    if check_files and not slide.exists():
        raise ValueError(f"slide not found: {slide}")
    ann = None
    if cells.get("annotations"):
        ann = _resolve(cells["annotations"], base)
        if check_files and not ann.is_file():
            raise ValueError(f"annotations file not found: {ann}")
    elif need_annotations:
        raise ValueError("--task evaluate needs an annotations file in the 'annotations' column")
    region = None
    if cells.get("region"):
        region = Region.parse(cells["region"])  # ValueError with the reason
        if region.level0_row < 0 or region.level0_col < 0:
            raise ValueError(f"region {cells['region']!r} starts at a negative row or column")
    extra = {k: v for k, v in cells.items() if k not in KNOWN and k}
    return StudyRow(line=line, slide_id=cells.get("id", ""), path=slide, annotations=ann,
                    label=cells.get("label") or None, region=region, extra=extra)


def _resolve(text: str, base: Path) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _duplicate_ids(rows: list[StudyRow]) -> list[str]:
    errors, seen, explicit = [], {}, {}
    for r in rows:
        key = (str(r.path), r.region)
        if key in seen:
            where = "" if r.region is None else f" region {','.join(map(str, r.region.as_tuple()))}"
            errors.append(f"line {r.line}: repeats line {seen[key]} ({r.path.name}{where})")
        seen.setdefault(key, r.line)
        if r.slide_id:
            sid = _safe_id(r.slide_id)
            if sid in explicit:
                errors.append(f"line {r.line}: id {r.slide_id!r} is also used on line {explicit[sid]}")
            explicit.setdefault(sid, r.line)
    return errors


def _assign_ids(rows: list[StudyRow]) -> list[StudyRow]:
    """Folder names: the ``id`` column, else the file stem (+ region when a stem repeats)."""
    taken = {_safe_id(r.slide_id) for r in rows if r.slide_id}
    stems: dict[str, int] = {}
    for r in rows:
        if not r.slide_id:
            stem = _safe_id(slide_stem(r.path))
            stems[stem] = stems.get(stem, 0) + 1
    out = []
    for r in rows:
        if r.slide_id:
            sid = _safe_id(r.slide_id)
        else:
            sid = _safe_id(slide_stem(r.path))
            if stems[sid] > 1 or sid in taken:
                tail = "_".join(map(str, r.region.as_tuple())) if r.region else f"line{r.line}"
                sid = _safe_id(f"{sid}_{tail}")
                while sid in taken:
                    sid = _safe_id(f"{sid}_line{r.line}")
            taken.add(sid)
        out.append(StudyRow(line=r.line, slide_id=sid, path=r.path, annotations=r.annotations,
                            label=r.label, region=r.region, extra=r.extra))
    return out
