"""The study folder on disk: one folder per slide, written so that nothing half-done looks done.

``DIR/<slide-id>/`` holds the task's files and ``done.json``: the slide's key (inputs'
fingerprints + settings), its results row, and each output's size, time and sha256. A task
writes into ``DIR/<slide-id>/.partial-<random>/``; only when every file is complete are they
moved in (``os.replace``, atomic on one file system) and ``done.json`` is written last (itself
through a temporary name). A slide is finished exactly when ``done.json`` holds the expected
key and its outputs are present as recorded. ``history.jsonl`` keeps one line per completed or
failed attempt.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
import uuid
from pathlib import Path

from ..errors import XhistoError
from .fingerprint import file_sha256

__all__ = ["DONE", "append_history", "clean_partials", "commit", "new_workdir", "read_done",
           "study_lock", "write_json_atomic"]

DONE = "done.json"
HISTORY = "history.jsonl"
PARTIAL = ".partial-"


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON through a temporary name in the same folder, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2, allow_nan=False, default=str) + "\n")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_done(slide_dir: Path, key: str) -> dict | None:
    """The finished record of ``slide_dir`` for ``key``, or None (absent, other key, outputs changed)."""
    path = Path(slide_dir) / DONE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if record.get("key") != key:
        return None
    for out in record.get("outputs", []):
        try:
            size, mtime = _size_mtime(Path(slide_dir) / out["name"])
        except OSError:
            return None
        if size != out["size"] or mtime != out["mtime_ns"]:
            return None
    return record


def _size_mtime(path: Path) -> tuple[int, int]:
    """Size and modification time of a file; of a folder, its files' total and latest."""
    st = path.stat()
    if not path.is_dir():
        return st.st_size, st.st_mtime_ns
    size, mtime = 0, st.st_mtime_ns
    for f in path.rglob("*"):
        if f.is_file():
            fs = f.stat()
            size += fs.st_size
            mtime = max(mtime, fs.st_mtime_ns)
    return size, mtime


def new_workdir(slide_dir: Path) -> Path:
    """A fresh temporary folder for one attempt on a slide."""
    work = Path(slide_dir) / f"{PARTIAL}{uuid.uuid4().hex[:12]}"
    work.mkdir(parents=True)
    return work


def clean_partials(slide_dir: Path, *, keep: Path | None = None) -> int:
    """Remove what killed attempts left behind; returns how many folders went."""
    n = 0
    for p in Path(slide_dir).glob(f"{PARTIAL}*"):
        if keep is not None and p == keep:
            continue
        shutil.rmtree(p, ignore_errors=True)
        n += 1
    return n


def append_history(slide_dir: Path, event: dict) -> None:
    """One JSON line per attempt (a single write: lines from separate attempts do not mix)."""
    line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **event}, default=str) + "\n"
    with open(Path(slide_dir) / HISTORY, "a") as fh:
        fh.write(line)


def commit(workdir: Path, slide_dir: Path, *, key: str, row: dict, extra: dict | None = None
           ) -> dict:
    """Move every file of ``workdir`` into ``slide_dir`` and write ``done.json`` last."""
    slide_dir = Path(slide_dir)
    (slide_dir / DONE).unlink(missing_ok=True)  # the old record must not vouch for new files
    outputs = []
    for src in sorted(Path(workdir).iterdir()):
        if src.is_dir():  # a store of many files (a compressed slide's .nic.zarr)
            from .fingerprint import file_fingerprint

            digest = file_fingerprint(src)
            dst = slide_dir / src.name
            if dst.exists():  # an older result: done.json no longer vouches for it
                shutil.rmtree(dst)
        elif src.is_file():
            digest = file_sha256(src)
            dst = slide_dir / src.name
        else:
            continue
        os.replace(src, dst)
        size, mtime = _size_mtime(dst)
        outputs.append({"name": src.name, "size": size, "mtime_ns": mtime, "sha256": digest})
    record = {"key": key, "row": row, "outputs": outputs, **(extra or {})}
    write_json_atomic(slide_dir / DONE, record)
    shutil.rmtree(workdir, ignore_errors=True)
    return record


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def study_lock(out: Path):
    """Hold ``DIR/.lock`` while a study runs, so that two runs never write one folder.

    A lock left by a process that no longer runs on this host is taken over.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = out / ".lock"
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                other = json.loads(lock.read_text())
            except (OSError, ValueError):
                other = {}
            if other.get("host") == me["host"] and not _alive(int(other.get("pid", -1))):
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            raise XhistoError(
                f"another xhisto batch (pid {other.get('pid', '?')} on {other.get('host', '?')}) "
                f"is writing {out}; wait for it to finish, or delete {lock} if it is gone"
            ) from None
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        break
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)
