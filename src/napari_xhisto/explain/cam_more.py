"""Seed 003's remaining CAMs: CAM, SS-CAM, IS-CAM, and EigenCAM.

- ``cam`` (Zhou et al. 2016): for a model whose logits are one linear layer on the global
  average of the target layer's activations, ``sum_k w_ck A_k`` with ``w_c`` the classifier
  weights of the target class. Checked on the model itself: any other head is refused with a
  clear error (Grad-CAM is CAM's generalisation).
- ``sscam`` (Naidu & Michael 2020, "SS-CAM(1)"): Score-CAM whose channel scores are averaged
  over ``n_samples`` copies of each mask with Gaussian noise (std ``sigma``) added to the mask.
- ``iscam`` (Naidu et al. 2020): Score-CAM whose channel scores are averaged along the path
  from a zero mask to the full one, masks scaled by ``i / n_samples``, ``i = 1 .. n_samples``
  (a Riemann sum of the integral; torchcam's ISCAM accumulates the coefficients instead).
- ``eigencam`` (Bany Muhammad & Yeasin 2020): the activations projected on their first
  principal component (centred, as pytorch-grad-cam); class-agnostic. The sign of a principal
  component is arbitrary: it is chosen here so the projection agrees with the mean activation.

Masks and weights follow this package's Score-CAM (pytorch-grad-cam's): each channel upsampled
bilinearly (``align_corners=True``) and min-max scaled per channel; weights are the softmax over
channels of the target logits of the masked patches. Maps are rectified and upsampled like the
rest of the CAM family.
"""

from __future__ import annotations

import torch

from ..errors import ModelError
from .cam import _LAYER, _Cam, activations
from .registry import Param, register_explainer, target_scores

__all__ = ["Cam", "EigenCam", "IsCam", "SsCam", "final_linear", "score_masks"]


def final_linear(module, act: torch.Tensor, logits: torch.Tensor) -> torch.nn.Linear:
    """The classifier of a global-average-pooling + linear model, checked numerically.

    The last ``nn.Linear`` of the module must take the target layer's channels and reproduce the
    logits from the spatial mean of its activations; otherwise a `ModelError` explains.
    """
    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    k = act.shape[1]
    if not linears or linears[-1].in_features != k:
        raise ModelError(f"CAM needs a model ending in global average pooling + one linear layer "
                         f"on the target layer's {k} channels; this model's last linear layer "
                         f"{'is missing' if not linears else f'takes {linears[-1].in_features}'}: "
                         "use gradcam (CAM's generalisation) or pick the right target_layer")
    fc = linears[-1]
    with torch.no_grad():
        again = fc(act.mean(dim=(2, 3)))
    tol = 1e-4 * float(logits.abs().max()) + 1e-5
    if again.shape != logits.shape or float((again - logits).abs().max()) > tol:
        raise ModelError("CAM needs logits = linear(global average of the target layer); this "
                         "model's head does something else (another pooling, more layers, a "
                         "different target layer): use gradcam, or pass the layer that feeds "
                         "the global pooling as target_layer")
    return fc


def score_masks(act: torch.Tensor, size) -> torch.Tensor:
    """Score-CAM masks ``(N, K, H, W)``: each channel upsampled and min-max scaled to [0, 1]."""
    n, k = act.shape[:2]
    masks = torch.nn.functional.interpolate(act, size=tuple(size), mode="bilinear",
                                            align_corners=True)
    flat = masks.reshape(n, k, -1)
    lo, hi = flat.min(-1)[0][..., None, None], flat.max(-1)[0][..., None, None]
    return (masks - lo) / (hi - lo + 1e-8)


def _masked_scores(module, x, targets, masks, forward_batch) -> torch.Tensor:
    """Target logits of ``x[i] * masks[i, k]`` for every patch ``i`` and mask ``k``: (N, K)."""
    n, k = masks.shape[:2]
    scores = torch.empty(n, k, dtype=x.dtype, device=x.device)
    with torch.no_grad():
        for i in range(n):
            for j in range(0, k, forward_batch):
                batch = x[i:i + 1] * masks[i, j:j + forward_batch, None]
                scores[i, j:j + forward_batch] = target_scores(
                    module(batch), targets[i].expand(batch.shape[0]))
    return scores


