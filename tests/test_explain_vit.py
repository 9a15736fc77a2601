"""Vision transformers: CAMs on the token grid, attention rollout, gradient and perturbation methods.

Small random timm ViTs in float64 (vit_tiny's width and heads, 4 blocks, 64 px with 8 px patches;
a narrow variant with register tokens, LayerScale, QK-norm, average pooling and an MLP head), each method
compared with its reference: pytorch-grad-cam with the ViT ``reshape_transform``, captum, or a
slow, obvious re-implementation. AttnLRP is tested in test_explain_vit_lrp.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_xhisto.errors import ModelError
from napari_xhisto.explain import get_explainer

timm = pytest.importorskip("timm")
torch.set_num_threads(2)


def randomise(model, seed):
    """Parameters of order-one effect (timm's init makes attention nearly uniform)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * (1.5 / p[0].numel() ** 0.5))
            elif name.endswith("weight") or name.endswith("gamma"):
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    return model


def make_vit(kind="plain", *, seed=0, dtype=torch.float64, **kw):
    """``plain``: class token, token pooling, linear head, 8 x 8 tokens at 64 px.
    ``fancy``: 48 wide, 4 register tokens, LayerScale, QK-norm, average pooling, an MLP head,
    4 x 4 tokens at 32 px."""
    args = dict(img_size=64, patch_size=8, num_classes=3, depth=4)
    if kind == "fancy":
        args.update(img_size=32, embed_dim=48, reg_tokens=4, init_values=0.5, qk_norm=True,
                    global_pool="avg")
    args.update(kw)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **args)
    if kind == "fancy":
        model.head = torch.nn.Sequential(torch.nn.Linear(48, 32), torch.nn.GELU(),
                                         torch.nn.Dropout(0.1), torch.nn.Linear(32, 3))
    return randomise(model, seed).to(dtype).eval()


@pytest.fixture(scope="module")
def vit():
    return make_vit("plain", seed=1)


@pytest.fixture(scope="module")
def fancy():
    return make_vit("fancy", seed=2)


def batch(size, n=2, seed=3):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


TARGET = torch.tensor([1, 2])


def ours(name, model, x, target=TARGET, **params):
    return get_explainer(name).attribute(model, x, target, **params).numpy()


def assert_close(a, b, tol):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    scale = np.abs(b).max()
    assert scale > 0
    err = np.abs(a - b).max() / scale
    assert err < tol, f"relative max error {err:.2e} >= {tol:.0e}"


def minmax(m):
    m = np.asarray(m, np.float64)
    lo, hi = m.min(axis=(-2, -1), keepdims=True), m.max(axis=(-2, -1), keepdims=True)
    return (m - lo) / (hi - lo)


def reshape_transform(prefix, side):
    """pytorch-grad-cam's ViT example (README, usage_examples/vit_example.py), any prefix."""
    def transform(tensor):
        result = tensor[:, prefix:, :].reshape(tensor.size(0), side, side, tensor.size(2))
        return result.transpose(2, 3).transpose(1, 2)
    return transform


# ---------------------------------------------------------------------------------------------
# tokens and grid

def test_token_layout_and_grid_round_trip(vit, fancy):
    from napari_xhisto.explain.vit import grid_to_tokens, tokens_to_grid, vit_parts

    parts = vit_parts(vit)
    assert (parts.kind, parts.prefix, parts.grid, len(parts.blocks)) == ("timm", 1, (8, 8), 4)
    assert vit_parts(fancy).prefix == 5 and vit_parts(fancy).grid == (4, 4)
    wrapped = torch.nn.Sequential(vit)  # a ViT inside a wrapper is found
    assert vit_parts(wrapped).vit is vit
    assert vit_parts(torch.nn.Conv2d(3, 3, 1)) is None
    tokens = torch.randn(2, 21, 7, dtype=torch.float64)
    grid = tokens_to_grid(tokens, 5, (4, 4))
    assert torch.equal(grid, reshape_transform(5, 4)(tokens))
    assert torch.equal(grid_to_tokens(grid, tokens[:, :5]), tokens)


