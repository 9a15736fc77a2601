"""Benchmark: explainers on a ViT-S vs their reference libraries.

timm ``vit_small_patch16_224`` (random weights, 224 px, float32, 2 threads): ms per patch of our
``Explainer.explain`` and of the direct reference call on the same batch, and their ratio
(goal <= 1.0): pytorch-grad-cam with the ViT ``reshape_transform`` (CAM family), captum
(gradient and perturbation methods), lxt (AttnLRP: lxt's rules on the same timm ViT, as the
tests build them, and lxt's shipped torchvision ViT map on a weight-equal torchvision ViT-S),
and the vit-explain recipe for attention rollout (unfused attention read at ``attn_drop``).
Ours and the reference run alternately, each ``reps`` times, medians compared, so a busy machine
slows both alike. Writes bench/results/explain_vit.json with the load average. About 10 minutes
on 2 busy cores.

    python bench/explain_vit.py [--quick] [--only saliency,smoothgrad --reps 7]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import os
import platform
import statistics
import sys
import time
import types
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

warnings.filterwarnings("ignore")
try:  # pytorch-grad-cam's Score-/Ablation-CAM progress bars ignore TQDM_DISABLE
    import tqdm

    tqdm.tqdm.__init__ = functools.partialmethod(tqdm.tqdm.__init__, disable=True)
except ImportError:  # pragma: no cover
    pass
os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam draws progress bars
torch.set_num_threads(2)
OUT = Path(__file__).parent / "results" / "explain_vit.json"
SIZE, SIDE = 224, 14


def lxt_modules():
    """lxt's rule modules (its package __init__ imports LLM code that transformers 5 broke)."""
    try:
        import lxt.efficient  # noqa: F401
    except ImportError:
        import lxt

        for sub in ("efficient", "efficient.models"):
            pkg = types.ModuleType("lxt." + sub)
            pkg.__path__ = [os.path.join(os.path.dirname(lxt.__file__), *sub.split("."))]
            sys.modules["lxt." + sub] = pkg
    return (importlib.import_module("lxt.efficient.patches"),
            importlib.import_module("lxt.efficient.zennit_patches"))


@contextlib.contextmanager
def lxt_patched(patch_map):
    """lxt's class patches and zennit patch for the duration only."""
    from zennit.core import BasicHook

    _, zennit_patches = lxt_modules()
    names = [(c, n) for c in patch_map for n in ("forward", "original_forward")]
    names += [(BasicHook, "forward"), (BasicHook, "backward")]
    saved = [(c, n, c.__dict__.get(n)) for c, n in names]
    try:
        for cls, patch in patch_map.items():
            patch(cls)
        zennit_patches.monkey_patch_zennit()
        yield
    finally:
        for c, n, f in saved:
            if f is None:
                if n in c.__dict__:
                    delattr(c, n)
            else:
                setattr(c, n, f)


def lxt_timm_map(mode):
    import timm.layers.attention as ta
    import timm.layers.norm as tn

    patches, _ = lxt_modules()
    wrap = patches.wrap_attention_forward if mode == "attnlrp" else patches.cp_wrap_attention_forward
    attend = wrap(lambda module, q, k, v: F.scaled_dot_product_attention(q, k, v))

    def attention_forward(self, x, attn_mask=None, is_causal=False):
        n, t, _ = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = attend(self, self.q_norm(q), self.k_norm(k), v)
        return self.proj_drop(self.proj(self.norm(x.transpose(1, 2).reshape(n, t, self.attn_dim))))

    return {ta.Attention: functools.partial(patches.patch_method, attention_forward),
            tn.LayerNorm: functools.partial(patches.patch_method, patches.layer_norm_forward),
            nn.GELU: functools.partial(patches.patch_method, patches.non_linear_forward,
                                       keep_original=True)}


def lxt_call(model, patch_map, lin_gamma, conv_gamma, target):
    import zennit.rules as zr
    from zennit.composites import LayerMapComposite

    def run(x):
        with lxt_patched(patch_map):
            comp = LayerMapComposite([(nn.Conv2d, zr.Gamma(conv_gamma)),
                                      (nn.Linear, zr.Gamma(lin_gamma))])
            comp.register(model)
            try:
                xi = x.clone().requires_grad_(True)
                y = model(xi)
                onehot = torch.zeros_like(y)
                onehot[:, target] = 1
                (g,) = torch.autograd.grad(y, xi, onehot)
            finally:
                comp.remove()
        return (xi * g).sum(1)
    return run