_BATCH = Param(64, "int", 1, 4096, help="masked patches per forward pass")


@register_explainer("cam")
class Cam(_Cam):
    description = "CAM: activations weighted by the target class's weights (GAP + linear models)"
    needs = frozenset({"module-hooks"})
    cost = 0.5

    def _low_res(self, module, x, targets, layer):
        act, logits = activations(module, x, layer)
        fc = final_linear(module, act, logits)
        weights = fc.weight.detach()[targets].to(act.dtype)  # (N, K)
        return (weights[..., None, None] * act).sum(1)


@register_explainer("sscam")
class SsCam(_Cam):
    description = "SS-CAM: Score-CAM with channel scores averaged over noisy copies of each mask"
    needs = frozenset({"module-hooks", "many-forwards"})
    cost = 200.0 * 35
    params = {"target_layer": _LAYER,
              "n_samples": Param(35, "int", 1, 1000, help="noisy copies of each mask"),
              "sigma": Param(2.0, "float", 0.0, 100.0, help="std of the noise added to a mask "
                             "(masks span [0, 1])"),
              "seed": Param(0, "int", 0, 2**31 - 1),
              "forward_batch": _BATCH}

    def _low_res(self, module, x, targets, layer, *, n_samples, sigma, seed, forward_batch):
        act, _ = activations(module, x, layer)
        masks = score_masks(act, x.shape[-2:])
        gen = torch.Generator(device=x.device).manual_seed(seed)
        total = torch.zeros(act.shape[:2], dtype=x.dtype, device=x.device)
        for _ in range(n_samples):  # one noise draw (N, K, H, W) per sample
            noise = torch.randn(masks.shape, generator=gen, device=x.device, dtype=x.dtype)
            total += _masked_scores(module, x, targets, masks + sigma * noise, forward_batch)
        weights = torch.softmax(total / n_samples, dim=1)[..., None, None]
        return (weights * act).sum(1)


@register_explainer("iscam")
class IsCam(_Cam):
    description = "IS-CAM: Score-CAM with channel scores integrated over masks scaled 1/n .. 1"
    needs = frozenset({"module-hooks", "many-forwards"})
    cost = 200.0 * 10
    params = {"target_layer": _LAYER,
              "n_samples": Param(10, "int", 1, 1000, help="steps from a zero to the full mask"),
              "forward_batch": _BATCH}

    def _low_res(self, module, x, targets, layer, *, n_samples, forward_batch):
        act, _ = activations(module, x, layer)
        masks = score_masks(act, x.shape[-2:])
        total = torch.zeros(act.shape[:2], dtype=x.dtype, device=x.device)
        for i in range(1, n_samples + 1):
            total += _masked_scores(module, x, targets, masks * (i / n_samples), forward_batch)
        weights = torch.softmax(total / n_samples, dim=1)[..., None, None]
        return (weights * act).sum(1)


@register_explainer("eigencam")
class EigenCam(_Cam):
    description = "EigenCAM: activations projected on their first principal component (class-agnostic)"
    needs = frozenset({"module-hooks"})
    cost = 0.6

    def _low_res(self, module, x, targets, layer):
        act, _ = activations(module, x, layer)
        n, k, h, w = act.shape
        a = act.reshape(n, k, h * w).transpose(1, 2)  # (N, positions, channels)
        a = a - a.mean(dim=1, keepdim=True)
        a = torch.nan_to_num(a)
        _, _, vh = torch.linalg.svd(a, full_matrices=False)
        proj = (a @ vh[:, 0, :, None])[..., 0]  # (N, positions)
        # a principal component's sign is arbitrary: agree with the mean activation
        agree = (proj * act.reshape(n, k, h * w).mean(1)).sum(1, keepdim=True)
        proj = torch.where(agree < 0, -proj, proj)
        return proj.reshape(n, h, w)
