"""Run a study: check it, skip what is done, send the rest to dask.distributed, write the table.

``run_study`` is what ``xhisto batch`` calls. By default it starts a ``LocalCluster`` of worker
processes (one thread each; one per GPU when CUDA is present) listening on the loopback
interface only; ``scheduler`` points it at an existing cluster instead (``tcp://host:8786``
or a scheduler file written by ``dask scheduler --scheduler-file`` / dask-jobqueue).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import XhistoError
from .fingerprint import fingerprint_many, settings_digest, slide_key
from .results import Reporter, write_results
from .settings import StudySettings, encoder_fingerprint, model_fingerprint
from .store import read_done, study_lock, write_json_atomic
from .study import read_study
from .tasks import get_task

__all__ = ["StudyRun", "default_workers", "open_client", "plan_study", "run_study"]

STUDY_FILE = "study.json"

# Settings of the LocalCluster we start (a cluster of the user's keeps its own config).
LOCAL_CLUSTER_CONFIG = {
    # dask's nanny exports MALLOC_TRIM_THRESHOLD_=65536 to its workers; a fixed threshold turns
    # off glibc's adaptive mmap threshold, so every large torch buffer is mmap'ed and unmapped
    # again: explain ran 1.5-3x slower than in a plain process. None unsets it (dask's way).
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    # a slide is one long task: the statistical profiler (a stack sample every 10 ms) and
    # 100 ms memory polls cost an idle worker 3% of a core, 1.6% without them
    "distributed.worker.profile.enabled": False,
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
}


@dataclass
class StudyRun:
    """The outcome of one ``run_study`` call."""

    out: Path
    rows: list[dict]
    study: dict
    files: tuple[Path, Path] | None = None
    computed: int = 0
    cached: int = 0
    failed: int = 0
    wall_seconds: float = 0.0
    dashboard: str | None = None
    events: list = field(default_factory=list)


def default_workers(*, memory_per_worker: float = 2e9) -> int:
    """One worker per GPU when CUDA is present, else one per CPU core (each with >= 2 GB RAM)."""
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count():
            return torch.cuda.device_count()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    n = max(1, os.cpu_count() or 1)
    try:
        import psutil  # a dependency of distributed

        n = min(n, max(1, int(psutil.virtual_memory().total // memory_per_worker)))
    except ImportError:  # pragma: no cover
        pass
    return n


def open_client(*, workers: int | None = None, scheduler: str | None = None):
    """``(client, cluster)``: a new loopback LocalCluster, or a client of ``scheduler``."""
    import logging

    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        as_path = Path(scheduler).expanduser()
        if "://" not in scheduler and not as_path.is_file() and (
                as_path.suffix == ".json" or "/" in scheduler):
            raise XhistoError(f"scheduler file not found: {scheduler} (give a file written by "
                              "`dask scheduler --scheduler-file`, or an address tcp://host:8786)")
        try:
            if as_path.is_file():
                return Client(scheduler_file=str(Path(scheduler).expanduser()), timeout="30s"), None
            return Client(scheduler, timeout="30s"), None
        except OSError as exc:
            raise XhistoError(f"cannot reach the dask scheduler at {scheduler}: {exc}; check the "
                              "address (tcp://host:8786) or the scheduler file") from None
    n = int(workers or default_workers())
    if n < 1:
        raise XhistoError(f"--workers must be at least 1, got {workers}")
    with dask.config.set(LOCAL_CLUSTER_CONFIG):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address="127.0.0.1:0",
                               silence_logs=logging.ERROR)
    return Client(cluster), cluster


def dashboard_line(client) -> str:
    """Where dask's dashboard is, and what it needs when bokeh is missing."""
    try:
        link = client.dashboard_link
    except Exception:  # noqa: BLE001 - a dashboard is optional
        link = None
    if not link:
        return "dask dashboard: not available"
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return f"dask dashboard: {link} (install bokeh>=3.1 to see it)"
    return f"dask dashboard: {link}"


def _study_settings_hash(task, settings: StudySettings) -> tuple[dict, str]:
    keyed = settings.keyed(task.uses)
    info = dict(keyed)
    if "model" in keyed:
        fp = model_fingerprint(settings.model)
        # contents, not paths: a study copied elsewhere stays resumable
        keyed["model"] = {k: fp[k] for k in ("name", "spec_hash", "weights_hash", "architecture")}
        info["model_files"] = fp
    extra = keyed.get("extra")
    if isinstance(extra, dict) and extra.get("encoder"):  # NIC: the encoder's contents, not path
        efp = encoder_fingerprint(extra["encoder"])
        keyed["extra"] = {**extra, "encoder": efp["content"]}
        info["encoder_files"] = efp
    return info, settings_digest({"task": task.name, **keyed})


