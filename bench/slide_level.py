"""Slide-level explanation from cached codes vs explaining every patch (seed 004's point).

On the same synthetic slides, in the same run:

* ``cached``: what the Slide-level widget does once ``SLIDE.nic.zarr`` exists: load the slide
  model, read the codes, p(label) and the slide-wide Grad-CAM (``nic.slide_explain``);
* ``patches``: Grad-CAM of the patch classifier on every patch of the whole slide
  (``explain.explain_region``, the demo model, the ``xhisto explain`` defaults);
* ``compress``: the one-off cost of making the codes (``nic.compress.compress_slide``), for
  reference.

Seconds per slide (median over slides; the cached path repeated --repeats times per slide),
the ratio patches / cached, and the load average go to ``bench/results/slide_level.json``.

    PYTHONPATH=src .venv/bin/python bench/slide_level.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np


def loadavg():
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/nic_slide_level_bench")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results") / "slide_level.json"))
    ap.add_argument("--slides", type=int, default=3)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    from napari_xhisto.explain import explain_region
    from napari_xhisto.geometry import Region
    from napari_xhisto.models import load_model
    from napari_xhisto.nic.codes import read_codes
    from napari_xhisto.nic.compress import compress_slide
    from napari_xhisto.nic.encoder_train import train_encoder
    from napari_xhisto.nic.encoders import load_encoder, save_encoder
    from napari_xhisto.nic.slide_explain import explain_slide
    from napari_xhisto.nic.slide_model import load_slide_model, save_slide_model
    from napari_xhisto.nic.slide_train import SlideTrainConfig, iter_train_slide_model
    from napari_xhisto.progress import run_to_end
    from napari_xhisto.slide import open_slide
    from napari_xhisto.synth.cohort import make_cohort

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    load_start = loadavg()
    n_train = 8
    cohort = work / "cohort"
    if not (cohort / "labels.csv").exists():
        make_cohort(cohort, n=n_train + args.slides, lesion_fractions=(0.1, 0.25),
                    size=args.size, seed=11)
    enc_path = work / "supervised.yaml"
    if not enc_path.exists():
        spec, net, _ = run_to_end(train_encoder("supervised"))
        save_encoder(enc_path, spec, net)
    encoder = load_encoder(enc_path)
    slides = sorted((cohort / "slides").glob("*.svs"))
    codes_dir = work / "codes"
    codes_dir.mkdir(exist_ok=True)
    compress_s = {}
    for s in slides:
        out = codes_dir / (s.name[:-4] + ".nic.zarr")
        if not out.exists():
            t = time.perf_counter()
            run_to_end(compress_slide(s, encoder, out=out, workers=args.threads))
            compress_s[s.name] = time.perf_counter() - t
    model_dir = work / "slide_model"
    if not (model_dir / "slide_model.yaml").exists():
        import csv

        labels = {r["slide"]: int(r["label"]) for r in csv.DictReader(open(cohort / "labels.csv"))}
        train = slides[:n_train]
        grids = [read_codes(codes_dir / (s.name[:-4] + ".nic.zarr")) for s in train]
        model, _ = run_to_end(iter_train_slide_model(
            grids, [labels[s.name] for s in train],
            SlideTrainConfig(epochs=10, width=32, hidden=32, batch_size=4, val_fraction=0)))
        save_slide_model(model_dir, model)

    patch_model = load_model("demo", device="cpu", batch_size=32)
    rows = []
    for s in slides[n_train:]:
        codes = codes_dir / (s.name[:-4] + ".nic.zarr")
        # the one-off cost of the codes, timed in this run (written aside, then dropped)
        timed = work / "codes_timed" / codes.name
        if timed.exists():
            shutil.rmtree(timed)
        timed.parent.mkdir(exist_ok=True)
        t = time.perf_counter()
        run_to_end(compress_slide(s, encoder, out=timed, workers=args.threads))
        compress_s[s.name] = time.perf_counter() - t
        cached, parts = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            model = load_slide_model(model_dir)
            t1 = time.perf_counter()
            grid = read_codes(codes)
            t2 = time.perf_counter()
            heat = explain_slide(model, grid, codes_path=codes)
            cached.append(time.perf_counter() - t)
            parts.append({"load_model_s": t1 - t, "read_codes_s": t2 - t1,
                          "explain_s": time.perf_counter() - t2})
        with open_slide(s) as slide:
            h, w = slide.dimensions
            t = time.perf_counter()
            patch_heat = run_to_end(explain_region(slide, Region(0, 0, h, w), patch_model,
                                                   "gradcam", overlap=0.1, batch_size=32))
            patches_s = time.perf_counter() - t
        rows.append({"slide": s.name, "size": [h, w], "grid": list(heat.values.shape),
                     "cached_s": float(np.median(cached)), "cached_runs_s": cached, "cached_parts": parts,
                     "patches_s": patches_s, "n_patches": patch_heat.provenance.get("n_patches"),
                     "compress_s": compress_s.get(s.name),
                     "p_label": heat.provenance["p_label"]})
        print(f"{s.name}: cached {rows[-1]['cached_s']:.3f} s, every patch {patches_s:.1f} s "
              f"({rows[-1]['n_patches']} patches), ratio {patches_s / rows[-1]['cached_s']:.0f}x",
              flush=True)
    med_c = float(np.median([r["cached_s"] for r in rows]))
    med_p = float(np.median([r["patches_s"] for r in rows]))
    comp = [r["compress_s"] for r in rows if r["compress_s"] is not None]
    out = {"what": __doc__.splitlines()[0], "slides": rows,
           "median_cached_s": med_c, "median_patches_s": med_p, "ratio_patches_over_cached": med_p / med_c,
           "median_compress_s": float(np.median(comp)) if comp else None,
           "patch_method": "gradcam (demo model, overlap 0.1)",
           "threads": args.threads, "cpus": os.cpu_count(),
           "loadavg_start": load_start, "loadavg_end": loadavg()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "slides"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
