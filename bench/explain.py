"""Benchmark: explainers vs their reference libraries, and a 1024 x 1024 region end to end.

Per method, on ResNet18 and ResNet50 (random weights, 224 px patches) and on the demo model
(its own patch size): ms per patch of our ``Explainer.explain`` call and of the direct
reference-library call (zennit, captum, pytorch-grad-cam), ours and the reference timed in
turn (less sensitive to a busy machine), and their ratio (goal <= 1.0). Then ms for a
1024 x 1024 level-0 region of a synthetic slide at the demo model's scale.
Writes bench/results/explain.json (sections run again replace their old figures).
About 5-8 minutes on 2 idle CPU cores, plus ResNet50 (Score-CAM and Ablation-CAM at 112 px:
2048 channels, 2048 forward passes per patch).

    python bench/explain.py [--quick] [--sections resnet18,resnet50,demo,region] [--methods a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torchvision

warnings.filterwarnings("ignore")
os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam draws progress bars
torch.set_num_threads(2)
OUT = Path(__file__).parent / "results" / "explain.json"


def timed(fn, reps, *, warm=True):
    if warm:
        fn()  # warm-up (also builds our cached LRP model copy, as in a real run)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def timed_pair(ours, ref, reps, *, warm=True):
    """Medians of ``ours`` and ``ref`` timed alternately (a load change hits both alike)."""
    if warm:
        ours()
        if ref:
            ref()
    a, b = [], []
    for _ in range(reps):
        a.append(timed(ours, 1, warm=False))
        if ref:
            b.append(timed(ref, 1, warm=False))
    return statistics.median(a), (statistics.median(b) if b else None)


def references(model, layer, canonizers, target):
    """Direct reference-library calls, keyed by our method names."""
    import pytorch_grad_cam as pgc
    from captum.attr import (
        GuidedBackprop,
        GuidedGradCam,
        IntegratedGradients,
        NoiseTunnel,
        Occlusion,
        Saliency,
    )
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from zennit import composites
    from zennit.attribution import Gradient

    def zen(cls, **kw):
        def run(x):
            n = x.shape[0]
            comp = cls(canonizers=[c() for c in canonizers], **kw)
            with Gradient(model=model, composite=comp) as attr:
                out, rel = attr(x, lambda o: o * torch.eye(o.shape[1])[[target] * n])
            return rel.sum(1)
        return run

    def gc(cls, **attrs):
        def run(x):
            cam = cls(model=model, target_layers=[layer])
            for k, v in attrs.items():
                setattr(cam, k, v)
            with cam:
                return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)] * x.shape[0])
        return run

    low = torch.tensor([-2.0, -2.0, -2.0]).view(1, 3, 1, 1)
    high = torch.tensor([2.0, 2.0, 2.0]).view(1, 3, 1, 1)
    def zen_epsilon(x):
        from zennit.composites import LayerMapComposite, layer_map_base
        from zennit.rules import Epsilon
        from zennit.types import Convolution

        n = x.shape[0]
        comp = LayerMapComposite(layer_map=layer_map_base() + [
            (Convolution, Epsilon()), (torch.nn.Linear, Epsilon())],
            canonizers=[c() for c in canonizers])
        with Gradient(model=model, composite=comp) as attr:
            out, rel = attr(x, lambda o: o * torch.eye(o.shape[1])[[target] * n])
        return rel.sum(1)

    return {
        "lrp-epsilon": zen_epsilon,
        "lrp-epsilon-plus": zen(composites.EpsilonPlus, epsilon=1.0),
        "lrp-epsilon-alpha2-beta1": zen(composites.EpsilonAlpha2Beta1),
        "lrp-epsilon-plus-flat": zen(composites.EpsilonPlusFlat),
        "lrp-epsilon-gamma-box": zen(composites.EpsilonGammaBox, low=low, high=high),
        "saliency": lambda x: Saliency(model).attribute(x, target=target, abs=False).sum(1),
        "smoothgrad": lambda x: NoiseTunnel(Saliency(model)).attribute(
            x, target=target, nt_type="smoothgrad", nt_samples=8, stdevs=0.5, abs=False).sum(1),
        "integrated-gradients": lambda x: IntegratedGradients(model).attribute(
            x, target=target, n_steps=16, method="riemann_right", internal_batch_size=64).sum(1),
        "guided-backprop": lambda x: GuidedBackprop(model).attribute(x, target=target).sum(1),
        "guided-gradcam": lambda x: GuidedGradCam(model, layer).attribute(
            x, target=target, interpolate_mode="bilinear").sum(1),
        "gradcam": gc(pgc.GradCAM),
        "gradcam++": gc(pgc.GradCAMPlusPlus),
        "xgradcam": gc(pgc.XGradCAM),
        "layercam": gc(pgc.LayerCAM),
        "scorecam": gc(pgc.ScoreCAM, batch_size=64),
        "ablationcam": gc(pgc.AblationCAM, batch_size=64),
        "occlusion": lambda x: Occlusion(model).attribute(
            x, target=target, sliding_window_shapes=(3, x.shape[2] // 7, x.shape[3] // 7),
            strides=(3, x.shape[2] // 7, x.shape[3] // 7), perturbations_per_eval=64),
        "probability": lambda x: torch.softmax(model(x), 1)[:, target],
    }


# our parameters matching the reference call; n = patches timed (expensive methods fewer)
def plans(size):
    w = size // 7
    return {
        "lrp-epsilon-plus": ({"epsilon": 1.0}, 8), "lrp-epsilon-alpha2-beta1": ({}, 8),
        "lrp-epsilon": ({}, 8),
        "lrp-epsilon-plus-flat": ({}, 8),
        "lrp-epsilon-gamma-box": ({"mean": (0.5,), "std": (0.25,)}, 8),  # box [-2, 2]
        "saliency": ({}, 8), "smoothgrad": ({"n_samples": 8, "noise": 0.1}, 1),
        "integrated-gradients": ({"steps": 16}, 1), "guided-backprop": ({}, 8),
        "guided-gradcam": ({}, 8), "gradcam": ({}, 8), "gradcam++": ({}, 8), "xgradcam": ({}, 8),
        "layercam": ({}, 8), "smooth-gradcam++": ({"n_samples": 8}, 1), "scorecam": ({}, 1),
        "ablationcam": ({}, 1), "occlusion": ({"window": w, "stride": w}, 1),
        "lime": ({"segments": (32,), "n_samples": 128}, 1), "probability": ({}, 8),
    }


def bench_model(label, model, size, canonizers, *, quick, methods=None, skip=(), scale=1.0):
    """Rows per method; ``scale`` shrinks the patch counts (ResNet50), ``methods`` and ``skip``
    filter."""
    from napari_xhisto.explain import get_explainer, list_explainers
    from napari_xhisto.explain.cam import layer_name, resolve_target_layer

    model = model.eval()
    layer = resolve_target_layer(model)
    refs = references(model, layer, canonizers, target=1)
    rows = {}
    for info in list_explainers():
        name = info["name"]
        if (methods is not None and name not in methods) or name in skip:
            continue
        params, n = plans(size).get(name, ({}, 1))
        n = max(1, int(n * scale))
        if quick:
            n = min(n, 2)
        x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))
        ex = get_explainer(name)
        reps = 1 if n == 1 else 3
        warm = info["cost"] < 50  # Score-CAM, Ablation-CAM, occlusion, LIME: one cold run
        if "target_layer" in ex.params:
            params = {**params, "target_layer": layer_name(model, layer)}
        ref = refs.get(name)
        t_ours, t_ref = timed_pair(
            lambda ex=ex, x=x, params=params: ex.explain(model, x, 1, **params),
            (lambda ref=ref, x=x: ref(x)) if ref else None, reps, warm=warm)
        rows[name] = {"patches": n, "ours_ms_per_patch": round(1000 * t_ours / n, 2),
                      "reference_ms_per_patch": None if t_ref is None else round(1000 * t_ref / n, 2),
                      "ratio_ours_to_reference": None if t_ref is None else round(t_ours / t_ref, 3)}
        print(f"{label:10s} {name:26s} {rows[name]}", flush=True)
    return rows


def demo_model():
    try:
        from napari_xhisto.models import load_model
        m = load_model("demo", device="cpu")
        return "demo", m
    except Exception as exc:  # the bundled model may not be built yet
        from napari_xhisto.models import LoadedModel, ModelSpec, build_architecture
        print(f"demo model unavailable ({exc}); using a random xhisto_cnn_s stand-in", flush=True)
        spec = ModelSpec("xhisto_cnn_s", ["non-tumour", "tumour"], patch_size=64, mpp=1.0)
        module = build_architecture("xhisto_cnn_s", 2).eval()
        return "stand-in xhisto_cnn_s (random)", LoadedModel(module, spec, torch.device("cpu"))


def bench_region(model, methods):
    from napari_xhisto.explain import explain_region
    from napari_xhisto.geometry import Region
    from napari_xhisto.progress import run_to_end
    from napari_xhisto.slide import open_slide
    from napari_xhisto.synth.writer import write_slide

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        path, _ = write_slide(Path(tmp) / "bench.svs", size=1536, seed=3, mpp=0.5, ground_truth=False)
        with open_slide(path) as slide:
            region = Region(256, 256, 1024, 1024)
            for method in methods:
                t0 = time.perf_counter()
                heat = run_to_end(explain_region(slide, region, model, method, batch_size=16))
                dt = time.perf_counter() - t0
                out[method] = {"ms": round(1000 * dt, 1), "patches": heat.provenance["n_patches"],
                               "heatmap_shape": list(heat.values.shape)}
                print(f"region 1024x1024 {method:22s} {out[method]}", flush=True)
    return out


def lrp_rerun(depth="resnet18", n=8, reps=3):
    """LRP on a ResNet, ours and zennit interleaved (less sensitive to a busy machine)."""
    from zennit.torchvision import ResNetCanonizer

    from napari_xhisto.explain import get_explainer

    torch.manual_seed(0)
    model = getattr(torchvision.models, depth)(num_classes=2).eval()
    refs = references(model, model.layer4, [ResNetCanonizer], target=1)
    x = torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    rows = {}
    for name in ("lrp-epsilon-plus", "lrp-epsilon-alpha2-beta1", "lrp-epsilon-plus-flat"):
        ex, params = get_explainer(name), plans(224)[name][0]
        ex.explain(model, x, 1, **params), refs[name](x)  # warm-up
        ours, ref = [], []
        for _ in range(reps):
            ours.append(timed(lambda ex=ex, params=params: ex.explain(model, x, 1, **params), 1,
                              warm=False))
            ref.append(timed(lambda name=name: refs[name](x), 1, warm=False))
        o, r = statistics.median(ours), statistics.median(ref)
        rows[name] = {"patches": n, "ours_ms_per_patch": round(1000 * o / n, 1),
                      "reference_ms_per_patch": round(1000 * r / n, 1),
                      "ratio_ours_to_reference": round(o / r, 3), "reps": reps}
        print(name, rows[name], flush=True)
    result = json.loads(OUT.read_text()) if OUT.exists() else {}
    result[f"{depth}_lrp_interleaved_rerun"] = {"load_average_at_start": list(os.getloadavg()),
                                                "methods": rows}
    OUT.write_text(json.dumps(result, indent=2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer patches (smoke run)")
    ap.add_argument("--lrp-only", action="store_true",
                    help="re-time only LRP on ResNet18 (interleaved, 3 reps) into the existing JSON")
    ap.add_argument("--sections", default="resnet18,resnet50,demo,region",
                    help="comma-separated subset of resnet18,resnet50,demo,region")
    ap.add_argument("--methods", default=None, help="comma-separated method names (default: all)")
    args = ap.parse_args()
    if args.lrp_only:
        if "resnet50" in args.sections.split(","):
            return lrp_rerun("resnet50", n=2, reps=5)
        return lrp_rerun()
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.torchvision import ResNetCanonizer

    sections = set(args.sections.split(","))
    methods = set(args.methods.split(",")) if args.methods else None
    t_start = time.perf_counter()
    torch.manual_seed(0)
    result = json.loads(OUT.read_text()) if OUT.exists() else {}
    result.update({
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                    "torch": torch.__version__, "cpu_count": os.cpu_count(), "threads": 2,
                    "device": "cuda" if torch.cuda.is_available() else "cpu",
                    "load_average_at_start": list(os.getloadavg())},
        "note": "ratio = ours / reference (direct library call on the same batch, timed in "
                "turn); < 1 is faster",
    })

    def save():
        result["total_seconds"] = round(time.perf_counter() - t_start, 1)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(result, indent=2))

    def section(key, rows):
        old = result.get(key, {}) if methods else {}
        old = old.get("methods", old) if isinstance(old, dict) else {}
        result[key] = {"load_average_at_start": load0, "load_average_at_end": list(os.getloadavg()),
                       "methods": {**old, **rows}}
        save()

    many = {"scorecam", "ablationcam"}  # 2048 forward passes per patch on ResNet50's layer4
    for depth in ("resnet18", "resnet50"):
        if depth in sections:
            load0 = list(os.getloadavg())
            net = getattr(torchvision.models, depth)(num_classes=2)
            if depth == "resnet18":
                rows = bench_model(depth, net, 224, [ResNetCanonizer], quick=args.quick,
                                   methods=methods)
                section(f"{depth}_224px", rows)
                continue
            cheap = None if methods is None else methods - many
            if cheap is None or cheap:
                rows = bench_model(depth, net, 224, [ResNetCanonizer], quick=args.quick,
                                   methods=cheap, skip=many, scale=0.25)
                section(f"{depth}_224px", rows)
            load0 = list(os.getloadavg())
            rows = bench_model(depth, net, 112, [ResNetCanonizer], quick=args.quick,
                               methods=many if methods is None else methods & many)
            if rows:
                section(f"{depth}_112px_scorecam_ablationcam", rows)
    label, model = demo_model()
    if "demo" in sections:
        load0 = list(os.getloadavg())
        size = int(model.spec.network_input_size)
        rows = bench_model("demo", model.module, size, [SequentialMergeBatchNorm],
                           quick=args.quick, methods=methods)
        section("demo_model", rows)
        result["demo_model"].update({"model": label, "patch_px": size, "mpp": model.spec.mpp})
        save()
    if "region" in sections:
        result["region_1024px_level0"] = {
            "model": label, "slide_mpp": 0.5, "load_average_at_start": list(os.getloadavg()),
            "methods": bench_region(model, ["probability", "gradcam", "saliency",
                                            "lrp-epsilon-plus"])}
        save()
    print(f"wrote {OUT} in {result['total_seconds']} s")


if __name__ == "__main__":
    main()
