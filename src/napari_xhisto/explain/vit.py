"""Vision transformers: where the patch tokens are, and how CAM methods read them as a grid.

A ViT turns a patch of ``H x W`` pixels into a few prefix tokens (the class token, register
tokens) followed by one token per ``p x p`` pixel square in row-major order. A layer inside the
transformer outputs ``(N, T, D)`` tokens; CAM methods read its patch tokens as a feature map
``(N, D, h, w)``: the prefix tokens are dropped and the rest reshaped to the token grid, as
pytorch-grad-cam's ``reshape_transform`` for ViTs does. The maps are then upsampled to pixels
exactly as for a CNN's last convolutional block, so tiling and stitching work unchanged.

Supported: timm ``VisionTransformer`` (``vit_*``, also with register tokens, average pooling or
a custom head) and torchvision ``VisionTransformer`` (``vit_b_16`` ...), as the model itself or
as a submodule of a wrapper. timm and torchvision are only looked at, never imported here.
"""

from __future__ import annotations

import math
import sys
import weakref
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ModelError


@dataclass(frozen=True)
class VitParts:
    """The pieces of a ViT the explainers need.

    Attributes
    ----------
    vit : nn.Module
        The transformer (the model itself or one of its submodules).
    kind : str
        ``"timm"`` or ``"torchvision"``.
    prefix : int
        Tokens before the patch tokens (class token + register tokens).
    grid : tuple of int
        Token grid ``(h, w)`` of the input size the model was built for.
    blocks : tuple of nn.Module
        Transformer blocks in order.
    """

    vit: nn.Module
    kind: str
    prefix: int
    grid: tuple[int, int]
    blocks: tuple

    def attention(self, block) -> nn.Module:
        return block.attn if self.kind == "timm" else block.self_attention

    def pre_attention_norm(self, block) -> nn.Module:
        return block.norm1 if self.kind == "timm" else block.ln_1


def _vit_classes():
    out = []
    timm_vit = sys.modules.get("timm.models.vision_transformer")
    if timm_vit is not None:
        out.append((timm_vit.VisionTransformer, "timm"))
    tv_vit = sys.modules.get("torchvision.models.vision_transformer")
    if tv_vit is not None:
        out.append((tv_vit.VisionTransformer, "torchvision"))
    return out


def vit_parts(module) -> VitParts | None:
    """The ViT inside ``module`` (itself or one submodule), or ``None`` for other models."""
    classes = _vit_classes()
    if not classes or not isinstance(module, nn.Module):
        return None
    found = [(m, kind) for m in module.modules() for cls, kind in classes if isinstance(m, cls)]
    if not found:
        return None
    if len(found) > 1:
        raise ModelError(f"the model holds {len(found)} vision transformers; explain one of them "
                         "at a time (a model with one ViT backbone)")
    vit, kind = found[0]
    if kind == "timm":
        grid = tuple(int(g) for g in vit.patch_embed.grid_size)
        return VitParts(vit, kind, int(vit.num_prefix_tokens), grid, tuple(vit.blocks))
    side = vit.image_size // vit.patch_size
    return VitParts(vit, kind, 1, (side, side), tuple(vit.encoder.layers))


def is_vit(module) -> bool:
    """Whether ``module`` is, or contains, a supported vision transformer."""
    return vit_parts(module) is not None


def require_vit(module, method: str) -> VitParts:
    """:class:`VitParts` of ``module``, or a ``ModelError`` saying the method needs a ViT."""
    parts = vit_parts(module)
    if parts is None:
        raise ModelError(f"{method} explains vision transformers (timm or torchvision "
                         f"VisionTransformer); {type(module).__name__} is not one. Use an LRP, "
                         "CAM, gradient or perturbation method")
    return parts


def token_grid_shape(parts: VitParts, n_patch_tokens: int) -> tuple[int, int]:
    """Grid ``(h, w)`` of ``n_patch_tokens`` tokens: the model's own grid, else a square."""
    h, w = parts.grid
    if h * w == n_patch_tokens:
        return h, w
    side = math.isqrt(n_patch_tokens)
    if side * side == n_patch_tokens:
        return side, side
    raise ModelError(f"cannot lay {n_patch_tokens} patch tokens out on a grid (the model's grid "
                     f"is {h} x {w}); explain square patches of the model's input size")


