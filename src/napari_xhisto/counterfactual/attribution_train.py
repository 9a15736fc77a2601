"""Training the attribution network through the inpainter (seed 001), and its files.

Each step: the network's attribution ``a`` of a batch, the mask ``a > 0.55`` (straight-through:
binary forward, gradients of ``a``), the inpainter fills the mask with healthy tissue, the frozen
classifier scores the result, and :func:`.mask_opt.counterfactual_loss` (the seed's loss, the
same objective as the iterative reference) is minimised for the decoder's weights only. Batches
mix patches the classifier calls ``target`` (where a mask must flip it) with the others (where
the smallest mask is empty). Adam with a cosine-cyclic rate (the seed: SGD, cyclic 1e-6..1e-4,
thousands of epochs on a GPU; here minutes of CPU).
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..cohort.fingerprint import file_sha256
from ..errors import ModelError
from .attribution_net import (
    THRESHOLD,
    AttributionNet,
    build_attribution_net,
    classifier_fingerprint,
)
from .mask_opt import Objective, binarise, class_log_odds, counterfactual_loss, to_rgb

__all__ = ["TrainConfig", "train_attribution_net", "save_attribution_net",
           "portable"]


@dataclass
class TrainConfig:
    """How an attribution network is trained (recorded in its spec).

    Attributes
    ----------
    n_patches : int
        Synthetic training patches (``napari_xhisto.synth.sample_patches``, tumour ratio 0.5).
    steps, batch_size : int
        Optimiser steps and patches per step.
    lr_max, lr_min : float
        Bounds of the cyclic learning rate (cosine cycles of ``cycle`` steps; 0 = one decay).
    seed : int
        Seeds the data, the decoder's initialisation and the batch order.
    decoder : {"lean", "unet"}
        :class:`.LeanDecoder` (the default) or the first, full-width decoder.
    width, gate_width : int
        Channels of the lean decoder and of its attention gates' hidden layer.
    kernel : int
        Decoder convolution kernel (1 = the seed's).
    objective : dict
        :class:`Objective` fields that differ from its defaults.
    taps : list of str, optional
        Classifier modules to tap (default: found by :func:`activation_taps`).
    start : {"off", "on"}
        Initial mask of the decoder: nothing or everything marked.
    warm_steps, n_donors : int
        Warm start: the first ``warm_steps`` steps marginalise by pasting healthy tissue from
        ``n_donors`` synthetic healthy patches (no tumour, no necrosis) instead of inpainting.
        A briefly trained inpainter fills small holes from their (tumour) surroundings, so the
        classifier hardly moves until holes are large and the mask never starts to grow; pasted
        healthy tissue gives the signal that starts it, the inpainter phase then fits the mask
        to the inpainter (the seed's loss through the seed's marginaliser). 0 = inpainter only.
    """

    n_patches: int = 512
    steps: int = 250
    batch_size: int = 16
    lr_max: float = 5e-3
    lr_min: float = 1e-4
    cycle: int = 0
    seed: int = 0
    decoder: str = "lean"
    width: int = 8
    gate_width: int = 4
    kernel: int = 1
    objective: dict = field(default_factory=dict)
    taps: list | None = None
    start: str = "off"
    warm_steps: int = 100
    n_donors: int = 64
    data_seed: int = 8001


_PACKAGE = Path(__file__).resolve().parents[1]


def portable(value):
    """``value`` with every path inside the installed package written ``napari_xhisto/...``.

    Specs of bundled networks then name bundled files the same way on every machine (not by
    the checkout or site-packages folder they were trained in); other paths stay as given.
    """
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [portable(v) for v in value]
    if isinstance(value, str) and Path(value).is_absolute():
        try:
            rel = Path(value).resolve().relative_to(_PACKAGE)
        except (ValueError, OSError):
            return value
        return f"{_PACKAGE.name}/{rel.as_posix()}"
    return value


def training_patches(model, n: int, seed: int) -> np.ndarray:
    """uint8 patches at the model's scale from synthetic tissue, half of them tumour."""
    from ..synth import sample_patches

    spec = model.spec
    return sample_patches(n, patch_size=int(spec.patch_size), mpp=float(spec.mpp), seed=seed,
                          tumour_ratio=0.5).images


def train_attribution_net(model, inpainter: torch.nn.Module, config: TrainConfig | None = None,
                          *, target: int | None = None, images=None):
    """Generator: yields ``(step, total)``; returns ``(net, history)``.

    Parameters
    ----------
    model : LoadedModel
        The classifier (frozen encoder and judge); its weights never change.
    inpainter : torch.nn.Module
        ``forward(rgb, keep) -> rgb`` (e.g. ``load_inpainter(...).module``), frozen.
    config : TrainConfig
    target : int, optional
        Class to explain (default the model's positive class).
    images : ndarray (N, H, W, 3) uint8, optional
        Training patches (default: synthetic, ``config.n_patches``).
    """
    config = TrainConfig() if config is None else config
    torch.manual_seed(config.seed)
    target = int(model.spec.positive_index if target is None else target)
    objective = Objective(**config.objective)
    classifier, spec = model.module, model.spec
    classifier.eval()
    inpainter.eval()
    frozen = [p for m in (classifier, inpainter) for p in m.parameters()]
    was = [p.requires_grad for p in frozen]
    for p in frozen:
        p.requires_grad_(False)
    try:
        if images is None:
            images = training_patches(model, config.n_patches, config.data_seed)
        x_all = model.preprocess(images).detach()
        size = int(spec.network_input_size)
        net = build_attribution_net(classifier, size, taps=config.taps, decoder=config.decoder,
                                    width=config.width, gate_width=config.gate_width,
                                    kernel=config.kernel, start=config.start)
        mean, std = tuple(spec.mean), tuple(spec.std)
        with torch.no_grad():
            lp, lq = [], []
            for i in range(0, len(x_all), 64):
                a, b = class_log_odds(classifier(x_all[i:i + 64]), _targets(target, x_all[i:i + 64]))
                lp.append(a)
                lq.append(b)
            odds0 = torch.cat(lp) - torch.cat(lq)
        donors = None
        if config.warm_steps > 0:
            donors = torch.as_tensor(healthy_donors(model, config.n_donors, config.data_seed + 1))
            donors = donors.permute(0, 3, 1, 2).float().div(255.0).to(x_all.device)
        opt = torch.optim.Adam(net.decoder.parameters(), lr=config.lr_max)
        gen = torch.Generator().manual_seed(config.seed)
        history = []
        started = time.perf_counter()
        yield 0, config.steps
        net.decoder.train()
        order = torch.randperm(len(x_all), generator=gen)
        pos = 0
        for step in range(config.steps):
            if pos + config.batch_size > len(order):
                order, pos = torch.randperm(len(x_all), generator=gen), 0
            idx = order[pos:pos + config.batch_size]
            pos += config.batch_size
            lr = _cyclic_lr(step, config)
            for g in opt.param_groups:
                g["lr"] = lr
            x = x_all[idx]
            t = _targets(target, x)
            a = net(x)[:, None]
            warm = step < config.warm_steps and donors is not None
            marginaliser = inpainter
            if warm:
                pick = torch.randint(len(donors), (len(idx),), generator=gen)
                marginaliser = _Paste(donors[pick])
            loss, parts = counterfactual_loss(classifier, marginaliser, to_rgb(x, mean, std),
                                              binarise(a, THRESHOLD), t, odds0[idx], mean=mean,
                                              std=std, objective=objective)
            opt.zero_grad()
            loss.mean().backward()
            opt.step()
            if step % 10 == 0 or step == config.steps - 1:
                flip = odds0[idx] > 0
                history.append({
                    "step": step, "phase": "paste" if warm else "inpaint",
                    "loss": float(loss.detach().mean()), "lr": lr,
                    "p_after_positive": float(parts["p_after"][flip].mean()) if flip.any() else None,
                    "area_positive": float(parts["area"][flip].mean()) if flip.any() else None,
                    "area_negative": (float(parts["area"][~flip].mean()) if (~flip).any()
                                      else None)})
            yield step + 1, config.steps
        net.decoder.eval()
        history.append({"seconds": time.perf_counter() - started})
    finally:
        for p, r in zip(frozen, was):
            p.requires_grad_(r)
    return net, history


def healthy_donors(model, n: int, seed: int) -> np.ndarray:
    """uint8 synthetic patches without tumour or necrosis at the model's scale."""
    from ..synth import sample_patches

    spec = model.spec
    return sample_patches(n, patch_size=int(spec.patch_size), mpp=float(spec.mpp), seed=seed,
                          tumour_ratio=0.0, exclude=("tumour", "necrosis")).images


class _Paste(torch.nn.Module):
    """Marginaliser of the warm start: holes show a healthy donor patch."""

    def __init__(self, donors: torch.Tensor):
        super().__init__()
        self.donors = donors

    def forward(self, rgb, keep):
        return rgb * keep + self.donors * (1.0 - keep)


def _targets(target: int, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), int(target), dtype=torch.long, device=x.device)