def test_default_cam_layer_is_the_last_blocks_first_norm(vit):
    from napari_xhisto.explain.cam import resolve_target_layer

    assert resolve_target_layer(vit) is vit.blocks[-1].norm1
    assert resolve_target_layer(vit, "blocks.1") is vit.blocks[1]
    with pytest.raises(ValueError, match="no layer"):
        resolve_target_layer(vit, "blocks.9")


# ---------------------------------------------------------------------------------------------
# CAM family vs pytorch-grad-cam with the ViT reshape_transform

CAMS = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
        "layercam": "LayerCAM", "scorecam": "ScoreCAM"}


@pytest.mark.parametrize("kind,name", [(k, n) for k in ("vit", "fancy") for n in sorted(CAMS)
                                       if not (k == "vit" and n == "scorecam")])  # 192 channels
def test_cams_equal_pytorch_grad_cam(kind, name, request):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = request.getfixturevalue(kind)
    prefix, side, size = (1, 8, 64) if kind == "vit" else (5, 4, 32)
    x = batch(size)
    # the default layer for one model, a whole block named explicitly for the other
    layer, dotted = (model.blocks[-1].norm1, None) if kind == "vit" else (model.blocks[2], "blocks.2")
    cam = getattr(pytorch_grad_cam, CAMS[name])(model=model, target_layers=[layer],
                                                reshape_transform=reshape_transform(prefix, side))
    if name == "scorecam":
        cam.batch_size = 64
    with cam:
        want = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in TARGET])
    got = ours(name, model, x, target_layer=dotted)
    assert_close(minmax(got), want, 1e-5)  # pytorch-grad-cam resizes in float32 (OpenCV)


def test_raw_gradcam_is_the_token_grid_cam_upsampled(vit):
    """Raw scale (no min-max): Grad-CAM of the patch tokens by hand, bilinear to pixels."""
    x = batch(64)
    store = {}
    handle = vit.blocks[-1].norm1.register_forward_hook(lambda m, i, o: store.update(a=o))
    try:
        xi = x.clone().requires_grad_(True)
        logits = vit(xi)
        (g,) = torch.autograd.grad(logits[torch.arange(2), TARGET].sum(), store["a"])
    finally:
        handle.remove()
    a, g = store["a"][:, 1:].detach(), g[:, 1:]  # patch tokens (N, 64, D)
    weights = g.mean(1, keepdim=True)  # average over the token grid, per channel
    cam = (weights * a).sum(-1).clamp(min=0).reshape(2, 1, 8, 8)
    want = torch.nn.functional.interpolate(cam, size=(64, 64), mode="bilinear",
                                           align_corners=False)[:, 0]
    assert_close(ours("gradcam", vit, x), want.numpy(), 1e-12)


def test_ablation_cam_equals_a_slow_reference(fancy):
    """Each channel of the patch grid zeroed in turn (class and register tokens untouched)."""
    x = batch(32, n=1)
    layer = fancy.blocks[-1].norm1
    with torch.no_grad():
        store = {}
        handle = layer.register_forward_hook(lambda m, i, o: store.update(a=o))
        base = fancy(x)[0, 2].item()
        handle.remove()
        tokens = store["a"]
        weights = []
        for k in range(tokens.shape[-1]):
            ablated = tokens.clone()
            ablated[:, 5:, k] = 0
            handle = layer.register_forward_hook(lambda m, i, o, a=ablated: a)
            weights.append((base - fancy(x)[0, 2].item()) / base)
            handle.remove()
    grid = tokens[0, 5:].T.reshape(-1, 4, 4)
    cam = (torch.tensor(weights, dtype=x.dtype)[:, None, None] * grid).sum(0).clamp(min=0)
    want = torch.nn.functional.interpolate(cam[None, None], size=(32, 32), mode="bilinear",
                                           align_corners=False)[0]
    got = ours("ablationcam", fancy, x, target=2, forward_batch=50)
    assert_close(got, want.numpy(), 1e-9)
    assert fancy(x)[0, 2].item() == pytest.approx(base, abs=1e-12)


