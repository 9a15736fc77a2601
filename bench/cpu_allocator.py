"""CPU forward throughput with and without ``_runtime.tune_malloc`` (glibc's mmap/trim
thresholds, one shared arena, a top pad), for the bundled contrastive encoder and the bundled demo
classifier, each run on the calling thread and in batch threads (``run_batches``: a batch per
thread, one torch thread each, as ``compress`` and whole-slide maps run on CPU).

Each measurement runs in a fresh child process (the settings are process-wide), in three
modes interleaved ``--reps`` times: "default" (``XHISTO_MALLOC_TUNING=0``), "thresholds" (the
mmap and trim thresholds only, as earlier versions tuned: ``MALLOC_ARENA_MAX`` and
``MALLOC_TOP_PAD_`` set to glibc's own defaults, 8 per core and 128 KB, which ``tune_malloc``
then keeps) and "tuned"; patches/s, CPU seconds split into user and system (kernel) time, minor
page faults and peak RSS are recorded. On a shared machine single runs swing by up to 2x, the
kernel time and the faults much less. Inputs are random uint8 patches (throughput does not
depend on content).

Usage: python bench/cpu_allocator.py [--reps 3] [--out bench/results/cpu_allocator.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = {"encoder": (4096, 64), "encoder_threads": (8192, 64), "demo": (512, 64),
        "demo_threads": (1024, 64)}  # patches, batch
MODES = ("default", "thresholds", "tuned")


def child(kind: str) -> dict:
    import numpy as np

    n, batch = WORK[kind]
    if kind.startswith("encoder"):
        from napari_xhisto.nic.encoders import load_encoder

        enc = load_encoder("contrastive")
        px, run = enc.patch_px, lambda x: enc.encode(x, batch_size=batch)
    else:
        from napari_xhisto.models.loading import load_model

        model = load_model("demo", device="cpu")
        px = model.spec.network_input_size

        def run(x):
            return model.predict_proba(x, batch_size=batch)
    from napari_xhisto import _runtime

    images = np.random.default_rng(0).integers(0, 256, (n, px, px, 3), dtype=np.uint8)
    jobs = [slice(a, a + batch) for a in range(0, n, batch)]
    if kind.endswith("_threads"):
        from napari_xhisto.models.inference import batch_threads, run_batches

        def work(todo):
            for _ in run_batches(todo, lambda job: images[job], run, workers=batch_threads()):
                pass
    else:
        def work(todo):
            for job in todo:
                run(images[job])
    work(jobs[:len(jobs) // 4])  # warm-up: the heap grows to what the scheme needs
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0, r0 = time.perf_counter(), os.times()
    work(jobs)
    dt, r1 = time.perf_counter() - t0, os.times()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    return {"kind": kind, "tuned": _runtime.tune_malloc(), "n_patches": n,
            "patches_per_s": n / dt, "user_s": r1.user - r0.user,
            "system_s": r1.system - r0.system, "page_faults": faults,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(kind: str, mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "MALLOC_TOP_PAD_")}
    env.update(PYTHONPATH=str(HERE.parent / "src"),
               XHISTO_MALLOC_TUNING="0" if mode == "default" else "1")
    if mode == "thresholds":  # glibc's defaults, which tune_malloc keeps
        env.update(MALLOC_ARENA_MAX=str(8 * (os.cpu_count() or 1)), MALLOC_TOP_PAD_="131072")
    res = subprocess.run([sys.executable, __file__, "--child", kind], env=env,
                         capture_output=True, text=True, check=True)
    return {"mode": mode, **json.loads(res.stdout.strip().splitlines()[-1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results" / "cpu_allocator.json"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    load0 = os.getloadavg()
    runs = {k: {m: [] for m in MODES} for k in WORK}
    for _ in range(args.reps):
        for kind in WORK:
            for mode in MODES:
                runs[kind][mode].append(_child(kind, mode))
    med = statistics.median
    out = {"bench": "cpu_allocator", "cpus": os.cpu_count(), "device": "cpu",
           "loadavg_start": list(load0), "loadavg_end": list(os.getloadavg()), "kinds": {}}
    for kind, r in runs.items():
        got = {}
        for m in MODES:
            got[f"patches_per_s_{m}"] = med(x["patches_per_s"] for x in r[m])
            got[f"system_s_{m}"] = med(x["system_s"] for x in r[m])
            got[f"user_s_{m}"] = med(x["user_s"] for x in r[m])
            got[f"page_faults_{m}"] = med(x["page_faults"] for x in r[m])
            got[f"peak_rss_mb_{m}"] = max(x["peak_rss_mb"] for x in r[m])
        d, t = got["patches_per_s_default"], got["patches_per_s_tuned"]
        out["kinds"][kind] = {**got, "speedup": t / d,
                              "speedup_thresholds": got["patches_per_s_thresholds"] / d,
                              "runs": r}
        print(f"{kind}: {d:.0f} -> {got['patches_per_s_thresholds']:.0f} (thresholds) -> "
              f"{t:.0f} patches/s ({t / d:.2f}x), kernel time {got['system_s_default']:.2f} -> "
              f"{got['system_s_thresholds']:.2f} -> {got['system_s_tuned']:.2f} s, page faults "
              f"{got['page_faults_default']:.0f} -> {got['page_faults_thresholds']:.0f} -> "
              f"{got['page_faults_tuned']:.0f}", flush=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
