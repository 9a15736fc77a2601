"""The partial-convolution inpainting U-Net (seed 001, section 2.2) and its loader.

``PConvUNet`` follows Liu et al. 2018 scaled to our patches: a contraction path of partial
convolutions with stride 2 (kernels 7, 5, 5, 3 ...; BatchNorm + ReLU except on the first
block), a mirrored expansion path (nearest upsampling x2, concatenation with the skip of the
same scale and its mask, 3x3 partial convolution, BatchNorm + LeakyReLU 0.2) and a last partial
convolution to RGB that also sees the input image. ``forward(x, mask)`` returns the composited
image ``x * mask + out * (1 - mask)``: valid pixels are the input's exactly.

``Inpainter`` wraps a trained U-Net with the scale it was trained at; ``load_inpainter("demo")``
gives the bundled one trained for the demo classifier (64 px at 1 µm/px, healthy synthetic
tissue only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..cohort.fingerprint import file_sha256
from ..errors import ModelError
from .partial_conv import PartialConv2d

BUNDLED = Path(__file__).with_name("bundled")
SPEC_KEY = "xhisto_inpainter_spec"


class PConvUNet(nn.Module):
    """Partial-convolution U-Net.

    Parameters
    ----------
    channels : tuple of int
        Output channels of the contraction blocks (each halves the resolution).
    kernels : tuple of int
        Kernel size of each contraction block (the expansion path uses 3).

    Notes
    -----
    Inputs of any size work; sides that are not a multiple of ``2 ** len(channels)`` are
    padded (the padding counts as hole) and cropped back.
    """

    def __init__(self, channels=(32, 64, 128, 128), kernels=(7, 5, 5, 3)):
        super().__init__()
        if len(channels) != len(kernels):
            raise ValueError("channels and kernels need the same length")
        self.channels = tuple(int(c) for c in channels)
        self.kernels = tuple(int(k) for k in kernels)
        self.enc = nn.ModuleList()
        self.enc_bn = nn.ModuleList()
        c_in = 3
        for i, (c, k) in enumerate(zip(self.channels, self.kernels, strict=True)):
            self.enc.append(PartialConv2d(c_in, c, k, stride=2, padding=k // 2, bias=i == 0))
            self.enc_bn.append(nn.Identity() if i == 0 else nn.BatchNorm2d(c))
            c_in = c
        self.dec = nn.ModuleList()
        self.dec_bn = nn.ModuleList()
        skips = (3,) + self.channels[:-1]
        for i in reversed(range(len(self.channels))):
            last = i == 0
            c_out = 3 if last else skips[i]
            self.dec.append(PartialConv2d(c_in + skips[i], c_out, 3, padding=1, bias=last))
            self.dec_bn.append(nn.Identity() if last else nn.BatchNorm2d(c_out))
            c_in = c_out

    @property
    def multiple(self) -> int:
        return 2 ** len(self.channels)

    def raw(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The network's own prediction everywhere (N, 3, H, W), before compositing."""
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
            mask = F.pad(mask, (0, pw, 0, ph), value=0.0)
        h_in = (x - 0.5) / 0.25
        feats, masks = [h_in], [mask]
        hcur, mcur = h_in, mask
        for conv, bn in zip(self.enc, self.enc_bn, strict=True):
            hcur, mcur = conv(hcur, mcur)
            hcur = F.relu(bn(hcur))
            feats.append(hcur)
            masks.append(mcur)
        n = len(self.channels)
        for j, (conv, bn) in enumerate(zip(self.dec, self.dec_bn, strict=True)):
            i = n - 1 - j  # skip index: feats[i] has the resolution of this block's output
            hcur = F.interpolate(hcur * mcur, scale_factor=2, mode="nearest")
            mcur = F.interpolate(mcur, scale_factor=2, mode="nearest")
            skip, skip_m = feats[i], masks[i]
            hcat = torch.cat([hcur, skip * skip_m], dim=1)
            mcat = torch.maximum(mcur, skip_m)
            hcur, mcur = conv(hcat, mcat)
            if i > 0:
                hcur = F.leaky_relu(bn(hcur), 0.2)
        out = hcur * 0.25 + 0.5
        return out[..., :h, :w]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Composited inpainting: ``x * mask + clamp(raw, 0, 1) * (1 - mask)``.

        ``x`` (N, 3, H, W) RGB in [0, 1]; ``mask`` (N, 1, H, W), 1 = keep, 0 = hole.
        Differentiable with respect to both.
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"x must be (N, 3, H, W) RGB in [0, 1], got {tuple(x.shape)}")
        if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"mask must be (N, 1, H, W) like x, got {tuple(mask.shape)}")
        mask = mask.to(x.dtype)
        out = self.raw(x, mask).clamp(0.0, 1.0)
        return x * mask + out * (1.0 - mask)


