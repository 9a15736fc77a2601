"""Linear probe of NIC encoders: how well do their codes tell tumour from non-tumour patches?

Trains each unsupervised encoder kind (``nic.encoder_train``, the settings of
``bench/nic_findings.py``: 32 px patches at 2 µm/px, C = 32, batch 32) for each number of steps,
encodes 600 held-out synthetic patches (``synth.sample_patches``, seed 4242, half tumour) and
reports the 5-fold cross-validated ROC AUC of a logistic regression on the standardised codes,
with the codes' effective rank ((sum s)^2 / sum s^2 of their singular values). Used in
docs/nic.md to show that 120 training steps left the encoders undertrained.

    PYTHONPATH=src OMP_NUM_THREADS=1 python bench/nic_encoder_probe.py [--steps 120 1000 3000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "results" / "nic_encoder_probe.json"


def probe(spec, net, images, labels) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    from napari_xhisto.nic.encoders import Encoder

    z = Encoder(spec, net).encode(images)
    z = (z - z.mean(0)) / (z.std(0) + 1e-6)
    s = np.linalg.svd(z, compute_uv=False)
    auc = cross_val_score(LogisticRegression(max_iter=2000, C=0.1), z, labels, cv=5,
                          scoring="roc_auc").mean()
    return {"auc": round(float(auc), 4), "effective_rank": round(float(s.sum() ** 2 /
                                                                         (s ** 2).sum()), 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", nargs="+", default=["contrastive", "vae", "bigan"])
    ap.add_argument("--steps", type=int, nargs="+", default=[120, 1000, 3000])
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    from napari_xhisto.nic.encoder_train import render_fields, train_encoder
    from napari_xhisto.progress import run_to_end
    from napari_xhisto.synth.patches import sample_patches

    patches = sample_patches(600, patch_size=32, mpp=2.0, seed=4242, tumour_ratio=0.5)
    fields = render_fields(2.0, seed=0, n_fields=6, field_px=512)
    rows = []
    for kind in args.kinds:
        for steps in args.steps:
            t = time.perf_counter()
            spec, net, losses = run_to_end(train_encoder(
                kind, seed=0, steps=steps, patch_px=32, mpp=2.0, code_size=32, batch_size=32,
                fields=fields))
            row = {"kind": kind, "steps": steps, **probe(spec, net, patches.images,
                                                          patches.labels),
                   "last_loss": round(float(np.mean(losses[-20:])), 4),
                   "seconds": round(time.perf_counter() - t, 1)}
            rows.append(row)
            print(row, flush=True)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    Path(args.out).write_text(json.dumps({"rows": rows, "n_patches": 600, "loadavg": load},
                                         indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