def plan_study(study_csv, settings: StudySettings, out, *, overwrite: bool = False):
    """Check the study and settings; return ``(task, jobs, done_rows, study_info)``.

    ``jobs`` are the slides still to run (dicts for ``worker.run_slide``); ``done_rows`` the
    results rows of slides finished earlier with the same inputs and settings.
    """
    task = get_task(settings.task)
    if settings.task == "evaluate" and not settings.radius_um:
        raise XhistoError("--task evaluate needs --radius-um (disc radius around each cell, µm)")
    rows = read_study(study_csv, need_annotations=task.needs_annotations)
    info, shash = _study_settings_hash(task, settings)
    out = Path(out)
    previous = out / STUDY_FILE
    if previous.is_file() and not overwrite:
        import json

        try:
            old = json.loads(previous.read_text())
        except ValueError:
            old = {}
        if old.get("settings_hash") != shash:
            diff = _differences(old.get("settings", {}), info, old.get("task"), task.name)
            raise XhistoError(f"{out} holds a study run with other settings ({diff}); choose "
                              "another --out, or pass --overwrite to replace its results")
    paths = [r.path for r in rows] + [r.annotations for r in rows if r.annotations]
    fps = _fingerprints(paths)
    jobs, done_rows = [], []
    base = {"task": task.name, "settings": settings.to_dict(), "out": str(out.resolve())}
    for r in rows:
        bad = fps.get(str(r.path)) if isinstance(fps.get(str(r.path)), Exception) else None
        if r.annotations is not None and isinstance(fps.get(str(r.annotations)), Exception):
            bad = fps[str(r.annotations)]
        if bad is not None:
            done_rows.append(_failed_row(r, task.name, f"cannot read input: {bad}"))
            continue
        key = slide_key(task=task.name, settings_hash=shash, slide=fps[str(r.path)],
                        annotations=fps.get(str(r.annotations)) if r.annotations else None,
                        region=r.region.as_tuple() if r.region else None)
        record = read_done(out / r.slide_id, key)
        if record is not None:
            done_rows.append({**record["row"], "cached": True, "extra": r.extra})
            continue
        jobs.append({**base, "row": r.to_dict(), "key": key, "model_key": shash,
                     "inputs": {"slide": fps[str(r.path)],
                                "annotations": fps.get(str(r.annotations))}})
    from .. import __version__

    study = {"task": task.name, "settings": info, "settings_hash": shash,
             "study_csv": str(Path(study_csv).resolve()), "n_slides": len(rows),
             "napari_xhisto": __version__, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    return task, jobs, done_rows, study


def _fingerprints(paths) -> dict:
    out = {}
    try:
        out.update(fingerprint_many(paths))
    except OSError:  # find which ones: fall back to one at a time
        from .fingerprint import slide_fingerprint

        for p in {str(p) for p in paths}:
            try:
                out[p] = slide_fingerprint(p)
            except OSError as exc:
                out[p] = exc
    return out


def _differences(old: dict, new: dict, old_task, new_task) -> str:
    if old_task != new_task:
        return f"task {old_task} -> {new_task}"
    keys = sorted(set(old) | set(new) - {"model_files"})
    diffs = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys
             if k != "model_files" and old.get(k) != new.get(k)]
    if not diffs and old.get("model_files") != new.get("model_files"):
        diffs = ["the model's files changed"]
    return "; ".join(diffs[:4]) or "settings changed"


def _failed_row(r, task: str, error: str) -> dict:
    return {"slide_id": r.slide_id, "line": r.line, "path": str(r.path),
            "region": ",".join(map(str, r.region.as_tuple())) if r.region else "",
            "label": r.label or "", "annotations": str(r.annotations or ""), "task": task,
            "status": "failed", "error": error, "cached": False, "extra": r.extra}


def _pending_row(job: dict) -> dict:
    r = job["row"]
    return {"slide_id": r["slide_id"], "line": r["line"], "path": r["path"],
            "region": ",".join(map(str, r["region"])) if r.get("region") else "",
            "label": r.get("label") or "", "annotations": r.get("annotations") or "",
            "task": job["task"], "status": "pending", "error": "", "extra": r.get("extra") or {}}


def _lost_row(job: dict, exc: BaseException) -> dict:
    from .worker import error_line

    row = _pending_row(job)
    kind = type(exc).__name__
    msg = ("the worker running this slide died each time it was tried (out of memory, or a "
           "crash in a slide reader)" if kind == "KilledWorker" else error_line(exc))
    return {**row, "status": "failed", "error": msg, "cached": False}