def test_smooth_gradcam_pp_without_noise_is_gradcam_pp(vit):
    x = batch(64)
    assert_close(ours("smooth-gradcam++", vit, x, n_samples=2, noise=0.0),
                 ours("gradcam++", vit, x), 1e-10)


# ---------------------------------------------------------------------------------------------
# attention rollout vs a slow reference

def timm_attention(model, x):
    """Per-block attention read from timm's unfused path (``attn_drop``'s input)."""
    probs, handles = [], []
    for blk in model.blocks:
        blk.attn.fused_attn = False
        handles.append(blk.attn.attn_drop.register_forward_hook(lambda m, i, o: probs.append(o)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for blk, h in zip(model.blocks, handles):
            blk.attn.fused_attn = True
            h.remove()
    return probs


def slow_rollout(probs, *, head_fusion, discard_ratio, prefix, avg):
    """Abnar & Zuidema's rollout, one sample and one entry at a time."""
    maps = []
    for s in range(probs[0].shape[0]):
        t = probs[0].shape[-1]
        joint = torch.eye(t, dtype=probs[0].dtype)
        for attn in probs:
            heads = attn[s]
            fused = {"mean": heads.mean(0), "max": heads.max(0).values,
                     "min": heads.min(0).values}[head_fusion].clone()
            k = int(t * t * discard_ratio)
            order = sorted(range(t * t), key=lambda i: fused.reshape(-1)[i].item())[:k]
            for i in order:
                if i != 0:
                    fused[i // t, i % t] = 0.0
            a = (fused + torch.eye(t, dtype=fused.dtype)) / 2
            for r in range(t):
                a[r] = a[r] / a[r].sum()
            joint = a @ joint
        maps.append(joint[prefix:, prefix:].mean(0) if avg else joint[0, prefix:])
    return torch.stack(maps)


def upsampled(rows, side, size):
    return torch.nn.functional.interpolate(rows.reshape(-1, 1, side, side), size=(size, size),
                                           mode="bilinear", align_corners=False)[:, 0]


@pytest.mark.parametrize("kind", ["vit", "fancy"])
@pytest.mark.parametrize("fusion,discard", [("mean", 0.0), ("max", 0.5), ("min", 0.9)])
def test_attention_rollout_equals_a_slow_reference(kind, fusion, discard, request):
    model = request.getfixturevalue(kind)
    prefix, side = (1, 8) if kind == "vit" else (5, 4)
    x = batch(side * 8)
    rows = slow_rollout(timm_attention(model, x), head_fusion=fusion, discard_ratio=discard,
                        prefix=prefix, avg=kind == "fancy")
    want = upsampled(rows, side, side * 8)
    got = ours("attention-rollout", model, x, head_fusion=fusion, discard_ratio=discard)
    assert_close(got, want.numpy(), 1e-10)


def test_rollout_is_class_agnostic_and_checks_the_target(vit):
    x = batch(64)
    assert np.array_equal(ours("attention-rollout", vit, x, target=0),
                          ours("attention-rollout", vit, x, target=2))
    with pytest.raises(ValueError, match="out of range"):
        ours("attention-rollout", vit, x, target=3)


# ---------------------------------------------------------------------------------------------
# gradient and perturbation families vs captum

def test_saliency_and_integrated_gradients_equal_captum(fancy):
    from captum.attr import IntegratedGradients, Saliency

    x = batch(32)
    want = Saliency(fancy).attribute(x, target=TARGET, abs=False).sum(1).numpy()
    assert_close(ours("saliency", fancy, x), want, 1e-10)
    want = Saliency(fancy).attribute(x, target=TARGET, abs=True).sum(1).numpy()
    assert_close(ours("saliency", fancy, x, abs=True), want, 1e-10)
    ig = IntegratedGradients(fancy).attribute(x, target=TARGET, n_steps=4, method="riemann_right",
                                              baselines=0.25)
    assert_close(ours("integrated-gradients", fancy, x, steps=4, baseline=0.25,
                      internal_batch_size=6), ig.sum(1).numpy(), 1e-9)
    assert_close(ours("smoothgrad", fancy, x, n_samples=2, noise=0.0),
                 ours("saliency", fancy, x), 1e-12)


def test_occlusion_equals_captum(fancy):
    from captum.attr import Occlusion

    x1 = batch(32, n=1)
    want = Occlusion(fancy).attribute(x1, target=1, sliding_window_shapes=(3, 12, 12),
                                      strides=(3, 5, 5), baselines=0.1, perturbations_per_eval=8)
    got = ours("occlusion", fancy, x1, target=1, window=12, stride=5, baseline=0.1,
               forward_batch=7)
    assert_close(got, want[:, 0].numpy(), 1e-6)  # captum divides in float32


def test_lime_superpixel_weights_agree_with_captum(fancy):
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime
    from scipy.stats import spearmanr

    from napari_xhisto.explain.perturbation import (
        lime_similarity,
        lime_superpixel_weights,
        slic_segments,
    )

    # smooth colour blobs, so that SLIC finds superpixels
    x1 = torch.nn.functional.interpolate(batch(8, n=1), size=(32, 32), mode="bilinear")
    seg = slic_segments(x1[0], 16)
    ours_w = lime_superpixel_weights(fancy, x1, 1, seg, n_samples=400, seed=0, alpha=1.0,
                                     kernel_width=0.25)

    def similarity(_orig, _pert, interp, **_):
        return float(lime_similarity(interp.double(), 0.25)[0])

    torch.manual_seed(0)
    lime = Lime(fancy, interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=similarity)
    mask = torch.as_tensor(seg)[None, None].expand(1, 3, -1, -1)
    ref = lime.attribute(x1, target=1, feature_mask=mask, n_samples=400, baselines=0.0,
                         return_input_shape=False, perturbations_per_eval=100)
    rho = spearmanr(ours_w, ref[0].numpy()).statistic
    assert seg.max() + 1 >= 8 and rho >= 0.9, rho


def test_guided_methods_and_cnn_lrp_refuse_vits_with_a_pointer(vit):
    x = batch(64)
    for name in ("guided-backprop", "guided-gradcam"):
        with pytest.raises(ModelError, match="saliency"):
            ours(name, vit, x)
    with pytest.raises(ModelError, match="attnlrp"):
        ours("lrp-epsilon-plus", vit, x)


def test_vit_methods_refuse_cnns():
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 2)).double().eval()
    for name in ("attention-rollout", "attnlrp"):
        with pytest.raises(ModelError, match="vision transformers"):
            ours(name, cnn, batch(16), target=0)


def test_torchvision_vits_get_token_cams_and_rollout():
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchvision.models import VisionTransformer

    torch.manual_seed(4)
    tv = randomise(VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                     hidden_dim=16, mlp_dim=32, num_classes=3), 5).double().eval()
    x = batch(32)

    with pytorch_grad_cam.GradCAM(model=tv, target_layers=[tv.encoder.layers[-1].ln_1],
                                  reshape_transform=reshape_transform(1, 4)) as cam:
        want = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in TARGET])
    assert_close(minmax(ours("gradcam", tv, x)), want, 1e-5)
    # rollout from torchvision's own attention weights (need_weights=True, per head)
    probs = []

    def grab(layer, args, out):
        y = args[0]
        probs.append(layer.self_attention(y, y, y, need_weights=True,
                                          average_attn_weights=False)[1])

    handles = [lay.ln_1.register_forward_hook(lambda m, a, o, lay=lay: grab(lay, (o,), None))
               for lay in tv.encoder.layers]
    try:
        with torch.no_grad():
            tv(x)
    finally:
        for h in handles:
            h.remove()
    want = upsampled(slow_rollout(probs, head_fusion="mean", discard_ratio=0.0, prefix=1,
                                  avg=False), 4, 32)
    assert_close(ours("attention-rollout", tv, x), want.numpy(), 1e-10)
    with pytest.raises(ModelError, match="timm"):
        ours("attnlrp", tv, x)


