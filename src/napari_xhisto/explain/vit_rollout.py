"""Attention rollout (Abnar & Zuidema 2020) for vision transformers.

Per block the heads' attention ``(T, T)`` is fused (mean, max or min over heads), optionally
the smallest ``discard_ratio`` of its entries are set to zero (never the class token's attention
to itself), the residual connection is accounted for as ``(A + I) / 2`` and rows are normalised
to sum to one. The product over blocks, last to first, says how much each input token flows
into each output token; the map is the row of the token the head reads (the class token, or the
mean over patch tokens for average-pooling ViTs) at the patch tokens, upsampled bilinearly to
pixels like a CAM. It is class-agnostic: the target is only checked against the model's output.

Differences to the often-copied ``vit_rollout.py`` of jacobgil/vit-explain: rows are normalised
by their own sum (that code divides by the row sums broadcast over columns), the discard applies
to every patch of a batch (not only the first), and the map keeps its raw scale (no division by
its maximum) so region-level normalisation stays meaningful.
"""

from __future__ import annotations

import torch

from .registry import Explainer, Param, register_explainer, target_scores, upsample
from .vit import block_attentions, require_vit, token_grid_shape


def fuse_heads(attn: torch.Tensor, head_fusion: str) -> torch.Tensor:
    """``(N, heads, T, T)`` to ``(N, T, T)`` by the mean, max or min over heads."""
    if head_fusion == "mean":
        return attn.mean(1)
    if head_fusion == "max":
        return attn.amax(1)
    if head_fusion == "min":
        return attn.amin(1)
    raise ValueError(f"head_fusion must be 'mean', 'max' or 'min', got {head_fusion!r}")


def discard_lowest(fused: torch.Tensor, ratio: float) -> torch.Tensor:
    """``fused`` with the ``ratio`` smallest entries of each sample's matrix set to zero.

    The entry ``[0, 0]`` (class token to itself) is kept even when among the smallest.
    """
    n, t, _ = fused.shape
    k = int(t * t * ratio)
    if k <= 0:
        return fused
    flat = fused.reshape(n, t * t).clone()
    idx = flat.topk(k, dim=-1, largest=False).indices
    drop = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, idx, True)
    drop[:, 0] = False
    return flat.masked_fill(drop, 0.0).reshape(n, t, t)


def rollout(attentions, *, head_fusion: str = "mean", discard_ratio: float = 0.0) -> torch.Tensor:
    """Rolled-out attention ``(N, T, T)`` from per-block attention ``[(N, heads, T, T)]``."""
    result = None
    for attn in attentions:
        a = discard_lowest(fuse_heads(attn, head_fusion), discard_ratio)
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = (a + eye) / 2
        a = a / a.sum(dim=-1, keepdim=True)
        result = a if result is None else a @ result
    return result


@register_explainer("attention-rollout")
class AttentionRollout(Explainer):
    description = ("attention rollout (Abnar & Zuidema): attention flow from the patch tokens "
                   "to the class token, through every block (vision transformers; class-agnostic)")
    signed = False
    needs = frozenset({"module-hooks"})
    native_resolution = "feature-map"
    cost = 1.2
    params = {
        "head_fusion": Param("mean", "choice", choices=("mean", "max", "min"),
                             help="how the heads of a block are combined"),
        "discard_ratio": Param(0.0, "float", 0.0, 0.99,
                               help="fraction of the smallest attention weights set to zero"),
    }
    vit_only = True  # refuses CNNs with a clear message

    def _attribute(self, module, x, targets, *, head_fusion, discard_ratio):
        parts = require_vit(module, "attention rollout")
        logits, attentions = block_attentions(parts, module, x)
        target_scores(logits, targets)  # checks the output shape and the target range
        flow = rollout(attentions, head_fusion=head_fusion, discard_ratio=discard_ratio)
        p = parts.prefix
        if parts.kind == "timm" and parts.vit.global_pool != "token":
            rows = flow[:, p:, p:].mean(1)  # the head reads the mean of the patch tokens
        else:
            rows = flow[:, 0, p:]
        h, w = token_grid_shape(parts, rows.shape[1])
        return upsample(rows.reshape(-1, h, w), x.shape[-2:])