def torchvision_twin(vit):
    """torchvision ViT-S with the timm ViT-S's weights (same function)."""
    from torchvision.models import VisionTransformer

    tv = VisionTransformer(image_size=SIZE, patch_size=16, num_layers=len(vit.blocks),
                           num_heads=vit.blocks[0].attn.num_heads, hidden_dim=vit.embed_dim,
                           mlp_dim=vit.blocks[0].mlp.fc1.out_features,
                           num_classes=vit.num_classes).eval()
    s = {"conv_proj.weight": vit.patch_embed.proj.weight, "conv_proj.bias": vit.patch_embed.proj.bias,
         "class_token": vit.cls_token, "encoder.pos_embedding": vit.pos_embed,
         "encoder.ln.weight": vit.norm.weight, "encoder.ln.bias": vit.norm.bias,
         "heads.head.weight": vit.head.weight, "heads.head.bias": vit.head.bias}
    for i, b in enumerate(vit.blocks):
        p = f"encoder.layers.encoder_layer_{i}."
        for ours, theirs in [("ln_1", b.norm1), ("ln_2", b.norm2), ("self_attention.out_proj", b.attn.proj),
                             ("mlp.0", b.mlp.fc1), ("mlp.3", b.mlp.fc2)]:
            s[p + ours + ".weight"], s[p + ours + ".bias"] = theirs.weight, theirs.bias
        s[p + "self_attention.in_proj_weight"] = b.attn.qkv.weight
        s[p + "self_attention.in_proj_bias"] = b.attn.qkv.bias
    tv.load_state_dict({k: v.detach().clone() for k, v in s.items()})
    return tv


def rollout_recipe(model):
    """vit-explain's recipe: unfused attention read at attn_drop, mean fusion, rollout."""
    def run(x):
        probs = []
        hs = []
        for b in model.blocks:
            b.attn.fused_attn = False
            hs.append(b.attn.attn_drop.register_forward_hook(lambda m, i, o: probs.append(o)))
        try:
            with torch.no_grad():
                model(x)
        finally:
            for b, h in zip(model.blocks, hs):
                b.attn.fused_attn = True
                h.remove()
        t = probs[0].shape[-1]
        result = torch.eye(t).expand(x.shape[0], t, t)
        for a in probs:
            a = (a.mean(1) + torch.eye(t)) / 2
            result = (a / a.sum(-1, keepdim=True)) @ result
        return result[:, 0, 1:]
    return run


def references(model, target):
    import pytorch_grad_cam as pgc
    from captum.attr import IntegratedGradients, NoiseTunnel, Occlusion, Saliency
    from pytorch_grad_cam.ablation_layer import AblationLayerVit
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = model.blocks[-1].norm1

    def reshape(t):
        return t[:, 1:, :].reshape(t.size(0), SIDE, SIDE, t.size(2)).transpose(2, 3).transpose(1, 2)

    def gc(cls, **kw):
        def run(x):
            cam = cls(model=model, target_layers=[layer], reshape_transform=reshape, **kw)
            if "batch_size" not in kw and hasattr(cam, "batch_size"):
                cam.batch_size = 64
            with cam:
                return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)] * x.shape[0])
        return run

    tv = torchvision_twin(model)
    vit_torch = (lxt_modules(), importlib.import_module("lxt.efficient.models.vit_torch"))[1]
    return {
        "gradcam": ("pytorch-grad-cam", gc(pgc.GradCAM)),
        "gradcam++": ("pytorch-grad-cam", gc(pgc.GradCAMPlusPlus)),
        "xgradcam": ("pytorch-grad-cam", gc(pgc.XGradCAM)),
        "layercam": ("pytorch-grad-cam", gc(pgc.LayerCAM)),
        "scorecam": ("pytorch-grad-cam", gc(pgc.ScoreCAM)),
        "ablationcam": ("pytorch-grad-cam (AblationLayerVit)",
                        gc(pgc.AblationCAM, ablation_layer=AblationLayerVit(), batch_size=64)),
        "attention-rollout": ("vit-explain recipe", rollout_recipe(model)),
        "saliency": ("captum", lambda x: Saliency(model).attribute(x, target=target).sum(1)),
        "smoothgrad": ("captum", lambda x: NoiseTunnel(Saliency(model)).attribute(
            x, target=target, nt_type="smoothgrad", nt_samples=8, stdevs=0.5, abs=False).sum(1)),
        "integrated-gradients": ("captum", lambda x: IntegratedGradients(model).attribute(
            x, target=target, n_steps=16, method="riemann_right", internal_batch_size=64).sum(1)),
        "occlusion": ("captum", lambda x: Occlusion(model).attribute(
            x, target=target, sliding_window_shapes=(3, 32, 32), strides=(3, 32, 32),
            perturbations_per_eval=64)),
        "probability": ("torch", lambda x: torch.softmax(model(x), 1)[:, target]),
        "attnlrp": ("lxt rules on the same timm ViT", lxt_call(model, lxt_timm_map("attnlrp"), 0.05, 0.25, target)),
        "attnlrp (cp)": ("lxt rules on the same timm ViT", lxt_call(model, lxt_timm_map("cp"), 0.05, 0.25, target)),
        "attnlrp (cp, linear gamma 0)": ("lxt's torchvision ViT map",
                                          lxt_call(tv, vit_torch.cp_LRP, 0.0, 0.25, target)),
    }


