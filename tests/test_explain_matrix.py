"""The CNN test matrix: six torchvision architectures pathologists use, random weights with
random BatchNorm statistics, float64, every method against its reference library.

vgg16_bn, resnet50, densenet121, mobilenet_v3_small, googlenet, efficientnet_b0 at 64 px:

* LRP's canonised copy computes the model's own logits;
* LRP equals zennit (its canonizers, emptied BatchNorms made exact) where zennit has one
  (VGG, ResNet, GoogLeNet's conv-BN pairs), else the slow hand-written reference
  (``lrp_reference.py``: DenseNet, MobileNetV3, EfficientNet);
* Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM equal pytorch-grad-cam at the default layer;
  saliency, integrated gradients, guided backprop, guided Grad-CAM and occlusion equal captum;
* Ablation-CAM's head (the network after the target layer) reproduces the whole network with
  channels ablated. (Score-CAM and Ablation-CAM against pytorch-grad-cam, smooth Grad-CAM++
  and LIME are checked on smaller models in test_explain_methods/test_explain_inplace.)

The references read DenseNet's ``features.norm5`` on a copy with ``relu`` out of place (they
read the in-place-overwritten tensor otherwise, see test_explain_inplace). One model per
architecture is built per module; the whole matrix is marked slow (about 2-3 CPU-minutes).
"""

from __future__ import annotations

import copy
import types

import numpy as np
import pytest
import torch
import torchvision
from lrp_reference import fast_float64_grouped_convs, slow_lrp
from torch.nn import functional as F

from napari_xhisto.explain import get_explainer
from napari_xhisto.explain.lrp_canon import canonised_copy

pytestmark = pytest.mark.slow
torch.set_num_threads(2)

ARCHS = {  # name: (CAM layer, LRP reference)
    "vgg16_bn": ("features.42", "VGGCanonizer"),
    "resnet50": ("layer4", "ResNetCanonizer"),
    "densenet121": ("features.norm5", "slow"),
    "mobilenet_v3_small": ("features.12", "slow"),
    "googlenet": ("inception5b", "SequentialMergeBatchNorm"),
    "efficientnet_b0": ("features.8", "slow"),
}


def _randomise(model, seed):
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.2)
    return model.double().eval()


def _out_of_place_densenet_forward(self, x):
    out = F.relu(self.features(x))
    return self.classifier(torch.flatten(F.adaptive_avg_pool2d(out, (1, 1)), 1))


@pytest.fixture(scope="module", params=sorted(ARCHS))
def arch(request):
    name = request.param
    torch.manual_seed(0)
    kw = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    model = _randomise(getattr(torchvision.models, name)(num_classes=3, **kw), 1)
    ref = model
    if name == "densenet121":
        ref = copy.copy(model)  # the same layers, relu out of place
        ref.forward = types.MethodType(_out_of_place_densenet_forward, ref)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with fast_float64_grouped_convs():
        with torch.no_grad():
            target = int(model(x).argmax())  # the predicted class: its CAMs are not all zero
        yield name, model, ref, x, target


def ours(name, model, x, target, **params):
    return get_explainer(name).attribute(model, x, target, **params).numpy()


def assert_close(a, b, tol):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape and np.abs(b).max() > 0
    err = np.abs(a - b).max() / np.abs(b).max()
    assert err < tol, f"relative max error {err:.2e} >= {tol:.0e}"


def minmax(m):
    m = np.asarray(m, np.float64)
    lo, hi = m.min(axis=(-2, -1), keepdims=True), m.max(axis=(-2, -1), keepdims=True)
    return (m - lo) / (hi - lo)


def test_canonised_copy_has_the_models_logits(arch):
    _, model, _, x, _ = arch
    with torch.no_grad():
        want, got = model(x), canonised_copy(model)(x)
    assert_close(got, want, 1e-10)


def test_lrp_equals_its_reference(arch):
    name, model, _, x, target = arch
    reference = ARCHS[name][1]
    if reference == "slow":  # the hand-written walk is slow: a smaller patch
        import lrp_reference

        x = x[..., 16:48, 16:48]
        lrp_reference.EPS = 0.5
        try:
            want = slow_lrp(model, x, torch.tensor([target]), "plus").numpy()
        finally:
            lrp_reference.EPS = 0.05
    else:
        want = _zennit_exact(model, x, reference, target)
    got = ours("lrp-epsilon-plus", model, x, target, epsilon=0.5)
    assert_close(got, want, 1e-9)


