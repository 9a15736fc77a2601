"""LRP's canonised copy computes the loaded model's own function (BatchNorm folded exactly)."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision

from napari_xhisto.errors import ModelError
from napari_xhisto.explain.lrp_canon import canonised_copy, fold_batch_norm

torch.set_num_threads(2)


def randomise(model, seed=1):
    """Random BatchNorm statistics and affine parameters (var from 0.05 to 2.05)."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(c, generator=gen) * 2 + 0.05)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.3)
    return model.double().eval()


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


CASES = {
    "resnet50": (dict(), 64),
    "googlenet": (dict(aux_logits=False, init_weights=False), 64),
    "googlenet-transform-input": (dict(aux_logits=False, init_weights=False,
                                       transform_input=True), 64),
    "inception_v3-transform-input": (dict(aux_logits=False, init_weights=False,
                                          transform_input=True), 80),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_canonised_copy_has_the_models_logits(case):
    kw, size = CASES[case]
    torch.manual_seed(0)
    model = randomise(getattr(torchvision.models, case.split("-")[0])(num_classes=3, **kw))
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2),
                    dtype=torch.float64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    twin = canonised_copy(model)
    with torch.no_grad():
        want, got = model(x), twin(x)
    assert rel(got, want) < 1e-6  # float64: in practice ~1e-14
    # every BatchNorm was folded (replaced by Identity); only transform_input's affine map is
    # left, as a BatchNorm in front; the model itself is untouched
    left = [m for m in twin.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(left) == (1 if "transform" in case else 0)
    assert twin.lrp_unfolded_batch_norms == (["0"] if "transform" in case else [])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_zennits_merge_alone_would_not_have_the_models_logits():
    """The sensitivity of the check above: zennit's merge keeps eps (1e-3 in GoogLeNet)."""
    from zennit.canonizers import SequentialMergeBatchNorm

    torch.manual_seed(0)
    model = randomise(torchvision.models.googlenet(num_classes=3, aux_logits=False,
                                                   init_weights=False))
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ref = copy.deepcopy(model)
    SequentialMergeBatchNorm().apply(ref)
    with torch.no_grad():
        assert rel(ref(x), model(x)) > 1e-4
        assert rel(canonised_copy(model)(x), model(x)) < 1e-10


def test_fold_batch_norm_is_exact_for_conv_and_linear():
    torch.manual_seed(3)
    for layer, bn, shape in [(torch.nn.Conv2d(3, 5, 3, bias=False), torch.nn.BatchNorm2d(5, eps=0.1),
                              (2, 3, 6, 6)),
                             (torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6, eps=1e-3), (3, 4))]:
        randomise(bn)
        layer = layer.double()
        x = torch.randn(*shape, dtype=torch.float64)
        with torch.no_grad():
            want = bn(layer(x))
            fold_batch_norm(layer, bn)
            assert rel(layer(x), want) < 1e-13


def test_batch_norm_without_running_statistics_is_refused():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(
        4, track_running_stats=False), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    with pytest.raises(ModelError, match="running statistics"):
        canonised_copy(model)