# (method, our parameters matching the reference, patches timed); Score-CAM: pytorch-grad-cam
# masks 16 images per forward pass (ours 64 by default: 15-20% slower for a ViT-S on CPU)
PLANS = [
    ("gradcam", {}, 4), ("gradcam++", {}, 4), ("xgradcam", {}, 4), ("layercam", {}, 4),
    ("scorecam", {"forward_batch": 16}, 1), ("ablationcam", {}, 1), ("smooth-gradcam++", {"n_samples": 8}, 1),
    ("attention-rollout", {}, 4), ("saliency", {}, 4),
    ("smoothgrad", {"n_samples": 8, "noise": 0.1}, 1), ("integrated-gradients", {"steps": 16}, 1),
    ("occlusion", {"window": 32, "stride": 32}, 1), ("lime", {"segments": (32,), "n_samples": 128}, 1),
    ("probability", {}, 4), ("attnlrp", {}, 2), ("attnlrp (cp)", {"attention": "cp"}, 2),
    ("attnlrp (cp, linear gamma 0)", {"attention": "cp", "linear_gamma": 0.0}, 2),
]


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    import timm

    from napari_xhisto.explain import get_explainer

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1 patch, 1 rep (smoke run)")
    ap.add_argument("--only", default="", help="comma-separated methods to re-time with --reps "
                    "alternating runs; saved under 'reruns' in the existing JSON")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    only = [m.strip() for m in args.only.split(",") if m.strip()]
    t_start = time.perf_counter()
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=2).eval()
    refs = references(model, target=1)
    result = {
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                    "torch": torch.__version__, "timm": timm.__version__,
                    "cpu_count": os.cpu_count(), "threads": 2,
                    "load_average_at_start": list(os.getloadavg())},
        "model": "timm vit_small_patch16_224, random weights, 224 px, float32",
        "note": ("ratio = ours / reference, medians of alternating runs on the same batch; "
                 "< 1 is faster. AttnLRP: linear gamma 0.05, conv gamma 0.25 unless named"),
        "methods": {},
    }
    for label, params, n in PLANS:
        if only and label not in only:
            continue
        if args.quick:
            n = 1
        name = label.split(" (")[0]
        ex = get_explainer(name)
        x = torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
        ref_name, ref = refs.get(label, (None, None))
        cheap = ex.cost < 50
        reps = 1 if args.quick else (args.reps if (cheap or only) else 1)
        if cheap:  # warm-up (builds our cached rule copy, as in a real run)
            ex.explain(model, x, 1, **params)
            if ref:
                ref(x)
        ours, theirs = [], []
        for _ in range(reps):
            ours.append(timed(lambda ex=ex, x=x, p=params: ex.explain(model, x, 1, **p)))
            if ref:
                theirs.append(timed(lambda ref=ref, x=x: ref(x)))
        o = statistics.median(ours)
        r = statistics.median(theirs) if theirs else None
        row = {"patches": n, "reps": reps, "params": params,
               "ours_ms_per_patch": round(1000 * o / n, 1),
               "reference": ref_name,
               "reference_ms_per_patch": None if r is None else round(1000 * r / n, 1),
               "ratio_ours_to_reference": None if r is None else round(o / r, 3)}
        result["methods"][label] = row
        print(f"{label:30s} {row}", flush=True)
        result["load_average_at_end"] = list(os.getloadavg())
        result["total_seconds"] = round(time.perf_counter() - t_start, 1)
        if not (only or args.quick):  # saved after every method: a killed run keeps its rows
            OUT.parent.mkdir(parents=True, exist_ok=True)
            OUT.write_text(json.dumps(result, indent=2))
    if only:
        saved = json.loads(OUT.read_text()) if OUT.exists() else {}
        saved.setdefault("reruns", []).append(
            {k: result[k] for k in ("methods", "load_average_at_end", "total_seconds")}
            | {"load_average_at_start": result["machine"]["load_average_at_start"],
               "reps": args.reps})
        OUT.write_text(json.dumps(saved, indent=2))
    if not args.quick:
        print(f"wrote {OUT} in {result['total_seconds']} s")


if __name__ == "__main__":
    main()
