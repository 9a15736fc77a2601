"""Every explainer equals its reference library on random torchvision models in float64."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision

from napari_xhisto.explain import get_explainer, list_explainers

torch.set_num_threads(2)


def _randomise_batch_norm(model, gen):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.2)
    return model


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    model = torchvision.models.vgg11_bn(num_classes=3)
    return _randomise_batch_norm(model, torch.Generator().manual_seed(1)).double().eval()


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(2)
    model = torchvision.models.resnet18(num_classes=3)
    return _randomise_batch_norm(model, torch.Generator().manual_seed(3)).double().eval()


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4), dtype=torch.float64)


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
    lo = m.min(axis=(-2, -1), keepdims=True)
    hi = m.max(axis=(-2, -1), keepdims=True)
    return (m - lo) / (hi - lo)


# ---------------------------------------------------------------------------------------------
# LRP vs zennit

def exact_zennit_copy(model, canonizer):
    """A copy of ``model`` canonised permanently by zennit's ``canonizer``, with the BatchNorms it
    emptied made exact (zennit keeps their eps, so they still divide by sqrt(1 + eps))."""
    ref = copy.deepcopy(model)
    for inst in canonizer.apply(ref):
        if getattr(inst, "batch_norm", None) is not None:
            inst.batch_norm.eps = 0.0
    return ref


def _zennit(model, x, composite):
    from zennit.attribution import Gradient

    onehot = torch.eye(3, dtype=x.dtype)[TARGET]
    with Gradient(model=model, composite=composite) as attributor:
        _, rel = attributor(x.clone(), lambda out: out * onehot)
    return rel.sum(1).detach().numpy()


@pytest.mark.parametrize("arch", ["vgg", "resnet"])
@pytest.mark.parametrize("name", ["lrp-epsilon-plus", "lrp-epsilon-alpha2-beta1",
                                  "lrp-epsilon-plus-flat", "lrp-epsilon-gamma-box"])
def test_lrp_equals_zennit(arch, name, request, x):
    from zennit import composites
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    model = request.getfixturevalue(arch)
    ref = exact_zennit_copy(model, VGGCanonizer() if arch == "vgg" else ResNetCanonizer())
    eps = 0.5
    if name == "lrp-epsilon-gamma-box":
        mean, std = (0.7, 0.5, 0.6), (0.2, 0.25, 0.15)
        m = torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)
        s = torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
        comp = composites.EpsilonGammaBox(low=-m / s, high=(1 - m) / s, epsilon=eps, gamma=0.25)
        got = ours(name, model, x, epsilon=eps, mean=mean, std=std)
    else:
        cls = {"lrp-epsilon-plus": composites.EpsilonPlus,
               "lrp-epsilon-alpha2-beta1": composites.EpsilonAlpha2Beta1,
               "lrp-epsilon-plus-flat": composites.EpsilonPlusFlat}[name]
        comp = cls(epsilon=eps)
        got = ours(name, model, x, epsilon=eps)
    assert_close(got, _zennit(ref, x, comp), 1e-9)


def test_lrp_conservation_bias_free_vgg():
    torch.manual_seed(5)
    model = torchvision.models.vgg11(num_classes=3).double().eval()
    for m in model.modules():
        if getattr(m, "bias", None) is not None:
            m.bias.data.zero_()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    logits = model(x)[0]
    target = int(logits.abs().argmax())
    rel = get_explainer("lrp-epsilon-plus").attribute(model, x, target, epsilon=1e-12)
    logit = logits[target].item()
    assert abs(rel.sum().item() - logit) / abs(logit) < 1e-4


def test_lrp_leaves_the_model_untouched(vgg, x):
    before = {k: v.clone() for k, v in vgg.state_dict().items()}
    ours("lrp-epsilon-plus", vgg, x)
    for k, v in vgg.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.requires_grad for p in vgg.parameters())


def test_lrp_refuses_a_model_it_cannot_canonise():
    from napari_xhisto.errors import ModelError

    class Residual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
            self.head = torch.nn.Linear(3, 2)

        def forward(self, x):
            y = x + self.conv(x)
            return self.head(y.mean((2, 3)))

    with pytest.raises(ModelError, match="residual"):
        get_explainer("lrp-epsilon-plus").explain(Residual().eval(), torch.randn(1, 3, 8, 8), 0)


def test_generic_batch_norm_merge_matches_sequential_canonizer():
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonPlus

    torch.manual_seed(7)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 3))
    _randomise_batch_norm(model, torch.Generator().manual_seed(8))
    model = model.double().eval()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    ref = exact_zennit_copy(model, SequentialMergeBatchNorm())
    want = _zennit(ref, x, EpsilonPlus(epsilon=1.0))
    assert_close(ours("lrp-epsilon-plus", model, x, epsilon=1.0), want, 1e-9)


# ---------------------------------------------------------------------------------------------
# gradient family vs captum

@pytest.mark.parametrize("arch", ["vgg", "resnet"])
def test_saliency_and_integrated_gradients_equal_captum(arch, request, x):
    from captum.attr import IntegratedGradients, Saliency

    model = request.getfixturevalue(arch)
    want = Saliency(model).attribute(x, target=TARGET, abs=False).sum(1).numpy()
    assert_close(ours("saliency", model, x), want, 1e-10)
    want = Saliency(model).attribute(x, target=TARGET, abs=True).sum(1).numpy()
    assert_close(ours("saliency", model, x, abs=True), want, 1e-10)
    ig = IntegratedGradients(model).attribute(x, target=TARGET, n_steps=4, method="riemann_right",
                                              baselines=0.25)
    assert_close(ours("integrated-gradients", model, x, steps=4, baseline=0.25,
                      internal_batch_size=6), ig.sum(1).numpy(), 1e-9)


@pytest.mark.parametrize("arch", ["vgg", "resnet"])
def test_guided_backprop_and_guided_gradcam_equal_captum(arch, request, x):
    from captum.attr import GuidedBackprop, GuidedGradCam

    model = request.getfixturevalue(arch)
    want = GuidedBackprop(model).attribute(x, target=TARGET).detach().sum(1).numpy()
    assert_close(ours("guided-backprop", model, x), want, 1e-10)
    layer, name = (model.features, "features") if arch == "vgg" else (model.layer4, "layer4")
    want = GuidedGradCam(model, layer).attribute(x, target=TARGET, interpolate_mode="bilinear")
    assert_close(ours("guided-gradcam", model, x, target_layer=name), want.detach().sum(1).numpy(),
                 1e-9)


def test_smoothgrad_without_noise_is_saliency(resnet, x):
    assert_close(ours("smoothgrad", resnet, x, n_samples=2, noise=0.0), ours("saliency", resnet, x), 1e-12)


def test_occlusion_equals_captum(resnet, x):
    from captum.attr import Occlusion

    x1 = x[:1]
    want = Occlusion(resnet).attribute(x1, target=1, sliding_window_shapes=(3, 20, 20),
                                       strides=(3, 12, 12), baselines=0.1, perturbations_per_eval=8)
    got = ours("occlusion", resnet, x1, target=1, window=20, stride=12, baseline=0.1, forward_batch=7)
    assert np.allclose(want[:, 0].numpy(), want[:, 2].numpy())
    assert_close(got, want[:, 0].numpy(), 1e-6)  # captum divides in float32


def small_cnn():
    torch.manual_seed(9)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(4),
        torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(8 * 16 * 16, 3)).double().eval()


def test_lime_superpixel_weights_agree_with_captum(x):
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime
    from scipy.stats import spearmanr

    from napari_xhisto.explain.perturbation import (
        lime_similarity,
        lime_superpixel_weights,
        slic_segments,
    )

    # smooth colour blobs, so that SLIC finds superpixels (it does not on white noise)
    x1 = torch.nn.functional.interpolate(x[:1, :, :8, :8], size=(64, 64), mode="bilinear")
    seg = slic_segments(x1[0], 16)
    k = seg.max() + 1
    model = small_cnn()
    ours_w = lime_superpixel_weights(model, x1, 1, seg, n_samples=600, seed=0, alpha=1.0,
                                     kernel_width=0.25)

    def similarity(_orig, _pert, interp, **_):
        return float(lime_similarity(interp.double(), 0.25)[0])

    torch.manual_seed(0)
    lime = Lime(model, interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=similarity)
    ref = lime.attribute(x1, target=1, feature_mask=torch.as_tensor(seg)[None, None].expand(1, 3, -1, -1),
                         n_samples=600, baselines=0.0, return_input_shape=False,
                         perturbations_per_eval=100)
    rho = spearmanr(ours_w, ref[0].numpy()).statistic
    assert k >= 8 and rho >= 0.9, rho


# ---------------------------------------------------------------------------------------------
# CAM family vs pytorch-grad-cam and captum

CAMS = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
        "layercam": "LayerCAM"}


@pytest.mark.parametrize("arch", ["vgg", "resnet"])
@pytest.mark.parametrize("name", sorted(CAMS))
def test_cams_equal_pytorch_grad_cam(arch, name, request, x):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = request.getfixturevalue(arch)
    # features.20: the ReLU after VGG's 6th convolution (8 x 8 at 64 px, non-zero CAMs)
    layer, dotted = (model.features[20], "features.20") if arch == "vgg" else (model.layer4[-1], "layer4.1")
    with getattr(pytorch_grad_cam, CAMS[name])(model=model, target_layers=[layer]) as cam:
        want = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in TARGET])
    got = ours(name, model, x, target_layer=dotted)
    assert_close(minmax(got), want, 1e-5)


def test_default_target_layer_is_the_last_conv_block(vgg, resnet):
    from napari_xhisto.explain.cam import fallback_target_layer, resolve_target_layer
    from napari_xhisto.models import default_target_layer

    assert fallback_target_layer(resnet) is resnet.layer4[-1]
    assert fallback_target_layer(vgg) is vgg.features
    flat = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3),
                               torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(4, 2))
    assert fallback_target_layer(flat) is flat[3]
    # the models package's choice wins where it knows the architecture
    assert resolve_target_layer(resnet) is default_target_layer(resnet)
    assert resolve_target_layer(resnet, "layer3.0") is resnet.layer3[0]


@pytest.mark.parametrize("name", ["scorecam", "ablationcam"])
def test_gradient_free_cams_equal_pytorch_grad_cam(name, resnet, x):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = {"scorecam": pytorch_grad_cam.ScoreCAM, "ablationcam": pytorch_grad_cam.AblationCAM}[name]
    layer = resnet.layer2[-1]  # 128 channels: 128 forward passes per patch
    cam = cls(model=resnet, target_layers=[layer])
    cam.batch_size = 32
    x1 = x[:1, :, :32, :32]
    want = cam(input_tensor=x1, targets=[ClassifierOutputTarget(1)])
    got = ours(name, resnet, x1, target=1, target_layer="layer2.1", forward_batch=40)
    assert_close(minmax(got), want, 1e-4)


def test_raw_gradcam_equals_captum_layer_gradcam(resnet, x):
    from captum.attr import LayerAttribution, LayerGradCam

    lgc = LayerGradCam(resnet, resnet.layer4).attribute(x, target=TARGET, relu_attributions=True)
    want = LayerAttribution.interpolate(lgc, x.shape[-2:], interpolate_mode="bilinear")[:, 0]
    assert_close(ours("gradcam", resnet, x, target_layer="layer4"), want.detach().numpy(), 1e-10)


def test_smooth_gradcam_pp_without_noise_is_gradcam_pp(resnet, x):
    assert_close(ours("smooth-gradcam++", resnet, x, n_samples=2, noise=0.0),
                 ours("gradcam++", resnet, x), 1e-10)


# ---------------------------------------------------------------------------------------------
# protocol

def test_probability_map_is_the_softmax_of_the_target(resnet, x):
    got = ours("probability", resnet, x)
    p = torch.softmax(resnet(x), 1).detach().numpy()
    assert np.allclose(got[0], p[0, 1]) and np.allclose(got[1], p[1, 2])


def test_every_method_declares_itself_and_returns_float32_maps():
    from napari_xhisto.errors import ModelError
    from napari_xhisto.models import build_architecture

    # the project's own small CNN (BatchNorm merged by the generic fx canonizer for LRP)
    model = build_architecture("xhisto_cnn_xs", 2).double().eval()
    x = torch.randn(1, 3, 32, 32).double()
    cheap = {
             "lime": {"segments": (8,), "n_samples": 16}, "integrated-gradients": {"steps": 2},
             "smoothgrad": {"n_samples": 2}, "smooth-gradcam++": {"n_samples": 2},
             "occlusion": {"window": 16, "stride": 16}}
    for info in list_explainers():
        assert info["description"] and info["native_resolution"] in ("pixel", "feature-map", "patch")
        assert set(info["needs"]) <= {"module-hooks", "gradients", "many-forwards"}
        explainer = get_explainer(info["name"])
        if info.get("requires"):  # #16: trained networks needed (tests/test_counterfactual_net*)
            continue
        if getattr(explainer, "vit_only", False):  # m2: ViT methods refuse CNNs (test_explain_vit*)
            with pytest.raises(ModelError, match="vision transformers"):
                explainer.explain(model, x, 0)
            continue
        out = explainer.explain(model, x, 0, **cheap.get(info["name"], {}))
        assert out.dtype == np.float32 and out.shape == (1, 32, 32) and np.isfinite(out).all()
        if not info["signed"]:
            assert out.min() >= 0


def test_out_of_range_parameters_raise_clear_errors(resnet):
    x = torch.randn(1, 3, 32, 32).double()
    with pytest.raises(ValueError, match="steps"):
        get_explainer("integrated-gradients").explain(resnet, x, 0, steps=1)
    with pytest.raises(ValueError, match="unknown parameter"):
        get_explainer("saliency").explain(resnet, x, 0, stepz=3)
    with pytest.raises(ValueError, match="unknown explanation method"):
        get_explainer("nope")
    with pytest.raises(ValueError, match="no layer"):
        get_explainer("gradcam").explain(resnet, x, 0, target_layer="layer9")


def test_torchscript_models_work_without_hooks_and_refuse_hook_methods(resnet):
    from napari_xhisto.errors import ModelError

    x = torch.randn(1, 3, 32, 32).double()
    scripted = torch.jit.trace(resnet, x)
    assert_close(ours("saliency", scripted, x, target=0), ours("saliency", resnet, x, target=0), 1e-10)
    assert_close(ours("occlusion", scripted, x, target=0, window=16, stride=16),
                 ours("occlusion", resnet, x, target=0, window=16, stride=16), 1e-10)
    for name in ("gradcam", "lrp-epsilon-plus", "guided-backprop", "scorecam"):
        with pytest.raises(ModelError, match="module-based model"):
            get_explainer(name).explain(scripted, x, 0)


def test_smoothgrad_batches_noisy_copies_correctly():
    """Batched noisy copies give the per-copy mean of input gradients, each with its own target."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 3)).double().eval()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    targets = torch.tensor([2, 0])
    got = get_explainer("smoothgrad").explain(model, x, targets, n_samples=5, noise=0.2, seed=3)
    gen = torch.Generator().manual_seed(3)
    span = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))).view(-1, 1, 1, 1)
    eps = torch.randn((5, *x.shape), generator=gen, dtype=x.dtype)
    expected = torch.zeros_like(x)
    for k in range(5):
        xi = (x + eps[k] * 0.2 * span).requires_grad_(True)
        out = model(xi)
        (g,) = torch.autograd.grad(out[torch.arange(2), targets].sum(), xi)
        expected += g
    np.testing.assert_allclose(got, (expected / 5).sum(1).numpy(), rtol=1e-5, atol=1e-7)
