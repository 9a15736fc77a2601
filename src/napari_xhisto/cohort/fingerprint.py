"""Content fingerprints of input files and the key that says "this slide is done with these settings".

A slide can be many gigabytes and a study has hundreds: re-hashing every byte on each re-run
would make resuming as slow as reading the whole study. Files up to ``FULL_HASH_LIMIT`` are
hashed completely; larger ones by their size and ``SAMPLES`` evenly spaced 64 KiB blocks (first
and last included, 1 MiB read per slide), which catches re-scans, re-exports, truncation and replaced files. Times
of modification are not used: copying a study to another disk keeps it resumable.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

__all__ = ["FULL_HASH_LIMIT", "file_fingerprint", "settings_digest", "slide_key"]

FULL_HASH_LIMIT = 8 << 20
SAMPLES = 16
_BLOCK = 1 << 20
_SAMPLE_BLOCK = 64 << 10


def file_sha256(path) -> str:
    """Hex sha256 of a whole file's content (weights and spec files: always every byte)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def file_fingerprint(path) -> str:
    """``sha256:<hex>`` of a file's content (sampled above ``FULL_HASH_LIMIT`` bytes).

    A folder (e.g. an MRXS slide's data folder) is fingerprinted by its files' names and
    fingerprints, in name order.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = p.write_bytes(b"abc")
    >>> file_fingerprint(p)[:15]
    'sha256:ba7816bf'
    """
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file():
                h.update(str(child.relative_to(path)).encode())
                h.update(file_fingerprint(child).encode())
        return "dir-sha256:" + h.hexdigest()
    size = path.stat().st_size
    with open(path, "rb") as fh:
        if size <= FULL_HASH_LIMIT:
            for block in iter(lambda: fh.read(_BLOCK), b""):
                h.update(block)
            return "sha256:" + h.hexdigest()
        h.update(f"size={size};".encode())
        last = size - _SAMPLE_BLOCK
        for k in range(SAMPLES):
            fh.seek((last * k) // (SAMPLES - 1))
            h.update(fh.read(_SAMPLE_BLOCK))
    return f"sampled-sha256:{h.hexdigest()}"


def _companions(path: Path) -> list[Path]:
    """Files a slide's reader also opens: MRXS keeps its tiles in a folder of the same stem."""
    if path.suffix.lower() == ".mrxs":
        folder = path.with_suffix("")
        return [folder] if folder.is_dir() else []
    return []


def slide_fingerprint(path) -> str:
    """Fingerprint of a slide file and the companion files its reader needs."""
    path = Path(path)
    parts = [file_fingerprint(path)] + [file_fingerprint(p) for p in _companions(path)]
    return parts[0] if len(parts) == 1 else "+".join(parts)


def settings_digest(settings: dict) -> str:
    """sha256 of a JSON-able dict, independent of key order."""
    text = json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def slide_key(*, task: str, settings_hash: str, slide: str, annotations: str | None,
              region) -> str:
    """The key a finished slide is stored under: inputs' fingerprints plus the study settings."""
    return settings_digest({"task": task, "settings": settings_hash, "slide": slide,
                            "annotations": annotations,
                            "region": None if region is None else list(region)})


def fingerprint_many(paths, *, workers: int | None = None) -> dict[str, str]:
    """Fingerprints of several slides at once (threads: hashing is I/O and releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    unique = sorted({str(p) for p in paths})
    workers = workers or min(8, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(unique, pool.map(slide_fingerprint, unique)))
