"""Autosave that never loses work: atomic replacement, rotating backups, and recovery.

A save writes a temporary file beside the target, syncs it, keeps the current file as
``<name>.bak`` (older ones as ``<name>.2.bak`` ...), then renames the temporary file over the
target. A crash at any moment leaves the target either at the previous or the new version,
complete. Callers debounce (the widget saves a second after the last change).
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from ..errors import AnnotationError
from .files import (
    atomic_write,
    existing_backups,
    keep_backup,
    preserve_path,
    remove_stale_temporaries,
)
from .geojson import geojson_text, read_geojson
from .io import WRITER_MARK
from .model import AnnotationSet

SUFFIX = ".annotations.geojson"


def autosave_path(slide_path, *, folder=None) -> Path:
    """Where the annotations of ``slide_path`` are autosaved: beside it, or in ``folder``."""
    slide_path = Path(slide_path)
    target_folder = Path(folder) if folder is not None else slide_path.parent
    return target_folder / f"{slide_path.name}{SUFFIX}"


class AutosaveStore:
    """Saves one slide's annotations atomically and restores the newest readable version.

    Parameters
    ----------
    slide_path : str or Path
        The slide the annotations belong to (its name names the file).
    folder : str or Path, optional
        A project folder; by default the file sits beside the slide.
    keep : int
        How many previous versions to keep as backups.
    origin : (row, col)
        Level-0 position of QuPath's (0, 0) (see :func:`qupath_origin`), so the autosave opens
        in QuPath too.
    """

    def __init__(self, slide_path, *, folder=None, keep: int = 3, origin=(0.0, 0.0)):
        self.slide_path = Path(slide_path)
        self.path = autosave_path(slide_path, folder=folder)
        self.keep = max(int(keep), 1)
        self.origin = (float(origin[0]), float(origin[1]))
        # one save at a time (a viewer saves from worker threads), and never an older snapshot
        # over a newer one: saves are numbered when called, written only if still the newest
        self._lock = threading.Lock()
        self._issued = 0
        self._written = 0
        if self.path.parent.is_dir():
            remove_stale_temporaries(self.path.parent, self.path.name)

    def __repr__(self) -> str:
        return f"AutosaveStore({str(self.path)!r}, keep={self.keep})"

    def save(self, annotations: AnnotationSet) -> Path:
        """Write ``annotations`` to :attr:`path`, keeping the previous version as a backup."""
        with self._lock:
            self._issued += 1
            number = self._issued
        text = geojson_text(annotations, origin=self.origin)
        with self._lock:
            if number < self._written:  # a newer snapshot landed while this one was formatted
                return self.path
            path = self._replace(text)
            self._written = number
            return path

    def _replace(self, text: str) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            if not self._is_ours(self.path):  # someone else's file under our name: never rotate it away
                shutil.copyfile(self.path, preserve_path(self.path))
            keep_backup(self.path, keep=self.keep)
        return atomic_write(self.path, text)

    @staticmethod
    def _is_ours(path: Path) -> bool:
        with open(path, "rb") as fh:
            return WRITER_MARK in fh.read(256)

    def versions(self) -> list[Path]:
        """The autosave file and its backups that exist, newest first."""
        found = [self.path] if self.path.exists() else []
        return found + existing_backups(self.path)

    def load_latest(self) -> AnnotationSet | None:
        """The newest version that reads completely; None when nothing was saved yet."""
        errors = []
        for candidate in self.versions():
            try:
                return read_geojson(candidate, origin=self.origin)
            except (AnnotationError, OSError) as err:
                errors.append(f"{candidate.name}: {err}")
        if errors:
            raise AnnotationError("no readable autosave: " + "; ".join(errors))
        return None


def load_latest(slide_path, *, folder=None, origin=(0.0, 0.0)) -> AnnotationSet | None:
    """The newest autosaved annotations of ``slide_path`` (None when there are none)."""
    return AutosaveStore(slide_path, folder=folder, origin=origin).load_latest()
