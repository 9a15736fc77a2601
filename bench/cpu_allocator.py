"""CPU forward throughput with and without ``_runtime.tune_malloc`` (glibc's mmap/trim
thresholds), for the bundled contrastive encoder and the bundled demo classifier.

Each measurement runs in a fresh child process (the thresholds are process-wide), with
``XHISTO_MALLOC_TUNING=0`` or ``1``, interleaved ``--reps`` times; patches/s, CPU seconds split
into user and system (kernel) time, and peak RSS are recorded. Inputs are random uint8 patches
(throughput does not depend on content).

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
WORK = {"encoder": (4096, 64), "demo": (512, 64)}  # patches, batch


def child(kind: str) -> dict:
    import numpy as np

    n, batch = WORK[kind]
    if kind == "encoder":
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
    run(images[:batch])  # warm-up
    t0, r0 = time.perf_counter(), os.times()
    for a in range(0, n, batch):
        run(images[a:a + batch])
    dt, r1 = time.perf_counter() - t0, os.times()
    return {"kind": kind, "tuned": _runtime.tune_malloc(), "n_patches": n,
            "patches_per_s": n / dt, "user_s": r1.user - r0.user,
            "system_s": r1.system - r0.system,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(kind: str, tuned: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src"),
           "XHISTO_MALLOC_TUNING": "1" if tuned else "0"}
    res = subprocess.run([sys.executable, __file__, "--child", kind], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


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
    runs = {k: {"default": [], "tuned": []} for k in WORK}
    for _ in range(args.reps):
        for kind in WORK:
            for tuned in (False, True):
                runs[kind]["tuned" if tuned else "default"].append(_child(kind, tuned))
    med = statistics.median
    out = {"bench": "cpu_allocator", "cpus": os.cpu_count(), "device": "cpu",
           "loadavg_start": list(load0), "loadavg_end": list(os.getloadavg()), "kinds": {}}
    for kind, r in runs.items():
        d, t = (med(x["patches_per_s"] for x in r[m]) for m in ("default", "tuned"))
        out["kinds"][kind] = {
            "patches_per_s_default": d, "patches_per_s_tuned": t, "speedup": t / d,
            "system_s_default": med(x["system_s"] for x in r["default"]),
            "system_s_tuned": med(x["system_s"] for x in r["tuned"]),
            "peak_rss_mb_default": max(x["peak_rss_mb"] for x in r["default"]),
            "peak_rss_mb_tuned": max(x["peak_rss_mb"] for x in r["tuned"]), "runs": r}
        print(f"{kind}: {d:.0f} -> {t:.0f} patches/s ({t / d:.2f}x), kernel time "
              f"{out['kinds'][kind]['system_s_default']:.2f} -> "
              f"{out['kinds'][kind]['system_s_tuned']:.2f} s", flush=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
