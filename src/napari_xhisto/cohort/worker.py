"""What runs on a worker for one slide: skip it if done, else run its task and commit the files.

Every exception of a slide ends in its own ``failed`` row with one line of error (the full
traceback goes to the slide's ``history.jsonl``); nothing is raised to dask, so dask never
retries a deterministic error. Only the loss of a worker makes dask run a slide again, and
then the finished-record check makes the second run cheap if the first got to commit.

Models are loaded once per worker process and kept in a module-level cache keyed by the
model's content fingerprint and device (a process runs one slide at a time:
``threads_per_worker=1``; a lock guards the cache anyway).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import traceback
from pathlib import Path

__all__ = ["cached_model", "error_line", "model_loads", "run_slide", "worker_device"]

_MODELS: dict = {}
_LOADS: dict = {}
_LOCK = threading.Lock()


def error_line(exc: BaseException, *, limit: int = 300) -> str:
    """One line for a results row: the message (with the type when it is not ours)."""
    from ..errors import XhistoError

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if not isinstance(exc, XhistoError | ValueError | FileNotFoundError) or not text:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _worker_name() -> tuple[str, object]:
    try:
        from distributed import get_worker

        w = get_worker()
        return str(w.address), w.name
    except (ImportError, ValueError):
        return "local", None


def worker_device(requested: str | None) -> str | None:
    """``requested``, or with GPUs present one per worker (``cuda:<worker index mod GPUs>``)."""
    if requested or os.environ.get("XHISTO_DEVICE"):
        return requested
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n == 0:
        return None
    _, name = _worker_name()
    try:
        index = int(name)
    except (TypeError, ValueError):
        index = os.getpid()
    return f"cuda:{index % n}"


def cached_model(task, settings, model_key: str, device: str | None):
    """The task's loaded model for this process (loaded on first use); and its load count."""
    if task.load is None:
        return None, 0
    k = (task.name, model_key, device)
    with _LOCK:
        if k not in _MODELS:
            _MODELS[k] = task.load(settings, device)
            _LOADS[k] = _LOADS.get(k, 0) + 1
        return _MODELS[k], _LOADS[k]



def model_loads() -> int:
    """How many models this process has loaded (for tests and the bench)."""
    return sum(_LOADS.values())


def run_slide(job: dict) -> dict:
    """Run one slide of a study (the function dask runs); returns its results row.

    ``job`` holds ``row`` (StudyRow.to_dict()), ``settings`` (StudySettings.to_dict()),
    ``key`` (the slide's key), ``model_key`` and ``out`` (the study folder).
    """
    from .settings import StudySettings
    from .store import append_history, clean_partials, commit, new_workdir, read_done
    from .study import StudyRow
    from .tasks import get_task

    t0, c0 = time.perf_counter(), time.process_time()
    row = StudyRow.from_dict(job["row"])
    settings = StudySettings.from_dict(job["settings"])
    key = job["key"]
    slide_dir = Path(job["out"]) / row.slide_id
    address, _ = _worker_name()
    base = {"slide_id": row.slide_id, "line": row.line, "path": str(row.path),
            "region": ",".join(map(str, row.region.as_tuple())) if row.region else "",
            "label": row.label or "", "annotations": str(row.annotations or ""),
            "task": settings.task, "worker": address, "pid": os.getpid(), "key": key}
    slide_dir.mkdir(parents=True, exist_ok=True)
    record = read_done(slide_dir, key)
    if record is not None:  # finished by an earlier attempt (e.g. before its worker was lost)
        return {**record["row"], "cached": True, "seconds_this_run": time.perf_counter() - t0}
    clean_partials(slide_dir)
    workdir = new_workdir(slide_dir)
    device = None
    try:
        t_load = time.perf_counter()
        task = get_task(settings.task)
        device = worker_device(settings.device)
        model, loads = cached_model(task, settings, job.get("model_key", ""), device)
        t_run = time.perf_counter()
        device = str(getattr(model, "device", device or "cpu"))
        head = task.run(row, settings, model, workdir, slide_dir)
        # the slide's own time: a first slide on a worker also waited for the model to load
        seconds = time.perf_counter() - t_run + (t_load - t0)
        result = {**base, "status": "ok", "error": "", "seconds": round(seconds, 3),
                  "device": device, **head}
        commit(workdir, slide_dir, key=key, row=result,
               extra={"settings": job["settings"], "inputs": job.get("inputs", {})})
        append_history(slide_dir, {"event": "done", "key": key, "worker": address,
                                   "pid": os.getpid(), "seconds": result["seconds"]})
        return {**result, "cached": False, "model_loads": loads,
                "model_load_seconds": round(t_run - t_load, 3),
                "cpu_seconds": round(time.process_time() - c0, 3),  # all threads of the worker
                "seconds_this_run": time.perf_counter() - t0}
    except Exception as exc:  # a slide's failure is its row's, never the study's
        shutil.rmtree(workdir, ignore_errors=True)
        line = error_line(exc)
        append_history(slide_dir, {"event": "failed", "key": key, "worker": address,
                                   "pid": os.getpid(), "error": line,
                                   "traceback": traceback.format_exc(limit=20)})
        return {**base, "status": "failed", "error": line, "cached": False,
                "seconds": round(time.perf_counter() - t0, 3), "device": str(device or ""),
                "seconds_this_run": time.perf_counter() - t0}
