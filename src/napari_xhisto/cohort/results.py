"""``DIR/results.csv`` and ``DIR/results.json`` (one row per slide), and progress over slides.

Both are rewritten as slides finish (at most every few seconds) and at the end, so a killed
run leaves a table that says which slides are done, failed or still pending.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import uuid
from pathlib import Path

__all__ = ["COLUMNS", "Reporter", "progress_line", "write_results"]

COLUMNS = ("slide_id", "path", "region", "label", "annotations", "status", "cached", "seconds",
           "device", "worker", "mean_p", "n_patches", "cell_auc", "cell_auc_low",
           "cell_auc_high", "n_positive_cells", "n_negative_cells", "random_auc", "pxap",
           "heat_min", "heat_max", "error", "note")


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


class Reporter:
    """Progress over slides: a redrawn bar with ETA on a terminal, else one line per slide."""

    def __init__(self, stream, total: int, *, label: str):
        self.stream, self.total, self.label = stream, total, label
        self.tty = stream is not None and hasattr(stream, "isatty") and stream.isatty()
        self.done = self.cached = self.failed = self.computed = 0
        self.t0 = time.perf_counter()

    def _write(self, text: str, *, end: str = "\n") -> None:
        if self.stream is not None:
            self.stream.write(text + end)
            self.stream.flush()

    def start(self, done: int, cached: int, todo: int) -> None:
        self.done, self.cached, self.failed = done, cached, done - cached
        unreadable = f", {done - cached} unreadable" if done > cached else ""
        self._write(f"{self.label}: {self.total} slide(s), {cached} already done{unreadable}, "
                    f"{todo} to run")

    def note(self, text: str) -> None:
        self._write(("\r" if self.tty else "") + text)

    def step(self, row: dict) -> None:
        self.done += 1
        if row.get("cached"):
            self.cached += 1
        elif row.get("status") == "ok":
            self.computed += 1
        if row.get("status") == "failed":
            self.failed += 1
        elapsed = time.perf_counter() - self.t0
        left = self.total - self.done
        eta = elapsed / self.computed * left if self.computed else None
        line = progress_line(self.done, self.total, cached=self.cached, failed=self.failed,
                             elapsed=elapsed, eta=eta)
        if self.tty:
            self._write(f"\r{self.label} {line}", end="")
            if row.get("status") == "failed":
                self._write(f"\n  {row['slide_id']}: failed: {row.get('error')}")
        else:
            what = "failed: " + str(row.get("error")) if row.get("status") == "failed" else (
                "cached" if row.get("cached") else f"ok in {row.get('seconds', 0):.1f} s")
            self._write(f"{self.label} {self.done}/{self.total} {row['slide_id']}: {what}"
                        + (f" (ETA {_clock(eta)})" if eta is not None and left else ""))

    def finish(self, run) -> None:
        if self.tty:
            self._write("")
        self._write(f"{self.label}: {run.computed} computed, {run.cached} already done, "
                    f"{run.failed} failed in {run.wall_seconds:.1f} s -> {run.files[0]}")

