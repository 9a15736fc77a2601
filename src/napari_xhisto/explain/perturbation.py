"""Perturbation family (occlusion, LIME on superpixels) and the patch probability map.

These need only forward passes, so they also work on TorchScript models.
"""

from __future__ import annotations

import numpy as np
import torch

from .registry import Explainer, Param, register_explainer, target_scores


def _forward_scores(module, batch, targets):
    with torch.no_grad():
        return target_scores(module(batch), targets)


# ---------------------------------------------------------------------------------------------
# occlusion

def occlusion_windows(size: int, window: int, stride: int) -> list[tuple[int, int]]:
    """Start/stop of each window along one axis; the last one may be cut at the border."""
    if window > size:
        raise ValueError(f"occlusion window {window} is larger than the patch ({size} px)")
    count = int(np.ceil((size - window) / stride)) + 1
    return [(i * stride, min(i * stride + window, size)) for i in range(count)]


@register_explainer("occlusion")
class Occlusion(Explainer):
    description = "score drop when a sliding square is replaced by a baseline, averaged per pixel"
    signed = True
    needs = frozenset({"many-forwards"})
    native_resolution = "pixel"
    cost = 100.0
    params = {
        "window": Param(32, "int", 1, 4096, help="side of the occluding square, px"),
        "stride": Param(16, "int", 1, 4096, help="step between squares, px (<= window)"),
        "baseline": Param(0.0, "float", help="fill value in normalised units (0 = dataset mean)"),
        "forward_batch": Param(64, "int", 1, 4096, help="occluded copies per forward pass"),
    }

    def _attribute(self, module, x, targets, *, window, stride, baseline, forward_batch):
        if stride > window:
            raise ValueError(f"occlusion stride ({stride}) must not exceed the window ({window})")

        def fill(i, chunk):
            batch = x[i:i + 1].repeat(len(chunk), 1, 1, 1)
            for k, ((r0, r1), (c0, c1)) in enumerate(chunk):
                batch[k, :, r0:r1, c0:c1] = baseline
            return batch

        return occlusion_map(module, x, targets, window, stride, forward_batch, fill)


def occlusion_map(module, x, targets, window: int, stride: int, forward_batch: int, fill):
    """Score drop per pixel, averaged over the windows covering it, when ``fill(i, boxes)``
    (the occluded copies ``(len(boxes), C, H, W)`` of patch ``i``, one per window
    ``((r0, r1), (c0, c1))``) replaces each window: occlusion with any fill."""
    n, _, h, w = x.shape
    boxes = [(r, c) for r in occlusion_windows(h, window, stride)
             for c in occlusion_windows(w, window, stride)]
    base = _forward_scores(module, x, targets)
    total = torch.zeros(n, h, w, dtype=x.dtype, device=x.device)
    counts = torch.zeros(h, w, dtype=x.dtype, device=x.device)
    for (r0, r1), (c0, c1) in boxes:
        counts[r0:r1, c0:c1] += 1
    for i in range(n):
        for j in range(0, len(boxes), forward_batch):
            chunk = boxes[j:j + forward_batch]
            drop = base[i] - _forward_scores(module, fill(i, chunk), targets[i].expand(len(chunk)))
            for k, ((r0, r1), (c0, c1)) in enumerate(chunk):
                total[i, r0:r1, c0:c1] += drop[k]
    return total / counts


# ---------------------------------------------------------------------------------------------
# LIME

def slic_segments(image: torch.Tensor, n_segments: int, *, compactness: float = 10.0) -> np.ndarray:
    """SLIC superpixels ``(H, W)`` int labels 0..K-1 of one normalised patch ``(C, H, W)``."""
    from skimage.segmentation import slic

    img = image.detach().float().cpu().permute(1, 2, 0).numpy()
    img = (img - img.min()) / max(float(img.max() - img.min()), 1e-12)
    seg = slic(img, n_segments=n_segments, compactness=compactness, start_label=0,
               channel_axis=-1, convert2lab=img.shape[-1] == 3)
    return np.unique(seg, return_inverse=True)[1].reshape(seg.shape)


def lime_similarity(z: torch.Tensor, kernel_width: float) -> torch.Tensor:
    """Exponential kernel on the cosine distance between each binary sample and all-ones."""
    k = z.shape[1]
    on = z.sum(1)
    cos = torch.where(on > 0, on / (torch.sqrt(on.clamp(min=1)) * np.sqrt(k)), torch.zeros_like(on))
    dist = 1 - cos
    return torch.exp(-(dist**2) / (2 * kernel_width**2))


