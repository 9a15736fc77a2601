"""CAMs on models that overwrite the target layer's output in place (DenseNet's relu_).

Every CAM on the in-place model must equal its reference library run on a copy of the model in
which the in-place operation is made out of place (the references read the corrupted tensor on
the in-place model themselves).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision
from torch.nn import functional as F

from napari_xhisto.explain import get_explainer

torch.set_num_threads(2)
TARGET = torch.tensor([1, 2])


def _randomise_batch_norm(model, seed):
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.3)
    return model


class OutOfPlaceDenseNet(torchvision.models.DenseNet):
    """torchvision's DenseNet with ``relu(features)`` out of place (same function)."""

    def forward(self, x):
        out = F.relu(self.features(x))
        out = F.adaptive_avg_pool2d(out, (1, 1))
        return self.classifier(torch.flatten(out, 1))


class ScaledInPlace(torch.nn.Module):
    """A conv block whose output the parent multiplies and shifts in place."""

    def __init__(self, in_place: bool):
        super().__init__()
        self.in_place = in_place
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.MaxPool2d(2))
        self.block = torch.nn.Conv2d(6, 5, 3, padding=1)
        self.head = torch.nn.Linear(5, 3)

    def forward(self, x):
        a = self.block(self.stem(x))
        a = a.mul_(1.5).sub_(0.2).relu_() if self.in_place else (a * 1.5 - 0.2).relu()
        return self.head(a.mean((2, 3)))


def _densenets():
    torch.manual_seed(0)
    kw = dict(growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=2, num_classes=3)
    model = _randomise_batch_norm(torchvision.models.DenseNet(**kw), 1).double().eval()
    ref = OutOfPlaceDenseNet(**kw).double().eval()
    ref.load_state_dict(model.state_dict())
    return model, ref, "features.norm5"


def _scaled():
    torch.manual_seed(2)
    model = ScaledInPlace(True).double().eval()
    ref = copy.deepcopy(model)
    ref.in_place = False
    return model, ref, "block"


MODELS = {"densenet": _densenets, "inplace-mul": _scaled}


@pytest.fixture(scope="module", params=sorted(MODELS))
def pair(request):
    model, ref, layer = MODELS[request.param]()
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), rtol=0, atol=1e-12)  # same function
    return model, ref, layer, x


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape and np.abs(b).max() > 0
    return np.abs(a - b).max() / np.abs(b).max()


def minmax(m):
    m = np.asarray(m, np.float64)
    lo, hi = m.min(axis=(-2, -1), keepdims=True), m.max(axis=(-2, -1), keepdims=True)
    return (m - lo) / (hi - lo)


def ours(name, model, x, layer, target=TARGET, **params):
    return get_explainer(name).attribute(model, x, target, target_layer=layer, **params).numpy()


class ZeroAblation:
    """pytorch-grad-cam's AblationLayer with the paper's convention (ablated channel = 0)."""

    @staticmethod
    def make():
        from pytorch_grad_cam.ablation_layer import AblationLayer

        class Zero(AblationLayer):
            def __call__(self, x):
                out = self.activations
                for i in range(out.size(0)):
                    out[i, self.indices[i], :] = 0
                return out

        return Zero()


PGC = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
       "layercam": "LayerCAM", "scorecam": "ScoreCAM", "ablationcam": "AblationCAM"}


@pytest.mark.parametrize("name", sorted(PGC))
def test_cams_on_in_place_models_equal_pytorch_grad_cam_out_of_place(pair, name):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, ref, layer_name, x = pair
    kw = {"ablation_layer": ZeroAblation.make()} if name == "ablationcam" else {}
    layers = [ref.get_submodule(layer_name)]
    cam = getattr(pytorch_grad_cam, PGC[name])(model=ref, target_layers=layers, **kw)
    if name in ("scorecam", "ablationcam"):
        cam.batch_size = 16
    with cam:
        want = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in TARGET])
    got = ours(name, model, x, layer_name)
    assert np.ptp(want) > 0
    assert rel_err(minmax(got), want) < 1e-5


def test_raw_gradcam_and_guided_gradcam_equal_captum_out_of_place(pair):
    from captum.attr import GuidedGradCam, LayerAttribution, LayerGradCam

    model, ref, layer_name, x = pair
    layer = ref.get_submodule(layer_name)
    lgc = LayerGradCam(ref, layer).attribute(x, target=TARGET, relu_attributions=True)
    want = LayerAttribution.interpolate(lgc, x.shape[-2:], interpolate_mode="bilinear")[:, 0]
    assert rel_err(ours("gradcam", model, x, layer_name), want.detach().numpy()) < 1e-10
    want = GuidedGradCam(ref, layer).attribute(x, target=TARGET, interpolate_mode="bilinear")
    assert rel_err(ours("guided-gradcam", model, x, layer_name),
                   want.detach().sum(1).numpy()) < 1e-9


def test_smooth_gradcam_pp_on_in_place_model_equals_out_of_place(pair):
    model, ref, layer_name, x = pair
    a = ours("smooth-gradcam++", model, x, layer_name, n_samples=3, noise=0.1, seed=4)
    b = ours("smooth-gradcam++", ref, x, layer_name, n_samples=3, noise=0.1, seed=4)
    assert rel_err(a, b) < 1e-10


def test_the_model_output_is_unchanged_by_the_hook(pair):
    model, _ref, layer_name, x = pair
    from napari_xhisto.explain.cam import activations

    with torch.no_grad():
        want = model(x)
    act, logits = activations(model, x, model.get_submodule(layer_name))
    assert torch.equal(logits, want)
    assert act.min() < 0  # the kept activation is the layer's own (the model rectifies a copy)
