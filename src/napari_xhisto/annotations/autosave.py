"""Autosave that never loses work: atomic replacement, rotating backups, and recovery.

A save writes a temporary file beside the target, syncs it, keeps the current file as
``<name>.bak`` (older ones as ``<name>.2.bak`` ...), then renames the temporary file over the
target. A crash at any moment leaves the target either at the previous or the new version,
complete. Callers debounce (the widget saves a second after the last change).

When the slide's folder (or the chosen one) cannot be written (a read-only share, a CD, a
folder of someone else's), the store saves in the user's data directory instead
(:func:`user_autosave_folder`, one folder per slide path), says so in :attr:`AutosaveStore.notice`,
and restores from whichever of the two places holds the newest save.
"""

from __future__ import annotations

import errno
import hashlib
import os
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


def user_data_folder() -> Path:
    """The user's data directory for napari-xhisto (``XHISTO_DATA_DIR`` overrides it), e.g.
    ``~/.local/share/napari-xhisto`` on Linux."""
    env = os.environ.get("XHISTO_DATA_DIR")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("napari-xhisto", appauthor=False))


def user_autosave_folder(slide_path) -> Path:
    """The fallback autosave folder of one slide: ``<data>/autosave/<name>-<hash of its path>``
    (two slides of the same name in different folders never share it)."""
    slide_path = Path(slide_path)
    key = hashlib.sha256(str(slide_path.expanduser().absolute()).encode()).hexdigest()[:12]
    return user_data_folder() / "autosave" / f"{slide_path.name}-{key}"


def _writable(folder: Path) -> bool:
    """Whether files can be made in ``folder`` (or, when it does not exist yet, in its nearest
    existing parent). Permission bits only: root on a read-only share is found out on saving."""
    folder = Path(folder)
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return os.access(folder, os.W_OK | os.X_OK)


_CANNOT_WRITE = (errno.EACCES, errno.EPERM, errno.EROFS)


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
        self.preferred = autosave_path(slide_path, folder=folder)
        self.fallback = user_autosave_folder(slide_path) / self.preferred.name
        self.path = self.preferred
        self.notice = ""
        if not _writable(self.preferred.parent):
            self._fall_back()
        self.keep = max(int(keep), 1)
        self.origin = (float(origin[0]), float(origin[1]))
        # one save at a time (a viewer saves from worker threads), and never an older snapshot
        # over a newer one: saves are numbered when called, written only if still the newest
        self._lock = threading.Lock()
        self._issued = 0
        self._written = 0
        if self.path.parent.is_dir():
            try:
                remove_stale_temporaries(self.path.parent, self.path.name)
            except OSError:  # not ours to tidy (read-only): the next save finds out
                pass

    def _fall_back(self) -> None:
        self.path = self.fallback
        self.notice = (f"cannot write in {self.preferred.parent} (read-only): autosaving to "
                       f"{self.fallback.parent} instead")

    @property
    def fell_back(self) -> bool:
        """Whether saves go to the user's data directory instead of the preferred folder."""
        return self.path == self.fallback

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
            try:
                path = self._replace(text)
            except OSError as err:
                if self.fell_back or err.errno not in _CANNOT_WRITE:
                    raise
                self._fall_back()
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
        """The autosave files and backups that exist, newest first: the place (preferred folder
        or the user's data directory) whose autosave was written last comes first."""
        places = []
        for path in dict.fromkeys((self.path, self.preferred, self.fallback)):
            found = ([path] if path.exists() else []) + existing_backups(path)
            if found:
                places.append((max(p.stat().st_mtime for p in found), found))
        places.sort(key=lambda t: -t[0])
        return [p for _, found in places for p in found]

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
