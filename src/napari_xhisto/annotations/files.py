"""Safe file replacement: a crash at any moment leaves either the old or the new file, whole."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

TMP_PREFIX = ".xhisto-tmp-"


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_path(path: Path, number: int) -> Path:
    """``name.ext.bak`` for the newest backup (number 1), ``name.ext.2.bak`` and up for older."""
    return path.with_name(f"{path.name}.bak" if number == 1 else f"{path.name}.{number}.bak")


def existing_backups(path: Path) -> list[Path]:
    """Backups of ``path``, newest first."""
    pattern = re.compile(re.escape(path.name) + r"(?:\.(\d+))?\.bak$")
    found = []
    for candidate in path.parent.glob(f"{path.name}*.bak"):
        match = pattern.fullmatch(candidate.name)
        if match:
            found.append((int(match.group(1) or 1), candidate))
    return [p for _, p in sorted(found)]


def _copy_atomically(source: Path, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{source.name}.", dir=target.parent)
    os.close(fd)
    try:
        try:
            os.link(source, tmp + ".lnk")  # cheap when the file system allows hard links
            os.replace(tmp + ".lnk", tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        for leftover in (tmp, tmp + ".lnk"):
            if os.path.exists(leftover):
                os.unlink(leftover)


def keep_backup(path: Path, *, keep: int = 1) -> Path | None:
    """Keep the current ``path`` as backup number 1, shifting older backups up to ``keep``.

    ``path`` itself is never moved, so it exists and is complete at every moment.
    """
    path = Path(path)
    if not path.exists():
        return None
    keep = max(int(keep), 1)
    for number in range(keep, 1, -1):
        older = backup_path(path, number - 1)
        if older.exists():
            os.replace(older, backup_path(path, number))
    first = backup_path(path, 1)
    _copy_atomically(path, first)
    return first


def free_backup_path(path: Path) -> Path:
    """A ``.bak`` name beside ``path`` that is not taken yet (never overwrites a backup)."""
    number = 1
    while backup_path(path, number).exists():
        number += 1
    return backup_path(path, number)


def preserve_path(path: Path) -> Path:
    """A free ``<name>.kept.bak`` (``.kept-2.bak`` ...) for a file we must not rotate away."""
    number = 1
    while True:
        tag = "kept" if number == 1 else f"kept-{number}"
        candidate = path.with_name(f"{path.name}.{tag}.bak")
        if not candidate.exists():
            return candidate
        number += 1


def strip_backup_suffix(name: str) -> str:
    """``a.geojson.2.bak`` -> ``a.geojson`` (so backups open like the file they copy)."""
    return re.sub(r"(\.(\d+|kept(-\d+)?))?\.bak$", "", name, flags=re.IGNORECASE)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, data: str | bytes, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` to ``path`` through a synced temporary file in the same folder + rename.

    At every moment ``path`` is either the previous file or the new one, complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode(encoding) if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        # mkstemp makes 0600 files: give the file the mode a plain open() would (or keep the old one's)
        mode = (path.stat().st_mode & 0o777) if path.exists() else (0o666 & ~_umask())
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def remove_stale_temporaries(folder, name: str) -> int:
    """Delete temporary files an interrupted :func:`atomic_write` of ``name`` left behind."""
    removed = 0
    for leftover in Path(folder).glob(f"{TMP_PREFIX}{name}.*"):
        try:
            leftover.unlink()
            removed += 1
        except OSError:
            pass
    return removed