@dataclass
class Inpainter:
    """A trained inpainting U-Net and the scale it was trained at.

    Attributes
    ----------
    module : PConvUNet
        ``module(x, mask)`` -> composited image; x (N, 3, H, W) in [0, 1], mask 1 = keep.
    patch_px : int
        Patch side it was trained on (the classifier's patch size).
    mpp : float
        Micrometres per pixel it was trained at.
    spec : dict
        Its YAML spec (architecture, training recipe, metrics).
    path : Path or None
        Where it was loaded from.
    """

    module: nn.Module
    patch_px: int
    mpp: float
    spec: dict = field(default_factory=dict)
    path: Path | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def fill(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``module(x, mask)`` on this inpainter's device, without gradients."""
        with torch.inference_mode():
            return self.module(x.to(self.device), mask.to(self.device))

    def inpaint(self, rgb, hole, *, batch_size: int = 64) -> np.ndarray:
        """Fill ``hole`` (True = fill) in uint8 RGB patches.

        Parameters
        ----------
        rgb : ndarray (N, H, W, 3) or (H, W, 3) uint8
        hole : ndarray (N, H, W) or (H, W) bool

        Returns
        -------
        ndarray uint8 like ``rgb``; pixels outside the hole are the input's exactly.
        """
        rgb = np.asarray(rgb)
        hole = np.asarray(hole, bool)
        single = rgb.ndim == 3
        if single:
            rgb, hole = rgb[None], hole[None]
        if rgb.ndim != 4 or rgb.shape[-1] != 3 or hole.shape != rgb.shape[:3]:
            raise ModelError(f"inpaint needs (N, H, W, 3) RGB and an (N, H, W) hole mask, got "
                             f"{rgb.shape} and {hole.shape}")
        out = rgb.astype(np.uint8, copy=True)
        for i in range(0, len(rgb), max(1, int(batch_size))):
            sl = slice(i, i + batch_size)
            if not hole[sl].any():
                continue
            x = torch.from_numpy(np.ascontiguousarray(rgb[sl])).permute(0, 3, 1, 2).float() / 255
            m = torch.from_numpy(~hole[sl])[:, None].float()
            y = self.fill(x, m).cpu().permute(0, 2, 3, 1).numpy()
            filled = np.clip(np.round(y * 255), 0, 255).astype(np.uint8)
            out[sl] = np.where(hole[sl][..., None], filled, rgb[sl])
        return out[0] if single else out

    def check_scale(self, patch_size: int, mpp: float, *, what: str = "the model") -> None:
        """Raise ``ModelError`` unless this inpainter was trained at ``patch_size`` and ``mpp``."""
        if int(patch_size) != int(self.patch_px) or abs(float(mpp) - float(self.mpp)) > 1e-6:
            raise ModelError(
                f"the inpainter was trained on {self.patch_px} px patches at {self.mpp:g} µm/px "
                f"but {what} uses {int(patch_size)} px at {float(mpp):g} µm/px; train one at that "
                f"scale with `xhisto train-inpainter OUT --patch-size {int(patch_size)} --mpp "
                f"{float(mpp):g}`")

    def provenance(self) -> dict:
        """Name, file, weights hash, scale and training recipe (for specs and exports)."""
        digest = None
        weights = self.spec.get("weights")
        if self.path is not None and weights:
            wpath = Path(self.path).with_name(weights)
            if wpath.exists():
                digest = file_sha256(wpath)
        return {"name": self.spec.get("name", "inpainter"),
                "path": None if self.path is None else str(self.path),
                "weights_sha256": digest, "patch_px": int(self.patch_px), "mpp": float(self.mpp),
                "architecture": self.spec.get("architecture", "pconv_unet"),
                "channels": list(getattr(self.module, "channels", ())),
                "feature_network": self.spec.get("feature_network"),
                "training": self.spec.get("training", {})}


def build_unet(spec: dict) -> PConvUNet:
    return PConvUNet(tuple(spec.get("channels", (32, 64, 128, 128))),
                     tuple(spec.get("kernels", (7, 5, 5, 3))))


def _resolve(path_or_name) -> Path:
    if str(path_or_name) == "demo":
        return BUNDLED / "inpainter-demo.yaml"
    p = Path(path_or_name).expanduser()
    if p.is_dir():
        found = sorted(p.glob("*.yaml")) + sorted(p.glob("*.yml"))
        if len(found) != 1:
            raise ModelError(f"{p} must hold exactly one inpainter YAML spec, found "
                             f"{[f.name for f in found]}")
        return found[0]
    if p.suffix == ".safetensors":
        p = p.with_suffix(".yaml")
    if not p.exists():
        raise ModelError(f"no inpainter at {p}: give 'demo', a spec .yaml (next to its "
                         f".safetensors) or a folder written by `xhisto train-inpainter`")
    return p


def load_inpainter(path_or_name="demo", device=None) -> Inpainter:
    """Load an inpainter: ``"demo"`` (bundled), a YAML spec, its .safetensors, or a folder.

    An ``Inpainter`` passed in is returned as it is.
    """
    if isinstance(path_or_name, Inpainter):
        return path_or_name
    import yaml
    from safetensors.torch import load_file

    from ..models import choose_device

    spec_path = _resolve(path_or_name)
    spec = yaml.safe_load(spec_path.read_text()) or {}
    if not isinstance(spec, dict) or SPEC_KEY not in spec:
        raise ModelError(f"{spec_path} is not an inpainter spec (no '{SPEC_KEY}' key)")
    weights = spec_path.with_name(str(spec.get("weights", spec_path.stem + ".safetensors")))
    if not weights.exists():
        raise ModelError(f"inpainter weights {weights} are missing (named in {spec_path})")
    module = build_unet(spec)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(weights).items()}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(f"{weights} does not fit the architecture in {spec_path}: {first}") \
            from None
    dev = choose_device(device)
    module.to(dev).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return Inpainter(module, int(spec["patch_px"]), float(spec["mpp"]), spec, spec_path, dev)


def save_inpainter(module: PConvUNet, spec: dict, out_yaml, *, half: bool = True,
                   force: bool = False) -> Path:
    """Write ``out_yaml`` and its weights (``<stem>.safetensors``, float16 when ``half``)."""
    import yaml
    from safetensors.torch import save_file

    out_yaml = Path(out_yaml)
    weights = out_yaml.with_suffix(".safetensors")
    for p in (out_yaml, weights):
        if p.exists() and not force:
            raise ModelError(f"{p} exists; choose another name or pass force (--force)")
    out_yaml.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu()
             .contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(weights))
    spec = dict(spec)
    spec[SPEC_KEY] = 1
    spec["weights"] = weights.name
    spec["channels"] = list(module.channels)
    spec["kernels"] = list(module.kernels)
    spec.setdefault("architecture", "pconv_unet")
    out_yaml.write_text(yaml.safe_dump({SPEC_KEY: 1, **{k: v for k, v in spec.items()
                                                         if k != SPEC_KEY}}, sort_keys=False))
    return out_yaml