def _zennit_exact(model, x, canonizer_name, target):
    """zennit's EpsilonPlus after its own canonizer, with the emptied BatchNorms exact."""
    import zennit.canonizers
    import zennit.torchvision
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlus

    cls = getattr(zennit.torchvision, canonizer_name, None) or \
        getattr(zennit.canonizers, canonizer_name)
    instances = cls().apply(model)
    bns = [i.batch_norm for i in instances if getattr(i, "batch_norm", None) is not None]
    eps = [bn.eps for bn in bns]
    try:
        for bn in bns:
            bn.eps = 0.0
        onehot = torch.eye(3, dtype=x.dtype)[[target]]
        with Gradient(model=model, composite=EpsilonPlus(epsilon=0.5)) as attributor:
            _, rel = attributor(x.clone(), lambda out: out * onehot)
        return rel.sum(1).detach().numpy()
    finally:
        for bn, e in zip(bns, eps, strict=True):
            bn.eps = e
        for inst in reversed(instances):
            inst.remove()


def test_cams_equal_pytorch_grad_cam(arch):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    name, model, ref, x, target = arch
    layer = ARCHS[name][0]
    for method, cls in [("gradcam", "GradCAM"), ("gradcam++", "GradCAMPlusPlus"),
                        ("xgradcam", "XGradCAM"), ("layercam", "LayerCAM")]:
        with getattr(pytorch_grad_cam, cls)(model=ref,
                                            target_layers=[ref.get_submodule(layer)]) as cam:
            want = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])
        got = ours(method, model, x, target)  # the default layer
        assert np.ptp(want) > 0, method
        assert_close(minmax(got), want, 1e-5)


def test_gradient_methods_equal_captum(arch):
    from captum.attr import GuidedBackprop, GuidedGradCam, IntegratedGradients, Saliency

    name, model, ref, x, target = arch
    want = Saliency(ref).attribute(x, target=target, abs=False).sum(1)
    assert_close(ours("saliency", model, x, target), want.numpy(), 1e-10)
    ig = IntegratedGradients(ref).attribute(x, target=target, n_steps=2, method="riemann_right",
                                            baselines=0.1)
    assert_close(ours("integrated-gradients", model, x, target, steps=2, baseline=0.1),
                 ig.sum(1).detach().numpy(), 1e-9)
    want = GuidedBackprop(ref).attribute(x, target=target).detach().sum(1)
    assert_close(ours("guided-backprop", model, x, target), want.numpy(), 1e-10)
    layer = ref.get_submodule(ARCHS[name][0])
    want = GuidedGradCam(ref, layer).attribute(x, target=target, interpolate_mode="bilinear")
    assert_close(ours("guided-gradcam", model, x, target), want.detach().sum(1).numpy(), 1e-9)


def test_occlusion_equals_captum(arch):
    from captum.attr import Occlusion

    _, model, ref, x, target = arch
    want = Occlusion(ref).attribute(x, target=target, sliding_window_shapes=(3, 32, 32),
                                    strides=(3, 32, 32), baselines=0.0, perturbations_per_eval=4)
    got = ours("occlusion", model, x, target, window=32, stride=32)
    assert_close(got, want[:, 0].numpy(), 1e-6)  # captum divides in float32


def test_ablation_cams_head_is_the_rest_of_the_network(arch):
    from napari_xhisto.explain.cam import _head_for, activations

    name, model, _, x, _ = arch
    layer = model.get_submodule(ARCHS[name][0])
    head = _head_for(model, layer, x)
    assert head is not None, "fx could not split the network"
    act, _ = activations(model, x, layer)
    rep = act.repeat(3, 1, 1, 1)
    rep[torch.arange(3), torch.tensor([0, 5, act.shape[1] - 1])] = 0
    handle = layer.register_forward_hook(lambda _m, _i, _o: rep.clone())
    try:
        with torch.no_grad():
            want = model(x.expand(3, -1, -1, -1))
    finally:
        handle.remove()
    head.prepare(x)
    assert_close(head(rep.clone(), 0), want, 1e-12)
