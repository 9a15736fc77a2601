"""``DIR/results.csv`` and ``DIR/results.json``: one row per slide, written atomically.

Both are rewritten as slides finish (at most every few seconds) and at the end, so a killed
run leaves a table that says which slides are done, failed or still pending.
"""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from pathlib import Path

__all__ = ["COLUMNS", "progress_line", "write_results"]

COLUMNS = ("slide_id", "path", "region", "label", "annotations", "status", "cached", "seconds",
           "device", "worker", "mean_p", "n_patches", "cell_auc", "cell_auc_low",
           "cell_auc_high", "n_positive_cells", "n_negative_cells", "random_auc", "pxap",
           "heat_min", "heat_max", "error")


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_results(out: Path, rows: list[dict], study: dict) -> tuple[Path, Path]:
    """Write ``results.csv`` (flat, one row per slide) and ``results.json`` (study + rows)."""
    from ..metrics.report import jsonable

    out = Path(out)
    rows = sorted(rows, key=lambda r: (r.get("line", 0), r.get("slide_id", "")))
    extra_cols = []
    for r in rows:
        for k in r.get("extra") or {}:
            if k not in extra_cols and k not in COLUMNS:
                extra_cols.append(k)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(COLUMNS) + extra_cols)
    for r in rows:
        extra = r.get("extra") or {}
        w.writerow([_fmt(r.get(c)) for c in COLUMNS] + [_fmt(extra.get(c)) for c in extra_cols])
    csv_path, json_path = out / "results.csv", out / "results.json"
    _atomic_text(csv_path, buf.getvalue())
    _atomic_text(json_path, json.dumps(jsonable({"study": study, "rows": rows}), indent=1,
                                       allow_nan=False) + "\n")
    return csv_path, json_path


def progress_line(done: int, total: int, *, cached: int, failed: int, elapsed: float,
                  eta: float | None, width: int = 30) -> str:
    """``[#####.....] 7/16 (2 cached, 1 failed) 0:12 elapsed, ETA 0:20``."""
    filled = int(width * done / total) if total else width
    bar = "#" * filled + "." * (width - filled)
    notes = [f"{n} {what}" for n, what in ((cached, "cached"), (failed, "failed")) if n]
    note = f" ({', '.join(notes)})" if notes else ""
    tail = f", ETA {_clock(eta)}" if eta is not None and done < total else ""
    return f"[{bar}] {done}/{total}{note} {_clock(elapsed)} elapsed{tail}"


def _clock(seconds: float) -> str:
    s = int(round(max(seconds, 0.0)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