# ---------------------------------------------------------------------------------------------
# a slide region end to end

@pytest.fixture(scope="module")
def synthetic_slide(tmp_path_factory):
    from napari_xhisto.slide import open_slide
    from napari_xhisto.synth.writer import write_slide

    path = tmp_path_factory.mktemp("vit") / "tissue.svs"
    write_slide(path, size=256, seed=0, ground_truth=False)
    return open_slide(path)


@pytest.mark.parametrize("method", ["gradcam", "attention-rollout", "attnlrp"])
def test_explain_region_with_a_vit_on_a_synthetic_slide(synthetic_slide, method):
    """Token-grid maps tile and stitch like CNN maps: where one patch alone covers the region,
    the heatmap is that patch's own map (32 px ViT patches at 1 µm/px on a 0.5 µm/px slide)."""
    from napari_xhisto.explain import explain_patches, explain_region
    from napari_xhisto.geometry import Region
    from napari_xhisto.models import LoadedModel, ModelSpec
    from napari_xhisto.progress import run_to_end

    vit = make_vit("plain", seed=21, img_size=32, embed_dim=48, num_classes=2,
                   dtype=torch.float32)
    spec = ModelSpec("timm:vit_tiny_patch16_224", ["normal", "tumour"], patch_size=32, mpp=1.0,
                     mean=(0.7, 0.5, 0.7), std=(0.2, 0.2, 0.2))
    model = LoadedModel(module=vit, spec=spec, device=torch.device("cpu"))
    region = Region(40, 24, 128, 160)  # level-0 px: a 64 x 80 heatmap, 3 x 3 patches
    heat = run_to_end(explain_region(synthetic_slide, region, model, method, overlap=0.25,
                                     normalize="none", batch_size=5))
    assert heat.values.shape == (64, 80) and np.isfinite(heat.values).all()
    assert heat.placement.step_row == 2.0 and heat.provenance["n_patches"] == 9
    first = synthetic_slide.read_scaled(Region(40, 24, 64, 64), 32, 32)
    alone = explain_patches(model, first[None], method)[0]  # patch (0, 0); the next starts at 24
    np.testing.assert_allclose(heat.values[:24, :24], alone[:24, :24], rtol=1e-5,
                               atol=1e-6 * np.abs(alone).max())
    assert np.abs(alone).max() > 0
    if method != "attnlrp":
        assert heat.values.min() >= 0