def run_study(study_csv, settings: StudySettings, out, *, workers: int | None = None,
              scheduler: str | None = None, overwrite: bool = False, client=None,
              stream="stderr", on_result=None, write_every: float = 2.0) -> StudyRun:
    """Run ``settings.task`` on every slide of ``study_csv`` not finished yet; write the table.

    Parameters
    ----------
    study_csv : path
        The study (see :mod:`napari_xhisto.cohort.study`).
    settings : StudySettings
        Task and options.
    out : path
        The study folder: ``DIR/<slide-id>/`` per slide, ``results.csv``, ``results.json``.
    workers : int, optional
        Worker processes of the LocalCluster (default: GPUs, else CPU cores).
    scheduler : str, optional
        ``tcp://host:port`` or a scheduler file of a running cluster (then ``workers`` is
        ignored: the cluster has its own).
    overwrite : bool
        Allow a folder that holds a study run with other settings.
    client : distributed.Client, optional
        Use this client (tests, notebooks); it is left open.
    stream : file, "stderr" or None
        Progress: a bar with ETA on a terminal, one line per slide otherwise; None for silence
        (default: ``sys.stderr`` at the time of the call).
    on_result : callable, optional
        Called with ``(row, client)`` after each slide (tests use it to kill a worker).
    """
    t0 = time.perf_counter()
    out = Path(out)
    stream = sys.stderr if stream == "stderr" else stream
    with study_lock(out):
        task, jobs, done_rows, study = plan_study(study_csv, settings, out, overwrite=overwrite)
        write_json_atomic(out / STUDY_FILE, study)
        run = StudyRun(out=out, rows=list(done_rows), study=study,
                       cached=sum(1 for r in done_rows if r.get("cached")))
        pending = {j["row"]["slide_id"]: _pending_row(j) for j in jobs}
        total = len(done_rows) + len(jobs)
        say = Reporter(stream, total, label=f"batch {task.name}")
        say.start(len(done_rows), run.cached, len(jobs))

        def table():
            rows = run.rows + list(pending.values())
            failed = sum(1 for r in rows if r.get("status") == "failed")
            return rows, {**study, "counts": {"total": total, "computed": run.computed,
                                              "cached": run.cached, "failed": failed,
                                              "pending": len(pending)},
                          "wall_seconds": round(time.perf_counter() - t0, 3),
                          **_study_auc(rows, settings)}

        try:
            if jobs:
                run.dashboard = _compute(jobs, run, pending, client=client, workers=workers,
                                         scheduler=scheduler, say=say, on_result=on_result,
                                         table=table, write_every=write_every)
        finally:
            rows, info = table()
            run.failed = info["counts"]["failed"]
            run.wall_seconds = time.perf_counter() - t0
            info["wall_seconds"] = round(run.wall_seconds, 3)
            run.rows, run.study = rows, info
            run.files = write_results(out, rows, info)
        say.finish(run)
    return run


def _study_auc(rows, settings) -> dict:
    from .summary import study_auc

    if settings.task != "predict":
        return {}
    classes = [r.get("class") for r in rows if r.get("class")]
    auc = study_auc(rows, positive_class=classes[0] if classes else None)
    return {"slide_auc": auc} if auc else {}


def _compute(jobs, run: StudyRun, pending: dict, *, client, workers, scheduler, say,
             on_result, table, write_every: float) -> str | None:
    from distributed import as_completed

    from .worker import run_slide

    own_client = client is None
    cluster = None
    if own_client:
        client, cluster = open_client(workers=workers, scheduler=scheduler)
    try:
        dash = dashboard_line(client)
        say.note(dash)
        futures = {}
        for job in jobs:
            sid = job["row"]["slide_id"]
            fut = client.submit(run_slide, job, key=f"xhisto-{sid}-{job['key'][:16]}",
                                pure=False, retries=0)
            futures[fut] = job
        last_write = time.perf_counter()
        for fut in as_completed(futures):
            job = futures[fut]
            try:
                row = fut.result()
            except Exception as exc:  # noqa: BLE001 - worker lost too often, or cancelled
                row = _lost_row(job, exc)
            row["extra"] = job["row"].get("extra") or {}
            pending.pop(job["row"]["slide_id"], None)
            run.rows.append(row)
            if row.get("cached"):
                run.cached += 1
            elif row.get("status") == "ok":
                run.computed += 1
            say.step(row)
            if on_result is not None:
                on_result(row, client)
            if time.perf_counter() - last_write >= write_every:
                rows, info = table()
                write_results(run.out, rows, info)
                last_write = time.perf_counter()
        return dash
    finally:
        left = [f for f in futures if not f.done()] if "futures" in locals() else []
        if left:  # interrupted: slides not started stay pending (a re-run resumes them)
            client.cancel(left)
        if own_client:
            client.close()
            if cluster is not None:
                cluster.close()