def _cyclic_lr(step: int, config: TrainConfig) -> float:
    cycle = config.cycle or config.steps  # 0: one cosine decay over the run (a restart at
    phase = (step % max(1, cycle)) / max(1, cycle)  # full rate once undid a trained mask)
    return config.lr_min + 0.5 * (config.lr_max - config.lr_min) * (1 + math.cos(math.pi * phase))


def save_attribution_net(net: AttributionNet, out, *, model, inpainter_info: dict,
                         config: TrainConfig, history: list, target: int,
                         overwrite: bool = False) -> Path:
    """Write ``OUT.safetensors`` (decoder weights) and ``OUT.yaml`` (spec); returns the spec path.

    The spec records both networks: the classifier (spec path, weights sha256 and the weights
    fingerprint checked at load time) and the inpainter (path and sha256 from ``inpainter_info``);
    paths inside the package are stored as ``napari_xhisto/...`` (:func:`portable`).
    Existing files are kept unless ``overwrite``.
    """
    import yaml
    from safetensors.torch import save_file

    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".yaml", ".yml", ".safetensors") else out
    spec_path, weights_path = stem.with_suffix(".yaml"), stem.with_suffix(".safetensors")
    for p in (spec_path, weights_path):
        if p.exists() and not overwrite:
            raise ModelError(f"{p} exists; choose another OUT or pass --force to replace it")
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.decoder.state_dict().items()}
    save_file(state, str(weights_path))
    mspec = model.spec
    wpath = mspec.weights_path()
    classifier = {"path": str(mspec.source or mspec.name), "name": mspec.name,
                  "weights": str(wpath) if wpath else None,
                  "sha256": file_sha256(wpath) if wpath and Path(wpath).exists() else None,
                  "fingerprint": classifier_fingerprint(model.module)}
    spec = {
        "xhisto_attribution_net": 1,
        "description": "single-pass counterfactual attribution network (seed 001)",
        "weights": weights_path.name,
        "weights_sha256": file_sha256(weights_path),
        "target": int(target), "class_names": list(mspec.class_names),
        "patch_size": int(mspec.patch_size), "mpp": float(mspec.mpp),
        "input_size": int(mspec.network_input_size),
        "mean": list(mspec.mean), "std": list(mspec.std),
        "taps": list(net.taps), **net.decoder.describe(), "threshold": THRESHOLD,
        "classifier": portable(classifier), "inpainter": portable(inpainter_info),
        "training": {"config": asdict(config),
                     "objective": Objective(**config.objective).as_dict(),
                     "history": history, "torch": str(torch.__version__),
                     "threads": torch.get_num_threads(), "machine": platform.machine()},
    }
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return spec_path
