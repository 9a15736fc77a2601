"""The lean decoder and the frozen encoder of the attribution network (seed 001), toy sizes.

The lean decoder computes its 1 x 1 terms at the coarse scale, folds the skip projection into
one product and runs channels-last; it must equal the textbook form of the same block (nearest
upsampling, convolution at the fine scale, attention gate, merge) with the same weights. The
traced, BatchNorm-folded encoder must give the classifier's own activations.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from napari_xhisto.counterfactual.attribution_decoder import (
    AttributionDecoder,
    LeanDecoder,
    make_decoder,
)
from napari_xhisto.counterfactual.attribution_net import (
    AttributionNet,
    build_attribution_net,
    load_attribution_net,
)
from napari_xhisto.counterfactual.attribution_train import (
    TrainConfig,
    portable,
    save_attribution_net,
)
from napari_xhisto.counterfactual.frozen_encoder import hooked_features, trace_encoder
from napari_xhisto.errors import ModelError
from napari_xhisto.models import SmallCNN
from napari_xhisto.models.loading import LoadedModel
from napari_xhisto.models.spec import ModelSpec

TAPS = ["features.2", "features.6", "features.10", "features.14"]


def small_cnn(seed=1):
    torch.manual_seed(seed)
    net = SmallCNN(2, channels=(4, 8, 8, 16), convs_per_stage=(1, 1, 1, 1))
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding them is tested
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


def textbook_lean(dec: LeanDecoder, feats, size):
    """The lean decoder written the plain way: NCHW, everything at the fine scale."""
    def conv(m, x):
        return F.conv2d(x, m.weight, m.bias, padding=m.kernel_size[0] // 2)

    h = conv(dec.proj, feats[-1])
    f = dec.filter
    h = h * torch.sigmoid(conv(f.w_m, torch.relu(conv(f.w_l, h))))
    for block, skip in zip(dec.blocks, feats[-2::-1]):
        u = torch.relu(conv(block.up, F.interpolate(h, size=skip.shape[-2:], mode="nearest")))
        low, t = conv(block.low, u), conv(block.skip, skip)
        gw = block.gate_width
        gate = torch.sigmoid(conv(block.w_m, torch.relu(t[:, :gw] + low[:, :gw])))
        h = torch.relu(low[:, gw:] + gate * t[:, gw:])
    if tuple(h.shape[-2:]) != tuple(size):
        h = F.interpolate(h, size=tuple(size), mode="nearest")
    return conv(dec.head, h)


@pytest.mark.parametrize("kernel, sizes", [(1, (32, 16, 8, 4)), (3, (32, 16, 8, 4)),
                                           (1, (30, 15, 7, 3))])
def test_lean_decoder_equals_its_textbook_form(kernel, sizes):
    torch.manual_seed(0)
    channels = (4, 8, 8, 16)
    dec = LeanDecoder(channels, width=6, gate_width=3, kernel=kernel).eval()
    with torch.no_grad():
        for p in dec.parameters():  # every weight matters, biases included
            p.normal_(0, 0.5)
    feats = [torch.randn(3, c, s, s) for c, s in zip(channels, sizes)]
    with torch.no_grad():
        got = dec(feats, (sizes[0] + 2, sizes[0] + 2))
        want = textbook_lean(dec, feats, (sizes[0] + 2, sizes[0] + 2))
        # channels-last inputs (the traced encoder's) give the same
        cl = dec([f.contiguous(memory_format=torch.channels_last) for f in feats],
                 (sizes[0] + 2, sizes[0] + 2))
    assert got.shape == (3, 2, sizes[0] + 2, sizes[0] + 2)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cl, want, rtol=1e-4, atol=1e-5)
    assert dec.describe() == {"decoder": "lean", "channels": list(channels), "width": 6,
                              "gate_width": 3, "kernel": kernel}
    with pytest.raises(ModelError, match="odd"):
        LeanDecoder(channels, kernel=2)


def test_lean_network_output_is_a_ratio_and_gradients_reach_the_decoder_only():
    clf = small_cnn()
    net = build_attribution_net(clf, 32, width=8)
    assert isinstance(net.decoder, LeanDecoder) and net.taps == TAPS
    x = torch.randn(4, 3, 32, 32)
    a = net(x)
    c = net.channels(x).abs()
    assert a.shape == (4, 32, 32) and float(a.detach().min()) >= 0
    assert float(a.detach().max()) <= 1
    torch.testing.assert_close(a, c[:, 0] / (c[:, 0] + c[:, 1] + 1e-6))
    a.sum().backward()
    assert all(p.grad is not None for p in net.decoder.parameters())
    assert all(p.grad is None for p in clf.parameters())
    # the lean decoder is a small fraction of the first one
    lean = sum(p.numel() for p in net.decoder.parameters())
    first = sum(p.numel() for p in AttributionDecoder([4, 8, 8, 16], kernel=3).parameters())
    assert lean < first


class InplaceNet(nn.Module):
    """Taps on in-place ReLUs, one of them followed by an in-place add (hooks must clone)."""

    def __init__(self):
        super().__init__()
        self.c = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in
                               ((3, 4), (4, 4), (4, 8), (8, 8)))
        self.bn = nn.BatchNorm2d(4)
        self.r = nn.ModuleList(nn.ReLU(inplace=True) for _ in range(4))
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        x = self.r[0](self.bn(self.c[0](x)))
        x = F.max_pool2d(x, 2)
        x = self.r[1](self.c[1](x))
        x = F.max_pool2d(x, 2)
        x = self.r[2](self.c[2](x))
        x = F.max_pool2d(x, 2)
        y = self.r[3](self.c[3](x))
        y.add_(1.0)                                  # changes the tapped output in place
        return self.fc(y.mean((2, 3)))


def test_traced_encoder_gives_the_classifiers_own_activations():
    clf = small_cnn()
    x = torch.randn(3, 3, 32, 32)
    enc = trace_encoder(clf, TAPS)
    assert enc is not None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in enc.modules())   # folded
    assert not any(isinstance(m, nn.Linear) for m in enc.modules())        # head cut off
    ref = {}
    mods = dict(clf.named_modules())
    hs = [mods[t].register_forward_hook(lambda m, i, o, t=t: ref.__setitem__(t, o.clone()))
          for t in TAPS]
    with torch.no_grad():
        clf(x)
    for h in hs:
        h.remove()
    with torch.no_grad():
        traced, hooked = enc(x), hooked_features(clf, TAPS, x)
    for t, a, b in zip(TAPS, traced, hooked):
        torch.testing.assert_close(a, ref[t], rtol=1e-4, atol=1e-5)
        assert torch.equal(b, ref[t])
    # the network rebuilds its copy when the classifier's weights change in place
    net = build_attribution_net(clf, 32)
    with torch.no_grad():
        before = net(x)
        clf.features[0].weight.mul_(-1.0)
        after = net(x)
        expect = net.decoder(hooked_features(clf, TAPS, x), (32, 32))
    assert not torch.allclose(before, after)
    c = expect.abs()
    torch.testing.assert_close(after, c[:, 0] / (c[:, 0] + c[:, 1] + 1e-6))
    # an in-place change of a tapped output: no trace; hooks clone, features stay the ReLU's
    odd = InplaceNet().eval()
    taps = ["r.0", "r.1", "r.2", "r.3"]
    assert trace_encoder(odd, taps) is None
    with torch.no_grad():
        feats = AttributionNet(odd, taps, make_decoder(
            {"decoder": "lean", "channels": [4, 4, 8, 8]})).features(x)
        direct = torch.relu(odd.c[3](F.max_pool2d(feats[2], 2)))
    assert float(feats[3].min()) == 0.0 and torch.allclose(feats[3], direct)


def loaded(module, size=32):
    spec = ModelSpec("xhisto_cnn_s", ["non-tumour", "tumour"], patch_size=size, mpp=1.0,
                     mean=(0.5,) * 3, std=(0.25,) * 3)
    return LoadedModel(module=module, spec=spec, device=torch.device("cpu"))


def test_old_and_new_specs_load_and_bad_ones_are_refused(tmp_path):
    clf = small_cnn()
    model = loaded(clf)
    x = torch.randn(2, 3, 32, 32)
    cfg = TrainConfig()
    for kind in ("lean", "unet"):
        net = build_attribution_net(clf, 32, decoder=kind, kernel=3 if kind == "unet" else 1)
        path = save_attribution_net(net, tmp_path / kind, model=model, inpainter_info={},
                                    config=cfg, history=[], target=1)
        with torch.no_grad():
            torch.testing.assert_close(load_attribution_net(path, clf)(x), net(x))
    # a spec of the first networks: no "decoder" key (and kernel 3 by default)
    spec = yaml.safe_load((tmp_path / "unet.yaml").read_text())
    del spec["decoder"], spec["kernel"]
    (tmp_path / "unet.yaml").write_text(yaml.safe_dump(spec))
    assert isinstance(load_attribution_net(tmp_path / "unet.yaml", clf).decoder,
                      AttributionDecoder)
    spec["decoder"] = "transformer"
    (tmp_path / "unet.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ModelError, match="unknown attribution decoder"):
        load_attribution_net(tmp_path / "unet.yaml", clf)
    spec = yaml.safe_load((tmp_path / "lean.yaml").read_text())
    spec["width"] = 5                                # weights of another shape
    (tmp_path / "lean.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ModelError, match="does not hold the decoder"):
        load_attribution_net(tmp_path / "lean.yaml", clf)


def test_paths_inside_the_package_are_stored_portably():
    import napari_xhisto

    root = __import__("pathlib").Path(napari_xhisto.__file__).parent
    info = {"path": str(root / "counterfactual" / "bundled" / "inpainter-demo.yaml"),
            "other": ["/somewhere/else.yaml", "demo", 3, None]}
    assert portable(info) == {"path": "napari_xhisto/counterfactual/bundled/inpainter-demo.yaml",
                              "other": ["/somewhere/else.yaml", "demo", 3, None]}
    assert np.isscalar(portable(1.5))
