"""The single-pass attribution network of seed 001 and its ``attribution-net`` explainer.

A U-Net whose encoder is the trained classifier itself, frozen: the features right after the
activation of its last four resolution scales (:func:`activation_taps` finds them by a probe
forward pass; a spec may name them). The deepest features pass a feature filter
``x * sigmoid(W_m relu(W_l x + b_l) + b_m)``; four decoder blocks upsample by neighbourhood
(nearest) upsampling, convolve, and merge with the attention-gated features of the same scale
(the gate also sees the decoder signal, as in Attention U-Net). A final 1 x 1 convolution gives
two channels ``c1, c2``; the attribution is ``|c1| / (|c1| + |c2|)`` and the mask is the
attribution above 0.55. The file holds the decoder only; the classifier comes from the caller,
and a fingerprint of its weights guards against pairing a decoder with the wrong classifier.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelError
from ..explain.registry import Explainer, Param, register_explainer

__all__ = ["AttributionDecoder", "AttributionNet", "activation_taps", "classifier_fingerprint",
           "load_attribution_net", "DEMO_NET_PATH", "THRESHOLD"]

THRESHOLD = 0.55
DEMO_NET_PATH = Path(__file__).parent / "bundled" / "attribution-net-demo.yaml"
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Mish, nn.Hardswish,
                nn.PReLU, nn.SELU)


def activation_taps(classifier: nn.Module, input_size: int, *, n_scales: int = 4,
                    channels: int = 3) -> list[str]:
    """Names of the last activation module of each of the classifier's last ``n_scales`` scales.

    A probe forward pass on zeros records every activation module's output size; per spatial
    size the last module wins, and the ``n_scales`` coarsest sizes are kept (shallow to deep).
    """
    sizes: dict[str, tuple] = {}
    hooks = []
    for name, mod in classifier.named_modules():
        if isinstance(mod, _ACTIVATIONS):
            hooks.append(mod.register_forward_hook(
                lambda m, i, o, name=name: sizes.__setitem__(name, tuple(o.shape))))
    try:
        p = next(classifier.parameters(), None)
        probe = torch.zeros(1, channels, input_size, input_size,
                            device=p.device if p is not None else "cpu")
        with torch.no_grad():
            classifier(probe)
    finally:
        for h in hooks:
            h.remove()
    last_by_size: dict[tuple, str] = {}
    for name, shape in sizes.items():  # dict keeps call order: later modules overwrite
        if len(shape) == 4:
            last_by_size[shape[2:]] = name
    ordered = sorted(last_by_size.items(), key=lambda kv: -kv[0][0] * kv[0][1])
    if len(ordered) < n_scales:
        raise ModelError(f"the classifier has activations at {len(ordered)} resolution scale(s); "
                         f"the attribution network needs {n_scales} (a convolutional encoder)")
    return [name for _, name in ordered[-n_scales:]]


def classifier_fingerprint(classifier: nn.Module) -> str:
    """sha256 of the classifier's parameters and buffers (float32, sorted by name)."""
    h = hashlib.sha256()
    for key, value in sorted(classifier.state_dict().items()):
        if torch.is_tensor(value) and value.is_floating_point():
            h.update(key.encode())
            h.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class _FeatureFilter(nn.Module):
    """``x * sigmoid(W_m relu(W_l x (+ W_g g) + b_l) + b_m)``: additive attention on features."""

    def __init__(self, c_x: int, c_g: int = 0):
        super().__init__()
        inner = max(4, c_x // 2)
        self.w_l = nn.Conv2d(c_x, inner, 1)
        self.w_g = nn.Conv2d(c_g, inner, 1, bias=False) if c_g else None
        self.w_m = nn.Conv2d(inner, 1, 1)

    def forward(self, x, g=None):
        a = self.w_l(x)
        if self.w_g is not None:
            a = a + self.w_g(g)
        return x * torch.sigmoid(self.w_m(torch.relu(a)))


class AttributionDecoder(nn.Module):
    """The trainable part: feature filter, attention gates, decoder blocks and the 2-channel head.

    Parameters
    ----------
    channels : sequence of int
        Channels of the tapped features, shallow to deep.
    kernel : int
        Kernel of the decoder convolutions (the seed: 1).
    start : {"on", "off"}
        Initial output: everything marked (training shrinks the mask to what matters) or nothing.
    """

    def __init__(self, channels, *, kernel: int = 3, start: str = "off"):
        super().__init__()
        channels = [int(c) for c in channels]
        self.channels, self.kernel = channels, int(kernel)
        self.filter = _FeatureFilter(channels[-1])
        self.ups = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.merges = nn.ModuleList()
        for i in range(len(channels) - 2, -1, -1):  # deep to shallow
            self.ups.append(nn.Conv2d(channels[i + 1], channels[i], kernel, padding=kernel // 2))
            self.gates.append(_FeatureFilter(channels[i], channels[i]))
            self.merges.append(nn.Conv2d(2 * channels[i], channels[i], 1))
        self.head = nn.Conv2d(channels[0], 2, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # random-normal initialisation as the seed
                nn.init.normal_(m.weight, std=(2.0 / (m.in_channels * m.kernel_size[0] ** 2)) ** 0.5)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        with torch.no_grad():  # start near "all" (|c1| >> |c2|) or "no" mask
            self.head.weight.mul_(0.1)
            self.head.bias.copy_(torch.tensor([1.0, 0.0] if start == "on" else [0.0, 1.0]))

    def forward(self, feats: list[torch.Tensor], size) -> torch.Tensor:
        """``(N, 2, H, W)`` channels ``c1, c2`` at ``size`` from the tapped features."""
        h = self.filter(feats[-1])
        for up, gate, merge, skip in zip(self.ups, self.gates, self.merges, feats[-2::-1]):
            h = torch.relu(up(F.interpolate(h, size=skip.shape[-2:], mode="nearest")))
            h = torch.relu(merge(torch.cat([h, gate(skip, h)], dim=1)))
        if tuple(h.shape[-2:]) != tuple(size):
            h = F.interpolate(h, size=tuple(size), mode="nearest")
        return self.head(h)


class AttributionNet(nn.Module):
    """Frozen classifier (encoder) + :class:`AttributionDecoder`; ``forward(x) -> (N, H, W)``.

    The classifier is held outside ``state_dict`` (the file stores the decoder only) and its
    parameters never receive gradients from here.
    """

    def __init__(self, classifier: nn.Module, taps: list[str], decoder: AttributionDecoder):
        super().__init__()
        self.decoder = decoder
        self.taps = list(taps)
        object.__setattr__(self, "_classifier", classifier)  # not a submodule: not saved/trained

    @property
    def classifier(self) -> nn.Module:
        return self._classifier

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The tapped classifier features (shallow to deep), detached from its weights."""
        got: dict[str, torch.Tensor] = {}
        mods = dict(self._classifier.named_modules())
        hooks = [mods[n].register_forward_hook(
            lambda m, i, o, n=n: got.__setitem__(n, o.clone() if getattr(m, "inplace", False) else o))
            for n in self.taps]
        try:
            with torch.no_grad():
                self._classifier(x)
        finally:
            for h in hooks:
                h.remove()
        return [got[n] for n in self.taps]

    def channels(self, x: torch.Tensor) -> torch.Tensor:
        """Raw head output ``(N, 2, H, W)``."""
        return self.decoder(self.features(x), x.shape[-2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.channels(x).abs()
        return c[:, 0] / (c[:, 0] + c[:, 1] + 1e-6)


def build_attribution_net(classifier: nn.Module, input_size: int, *, taps=None,
                          kernel: int = 3, start: str = "off") -> AttributionNet:
    """A fresh (untrained) network on ``classifier``, taps found automatically unless given."""
    taps = list(taps) if taps else activation_taps(classifier, input_size)
    mods = dict(classifier.named_modules())
    missing = [t for t in taps if t not in mods]
    if missing:
        raise ModelError(f"the classifier has no module(s) {missing} to tap; names look like "
                         f"{list(mods)[1:4]}")
    probe = AttributionNet(classifier, taps, AttributionDecoder([1] * len(taps)))
    p = next(classifier.parameters())
    feats = probe.features(torch.zeros(1, 3, input_size, input_size, device=p.device))
    net = AttributionNet(classifier, taps, AttributionDecoder([f.shape[1] for f in feats],
                                                              kernel=kernel, start=start))
    return net.to(p.device)


_CACHE: dict = {}


def load_attribution_net(path=None, classifier: nn.Module | None = None, *,
                         check: bool = True) -> AttributionNet:
    """Load a trained decoder (spec ``.yaml`` + ``.safetensors``) onto ``classifier``.

    Parameters
    ----------
    path : str or Path, optional
        Spec file; ``None`` or ``"demo"`` is the bundled network for the demo classifier.
    classifier : nn.Module
        The classifier the network was trained on (its encoder).
    check : bool
        Refuse a classifier whose weights differ from those the network was trained on.
    """
    import yaml
    from safetensors.torch import load_file

    path = DEMO_NET_PATH if path in (None, "", "demo") else Path(path)
    if not path.exists():
        hint = (" (the demo network is not bundled in this build: train one with "
                "`xhisto train-attribution-net --model demo --inpainter demo OUT`)"
                if path == DEMO_NET_PATH else "")
        raise ModelError(f"attribution network spec {path} does not exist{hint}")
    spec = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict) or spec.get("xhisto_attribution_net") != 1:
        raise ModelError(f"{path} is not an attribution network spec (xhisto_attribution_net: 1)")
    if classifier is None:
        raise ModelError("load_attribution_net needs the classifier it was trained on")
    if check:
        fp = classifier_fingerprint(classifier)
        want = spec["classifier"]["fingerprint"]
        if fp != want:
            raise ModelError(
                f"attribution network {path.name} was trained on classifier "
                f"{spec['classifier'].get('path', '?')} (weights fingerprint {want[:12]}), not on "
                f"this one ({fp[:12]}); train one for this model with "
                "`xhisto train-attribution-net --model M --inpainter I OUT`")
    decoder = AttributionDecoder(spec["channels"], kernel=int(spec.get("kernel", 3)))
    weights = path.with_name(spec["weights"])
    decoder.load_state_dict(load_file(str(weights)))
    p = next(classifier.parameters())
    net = AttributionNet(classifier, spec["taps"], decoder.to(p.device)).eval()
    net.spec = spec
    net.spec_path = path
    return net


def _cached_net(path, classifier, check):
    key = (str(path), id(classifier), bool(check))
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is classifier:
        return hit[1]
    net = load_attribution_net(path, classifier, check=check)
    _CACHE.clear()  # one classifier at a time: the widget switches models, it never mixes them
    _CACHE[key] = (classifier, net)
    return net


@register_explainer("attribution-net")
class AttributionNetExplainer(Explainer):
    description = ("single-pass counterfactual attribution network (seed 001): where inpainting "
                   "healthy tissue would flip the class; needs a network trained for the model "
                   "(bundled for the demo model)")
    signed = False
    needs = frozenset({"module-hooks"})
    native_resolution = "pixel"
    cost = 0.5
    requires = ("a trained attribution network for this classifier "
                "(default: the bundled demo one; `xhisto train-attribution-net`)",
                "a trained inpainter at training time (recorded in the network's spec)")
    params = {
        "network": Param("demo", "str", help="attribution network spec (.yaml) or 'demo'"),
        "output": Param("attribution", "choice", choices=("attribution", "mask"),
                        help="|c1|/(|c1|+|c2|) in [0, 1], or the mask (attribution > 0.55)"),
        "check_classifier": Param(True, "bool",
                                  help="refuse a classifier the network was not trained on"),
    }

    def _attribute(self, module, x, targets, *, network, output, check_classifier):
        net = _cached_net(network or "demo", module, check_classifier)
        want = int(net.spec.get("target", 1))
        if bool((targets != want).any()):
            names = net.spec.get("class_names") or []
            label = names[want] if want < len(names) else want
            raise ModelError(f"this attribution network explains class {label!r} (index {want}) "
                             "only; train one per class to explain another")
        with torch.no_grad():
            a = net(x)
        return (a > THRESHOLD).to(x.dtype) if output == "mask" else a.to(x.dtype)

    def info(self) -> dict:
        return {**super().info(), "requires": list(self.requires)}


def attribution_maps(net: AttributionNet, x: torch.Tensor) -> np.ndarray:
    """``(N, H, W)`` float32 attribution of normalised patches (no gradients)."""
    with torch.no_grad():
        return net(x).float().cpu().numpy()
