"""Monte-Carlo dropout: out-of-distribution detection and a stain-style shift (seed 002).

Stages (all by default; each writes its part of bench/results/uncertainty.json):

``train``   trains ``xhisto_cnn_s`` with dropout 0.3 before the classifier and channel dropout
            0.1 after every conv stage (``ARCH_OPTIONS``) on stain style "a"
            synthetic patches only (the demo recipe, shorter) and bundles it as
            ``src/napari_xhisto/models/demo/demo_mc.{json,safetensors}``.
``ood``     in-distribution = fresh style "a" patches (seed 777); out-of-distribution = uniform
            noise, an unrelated natural texture (skimage brick/grass/gravel crops), the same
            tissue defocused (Gaussian blur, sigma 3 µm) and the same tissue under a pen stroke
            (Beer-Lambert ink, the synth pen inks). AUROC (OOD positive) of three scores:
            1 - max softmax of the plain model (no dropout), 1 - max MC mean, MC std of the
            predicted class; 95% bootstrap intervals (``metrics.uncertainty.auc_interval``).
``stain``   bias-lab style: models of the demo_mc recipe (``xhisto_cnn_s``, 3000 style-"a"
            patches x 4 epochs) with each dropout variant (``VARIANTS``: head only, head + conv
            0.1, head + conv 0.2) and three training seeds; MC std on paired test patches (the
            same tissue rendered in style "a" and "b"), mean with a bootstrap interval per
            style and of the paired difference.
``stain_demo`` the bundled demo_mc on the same paired style "a" / "b" test patches.
``figure``  the bundled demo_mc model over a synthetic slide with artefacts (pen, fold, blur,
            bubble): slide, mean p(tumour) and MC std side by side -> resources/uncertainty_map.png

Run: ``PYTHONPATH=src OMP_NUM_THREADS=1 python bench/uncertainty.py [stage ...] [--n 30]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from uncertainty_sets import (
    blurred,
    noise_patches,
    pen_marked,
    std_by_artefact,
    texture_patches,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "uncertainty.json"
DEMO_DIR = ROOT / "src" / "napari_xhisto" / "models" / "demo"
MC_SPEC = DEMO_DIR / "demo_mc.json"
DROPOUT = 0.3
# dropout 0.3 before the classifier + channel dropout after every conv stage
ARCH_OPTIONS = {"dropout": DROPOUT, "conv_dropout": 0.1}
THREADS = int(os.environ.get("OMP_NUM_THREADS", "2"))


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def save_part(key: str, value: dict) -> None:
    res = load_results()
    res[key] = {**value, "loadavg": open("/proc/loadavg").read().split()[:3],
                "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")


def style_data(n, seed, style, patch_size=64):
    from napari_xhisto.models.training import PatchData
    from napari_xhisto.synth import sample_patches

    ps = sample_patches(n, patch_size=patch_size, mpp=1.0, seed=seed, stain_style=style)
    return PatchData(np.asarray(ps.images, np.uint8), np.asarray(ps.labels, np.int64),
                     ["non-tumour", "tumour"], "tumour", meta=dict(ps.meta))


def train_dropout_model(arch, *, seed, n_train, n_val, epochs, out=None, train=None, val=None,
                        options=None, weight_decay=1e-4):
    """``train_model`` on style "a" patches with ``arch`` built with ``options`` (default
    ``ARCH_OPTIONS``: dropout before the classifier and in the conv stages)."""
    from napari_xhisto.models import register_architecture
    from napari_xhisto.models.architectures import SmallCNN, build_architecture
    from napari_xhisto.models.training import TrainConfig, train_model
    from napari_xhisto.progress import run_to_end

    options = dict(ARCH_OPTIONS if options is None else options)
    name = f"{arch}_dropout_bench"

    @register_architecture(name)
    def _build(num_classes):
        m = build_architecture(arch, num_classes, options=options)
        assert isinstance(m, SmallCNN)
        return m

    cfg = TrainConfig(architecture=name, n_train=n_train, n_val=n_val, seed=seed, epochs=epochs,
                      weight_decay=weight_decay, threads=THREADS)
    train = train if train is not None else style_data(n_train, seed, "a")
    val = val if val is not None else style_data(n_val, seed + 10_000, "a")
    res = run_to_end(train_model(cfg, train_data=train, val_data=val))
    res.spec.architecture = arch
    res.spec.arch_options = options
    res.spec.training["config"]["architecture"] = arch
    res.spec.training["config"]["arch_options"] = options
    res.spec.training["data"] = (f"synth.sample_patches({n_train}, patch_size=64, mpp=1.0, "
                                 f"seed={seed}, stain_style='a'); validation seed "
                                 f"{seed + 10_000} style 'a'")
    if out is not None:
        from napari_xhisto.models import save_model

        save_model(res.module, res.spec, out)
    return res


def stage_train(args) -> None:
    t0 = time.perf_counter()
    res = train_dropout_model("xhisto_cnn_s", seed=0, n_train=args.n_train, n_val=600,
                              epochs=args.epochs, out=MC_SPEC)
    spec = json.loads(MC_SPEC.read_text())
    spec["description"] = ("Demo tumour vs non-tumour classifier with dropout 0.3 before the "
                           "classifier and channel dropout 0.1 after every conv stage, for "
                           "Monte-Carlo dropout (xhisto predict --mc-dropout). Trained on "
                           "synthetic H&E of stain style 'a' only by bench/uncertainty.py "
                           "train. Not for real diagnosis.")
    spec["training"]["command"] = "python bench/uncertainty.py train"
    MC_SPEC.write_text(json.dumps(spec, indent=2) + "\n")
    save_part("train", {"held_out": res.metrics["held_out"], "history": res.history,
                        "n_train": args.n_train, "epochs": args.epochs,
                        "arch_options": ARCH_OPTIONS, "threads": THREADS,
                        "seconds": round(time.perf_counter() - t0, 1)})
    print(json.dumps(res.metrics["held_out"], indent=1))


def scores(plain, mcmodel, images, n, seed):
    from napari_xhisto.models.mc_dropout import mc_predict_proba

    p = plain.predict_proba(images)
    res = mc_predict_proba(mcmodel, images, n_samples=n, seed=seed, batch_size=64)
    cls = res.mean.argmax(1)
    return {"msp": 1 - p.max(1), "mc_conf": 1 - res.mean.max(1),
            "mc_std": res.std[np.arange(len(cls)), cls]}


def stage_ood(args) -> None:
    from napari_xhisto.metrics.uncertainty import auc_interval
    from napari_xhisto.models import load_model

    t0 = time.perf_counter()
    mcmodel = load_model(MC_SPEC, device="cpu")
    plain = mcmodel  # predict_proba runs in eval mode, dropout off: the plain softmax baseline
    rng = np.random.default_rng(2)
    ind = style_data(args.n_ind, 777, "a").images
    s = ind.shape[1]
    sub = ind[:args.n_ood]
    sets = {"noise": noise_patches(args.n_ood, s, rng), "texture": texture_patches(args.n_ood, s,
                                                                                   rng),
            "blurred": blurred(sub), "pen": pen_marked(sub, rng)}
    sc_in = scores(plain, mcmodel, ind, args.n, 0)
    out = {"n_samples": args.n, "n_in_distribution": len(ind), "n_per_ood_set": args.n_ood,
           "in_distribution": {k: float(v.mean()) for k, v in sc_in.items()}, "sets": {}}
    all_ood = {k: [] for k in sc_in}
    for name, images in sets.items():
        sc = scores(plain, mcmodel, images, args.n, 1)
        entry = {"mean": {k: float(v.mean()) for k, v in sc.items()},
                 "fraction_called_tumour": float(np.mean(
                     mcmodel.predict_proba(images).argmax(1) == 1))}
        for k in sc:
            y = np.r_[np.zeros(len(ind), bool), np.ones(len(images), bool)]
            entry[f"auroc_{k}"] = auc_interval(np.r_[sc_in[k], sc[k]], y, n_boot=1000, seed=0)
            all_ood[k].append(sc[k])
        out["sets"][name] = entry
        print(name, {k: round(v["auc"], 3) for k, v in entry.items() if k.startswith("auroc")})
    out["all_ood"] = {}
    for k, parts in all_ood.items():
        o = np.concatenate(parts)
        y = np.r_[np.zeros(len(ind), bool), np.ones(len(o), bool)]
        out["all_ood"][f"auroc_{k}"] = auc_interval(np.r_[sc_in[k], o], y, n_boot=1000, seed=0)
    out["scores"] = {"msp": "1 - max softmax, same weights without dropout (one pass)",
                     "mc_conf": "1 - max of the MC-dropout mean probability",
                     "mc_std": "MC-dropout std of the predicted class's probability"}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    save_part("ood", out)


def _boot_mean(x, rng, n_boot=2000):
    idx = rng.integers(0, len(x), (n_boot, len(x)))
    m = x[idx].mean(1)
    return {"mean": float(x.mean()), "low": float(np.percentile(m, 2.5)),
            "high": float(np.percentile(m, 97.5))}


VARIANTS = {"head": {"dropout": DROPOUT},                            # the earlier demo_mc
            "head+conv0.1": ARCH_OPTIONS,                                # the bundled demo_mc
            "head+conv0.2": {"dropout": DROPOUT, "conv_dropout": 0.2}}


def paired_stain_std(model, test_a, test_b, n, seed, rng) -> dict:
    """MC std of the predicted class on the same patches in style "a" and "b": bootstrap mean
    per style and of the paired difference, and F1/recall/AUC per style."""
    from napari_xhisto.metrics.uncertainty import auc_interval
    from napari_xhisto.models.mc_dropout import mc_predict_proba
    from napari_xhisto.models.training import patch_metrics

    run, stds = {}, {}
    for name, data in (("a", test_a), ("b", test_b)):
        r = mc_predict_proba(model, data.images, n_samples=n, seed=seed)
        cls = r.mean.argmax(1)
        stds[name] = r.std[np.arange(len(cls)), cls].astype(np.float64)
        wrong = cls != data.labels
        run[f"style_{name}"] = {"mc_std": _boot_mean(stds[name], rng),
                                **{k: v for k, v in patch_metrics(r.mean, data.labels, 1).items()
                                   if k in ("f1", "accuracy", "auc", "recall")},
                                # does the std point at the patches the model gets wrong?
                                "n_wrong": int(wrong.sum()),
                                "auroc_std_wrong": auc_interval(stds[name], wrong, n_boot=1000)
                                if 0 < wrong.sum() < len(wrong) else None}
    diff = stds["b"] - stds["a"]
    run["paired_difference_b_minus_a"] = _boot_mean(diff, rng)
    run["fraction_b_above_a"] = float(np.mean(diff > 0))
    run["median_std"] = {k: float(np.median(v)) for k, v in stds.items()}
    # per patch: does the std tell a style-"b" patch from a style-"a" one? (b positive)
    run["auroc_std_b_vs_a"] = auc_interval(np.r_[stds["a"], stds["b"]],
                                           np.r_[np.zeros(len(diff), bool),
                                                 np.ones(len(diff), bool)], n_boot=1000)
    run["by_label"] = {name: {"n": int((test_a.labels == k).sum()),
                              "paired_difference_b_minus_a": _boot_mean(diff[test_a.labels == k],
                                                                        rng)}
                       for k, name in enumerate(("non-tumour", "tumour"))}
    return run


def stage_stain(args) -> None:
    """Models of the bundled recipe (``--stain-arch``, ``--stain-train`` style-"a" patches of
    data seed = training seed, ``--stain-epochs``), each dropout variant x ``--stain-seeds``
    training seeds; paired MC std on the seed-777 test patches in style "a" and "b"."""
    import torch

    from napari_xhisto.models.loading import LoadedModel

    t0 = time.perf_counter()
    test_a = style_data(args.stain_test, 777, "a")
    test_b = style_data(args.stain_test, 777, "b")
    assert np.array_equal(test_a.labels, test_b.labels)  # the same tissue, two stain styles
    rng = np.random.default_rng(0)
    variants = {}
    for vname in args.variants:
        runs = []
        for seed in range(args.stain_seeds):
            t1 = time.perf_counter()
            res = train_dropout_model(args.stain_arch, seed=seed, n_train=args.stain_train,
                                      n_val=600, epochs=args.stain_epochs,
                                      options=VARIANTS[vname])
            model = LoadedModel(module=res.module.eval(), spec=res.spec,
                                device=torch.device("cpu"))
            run = {"seed": seed, "held_out": {k: res.metrics["held_out"][k]
                                              for k in ("f1", "auc")},
                   **paired_stain_std(model, test_a, test_b, args.n, seed, rng),
                   "seconds": round(time.perf_counter() - t1, 1)}
            runs.append(run)
            print(vname, json.dumps(run), flush=True)
        diffs = [r["paired_difference_b_minus_a"] for r in runs]
        variants[vname] = {"arch_options": VARIANTS[vname], "runs": runs,
                           "seeds_with_b_above_a": int(sum(d["mean"] > 0 for d in diffs)),
                           "seeds_with_interval_above_0": int(sum(d["low"] > 0 for d in diffs))}
    save_part("stain", {"n_samples": args.n, "n_train": args.stain_train,
                        "epochs": args.stain_epochs, "n_test_per_style": args.stain_test,
                        "architecture": args.stain_arch, "variants": variants,
                        "threads": THREADS, "seconds": round(time.perf_counter() - t0, 1)})


def stage_stain_demo(args) -> None:
    """The bundled demo_mc (trained on style "a") on the same paired style "a" / "b" test
    patches: MC std and accuracy per style."""
    from napari_xhisto.models import load_model

    t0 = time.perf_counter()
    model = load_model(MC_SPEC, device="cpu")
    out = paired_stain_std(model, style_data(args.stain_test, 777, "a"),
                           style_data(args.stain_test, 777, "b"), args.n, 0,
                           np.random.default_rng(0))
    print(json.dumps(out))
    save_part("stain_demo", {"model": "demo_mc", "arch_options": model.spec.arch_options,
                             "n_samples": args.n, "n_test_per_style": args.stain_test, **out,
                             "seconds": round(time.perf_counter() - t0, 1)})


def stage_figure(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from napari_xhisto.models import load_model
    from napari_xhisto.models.mc_dropout import mc_predict_region
    from napari_xhisto.progress import run_to_end
    from napari_xhisto.slide import open_slide
    from napari_xhisto.synth.writer import write_slide

    t0 = time.perf_counter()
    import tempfile

    tmp = Path(tempfile.gettempdir()) / "xhisto_uncertainty_slide"  # scratch, not committed
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "artefacts.ome.tif"
    if not path.exists():
        write_slide(path, size=3072, seed=3)
    model = load_model(MC_SPEC, device="cpu")
    with open_slide(path) as slide:
        umap = run_to_end(mc_predict_region(slide, None, model, n_samples=args.n, seed=0))
        h, w = slide.dimensions
        thumb = slide.read_scaled(__import__("napari_xhisto.geometry", fromlist=["Region"])
                                  .Region(0, 0, h, w), 768, 768)
    mean = umap.mean.positive.copy()
    std = umap.std_map().copy()
    mean[~umap.mean.tissue_mask] = np.nan
    std[~umap.mean.tissue_mask] = np.nan
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
    axes[0].imshow(thumb)
    axes[0].set_title("synthetic slide (pen, fold, blur, bubble)")
    im1 = axes[1].imshow(mean, cmap="inferno", vmin=0, vmax=1)
    axes[1].set_title(f"MC mean p(tumour), {args.n} passes")
    im2 = axes[2].imshow(std, cmap="viridis", vmin=0, vmax=np.nanpercentile(std, 99))
    axes[2].set_title("MC std of p(tumour)")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im1, ax=axes[1], fraction=0.046)
    fig.colorbar(im2, ax=axes[2], fraction=0.046)
    fig.tight_layout()
    out = ROOT / "resources" / "uncertainty_map.png"
    fig.savefig(out, dpi=90)
    save_part("figure", {"slide": "synth.write_slide(size=3072, seed=3)", "n_samples": args.n,
                         "n_patches": umap.mean.provenance["n_patches"],
                         "mean_std_tissue": float(np.nanmean(std)),
                         "by_region": std_by_artefact(path.with_suffix("").with_suffix(
                             ".geojson"), umap, std),
                         "seconds": round(time.perf_counter() - t0, 1), "out": str(out.relative_to(ROOT))})


def stage_report(args) -> None:
    """Markdown tables of the stored results (what docs/uncertainty.md and the README show)."""
    r = load_results()

    def ci(d, nd=3):
        return f"{d['auc']:.{nd}f} [{d['low']:.{nd}f}, {d['high']:.{nd}f}]"

    if "ood" in r:
        o = r["ood"]
        print(f"OOD ({o['n_samples']} passes; {o['n_in_distribution']} in-distribution patches, "
              f"{o['n_per_ood_set']} per set; load {' '.join(o['loadavg'])})\n")
        print("| OOD set | AUROC 1 - max softmax (no dropout) | AUROC 1 - max MC mean | "
              "AUROC MC std | mean MC std |")
        print("|---|---|---|---|---|")
        rows = [*o["sets"].items(), ("all four", o["all_ood"])]
        for name, e in rows:
            std = f"{e['mean']['mc_std']:.4f}" if "mean" in e else "-"
            print(f"| {name} | {ci(e['auroc_msp'])} | {ci(e['auroc_mc_conf'])} | "
                  f"{ci(e['auroc_mc_std'])} | {std} |")
        print(f"| in-distribution | | | | {o['in_distribution']['mc_std']:.4f} |\n")
    def m(x):
        return f"{x['mean']:.4f} [{x['low']:.4f}, {x['high']:.4f}]"

    if "stain" in r and "variants" in r["stain"]:
        st = r["stain"]
        print(f"Stain style ({st['architecture']}, {st['n_train']} style-a patches x "
              f"{st['epochs']} epochs, {st['n_samples']} passes, {st['n_test_per_style']} "
              f"paired test patches; load {' '.join(st['loadavg'])})\n")
        print("| dropout | seed | held-out F1 | mean MC std, style a | style b | paired b - a | "
              "patches b > a | recall a | recall b | AUC a | AUC b |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for vname, v in st["variants"].items():
            for run in v["runs"]:
                a, b = run["style_a"], run["style_b"]
                print(f"| {vname} | {run['seed']} | {run['held_out']['f1']:.3f} | "
                      f"{m(a['mc_std'])} | {m(b['mc_std'])} | "
                      f"{m(run['paired_difference_b_minus_a'])} | "
                      f"{run['fraction_b_above_a']:.0%} | {a['recall']:.3f} | "
                      f"{b['recall']:.3f} | {a['auc']:.3f} | {b['auc']:.3f} |")
        print("\n| dropout | seed | paired b - a, tumour patches | non-tumour patches | median std "
              "a -> b | AUROC std, b vs a | AUROC std -> wrong, a | b |")
        print("|---|---|---|---|---|---|---|---|")
        for vname, v in st["variants"].items():
            for run in v["runs"]:
                lab, med = run["by_label"], run["median_std"]
                print(f"| {vname} | {run['seed']} | "
                      f"{m(lab['tumour']['paired_difference_b_minus_a'])} | "
                      f"{m(lab['non-tumour']['paired_difference_b_minus_a'])} | "
                      f"{med['a']:.4f} -> {med['b']:.4f} | {ci(run['auroc_std_b_vs_a'])} | "
                      f"{ci(run['style_a']['auroc_std_wrong'])} | "
                      f"{ci(run['style_b']['auroc_std_wrong'])} |")
    if "stain_demo" in r:
        sd = r["stain_demo"]
        a, b, d = sd["style_a"], sd["style_b"], sd["paired_difference_b_minus_a"]
        print(f"\ndemo_mc ({sd.get('arch_options')}, style a; {sd['n_samples']} passes; load "
              f"{' '.join(sd['loadavg'])})\n")
        print("| style | mean MC std | F1 | recall | accuracy | AUC |")
        print("|---|---|---|---|---|---|")
        for name, x in (("a", a), ("b", b)):
            print(f"| {name} | {m(x['mc_std'])} | {x['f1']:.3f} | {x['recall']:.3f} | "
                  f"{x['accuracy']:.3f} | {x['auc']:.3f} |")
        print(f"| b - a (paired) | {m(d)} | | | | |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stages", nargs="*", default=["train", "ood", "stain", "figure"])
    ap.add_argument("--n", type=int, default=30, help="MC passes (seed 002: 100)")
    ap.add_argument("--n-train", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--n-ind", type=int, default=400)
    ap.add_argument("--n-ood", type=int, default=200)
    ap.add_argument("--stain-arch", default="xhisto_cnn_s")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--stain-train", type=int, default=3000)
    ap.add_argument("--stain-epochs", type=int, default=4)
    ap.add_argument("--stain-test", type=int, default=400)
    ap.add_argument("--stain-seeds", type=int, default=3)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(THREADS)
    for st in args.stages:
        {"train": stage_train, "ood": stage_ood, "stain": stage_stain,
         "figure": stage_figure, "report": stage_report,
         "stain_demo": stage_stain_demo}[st](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
