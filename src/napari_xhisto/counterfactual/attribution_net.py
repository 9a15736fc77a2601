"""The single-pass attribution network of seed 001 and its ``attribution-net`` explainer.

A U-Net whose encoder is the trained classifier itself, frozen: the features right after the
activation of its last four resolution scales (:func:`activation_taps` finds them by a probe
forward pass; a spec may name them), read from a traced, BatchNorm-folded copy cut after the
last tap (:mod:`.frozen_encoder`). The decoder (:mod:`.attribution_decoder`; the lean one by
default): the deepest features pass a feature filter ``x * sigmoid(W_m relu(W_l x + b_l) +
b_m)``; decoder steps upsample (nearest), convolve, and merge with the attention-gated features
of the same scale (the gate also sees the decoder signal, as in Attention U-Net). A final 1 x 1
convolution gives two channels ``c1, c2``; the attribution is ``|c1| / (|c1| + |c2|)`` and the
mask is the attribution above 0.55. The file holds the decoder only; the classifier comes from
the caller, and a fingerprint of its weights guards against pairing a decoder with the wrong
classifier.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from ..explain.registry import Explainer, Param, register_explainer
from .attribution_decoder import AttributionDecoder, LeanDecoder, make_decoder
from .frozen_encoder import hooked_features, trace_encoder

__all__ = ["AttributionDecoder", "LeanDecoder", "AttributionNet", "make_decoder",
           "activation_taps", "classifier_fingerprint", "build_attribution_net",
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


class AttributionNet(nn.Module):
    """Frozen classifier (encoder) + decoder; ``forward(x) -> (N, H, W)`` attribution in [0, 1].

    The classifier is held outside ``state_dict`` (the file stores the decoder only) and its
    parameters never receive gradients from here. Its features come from a traced, trimmed,
    BatchNorm-folded copy (:func:`.frozen_encoder.trace_encoder`; rebuilt when the classifier's
    weights change) or, where fx cannot trace it, from hooks on the classifier itself.
    """

    def __init__(self, classifier: nn.Module, taps: list[str], decoder: nn.Module):
        super().__init__()
        self.decoder = decoder
        self.taps = list(taps)
        object.__setattr__(self, "_classifier", classifier)  # not a submodule: not saved/trained
        object.__setattr__(self, "_encoder", None)
        object.__setattr__(self, "_traceable", True)
        self.trace = True  # False: always hooks on the classifier itself (for comparisons)

    @property
    def classifier(self) -> nn.Module:
        return self._classifier

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The tapped classifier features (shallow to deep), detached from its weights."""
        clf = self._classifier
        if self.trace and self._traceable and not clf.training:
            enc = self._encoder
            if enc is None or enc.stale(clf):
                with torch.inference_mode(False):  # real tensors, version counters kept
                    enc = trace_encoder(clf, self.taps)
                object.__setattr__(self, "_encoder", enc)
                object.__setattr__(self, "_traceable", enc is not None)
            if enc is not None:
                with torch.no_grad():
                    return enc(x)
        return hooked_features(clf, self.taps, x)

    def channels(self, x: torch.Tensor) -> torch.Tensor:
        """Raw head output ``(N, 2, H, W)``."""
        return self.decoder(self.features(x), x.shape[-2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.channels(x).abs()
        c1, c2 = c[:, 0], c[:, 1]
        return c1 / (c1 + c2 + 1e-6)


def build_attribution_net(classifier: nn.Module, input_size: int, *, taps=None,
                          decoder: str = "lean", width: int = 8, gate_width: int = 4,
                          kernel: int = 1, start: str = "off") -> AttributionNet:
    """A fresh (untrained) network on ``classifier``, taps found automatically unless given.

    ``decoder="lean"`` (:class:`LeanDecoder`, ``width``, ``gate_width``, ``kernel``) or
    ``"unet"`` (the first, full-width :class:`AttributionDecoder`; ``kernel`` only).
    """
    taps = list(taps) if taps else activation_taps(classifier, input_size)
    mods = dict(classifier.named_modules())
    missing = [t for t in taps if t not in mods]
    if missing:
        raise ModelError(f"the classifier has no module(s) {missing} to tap; names look like "
                         f"{list(mods)[1:4]}")
    p = next(classifier.parameters())
    feats = hooked_features(classifier, taps, torch.zeros(1, 3, input_size, input_size,
                                                          device=p.device))
    dec = make_decoder({"decoder": decoder, "channels": [f.shape[1] for f in feats],
                        "width": width, "gate_width": gate_width, "kernel": kernel}, start=start)
    return AttributionNet(classifier, taps, dec).to(p.device)


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
    decoder = make_decoder(spec)
    weights = path.with_name(spec["weights"])
    try:
        decoder.load_state_dict(load_file(str(weights)))
    except (RuntimeError, OSError) as exc:
        raise ModelError(f"{weights.name} does not hold the decoder {path.name} describes "
                         f"({str(exc).splitlines()[0]}); re-train it with "
                         "`xhisto train-attribution-net`") from None
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
        with torch.inference_mode():
            a = net(x)
        return (a > THRESHOLD).to(x.dtype) if output == "mask" else a.to(x.dtype)

    def info(self) -> dict:
        return {**super().info(), "requires": list(self.requires)}


def attribution_maps(net: AttributionNet, x: torch.Tensor) -> np.ndarray:
    """``(N, H, W)`` float32 attribution of normalised patches (no gradients)."""
    with torch.inference_mode():
        return net(x).float().cpu().numpy()