def lime_superpixel_weights(module, x1, target: int, segments, *, n_samples=256, seed=0,
                            alpha=1.0, kernel_width=0.25, baseline=0.0, forward_batch=64):
    """Coefficients of a weighted ridge surrogate, one per superpixel ``(K,)`` float64.

    Parameters
    ----------
    x1 : torch.Tensor
        One normalised patch ``(1, C, H, W)``.
    segments : array (H, W) of int
        Superpixel labels 0..K-1.
    """
    from sklearn.linear_model import Ridge

    seg = torch.as_tensor(np.asarray(segments), dtype=torch.long, device=x1.device)
    k = int(seg.max()) + 1
    gen = torch.Generator().manual_seed(seed)
    z = torch.bernoulli(torch.full((n_samples, k), 0.5), generator=gen)
    z[0] = 1.0  # the unperturbed patch anchors the surrogate
    scores = []
    tgt = torch.as_tensor([target], device=x1.device)
    for j in range(0, n_samples, forward_batch):
        mask = z[j:j + forward_batch].to(x1.device, x1.dtype)[:, seg][:, None]
        batch = x1 * mask + baseline * (1 - mask)
        scores.append(_forward_scores(module, batch, tgt.expand(batch.shape[0])).double().cpu())
    y = torch.cat(scores).numpy()
    weights = lime_similarity(z.double(), kernel_width).numpy()
    ridge = Ridge(alpha=alpha).fit(z.double().numpy(), y, sample_weight=weights)
    return ridge.coef_.astype(np.float64)


@register_explainer("lime")
class Lime(Explainer):
    description = ("LIME on SLIC superpixels, several segmentations combined (tile coding), "
                   "regions weighted by surrogate coefficients")
    signed = True
    needs = frozenset({"many-forwards"})
    native_resolution = "pixel"
    cost = 300.0
    params = {
        "segments": Param((16, 32, 64), "ints", 2, 10000, help="SLIC superpixel counts, one per segmentation"),
        "compactness": Param(10.0, "float", 1e-3, 1e4),
        "n_samples": Param(256, "int", 8, 100000, help="perturbations per segmentation"),
        "kernel_width": Param(0.25, "float", 1e-6, 100.0, help="of the cosine-distance kernel"),
        "alpha": Param(1.0, "float", 0.0, 1e6, help="ridge penalty of the surrogate"),
        "baseline": Param(0.0, "float", help="fill of switched-off superpixels (normalised units)"),
        "seed": Param(0, "int", 0, 2**31 - 1),
        "forward_batch": Param(64, "int", 1, 4096),
    }

    def _attribute(self, module, x, targets, *, segments, compactness, n_samples, kernel_width,
                   alpha, baseline, seed, forward_batch):
        n, _, h, w = x.shape
        out = torch.zeros(n, h, w, dtype=x.dtype, device=x.device)
        for i in range(n):
            for s, n_seg in enumerate(segments):
                seg = slic_segments(x[i], n_seg, compactness=compactness)
                coef = lime_superpixel_weights(
                    module, x[i:i + 1], int(targets[i]), seg, n_samples=n_samples, seed=seed + s,
                    alpha=alpha, kernel_width=kernel_width, baseline=baseline, forward_batch=forward_batch)
                out[i] += torch.as_tensor(coef[seg], dtype=x.dtype, device=x.device)
        return out / len(segments)


# ---------------------------------------------------------------------------------------------
# probability map

@register_explainer("probability")
class Probability(Explainer):
    description = "patch-level class probability broadcast over the patch (coarsest granularity)"
    signed = False
    needs = frozenset()
    native_resolution = "patch"
    cost = 0.4
    params = {"temperature": Param(1.0, "float", 1e-3, 1e3,
                                   help="softmax temperature (default: the model spec's, so a "
                                        "calibrated model's map shows its calibrated p)")}

    def _attribute(self, module, x, targets, *, temperature):
        with torch.no_grad():
            logits = module(x)
        target_scores(logits, targets)  # checks shape and range
        p = torch.softmax(logits / temperature, dim=1).gather(1, targets[:, None])[:, 0]
        return p.to(x.dtype)[:, None, None].expand(-1, x.shape[2], x.shape[3]).clone()
