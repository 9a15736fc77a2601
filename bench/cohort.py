"""Studies on dask.distributed: scaling over workers, the runner's overhead, resume cost.

One run, N synthetic slides (``napari_xhisto.synth``), the bundled demo model, CPU:

1. **Loop**: the per-slide function a study runs (``cohort.tasks.run_predict`` /
   ``run_explain``: the same core calls as ``xhisto predict`` / ``explain``, writing the same
   files) called in a plain loop in a fresh process set up as a dask worker is
   (``OMP_NUM_THREADS=1``, the same imports done first), model loaded once.
2. **Batch, 1 and 2 workers**: ``run_study`` on a LocalCluster whose workers have imported the
   package (cluster start and imports timed apart; the model load is in both the loop and the
   batch figures). Scaling efficiency = T(1 worker) / (2 x T(2 workers)); runner overhead =
   T(batch, 1 worker) / T(loop) - 1.
3. **Resume**: ``run_study`` again on the finished 2-worker study: seconds, slides recomputed.

Predict runs on whole slides; explain (LRP) on one region per slide (``region`` column).
The machine is shared: 1-min load averages are recorded beside every figure, the phases are
interleaved over ``--repeats`` rounds, and medians are reported. CPU seconds (workers + this
process) are recorded too: with Linux autogroup scheduling a busy machine gives this session a
fixed share whatever the number of processes, so wall-clock scaling means something only on
an idle machine, while the CPU overhead of the runner holds either way.

Usage: python bench/cohort.py [--n 16] [--size 2048] [--repeats 2] [--out JSON]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load() -> float:
    return float(open("/proc/loadavg").read().split()[0])


def _autogroup():
    try:
        return open("/proc/sys/kernel/sched_autogroup_enabled").read().strip() == "1"
    except OSError:
        return None


def make_slides(folder: Path, n: int, size: int) -> list[Path]:
    from napari_xhisto.synth.writer import write_slide

    paths = []
    for seed in range(n):
        p = folder / f"slide{seed:02d}.svs"
        if not p.exists():
            write_slide(p, size=size, seed=100 + seed, workers=2, ground_truth=False)
        paths.append(p)
    return paths


def write_study(folder: Path, slides: list[Path], task: str, size: int) -> Path:
    side = min(1024, size)
    region = f'"{(size - side) // 2},{(size - side) // 2},{side},{side}"' if task == "explain" else ""
    lines = ["path,label,region"] + [f"{p},{'tumour' if i % 2 else 'normal'},{region}"
                                     for i, p in enumerate(slides)]
    study = folder / f"{task}.csv"
    study.write_text("\n".join(lines) + "\n")
    return study


def loop_baseline(study: Path, task: str, out: Path) -> dict:
    """The per-slide function in a plain loop, in a fresh process set up like a dask worker.

    Same environment (``OMP_NUM_THREADS=1`` ...), same imports done before the clock starts;
    the model load and the first slide's warm-up are paid inside the clock, as in a worker.
    """
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    proc = subprocess.run([sys.executable, __file__, "--loop-only", str(study), task, str(out)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _loop_only(study: str, task_name: str, out: str) -> None:
    from napari_xhisto.cohort import StudySettings, read_study
    from napari_xhisto.cohort.tasks import get_task

    _warm_imports()
    settings = StudySettings(task=task_name)
    task = get_task(task_name)
    rows = read_study(study)
    t0, c0 = time.perf_counter(), time.process_time()
    model = task.load(settings, None)
    per_slide = []
    for row in rows:
        final = Path(out) / row.slide_id
        work = final / "work"
        work.mkdir(parents=True)
        c1 = time.process_time()
        task.run(row, settings, model, work, final)
        per_slide.append(round(time.process_time() - c1, 3))
    print(json.dumps({"seconds": time.perf_counter() - t0,
                      "cpu_seconds": time.process_time() - c0, "slides": len(rows),
                      "slide_cpu_seconds": per_slide}))


def warm_client(workers: int):
    """A LocalCluster whose workers have imported what a slide needs (timed)."""
    from napari_xhisto.cohort import open_client

    t0 = time.perf_counter()
    client, cluster = open_client(workers=workers)
    t1 = time.perf_counter()
    client.run(_warm_imports)
    t2 = time.perf_counter()
    threads = client.run(_torch_threads)
    return client, cluster, {"cluster_start_s": round(t1 - t0, 3),
                             "worker_imports_s": round(t2 - t1, 3),
                             "torch_threads_per_worker": sorted(set(threads.values()))}


def _warm_imports():
    import napari_xhisto.annotations  # noqa: F401
    import napari_xhisto.cohort.tasks  # noqa: F401
    import napari_xhisto.cohort.worker  # noqa: F401
    import napari_xhisto.explain.tiling  # noqa: F401
    import napari_xhisto.export.heatmap_io  # noqa: F401
    import napari_xhisto.metrics.report  # noqa: F401
    import napari_xhisto.models  # noqa: F401
    import napari_xhisto.slide  # noqa: F401
    from napari_xhisto.explain import get_explainer

    get_explainer("lrp-epsilon-plus")


def _cpu_seconds():
    import psutil

    t = psutil.Process().cpu_times()
    return t.user + t.system


def _torch_threads():
    import torch

    return torch.get_num_threads()


def batch(study: Path, settings, out: Path, workers: int) -> dict:
    from napari_xhisto.cohort import run_study

    client, cluster, info = warm_client(workers)
    try:
        l0 = load()
        w0 = client.run(_cpu_seconds)
        t0, c0 = time.perf_counter(), time.process_time()
        run = run_study(study, settings, out, client=client, stream=None)
        wall, main_cpu = time.perf_counter() - t0, time.process_time() - c0
        w1 = client.run(_cpu_seconds)
    finally:
        client.close()
        cluster.close()
    assert run.failed == 0 and run.computed == len(run.rows), (run.failed, run.computed)
    loads = sorted({r["model_loads"] for r in run.rows})
    worker_cpu = sum(w1[k] - w0[k] for k in w1 if k in w0)
    return {"seconds": wall, "cpu_seconds": worker_cpu + main_cpu,
            "cpu_seconds_workers": round(worker_cpu, 3),
            "cpu_seconds_client_and_scheduler": round(main_cpu, 3),
            "workers": workers, "computed": run.computed,
            "model_loads_per_worker": loads, "load_before_after": [l0, load()], **info,
            "slide_seconds_sum": round(sum(r["seconds"] for r in run.rows), 3),
            "slide_cpu_seconds": [r.get("cpu_seconds") for r in
                                  sorted(run.rows, key=lambda r: r["line"])]}


def resume(study: Path, settings, out: Path) -> dict:
    from napari_xhisto.cohort import run_study

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()
              and p.parent != out and p.name != "history.jsonl"}
    t0 = time.perf_counter()
    run = run_study(study, settings, out, stream=None)  # nothing to do: no cluster is started
    wall = time.perf_counter() - t0
    after = {p: p.stat().st_mtime_ns for p in before}
    return {"seconds": round(wall, 3), "computed": run.computed, "cached": run.cached,
            "outputs_unchanged": before == after}


def main(argv=None) -> int:
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--loop-only":
        _loop_only(*argv[1:4])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="slides in the study")
    ap.add_argument("--size", type=int, default=2048, help="slide side, level-0 px")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved rounds (median)")
    ap.add_argument("--tasks", default="predict,explain")
    ap.add_argument("--slides-dir", default=None, help="keep/reuse the synthetic slides here")
    ap.add_argument("--out", default=str(HERE / "results" / "cohort.json"))
    args = ap.parse_args(argv)

    import distributed
    import torch

    from napari_xhisto.cohort import StudySettings

    tmp = Path(tempfile.mkdtemp(prefix="xhisto-bench-cohort-"))
    slides_dir = Path(args.slides_dir) if args.slides_dir else tmp / "slides"
    slides_dir.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "cohort",
              "machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "cpus": os.cpu_count(), "torch": torch.__version__,
                          "distributed": distributed.__version__},
              "n_slides": args.n, "slide_size": args.size, "repeats": args.repeats,
              "model": "demo", "device": "cpu", "load_average_start": load(),
              "sched_autogroup": _autogroup()}
    t0 = time.perf_counter()
    slides = make_slides(slides_dir, args.n, args.size)
    result["synth_seconds"] = round(time.perf_counter() - t0, 1)
    try:
        for task in args.tasks.split(","):
            settings = StudySettings(task=task)
            study = write_study(tmp, slides, task, args.size)
            rounds = []
            for k in range(args.repeats):
                order = ["loop", 1, 2] if k % 2 == 0 else [2, 1, "loop"]
                got = {}
                for what in order:
                    out = tmp / f"{task}-{what}-{k}"
                    l0 = load()
                    if what == "loop":
                        got["loop"] = {**loop_baseline(study, task, out),
                                       "load_before_after": [l0, load()]}
                    else:
                        got[f"batch_{what}"] = batch(study, settings, out, what)
                    print(task, k, what, round(got.get("loop" if what == "loop" else
                                                       f"batch_{what}")["seconds"], 2),
                          "s, load", load(), flush=True)
                got["resume"] = resume(study, settings, tmp / f"{task}-2-{k}")
                rounds.append(got)
            med = {name: statistics.median(r[name]["seconds"] for r in rounds)
                   for name in ("loop", "batch_1", "batch_2")}
            cpu = {name: statistics.median(r[name]["cpu_seconds"] for r in rounds)
                   for name in ("loop", "batch_1", "batch_2")}
            result[task] = {
                "loop_seconds": round(med["loop"], 3),
                "batch_1_worker_seconds": round(med["batch_1"], 3),
                "batch_2_workers_seconds": round(med["batch_2"], 3),
                "scaling_efficiency_2_workers": round(med["batch_1"] / (2 * med["batch_2"]), 3),
                "runner_overhead_vs_loop": round(med["batch_1"] / med["loop"] - 1, 4),
                "cpu_seconds_loop_batch1_batch2": [round(cpu[k], 2) for k in
                                                   ("loop", "batch_1", "batch_2")],
                "runner_cpu_overhead_vs_loop": round(cpu["batch_1"] / cpu["loop"] - 1, 4),
                "resume_seconds": statistics.median(r["resume"]["seconds"] for r in rounds),
                "resume_recomputed": max(r["resume"]["computed"] for r in rounds),
                "rounds": rounds}
            print(json.dumps({k: v for k, v in result[task].items() if k != "rounds"}), flush=True)
    finally:
        result["load_average_end"] = load()
        result["wall_seconds"] = round(time.perf_counter() - t0, 1)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        shutil.rmtree(tmp, ignore_errors=True)  # --slides-dir (kept) lies outside it
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
