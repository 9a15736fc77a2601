"""``_runtime.tune_malloc``: glibc keeps freed blocks below 32 MB for reuse, and batch threads
share the main arena, so the encoder's forward passes stop page-faulting their activations in
afresh, on the calling thread and in batch threads; it can be turned off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")

PROBE = """
import json, resource, numpy as np
from napari_xhisto import _runtime
from napari_xhisto.nic.encoders import load_encoder
enc = load_encoder("contrastive")  # tunes the allocator (unless turned off)
again = _runtime.tune_malloc()  # once per process: the first call's answer
x = np.random.default_rng(0).integers(0, 256, (64, 128, 128, 3), np.uint8)
enc.encode(x, batch_size=64)  # warm-up: the heap grows once
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    enc.encode(x, batch_size=64)
print(json.dumps({"tuned": again, "again": _runtime.tune_malloc(),
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0}))
"""


PROBE_THREADS = """
import json, resource, sys, threading, numpy as np
def churn():  # threads started before the tuning (napari's) have arenas of their own
    for _ in range(10):
        a = np.ones(4_000_000); del a
early = [threading.Thread(target=churn) for _ in range(int(sys.argv[1]))]
[t.start() for t in early]; [t.join() for t in early]
from napari_xhisto.nic.encoders import load_encoder
from napari_xhisto.models.inference import run_batches
enc = load_encoder("contrastive")
x = np.random.default_rng(0).integers(0, 256, (64, 128, 128, 3), np.uint8)
def passes(n):  # n batches of 64 on 2 batch threads, one torch thread each (compress's scheme)
    for _ in run_batches(range(n), lambda job: x, lambda im: enc.encode(im, batch_size=64),
                         workers=2):
        pass
passes(40)  # warm-up: the heaps grow to what two threads need
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
passes(60)
print(json.dumps({"faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0}))
"""


def _probe(probe=PROBE, *args, **env) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("XHISTO_MALLOC_TUNING", "MALLOC_MMAP_THRESHOLD_",
                          "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX", "MALLOC_TOP_PAD_")}
    res = subprocess.run([sys.executable, "-c", probe, *args], env={**clean, "PYTHONPATH": SRC, **env},
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_tuned_allocations_stop_page_faulting():
    on, off = _probe(), _probe(XHISTO_MALLOC_TUNING="0")
    assert on["tuned"] and on["again"]
    assert not off["tuned"]
    # 10 forward passes of 64 patches: ~60 MB of activations each, mapped afresh and
    # faulted in page by page without the tuning
    assert off["faults"] > 50_000
    assert on["faults"] < off["faults"] / 5  # measured: ~10k against ~129k


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_batch_threads_stop_page_faulting():
    # 60 batches of 64 patches on 2 threads: ~2.7 GB of activations, ~660k pages
    # tuned before any other thread ran (the CLI): one shared arena
    early = _probe(PROBE_THREADS, "0")["faults"]
    assert early < 10_000  # measured: 8-3.6k
    # tuned after 4 threads made arenas that the batch threads then take over (napari): those
    # keep their free heap instead of unmapping it; threads moving between arenas still fault
    # some in, well under 5% of the pages
    assert _probe(PROBE_THREADS, "4")["faults"] < 33_000  # measured: 3k-11k
    # the thresholds alone (the user's MALLOC_ARENA_MAX and MALLOC_TOP_PAD_ kept, here glibc's
    # defaults): each batch thread's arena unmaps its emptied 64 MB heaps between batches
    own_arenas = _probe(PROBE_THREADS, "0", MALLOC_ARENA_MAX=str(8 * (os.cpu_count() or 1)),
                        MALLOC_TOP_PAD_="131072")["faults"]
    assert own_arenas > early  # measured: 10k-275k, most runs above 100k


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_a_users_own_glibc_settings_win():
    got = _probe(MALLOC_TRIM_THRESHOLD_="1000000")
    assert not got["tuned"]
