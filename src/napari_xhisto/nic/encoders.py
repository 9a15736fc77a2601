"""Patch encoders for neural image compression: small CNNs mapping a patch to a C-dim code.

An encoder file is a YAML spec (kind, patch_px, mpp, code_size, normalisation, weights) beside a
safetensors file. Kinds (seed 004, Tellez et al.): ``contrastive``, ``vae``, ``bigan`` (trained
by ``nic.encoder_train``) and ``supervised`` (a patch classifier's penultimate features, any
model ``models.load_model`` reads; no weights of its own).

``load_encoder("contrastive")`` loads the bundled encoder of that kind
(``nic/bundled/<kind>.yaml``); ``load_encoder("supervised")`` wraps the demo classifier.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..cohort.fingerprint import file_sha256
from ..errors import ModelError

__all__ = ["KINDS", "SPEC_KEY", "ConvEncoder", "Encoder", "bundled_dir", "default_spec",
           "fold_batchnorm", "load_encoder", "save_encoder"]

KINDS = ("contrastive", "vae", "bigan", "supervised")
SPEC_KEY = "xhisto_encoder_spec"


def bundled_dir() -> Path:
    return Path(__file__).with_name("bundled")


def default_spec(kind: str, *, patch_px: int = 128, mpp: float = 1.0, code_size: int = 128,
                 width: int = 16) -> dict:
    """The spec dict of a new encoder (normalisation as the demo classifier's)."""
    if kind not in KINDS:
        raise ModelError(f"encoder kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if patch_px < 16 or patch_px & (patch_px - 1):
        raise ModelError(f"patch_px must be a power of two >= 16, got {patch_px}")
    return {SPEC_KEY: 1, "kind": kind, "patch_px": int(patch_px), "stride_px": int(patch_px),
            "mpp": float(mpp), "code_size": int(code_size), "width": int(width),
            "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "weights": None}


def _stages(patch_px: int) -> int:
    return max(1, int(math.log2(patch_px // 8)))


class ConvEncoder(nn.Module):
    """Conv(3x3, stride 2)-BN-LeakyReLU stages down to 8 x 8, global average pool, linear code.

    ``out`` codes per patch: ``code_size`` (2 x ``code_size`` for the VAE's mean and log-variance).
    """

    def __init__(self, patch_px: int = 128, code_size: int = 128, width: int = 16, *,
                 out: int | None = None):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for k in range(_stages(patch_px)):
            c_out = width * 2 ** min(k, 3)
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
            c_in = c_out
        layers += [nn.Conv2d(c_in, c_in, 3, padding=1, bias=False), nn.BatchNorm2d(c_in),
                   nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c_in, out or code_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


class Encoder:
    """A loaded encoder: ``encode(uint8 NHWC patches) -> (N, C) float32`` codes.

    Attributes
    ----------
    kind : str
    code_size : int
    patch_px : int
        Side of the patch the network sees, at ``mpp`` µm/px.
    mpp : float
    spec : dict
    """

    def __init__(self, spec: dict, net: nn.Module | None = None, *, source: str = "",
                 weights_sha256: str | None = None, classifier=None):
        self.spec = dict(spec)
        self.kind = spec["kind"]
        self.patch_px = int(spec["patch_px"])
        self.mpp = float(spec["mpp"])
        self.code_size = int(spec["code_size"])
        self.net = net.eval() if net is not None else None
        self.classifier = classifier
        self.source = source
        self.weights_sha256 = weights_sha256
        self._affine: tuple[torch.Tensor, torch.Tensor] | None = None
        self._features = None

    def normalise(self, images) -> torch.Tensor:
        """uint8 NHWC patches -> float32 NHWC in the network's units.

        The conversion runs on contiguous NHWC memory (converting a permuted uint8 tensor was
        slower than the network itself here) and the affine map in place.
        """
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ModelError(f"patches must be (N, H, W, 3) RGB, got shape {images.shape}")
        if self._affine is None:  # set in one assignment: batch threads may race here
            std = torch.tensor(self.spec["std"], dtype=torch.float32)
            self._affine = (1.0 / (255.0 * std),
                            -torch.tensor(self.spec["mean"], dtype=torch.float32) / std)
        scale, shift = self._affine
        x = torch.as_tensor(np.ascontiguousarray(images)).to(torch.float32)
        return x.mul_(scale).add_(shift)

    def to_network(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised NHWC (:meth:`normalise`) -> NCHW at ``patch_px`` without a copy
        (channels-last strides, which the convolutions here run fastest on), resized when
        needed."""
        t = x.permute(0, 3, 1, 2)
        if t.shape[-2:] != (self.patch_px, self.patch_px):
            t = nn.functional.interpolate(t, size=(self.patch_px, self.patch_px),
                                          mode="bilinear", align_corners=False, antialias=True)
        return t

    def preprocess(self, images) -> torch.Tensor:
        """uint8 NHWC -> normalised float NCHW at ``patch_px`` (resized when needed)."""
        return self.to_network(self.normalise(images))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Codes of a preprocessed batch (no gradients taken here)."""
        if self.kind == "supervised":
            return self._penultimate(x)
        z = self.net(x)
        return z[:, :self.code_size]  # the VAE's mean; the others output the code only

    def _penultimate(self, x: torch.Tensor) -> torch.Tensor:
        module = self.classifier.module
        if self._features is None:
            linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
            if not linears:
                raise ModelError(f"{self.classifier.name}: no Linear layer whose input would be "
                                 "the penultimate features; choose another model")
            self._features = linears[-1]
        got, me = [], threading.get_ident()  # batches may run on several threads at once

        def keep(m, inp, out):
            if threading.get_ident() == me:
                got.append(inp[0])

        handle = self._features.register_forward_hook(keep)
        try:
            module(x)
        finally:
            handle.remove()
        return got[0].flatten(1)

    def encode(self, images, *, batch_size: int = 256) -> np.ndarray:
        """(N, C) float32 codes of uint8 (N, H, W, 3) patches."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        out = np.empty((len(images), self.code_size), np.float32)
        with torch.inference_mode():
            for a in range(0, len(images), batch_size):
                z = self.forward(self.preprocess(images[a:a + batch_size]))
                out[a:a + len(z)] = z.float().numpy()
        return out

    def provenance(self) -> dict:
        return {"kind": self.kind, "name": self.spec.get("name", self.kind),
                "spec": self.source, "weights_sha256": self.weights_sha256,
                "patch_px": self.patch_px, "mpp": self.mpp, "code_size": self.code_size,
                "mean": list(self.spec["mean"]), "std": list(self.spec["std"]),
                **({"model": self.spec["model"]} if self.kind == "supervised" else {}),
                **({"training": self.spec["training"]} if "training" in self.spec else {})}


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """An inference copy of a :class:`ConvEncoder` whose batch norms are folded into the
    convolutions before them and whose LeakyReLUs work in place.

    In eval mode a batch norm is a fixed per-channel affine map, so ``conv -> bn`` is one
    convolution with weights ``w * gamma / sqrt(var + eps)`` and bias ``beta - mean * gamma /
    sqrt(var + eps)`` (``torch.nn.utils.fusion.fuse_conv_bn_eval``): the same codes to float
    rounding, without the two passes over every activation that the batch norm and a new
    LeakyReLU output cost on CPU. ``net`` itself is left as it is.
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    out = copy.deepcopy(net).eval()
    layers = list(out.features)
    fused: list[nn.Module] = []
    k = 0
    while k < len(layers):
        layer = layers[k]
        if (isinstance(layer, nn.Conv2d) and k + 1 < len(layers)
                and isinstance(layers[k + 1], nn.BatchNorm2d)):
            fused.append(fuse_conv_bn_eval(layer, layers[k + 1]))
            k += 2
            continue
        if isinstance(layer, nn.LeakyReLU):
            layer = nn.LeakyReLU(layer.negative_slope, inplace=True)
        fused.append(layer)
        k += 1
    out.features = nn.Sequential(*fused)
    return out


def build_net(spec: dict) -> ConvEncoder:
    out = 2 * spec["code_size"] if spec["kind"] == "vae" else spec["code_size"]
    return ConvEncoder(spec["patch_px"], spec["code_size"], spec["width"], out=out)


def save_encoder(path, spec: dict, net: nn.Module | None) -> Path:
    """Write ``<path>.yaml`` and (for trained kinds) ``<stem>.safetensors`` beside it."""
    import yaml
    from safetensors.torch import save_file

    path = Path(path)
    spec = dict(spec)
    if net is not None:
        weights = path.with_suffix(".safetensors")
        save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
                  str(weights))
        spec["weights"] = weights.name
        spec["weights_sha256"] = file_sha256(weights)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _spec_path(source) -> Path:
    if isinstance(source, str) and source in KINDS and not Path(source).exists():
        return bundled_dir() / f"{source}.yaml"
    return Path(source)


def load_encoder(source) -> Encoder:
    """An :class:`Encoder` from a spec YAML, a bundled kind name, or an Encoder (returned as is).

    Raises
    ------
    ModelError
        One line naming the file when it is missing, not an encoder spec, or its weights do
        not fit the spec.
    """
    import yaml

    from .._runtime import tune_malloc

    tune_malloc()
    if isinstance(source, Encoder):
        return source
    path = _spec_path(source)
    if not path.is_file():
        hint = (" (no bundled encoder of that kind; train one with `xhisto train-encoder`)"
                if path.parent == bundled_dir() else "")
        raise ModelError(f"{source}: no such encoder file{hint}")
    try:
        spec = yaml.safe_load(path.read_text())
    except Exception as exc:  # noqa: BLE001 - a binary or broken file: one line
        raise ModelError(f"{path}: not an encoder spec (YAML from `xhisto train-encoder`): "
                         f"{type(exc).__name__}") from exc
    if not isinstance(spec, dict) or spec.get(SPEC_KEY) != 1 or spec.get("kind") not in KINDS:
        raise ModelError(f"{path}: not an encoder spec (expected '{SPEC_KEY}: 1' and a kind in "
                         f"{', '.join(KINDS)}); make one with `xhisto train-encoder`")
    if spec["kind"] == "supervised":
        from ..models import load_model

        clf = load_model(spec["model"], device="cpu")
        spec = {**spec, "patch_px": int(clf.spec.network_input_size), "mpp": float(clf.spec.mpp),
                "mean": list(clf.spec.mean), "std": list(clf.spec.std)}
        if spec.get("code_size") is None:
            spec["code_size"] = 1
            probe = Encoder(spec, None, source=str(path), classifier=clf)
            spec["code_size"] = int(probe._penultimate(probe.preprocess(
                np.full((1, 8, 8, 3), 200, np.uint8))).shape[1])
        return Encoder(spec, None, source=str(path), classifier=clf)
    weights = path.with_name(str(spec.get("weights") or ""))
    if not spec.get("weights") or not weights.is_file():
        raise ModelError(f"{path}: its weights file {weights.name!r} is missing beside it")
    from safetensors.torch import load_file

    net = build_net(spec)
    try:
        net.load_state_dict(load_file(str(weights)))
    except Exception as exc:  # noqa: BLE001 - shapes that do not fit the spec
        raise ModelError(f"{weights}: weights do not fit the spec in {path.name} "
                         f"({type(exc).__name__}); re-train or fix the spec") from exc
    return Encoder(spec, fold_batchnorm(net), source=str(path),
                   weights_sha256=file_sha256(weights))
