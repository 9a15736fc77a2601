"""Seed 004's synthetic findings at small scale: slide-level accuracy vs lesion size, by encoder.

Pipeline (each stage is cached under --work, so a rerun only does what is missing):

1. ``synth-cohort``: N slides (2048 px at 0.5 µm/px by default), half with one tumour focus of a
   share of the tissue cycling through --fractions, labels.csv, hidden lesion masks;
2. encoders: contrastive, VAE and BiGAN trained here on synthetic fields (``nic.encoder_train``,
   --encoder-steps steps, 32 px patches at 2 µm/px = 64 µm), and the supervised oracle (the demo
   tumour classifier's penultimate features, 64 px at 1 µm/px = the same 64 µm);
3. ``compress`` every slide with every encoder (``nic.compress.compress_slide``): 16 x 16 grids;
4. the slide-level CNN (``nic.slide_train``) in stratified K-fold cross-validation, repeated over
   --seeds (split and initialisation): every slide gets a held-out p(label);
5. per encoder and seed: accuracy and AUC overall, and per lesion size the detection rate of the
   positives of that size and the AUC of those positives against all negatives; the Grad-CAM maps
   of the held-out positives are scored against the lesion masks (PxAP, chance = lesion share).

Results: ``bench/results/nic_findings.json`` (with load average) and a markdown table on stdout
(pasted into docs/nic.md). Intervals are the min..max over seeds.

    PYTHONPATH=src .venv/bin/python bench/nic_findings.py --work /tmp/nic_findings
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

KINDS = ("supervised", "contrastive", "vae", "bigan")


def loadavg():
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return None


def stage_cohort(work: Path, args):
    from napari_xhisto.synth.cohort import make_cohort

    cohort = work / "cohort"
    if not (cohort / "labels.csv").exists():
        t = time.perf_counter()
        make_cohort(cohort, n=args.n, lesion_fractions=args.fractions, size=args.size,
                    seed=args.cohort_seed)
        print(f"cohort: {args.n} slides in {time.perf_counter() - t:.0f} s", flush=True)
    return cohort


def stage_encoders(work: Path, args) -> dict:
    from napari_xhisto.nic.encoder_train import train_encoder
    from napari_xhisto.nic.encoders import save_encoder
    from napari_xhisto.progress import run_to_end

    out = {}
    (work / "encoders").mkdir(parents=True, exist_ok=True)
    for kind in args.kinds:
        path = work / "encoders" / f"{kind}.yaml"
        if not path.exists():
            t = time.perf_counter()
            kw = {} if kind == "supervised" else dict(
                steps=args.encoder_steps, patch_px=32, mpp=2.0, code_size=args.code_size,
                batch_size=32)
            spec, net, losses = run_to_end(train_encoder(kind, seed=0, **kw))
            spec["name"] = f"{kind}-findings"
            save_encoder(path, spec, net)
            print(f"encoder {kind}: {time.perf_counter() - t:.0f} s, loss "
                  f"{losses[0] if losses else float('nan'):.3g} -> "
                  f"{losses[-1] if losses else float('nan'):.3g}", flush=True)
        out[kind] = path
    return out


def stage_compress(work: Path, cohort: Path, encoders: dict) -> dict:
    from napari_xhisto.nic.compress import compress_slide
    from napari_xhisto.nic.encoders import load_encoder
    from napari_xhisto.progress import run_to_end

    dirs = {}
    for kind, path in encoders.items():
        enc = load_encoder(path)
        d = work / "codes" / kind
        d.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        n = 0
        for slide in sorted((cohort / "slides").glob("*.svs")):
            out = d / (slide.name[:-4] + ".nic.zarr")
            if not out.exists():
                run_to_end(compress_slide(slide, enc, out=out, workers=2))
                n += 1
        if n:
            print(f"compress {kind}: {n} slides in {time.perf_counter() - t:.0f} s", flush=True)
        dirs[kind] = d
    return dirs


def folds_of(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 99])
    fold = np.zeros(len(labels), int)
    for cls in (0, 1):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        fold[idx] = np.arange(len(idx)) % k
    return fold


def cross_validate(data, fractions_by_slide, lesions, args, seed: int) -> dict:
    import torch

    from napari_xhisto.nic.slide_explain import evaluate_against_mask, explain_slide
    from napari_xhisto.nic.slide_model import predict_grid
    from napari_xhisto.nic.slide_train import SlideTrainConfig, iter_train_slide_model, roc_auc
    from napari_xhisto.progress import run_to_end

    torch.set_num_threads(2)
    y = data.labels
    fold = folds_of(y, args.folds, seed)
    probs = np.zeros(len(y))
    pxaps, chance = {}, {}
    for f in range(args.folds):
        tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        cfg = SlideTrainConfig(epochs=args.epochs, width=args.width, hidden=args.width,
                               batch_size=args.batch_size, crop=16, seed=seed * 100 + f, val_fraction=0.0)
        model, _ = run_to_end(iter_train_slide_model([data.grids[i] for i in tr], y[tr], cfg))
        for i in te:
            probs[i] = predict_grid(model, data.grids[i])
            if y[i] == 1:
                heat = explain_slide(model, data.grids[i])
                score = evaluate_against_mask(heat, lesions[data.keys[i]])
                frac = float(fractions_by_slide[data.keys[i]])
                pxaps.setdefault(frac, []).append(score["pxap"])
                chance.setdefault(frac, []).append(score["chance_pxap"])
    neg = y == 0
    out = {"accuracy": float(np.mean((probs >= 0.5) == y)), "auc": roc_auc(probs, y),
           "specificity": float(np.mean(probs[neg] < 0.5)), "by_fraction": {}}
    for frac in sorted(set(fractions_by_slide[k] for k, lab in zip(data.keys, y) if lab)):
        pos = np.array([fractions_by_slide[k] == frac for k in data.keys]) & (y == 1)
        sel = pos | neg
        out["by_fraction"][f"{frac:g}"] = {
            "n_positive": int(pos.sum()),
            "detection_rate": float(np.mean(probs[pos] >= 0.5)),
            "accuracy_with_negatives": float(np.mean((probs[sel] >= 0.5) == y[sel])),
            "auc_vs_negatives": roc_auc(probs[sel], y[sel]),
            "gradcam_pxap": float(np.nanmean(pxaps.get(frac, [np.nan]))),
            "chance_pxap": float(np.nanmean(chance.get(frac, [np.nan]))),
        }
    out["probs"] = probs.round(4).tolist()
    return out


def summarise(results: dict) -> str:
    """Markdown tables: mean [min..max] over seeds."""
    def cell(values):
        v = np.array([x for x in values if x == x], float)
        if not len(v):
            return "n/a"
        return f"{v.mean():.2f} [{v.min():.2f}..{v.max():.2f}]"

    kinds = list(results)
    seeds = list(next(iter(results.values())))
    fracs = list(results[kinds[0]][seeds[0]]["by_fraction"])
    lines = ["| encoder | accuracy | AUC | " + " | ".join(f"AUC, lesion {f}" for f in fracs) + " |",
             "|---|---|---|" + "---|" * len(fracs)]
    for k in kinds:
        r = results[k]
        row = [k, cell(r[s]["accuracy"] for s in seeds), cell(r[s]["auc"] for s in seeds)]
        row += [cell(r[s]["by_fraction"][f]["auc_vs_negatives"] for s in seeds) for f in fracs]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "| encoder | " + " | ".join(f"detected, lesion {f}" for f in fracs)
              + " | specificity |", "|---|" + "---|" * (len(fracs) + 1)]
    for k in kinds:
        r = results[k]
        row = [k] + [cell(r[s]["by_fraction"][f]["detection_rate"] for s in seeds) for f in fracs]
        row.append(cell(r[s]["specificity"] for s in seeds))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "| encoder | " + " | ".join(f"Grad-CAM PxAP, lesion {f}" for f in fracs) + " |",
              "|---|" + "---|" * len(fracs)]
    for k in kinds:
        r = results[k]
        row = [k] + [cell(r[s]["by_fraction"][f]["gradcam_pxap"] for s in seeds) for f in fracs]
        lines.append("| " + " | ".join(row) + " |")
    chance = [cell(results[kinds[0]][s]["by_fraction"][f]["chance_pxap"] for s in seeds)
              for f in fracs]
    lines.append("| (chance: lesion share of tissue) | " + " | ".join(chance) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/nic_findings")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results") / "nic_findings.json"))
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--fractions", type=lambda s: tuple(float(x) for x in s.split(",")),
                    default=(0.02, 0.05, 0.1, 0.25))
    ap.add_argument("--kinds", type=lambda s: tuple(s.split(",")), default=KINDS)
    ap.add_argument("--encoder-steps", type=int, default=1000)
    ap.add_argument("--code-size", type=int, default=32)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--cohort-seed", type=int, default=0)
    args = ap.parse_args(argv)

    from napari_xhisto.nic.slide_train import load_code_set
    from napari_xhisto.synth.cohort import read_lesion_mask, slide_key

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    load_start = loadavg()
    t0 = time.perf_counter()
    cohort = stage_cohort(work, args)
    encoders = stage_encoders(work, args)
    codes = stage_compress(work, cohort, encoders)
    import csv

    rows = list(csv.DictReader(open(cohort / "labels.csv")))
    fractions = {slide_key(r["slide"]): float(r["lesion_fraction"]) for r in rows}
    lesions = {slide_key(r["slide"]): read_lesion_mask(cohort / "lesions" /
                                                       f"{slide_key(r['slide'])}.lesion.tif")
               for r in rows}
    results, timings = {}, {}
    partial = work / "results_partial.json"
    for kind, d in codes.items():
        data = load_code_set(d, cohort / "labels.csv")
        t = time.perf_counter()
        results[kind] = {str(s): cross_validate(data, fractions, lesions, args, s)
                         for s in range(args.seeds)}
        timings[kind] = time.perf_counter() - t
        partial.write_text(json.dumps({"results": results, "seconds_cv": timings,
                                       "loadavg": loadavg()}, default=float))
        print(f"{kind}: " + ", ".join(f"seed {s} acc {r['accuracy']:.2f} auc {r['auc']:.2f}"
                                      for s, r in results[kind].items()), flush=True)
    table = summarise(results)
    print(table)
    out = {"settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()},
           "results": results, "table_markdown": table,
           "seconds_total": time.perf_counter() - t0, "seconds_cv": timings,
           "loadavg_start": load_start, "loadavg_end": loadavg(),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=float))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