def test_readme_style_timm_vit_spec_loads_and_explains(tmp_path):
    """The README's foundation-model spec (YAML, `architecture: timm:NAME`, `arch_options`,
    weights beside it) builds the ViT with those options, loads the named weights exactly and
    explains with a token-grid CAM and AttnLRP."""
    from safetensors.torch import save_file

    from napari_xhisto.explain import explain_patches
    from napari_xhisto.models import load_model

    opts = dict(img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=3)
    torch.manual_seed(3)
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=2, **opts).eval()
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()},
              str(tmp_path / "vit-head.safetensors"))
    (tmp_path / "vit.yaml").write_text(
        "architecture: timm:vit_tiny_patch16_224\n"
        "arch_options: {img_size: 32, patch_size: 8, depth: 2, embed_dim: 48, num_heads: 3}\n"
        "class_names: [normal, tumour]\npatch_size: 32\nmpp: 1.0\n"
        "mean: [0.485, 0.456, 0.406]\nstd: [0.229, 0.224, 0.225]\n"
        "weights: vit-head.safetensors\n")
    model = load_model(tmp_path / "vit.yaml", device="cpu")
    for (k, v), (k2, v2) in zip(model.module.state_dict().items(), ref.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    rgb = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    x = model.preprocess(rgb)
    with torch.no_grad():
        expect = torch.softmax(ref(x), 1).numpy()
    np.testing.assert_allclose(model.predict_proba(rgb), expect, rtol=1e-5, atol=1e-6)
    for method in ("gradcam", "attnlrp"):
        maps = explain_patches(model, rgb, method)
        assert maps.shape == (2, 32, 32) and np.isfinite(maps).all() and np.abs(maps).max() > 0