def tokens_to_grid(tokens: torch.Tensor, prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """Patch tokens of ``(N, T, D)`` as a feature map ``(N, D, h, w)`` (prefix tokens dropped).

    The same as pytorch-grad-cam's ViT ``reshape_transform``.
    """
    n, _, d = tokens.shape
    return tokens[:, prefix:].reshape(n, grid[0], grid[1], d).permute(0, 3, 1, 2)


def grid_to_tokens(grid: torch.Tensor, prefix_tokens: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`tokens_to_grid`: ``(N, D, h, w)`` after ``(N, P, D)`` prefix tokens."""
    n, d = grid.shape[:2]
    return torch.cat([prefix_tokens, grid.reshape(n, d, -1).transpose(1, 2)], dim=1)


# ---------------------------------------------------------------------------------------------
# CAM target layers inside a ViT

# target layer -> its ViT (weakly: a layer dropped with its model leaves no trace)
_TOKEN_LAYERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def vit_target_layer(module, name: str | None = None) -> nn.Module | None:
    """The CAM layer of a ViT, or ``None`` when ``module`` is no ViT.

    ``name`` (a dotted module name) when given, else the normalisation before the last block's
    attention (timm ``blocks[-1].norm1``, torchvision ``encoder.layers[-1].ln_1``), the layer
    pytorch-grad-cam's ViT example uses: the last block's output only feeds the class token into
    the head, so its patch tokens get no gradient. The layer's token output is read as a patch
    grid by :func:`token_grid`.
    """
    parts = vit_parts(module)
    if parts is None:
        return None
    if name:
        try:
            layer = module.get_submodule(name)
        except AttributeError:
            raise ValueError(f"the model has no layer {name!r}; for a ViT give e.g. the dotted "
                             "name of a block or its norm1 (timm: 'blocks.11.norm1')") from None
    else:
        layer = parts.pre_attention_norm(parts.blocks[-1])
    _TOKEN_LAYERS[layer] = weakref.ref(parts.vit)
    return layer


def _parts_of_layer(layer) -> VitParts | None:
    ref = _TOKEN_LAYERS.get(layer)
    vit = ref() if ref is not None else None
    return None if vit is None else vit_parts(vit)


def token_grid(layer, out):
    """``(grid, rebuilt)`` for a ViT layer's token output, ``None`` for any other layer.

    ``grid`` is the patch-token feature map ``(N, D, h, w)``; ``rebuilt`` holds the same tokens
    rebuilt from ``grid`` (bit-identical to ``out``) for the forward hook to return, so that
    gradients of the score reach ``grid``.
    """
    parts = _parts_of_layer(layer)
    if parts is None or not isinstance(out, torch.Tensor) or out.ndim != 3:
        return None
    shape = token_grid_shape(parts, out.shape[1] - parts.prefix)
    grid = tokens_to_grid(out, parts.prefix, shape)
    return grid, grid_to_tokens(grid, out[:, :parts.prefix])


def grid_as_layer_output(layer, grid: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """A (modified) feature map back in the layer's output format: ViT tokens or unchanged.

    The prefix tokens are taken from ``out``; only patch tokens change (Ablation-CAM zeroes a
    channel of the patch grid, not of the class token).
    """
    parts = _parts_of_layer(layer)
    if parts is None or out.ndim != 3:
        return grid
    return grid_to_tokens(grid, out[:, :parts.prefix].expand(grid.shape[0], -1, -1))


# ---------------------------------------------------------------------------------------------
# attention probabilities

def _timm_attention(attn, qkv: torch.Tensor) -> torch.Tensor:
    n, t, _ = qkv.shape
    qkv = qkv.reshape(n, t, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    return torch.softmax((q * attn.scale) @ k.transpose(-2, -1), dim=-1)


def _torchvision_attention(attn, x: torch.Tensor) -> torch.Tensor:
    n, t, _ = x.shape
    e, h = attn.embed_dim, attn.num_heads
    w, b = attn.in_proj_weight, attn.in_proj_bias
    q = torch.nn.functional.linear(x, w[:e], None if b is None else b[:e])
    k = torch.nn.functional.linear(x, w[e:2 * e], None if b is None else b[e:2 * e])
    q, k = (z.reshape(n, t, h, e // h).transpose(1, 2) for z in (q, k))
    return torch.softmax((q * (e // h) ** -0.5) @ k.transpose(-2, -1), dim=-1)


def block_attentions(parts: VitParts, module, x: torch.Tensor):
    """Logits and the softmax attention ``(N, heads, T, T)`` of every block, first to last.

    The fused attention kernels never materialise it: for timm it is computed from the output
    of each block's ``qkv`` projection (caught on the way), for torchvision from the attention
    input and the in-projection weights.
    """
    attns = [parts.attention(b) for b in parts.blocks]
    if parts.kind == "timm":
        bad = [a for a in attns if getattr(a, "gate", None) is not None or not hasattr(a, "qkv")]
        if bad:
            raise ModelError(f"{type(bad[0]).__name__}: only timm's standard Attention (one qkv "
                             "projection, no gate) is supported")
        hooked = [a.qkv for a in attns]
    else:
        hooked = attns
    caught = []

    def grab(_m, args, kwargs, out):
        caught.append(out if parts.kind == "timm" else (args[0] if args else kwargs["query"]))

    handles = [m.register_forward_hook(grab, with_kwargs=True) for m in hooked]
    try:
        with torch.no_grad():
            logits = module(x)
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        if parts.kind == "timm":
            return logits, [_timm_attention(a, c) for a, c in zip(attns, caught)]
        return logits, [_torchvision_attention(a, c) for a, c in zip(attns, caught)]


def refuse_vit(module, message: str) -> None:
    """``ModelError(message)`` when ``module`` is a vision transformer (for CNN-only methods)."""
    if is_vit(module):
        raise ModelError(message)
