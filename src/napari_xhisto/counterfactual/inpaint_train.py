"""Train the partial-convolution inpainter on healthy synthetic tissue (seed 001, section 3).

* Data: fields of ``napari_xhisto.synth`` tissue (layout "mixed"), cut into patches that hold no
  tumour pixel (tumour nest pixels dilated by a few micrometres are refused): stroma, necrosis,
  vessels. The inpainter never sees tumour, so what it paints in is healthy by construction.
* Masks: irregular random holes (brush strokes of random width along random walks, blobs,
  rectangles like occlusion windows), 5-60 % of the patch, made on the fly.
* Loss (Liu et al. 2018): ``L_valid + 6 L_hole + 0.05 L_perc + 120 L_style + 0.1 L_tv``.
  Perceptual and style terms need a trained feature network; ImageNet weights cannot be
  downloaded here, so they use the **demo classifier's own features** (``load_model("demo")``:
  the activations after the last ReLU of each of its four scales), frozen.
* Two phases as in the paper: phase 1 with BatchNorm everywhere; phase 2 freezes the encoder's
  BatchNorm (eval mode, no gradient) and lowers the learning rate.

``train_inpainter`` is a generator of ``(step, total)`` that returns an ``InpainterTrainResult``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .inpainter import PConvUNet

FEATURE_NETWORK = ("demo classifier features (napari_xhisto.models.load_model('demo'): output of "
                   "the last ReLU of each of its 4 scales, frozen); ImageNet VGG weights cannot be "
                   "downloaded here")


@dataclass
class InpainterTrainConfig:
    """Recipe of one inpainter training run (stored in its spec's ``training`` field)."""

    fields: int = 4                  # synthetic tissue fields (healthy patches are cut from them)
    field_px: int = 512              # side of each field in pixels at ``mpp``
    patch_px: int = 64
    mpp: float = 1.0
    steps: int = 300                 # phase 1 optimiser steps
    steps_phase2: int = 100          # phase 2 (encoder BatchNorm frozen, lower lr)
    batch_size: int = 8
    lr: float = 1e-3
    lr_phase2: float = 1e-4
    channels: tuple = (16, 32, 64, 64)
    kernels: tuple = (7, 5, 5, 3)
    feature_model: str = "demo"      # classifier whose features drive L_perc / L_style
    seed: int = 0
    threads: int = 2
    weights: dict = field(default_factory=lambda: dict(valid=1.0, hole=6.0, perc=0.05,
                                                       style=120.0, tv=0.1))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["kernels"] = list(self.kernels)
        return d


@dataclass
class InpainterTrainResult:
    module: PConvUNet
    spec: dict
    history: list


# ---- data ------------------------------------------------------------------------------------
def healthy_patches(n_fields: int, *, patch_px: int = 64, mpp: float = 1.0, field_px: int = 384,
                    seed: int = 0, stride: int | None = None, margin_um: float = 4.0,
                    jpeg_quality: int | None = 85) -> np.ndarray:
    """Every ``patch_px`` window (on a ``stride`` grid) of synthetic fields without tumour.

    Windows that touch a tumour pixel (dilated by ``margin_um``) are left out. Returns uint8
    (N, patch_px, patch_px, 3).
    """
    from scipy import ndimage

    from ..synth.layout import CODE
    from ..synth.render import SynthWorld
    from ..synth.tissue import jpeg_roundtrip

    stride = int(stride or max(8, patch_px // 4))
    ps = int(patch_px)
    out = []
    for k in range(int(n_fields)):
        world = SynthWorld(field_px, field_px, seed=int(seed) * 100_003 + 7919 + k, mpp=mpp,
                           layout="mixed", bank_seed=seed)
        rgb, codes = world.render(0, 0, field_px, field_px)
        if jpeg_quality:
            rgb = jpeg_roundtrip(rgb, jpeg_quality)
        tum = codes == CODE["tumour"]
        r = max(1, int(round(margin_um / mpp)))
        tum = ndimage.binary_dilation(tum, iterations=r)
        integ = np.pad(np.cumsum(np.cumsum(tum, 0), 1), ((1, 0), (1, 0)))
        for top in range(0, field_px - ps + 1, stride):
            for left in range(0, field_px - ps + 1, stride):
                s = (integ[top + ps, left + ps] - integ[top, left + ps]
                     - integ[top + ps, left] + integ[top, left])
                if s == 0:
                    out.append(rgb[top:top + ps, left:left + ps])
    if not out:
        return np.zeros((0, ps, ps, 3), np.uint8)
    return np.stack(out)


def random_holes(n: int, size: int, rng: np.random.Generator, *, min_frac: float = 0.05,
                 max_frac: float = 0.6) -> np.ndarray:
    """Irregular hole masks (N, size, size) bool, True = hole (strokes, blobs, rectangles)."""
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.zeros((n, size, size), bool)
    for i in range(n):
        target = rng.uniform(min_frac, max_frac)
        m = out[i]
        for _ in range(12):
            kind = rng.random()
            if kind < 0.5:  # brush stroke: disks along a random walk
                r = rng.uniform(0.03, 0.12) * size
                y, x = rng.uniform(0, size, 2)
                ang = rng.uniform(0, 2 * np.pi)
                for _ in range(int(rng.integers(3, 10))):
                    m |= (yy - y) ** 2 + (xx - x) ** 2 <= r * r
                    ang += rng.normal(0, 0.8)
                    step = rng.uniform(0.05, 0.15) * size
                    y = np.clip(y + step * np.sin(ang), 0, size - 1)
                    x = np.clip(x + step * np.cos(ang), 0, size - 1)
            elif kind < 0.8:  # blob (ellipse)
                cy, cx = rng.uniform(0, size, 2)
                ay, ax = rng.uniform(0.08, 0.35, 2) * size
                m |= ((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2 <= 1
            else:  # rectangle (an occlusion window)
                h, w = (rng.uniform(0.1, 0.45, 2) * size).astype(int) + 1
                t, left = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
                m[t:t + h, left:left + w] = True
            if m.mean() >= target:
                break
    return out


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    k = int(rng.integers(4))
    out = np.rot90(images, k, axes=(1, 2))
    if rng.random() < 0.5:
        out = out[:, :, ::-1]
    return np.ascontiguousarray(out)


# ---- loss ------------------------------------------------------------------------------------
class FeatureNet(nn.Module):
    """Frozen activations of a trained classifier at each scale (for L_perc and L_style).

    Taken after the last ReLU before every pooling layer and at the end of ``features``
    (the four scales of the demo classifier).
    """

    def __init__(self, loaded):
        super().__init__()
        feats = getattr(loaded.module, "features", None)
        if not isinstance(feats, nn.Sequential):
            raise ValueError("the feature classifier needs a Sequential 'features' (a SmallCNN)")
        self.features = feats.eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(loaded.spec.mean).view(1, 3, 1, 1).float())
        self.register_buffer("std", torch.tensor(loaded.spec.std).view(1, 3, 1, 1).float())
        layers = list(self.features)
        self.taps = [i - 1 for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
        self.taps.append(len(layers) - 1)

    def train(self, mode: bool = True):  # always eval: the classifier's BatchNorm stays frozen
        return super().train(False)

    def forward(self, x):
        h = (x - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps:
                out.append(h)
        return out


def gram(f: torch.Tensor) -> torch.Tensor:
    n, c, h, w = f.shape
    f = f.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def inpainting_loss(raw, gt, mask, featnet, weights) -> dict:
    """Liu et al.'s loss terms and their weighted ``total`` (all tensors, mean-normalised)."""
    comp = gt * mask + raw * (1 - mask)
    hole = 1 - mask
    terms = {"valid": (mask * (raw - gt)).abs().mean(), "hole": (hole * (raw - gt)).abs().mean()}
    n = gt.shape[0]
    feats = featnet(torch.cat([gt, raw, comp]))  # one pass of the feature network
    f_gt = [f[:n].detach() for f in feats]
    f_out = [f[n:2 * n] for f in feats]
    f_comp = [f[2 * n:] for f in feats]
    terms["perc"] = sum((a - g).abs().mean() + (b - g).abs().mean()
                        for a, b, g in zip(f_out, f_comp, f_gt, strict=True))
    terms["style"] = sum((gram(a) - gram(g)).abs().mean() + (gram(b) - gram(g)).abs().mean()
                         for a, b, g in zip(f_out, f_comp, f_gt, strict=True))
    # total variation on the 1-pixel dilation of the hole region of the composite
    region = F.max_pool2d(hole, 3, stride=1, padding=1)
    dv = (comp[..., 1:, :] - comp[..., :-1, :]).abs() * region[..., 1:, :] * region[..., :-1, :]
    dh = (comp[..., :, 1:] - comp[..., :, :-1]).abs() * region[..., :, 1:] * region[..., :, :-1]
    terms["tv"] = dv.mean() + dh.mean()
    terms["total"] = sum(float(weights[k]) * terms[k] for k in ("valid", "hole", "perc", "style",
                                                                "tv"))
    return terms


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


def _freeze_encoder_bn(module: PConvUNet) -> None:
    for bn in module.enc_bn:
        if isinstance(bn, nn.BatchNorm2d):
            bn.eval()
            for p in bn.parameters():
                p.requires_grad_(False)


# ---- training --------------------------------------------------------------------------------
def train_inpainter(cfg: InpainterTrainConfig, *, patches: np.ndarray | None = None,
                    held_out: np.ndarray | None = None, feature_model=None):
    """Generator of ``(step, total)``; returns an :class:`InpainterTrainResult`.

    ``patches``/``held_out`` (uint8 NHWC healthy patches) replace the synthetic data (tests);
    ``feature_model`` a loaded classifier (default ``load_model(cfg.feature_model)``).
    """
    from ..models import load_model

    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(cfg.threads)))
    try:
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng([int(cfg.seed), 2018])
        total = int(cfg.steps) + int(cfg.steps_phase2) + 2
        yield 0, total
        t0 = time.perf_counter()
        if patches is None:
            patches = healthy_patches(cfg.fields, patch_px=cfg.patch_px, mpp=cfg.mpp,
                                      field_px=cfg.field_px, seed=cfg.seed)
        if held_out is None:
            held_out = healthy_patches(max(1, cfg.fields // 3), patch_px=cfg.patch_px,
                                       mpp=cfg.mpp, field_px=cfg.field_px,
                                       seed=cfg.seed + 10_000, stride=cfg.patch_px)
        if len(patches) < cfg.batch_size:
            raise ValueError(f"only {len(patches)} healthy patches; use more --fields")
        yield 1, total
        loaded = load_model(feature_model or cfg.feature_model, device="cpu")
        featnet = FeatureNet(loaded)
        module = PConvUNet(cfg.channels, cfg.kernels)
        module.train()
        history = []
        opt = torch.optim.Adam(module.parameters(), lr=cfg.lr)
        step = 0
        for phase, n_steps in ((1, int(cfg.steps)), (2, int(cfg.steps_phase2))):
            if phase == 2:
                _freeze_encoder_bn(module)
                opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad],
                                       lr=cfg.lr_phase2)
            for _ in range(n_steps):
                idx = rng.integers(0, len(patches), cfg.batch_size)
                gt = _to_tensor(augment(patches[idx], rng))
                mask = torch.from_numpy(~random_holes(cfg.batch_size, cfg.patch_px, rng))[:, None]
                mask = mask.float()
                raw = module.raw(gt, mask)
                terms = inpainting_loss(raw, gt, mask, featnet, cfg.weights)
                opt.zero_grad(set_to_none=True)
                terms["total"].backward()
                opt.step()
                step += 1
                if step % 25 == 0 or step == 1:
                    history.append({"step": step, "phase": phase,
                                    **{k: round(float(v.detach()), 5) for k, v in terms.items()}})
                yield 1 + step, total
        module.eval()
        metrics = evaluate_inpainter(module, held_out, loaded, seed=cfg.seed)
        metrics["train_patches"] = int(len(patches))
        metrics["seconds"] = round(time.perf_counter() - t0, 1)
        spec = {"name": "inpainter", "architecture": "pconv_unet", "patch_px": int(cfg.patch_px),
                "mpp": float(cfg.mpp), "feature_network": FEATURE_NETWORK,
                "classifier": {"name": str(cfg.feature_model), "mean": list(loaded.spec.mean),
                               "std": list(loaded.spec.std),
                               "patch_size": int(loaded.spec.patch_size),
                               "mpp": float(loaded.spec.mpp)},
                "description": "Partial-convolution inpainting U-Net (Liu et al. 2018) trained on "
                               "healthy synthetic tissue only (napari_xhisto.synth; no tumour).",
                "training": {"config": cfg.to_dict(), "metrics": metrics,
                             "history": history[-8:]}}
        yield total, total
        return InpainterTrainResult(module, spec, history)
    finally:
        torch.set_num_threads(old_threads)


def evaluate_inpainter(module: PConvUNet, held_out: np.ndarray, loaded, *, seed: int = 0,
                       n: int = 256) -> dict:
    """Held-out hole L1 and the classifier's p(positive) shift when random holes are filled."""
    rng = np.random.default_rng([int(seed), 99])
    imgs = held_out[:n]
    if len(imgs) == 0:
        return {}
    holes = random_holes(len(imgs), imgs.shape[1], rng, min_frac=0.2, max_frac=0.5)
    with torch.inference_mode():
        x = _to_tensor(imgs)
        m = torch.from_numpy(~holes)[:, None].float()
        y = module(x, m)
        l1 = float(((y - x).abs() * (1 - m)).sum() / (3 * (1 - m).sum()).clamp(min=1))
    filled = np.clip(np.round(y.permute(0, 2, 3, 1).numpy() * 255), 0, 255).astype(np.uint8)
    grey = np.where(holes[..., None], np.uint8(128), imgs)
    pos = loaded.spec.class_names.index(loaded.spec.positive_class)
    p0 = loaded.predict_proba(imgs)[:, pos]
    p1 = loaded.predict_proba(filled)[:, pos]
    pg = loaded.predict_proba(grey)[:, pos]
    return {"held_out_patches": int(len(imgs)), "hole_l1": round(l1, 4),
            "mean_abs_dp_inpaint": round(float(np.mean(np.abs(p1 - p0))), 4),
            "mean_dp_inpaint": round(float(np.mean(p1 - p0)), 4),
            "mean_abs_dp_grey": round(float(np.mean(np.abs(pg - p0))), 4)}
