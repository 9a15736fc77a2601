"""Is the inpainter an in-domain marginaliser? The check of seed 001 (Fig. 1c), on synthetic H&E.

Held-out synthetic fields (seeds never used to train the classifier or the inpainter) are cut
into the demo classifier's patches (64 px at 1 µm/px), labelled as the demo model was trained
(tumour when at least half of the patch's cells are tumour cells). The demo classifier's ROC AUC
is measured

* on the patches as they are (reference);
* with random irregular holes restricted to **healthy** pixels (no tumour within 3 µm) filled,
  in every patch: a good marginaliser leaves the AUC unchanged (seed 001: within 0.01);
* with the **tumour** pixels (dilated 3 µm) of every patch filled: the AUC must drop, as the
  evidence is gone,

for four fillings: the bundled inpainter and the naive baselines of the seed (grey, blur, mean
colour), which are out of domain. Each masked condition is averaged over ``--runs`` mask draws.
Also reported: the mean |Δp(tumour)| on non-tumour patches for the healthy condition.

Writes bench/results/marginaliser.json (with the load average: the machine is shared).
Run: ``PYTHONPATH=src .venv/bin/python bench/marginaliser.py [--fields 6] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "marginaliser.json"
FIELD_SEED0 = 77_000  # held out: the demo model and the inpainter use seeds < 20_000


def test_patches(n_fields: int, *, field_px: int = 512, ps: int = 64, mpp: float = 1.0):
    """(images, labels, tumour_masks, field_ids) from held-out fields on a patch grid."""
    from napari_xhisto.synth.layout import CODE
    from napari_xhisto.synth.render import SynthWorld
    from napari_xhisto.synth.tissue import jpeg_roundtrip

    imgs, labels, tum, fid = [], [], [], []
    for k in range(n_fields):
        world = SynthWorld(field_px, field_px, seed=FIELD_SEED0 + k, mpp=mpp, layout="mixed",
                           bank_seed=FIELD_SEED0)
        rgb, codes = world.render(0, 0, field_px, field_px)
        rgb = jpeg_roundtrip(rgb, 85)
        cb = world.ground_truth_cells(0, 0, field_px, field_px)
        for top in range(0, field_px - ps + 1, ps):
            for left in range(0, field_px - ps + 1, ps):
                inside = ((cb.rows >= top) & (cb.rows < top + ps) & (cb.cols >= left)
                          & (cb.cols < left + ps))
                frac = float(np.mean(cb.cls[inside] == 0)) if inside.any() else 0.0
                imgs.append(rgb[top:top + ps, left:left + ps])
                labels.append(int(frac >= 0.5))
                tum.append(codes[top:top + ps, left:left + ps] == CODE["tumour"])
                fid.append(k)
    return np.stack(imgs), np.array(labels), np.stack(tum), np.array(fid)


def fill(method: str, images: np.ndarray, holes: np.ndarray, inpainter) -> np.ndarray:
    """``images`` with ``holes`` filled by ``method`` (inpaint, grey, blur, mean)."""
    from scipy.ndimage import gaussian_filter

    if method == "inpaint":
        return inpainter.inpaint(images, holes)
    out = images.copy()
    h = holes[..., None]
    if method == "grey":
        return np.where(h, np.uint8(128), images)
    if method == "blur":
        blurred = np.stack([gaussian_filter(im.astype(np.float32), sigma=(5, 5, 0))
                            for im in images])
        return np.where(h, np.clip(np.round(blurred), 0, 255).astype(np.uint8), images)
    if method == "mean":
        for i in range(len(images)):
            valid = ~holes[i]
            colour = images[i][valid].mean(0) if valid.any() else images[i].reshape(-1, 3).mean(0)
            out[i][holes[i]] = np.round(colour).astype(np.uint8)
        return out
    raise ValueError(method)


def main(argv=None) -> int:
    from scipy.ndimage import binary_dilation
    from sklearn.metrics import roc_auc_score

    from napari_xhisto.counterfactual import load_inpainter
    from napari_xhisto.counterfactual.inpaint_train import random_holes
    from napari_xhisto.models import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fields", type=int, default=6)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--inpainter", default="demo")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    model = load_model("demo", device="cpu")
    inp = load_inpainter(args.inpainter, device="cpu")
    images, labels, tumour, _ = test_patches(args.fields)
    pos = model.spec.positive_index
    margin = 3
    healthy_ok = ~np.stack([binary_dilation(t, iterations=margin) for t in tumour])
    tumour_hole = np.stack([binary_dilation(t, iterations=margin) for t in tumour])

    def score(imgs):
        return model.predict_proba(imgs, batch_size=128)[:, pos]

    p0 = score(images)
    auc0 = float(roc_auc_score(labels, p0))
    methods = ("inpaint", "grey", "blur", "mean")
    table = {m: {"healthy": [], "tumour": [], "dp_healthy_nontumour": [],
                 "hole_fraction_healthy": [], "hole_fraction_tumour": []} for m in methods}
    for run in range(args.runs):
        rng = np.random.default_rng([run, 16])
        rand = random_holes(len(images), images.shape[1], rng, min_frac=0.15, max_frac=0.45)
        h_holes = rand & healthy_ok
        for m in methods:
            ph = score(fill(m, images, h_holes, inp))
            table[m]["healthy"].append(float(roc_auc_score(labels, ph)))
            table[m]["dp_healthy_nontumour"].append(float(np.mean(np.abs(ph - p0)[labels == 0])))
            table[m]["hole_fraction_healthy"].append(float(h_holes.mean()))
            if run == 0:  # the tumour condition is deterministic (all tumour pixels)
                pt = score(fill(m, images, tumour_hole, inp))
                table[m]["tumour"].append(float(roc_auc_score(labels, pt)))
                table[m]["hole_fraction_tumour"].append(float(tumour_hole[labels == 1].mean()))
    rows = {}
    for m in methods:
        t = table[m]
        rows[m] = {"auc_healthy_inpainted": round(float(np.mean(t["healthy"])), 4),
                   "auc_healthy_sd": round(float(np.std(t["healthy"])), 4),
                   "delta_auc_healthy": round(float(np.mean(t["healthy"])) - auc0, 4),
                   "auc_tumour_inpainted": round(float(np.mean(t["tumour"])), 4),
                   "delta_auc_tumour": round(float(np.mean(t["tumour"])) - auc0, 4),
                   "mean_abs_dp_nontumour_patches": round(float(np.mean(
                       t["dp_healthy_nontumour"])), 4),
                   "hole_fraction_healthy": round(float(np.mean(t["hole_fraction_healthy"])), 3),
                   "hole_fraction_tumour_patches": round(float(np.mean(
                       t["hole_fraction_tumour"])), 3)}
    result = {
        "what": "demo classifier ROC AUC on held-out synthetic patches, holes filled by the "
                "inpainter vs naive baselines (seed 001 marginaliser check)",
        "n_patches": int(len(images)), "n_tumour": int(labels.sum()), "runs": args.runs,
        "fields": args.fields, "field_seed0": FIELD_SEED0, "auc_reference": round(auc0, 4),
        "methods": rows, "inpainter": inp.provenance(),
        "seconds": round(time.perf_counter() - t0, 1),
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"reference AUC {auc0:.4f} on {len(images)} patches ({int(labels.sum())} tumour)")
    print(f"{'filling':8s} {'AUC healthy':>12s} {'dAUC':>7s} {'AUC tumour':>11s} {'dAUC':>7s} "
          f"{'|dp| non-tum':>12s}")
    for m, r in rows.items():
        print(f"{m:8s} {r['auc_healthy_inpainted']:12.4f} {r['delta_auc_healthy']:+7.4f} "
              f"{r['auc_tumour_inpainted']:11.4f} {r['delta_auc_tumour']:+7.4f} "
              f"{r['mean_abs_dp_nontumour_patches']:12.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
