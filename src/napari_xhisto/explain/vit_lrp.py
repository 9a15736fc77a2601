"""AttnLRP: layer-wise relevance propagation for vision transformers (Achtibat et al., ICML 2024).

Computed as lxt computes it (gradient x input through backward passes that implement the rules,
see :mod:`.vit_rules`), on a private copy of a timm ``VisionTransformer`` (``vit_*``: class
token, optional register tokens, token or average pooling, a linear or MLP head):

- Linear layers (attention projections, MLPs, head): generalised gamma rule, ``linear_gamma``
  (0 = epsilon rule); the patch-embedding convolution: gamma rule, ``conv_gamma``;
- LayerNorm / RMSNorm: identity rule on the division by the standard deviation;
- GELU and other element-wise activations: identity rule; gated MLPs (SwiGLU): identity rule on
  the gate's activation and the uniform rule on the product;
- attention, ``attention="attnlrp"``: uniform rule on the two matrix products (query and key
  receive 1/4 of the relevance each, value 1/2) and the softmax's Taylor rule;
  ``attention="cp"``: CP-LRP, no relevance through query and key (the attention weights are
  constants), which is what lxt ships for torchvision ViTs;
- residual sums, token concatenation, position embeddings, pooling and LayerScale: plain
  gradient x input.

The relevance put on the output is the target logit (other classes zero). With ``cp``, no bias
anywhere (linear, LayerNorm), zero position embeddings and zero class/register tokens, the pixel
relevance sums to the logit; otherwise biases, embeddings and tokens absorb their share, and
AttnLRP's softmax rule absorbs the softmax's bias term. The user's model is never modified.
"""

from __future__ import annotations

import copy
import sys
import threading
import weakref

import torch
from torch import nn

from ..errors import ModelError
from .registry import Explainer, Param, register_explainer, target_scores
from .vit import require_vit
from .vit_rules import (
    GammaConv2d,
    GammaLinear,
    IdentityRule,
    LrpLayerNorm,
    LrpRmsNorm,
    Rules,
    divide_gradient,
)

_ACTIVATIONS = (nn.GELU, nn.ReLU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.Mish,
                nn.Hardswish, nn.Softplus)
_TIMM_ACTIVATIONS = ("GELU", "GELUTanh", "QuickGELU", "Swish", "Sigmoid", "Tanh", "Mish",
                     "HardSwish")
# modules whose forward is linear glue (or identity in eval mode): gradient x input is the rule
_PASS = (nn.Dropout, nn.Identity, nn.Sequential, nn.ModuleList, nn.Flatten)
_TIMM_PASS = {"timm.layers.drop": ("DropPath",), "timm.layers.layer_scale": ("LayerScale",),
              "timm.layers.patch_embed": ("PatchEmbed",), "timm.layers.mlp": ("Mlp",),
              "timm.models.vision_transformer": ("Block", "VisionTransformer")}


def _timm_classes(module_name, names):
    mod = sys.modules.get(module_name)
    return tuple(getattr(mod, n) for n in names if mod is not None and hasattr(mod, n))


class LrpAttention(nn.Module):
    """timm ``Attention`` with AttnLRP's (or CP-LRP's) rules on query, key and value."""

    def __init__(self, attn: nn.Module, rules: Rules):
        super().__init__()
        if getattr(attn, "gate", None) is not None:
            raise ModelError("AttnLRP: gated attention (timm Attention(gated=True)) is not supported")
        self.inner, self.rules = attn, rules

    def forward(self, x, attn_mask=None, is_causal=False):
        a = self.inner
        if attn_mask is not None or is_causal:
            raise ModelError("AttnLRP: attention masks are not supported")
        n, t, _ = x.shape
        qkv = a.qkv(x).reshape(n, t, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = a.q_norm(q), a.k_norm(k)
        if self.rules.attention == "cp":
            q, k = q.detach(), k.detach()
        else:
            q, k, v = divide_gradient(q, 4), divide_gradient(k, 4), divide_gradient(v, 2)
        out = torch.softmax((q * a.scale) @ k.transpose(-2, -1), dim=-1) @ v
        out = a.norm(out.transpose(1, 2).reshape(n, t, a.attn_dim))
        return a.proj_drop(a.proj(out))


class LrpGluMlp(nn.Module):
    """timm ``GluMlp`` (SwiGLUPacked) and ``SwiGLU``: identity rule on the gate, uniform on the product."""

    def __init__(self, mlp: nn.Module):
        super().__init__()
        self.inner = mlp

    def forward(self, x):
        m = self.inner
        # m.act is already an IdentityRule (children are replaced first)
        if hasattr(m, "fc1_g"):  # SwiGLU: act(fc1_g(x)) * fc1_x(x)
            h = m.act(m.fc1_g(x)) * m.fc1_x(x)
        else:
            x1, x2 = m.fc1(x).chunk(2, dim=-1)
            h = x1 * m.act(x2) if m.gate_last else m.act(x1) * x2
        h = m.norm(m.drop1(divide_gradient(h, 2)))
        return m.drop2(m.fc2(h))


def _set(root: nn.Module, name: str, new: nn.Module):
    parent, _, leaf = name.rpartition(".")
    (root.get_submodule(parent) if parent else root)._modules[leaf] = new


def lrp_copy(module: nn.Module, rules: Rules) -> nn.Module:
    """A private copy of ``module`` with every layer replaced by its rule; ``ModelError`` on a
    layer without one (the message names it)."""
    vit = require_vit(module, "AttnLRP")
    if vit.kind != "timm":
        raise ModelError("AttnLRP supports timm VisionTransformer models; this is a torchvision "
                         "ViT: use attention rollout, a CAM, gradient or perturbation method")
    if getattr(vit.vit, "attn_pool", None) is not None:
        raise ModelError("AttnLRP: attention-pooling heads (global_pool='map') are not supported")
    twin = copy.deepcopy(module).eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    attention = _timm_classes("timm.layers.attention", ("Attention",))
    glu = _timm_classes("timm.layers.mlp", ("GluMlp", "SwiGLU"))
    rms = _timm_classes("timm.layers.norm", ("RmsNorm",))
    acts = _ACTIVATIONS + _timm_classes("timm.layers.activations", _TIMM_ACTIVATIONS)
    passing = _PASS + sum((_timm_classes(m, n) for m, n in _TIMM_PASS.items()), ())
    # innermost first, so that wrappers see their children already replaced
    for name, m in reversed(list(twin.named_modules())):
        if isinstance(m, nn.Linear):
            _set(twin, name, GammaLinear(m, rules))
        elif isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros":
                raise ModelError(f"AttnLRP: convolution '{name}' pads with {m.padding_mode!r}")
            _set(twin, name, GammaConv2d(m, rules))
        elif isinstance(m, nn.LayerNorm):
            _set(twin, name, LrpLayerNorm(m))
        elif rms and isinstance(m, rms):
            _set(twin, name, LrpRmsNorm(m))
        elif isinstance(m, acts):
            _set(twin, name, IdentityRule(m))
        elif attention and type(m) in attention:
            _set(twin, name, LrpAttention(m, rules))
        elif glu and isinstance(m, glu):
            _set(twin, name, LrpGluMlp(m))
        elif not isinstance(m, passing):
            raise ModelError(f"AttnLRP has no rule for {type(m).__name__} at "
                             f"'{name or 'the model'}'; supported are timm VisionTransformer with "
                             "standard blocks and a linear or MLP head (set as model.head)")
    return twin


_LOCAL = threading.local()


def _fingerprint(module):
    ps = list(module.parameters()) + list(module.buffers())
    return tuple((p.data_ptr(), p._version, p.dtype, str(p.device)) for p in ps)


def private_copy(module) -> tuple[nn.Module, Rules]:
    """This thread's rule copy of ``module`` and its settings, rebuilt when ``module`` changes."""
    cache = getattr(_LOCAL, "cache", None)
    if cache is None:
        cache = _LOCAL.cache = {}
    for dead in [k for k, v in cache.items() if v[0]() is None]:
        del cache[dead]
    key, fp = id(module), _fingerprint(module)
    hit = cache.get(key)
    if hit is not None and hit[0]() is module and hit[1] == fp:
        return hit[2], hit[3]
    rules = Rules()
    twin = lrp_copy(module, rules)
    cache[key] = (weakref.ref(module), fp, twin, rules)
    return twin, rules


def attnlrp_relevance(module, x, targets, *, attention="attnlrp", linear_gamma=0.0,
                      conv_gamma=0.0, stabilizer=1e-6) -> torch.Tensor:
    """Relevance ``(N, C, H, W)`` of each sample's target logit (gradient x input)."""
    twin, rules = private_copy(module)
    rules.attention, rules.linear_gamma = attention, float(linear_gamma)
    rules.conv_gamma, rules.stabilizer = float(conv_gamma), float(stabilizer)
    with torch.enable_grad():
        xi = x.detach().requires_grad_(True)
        out = twin(xi)
        target_scores(out, targets)  # checks the output shape and the target range
        start = torch.zeros_like(out).scatter_(1, targets[:, None], 1.0)
        (grad,) = torch.autograd.grad(out, xi, grad_outputs=start)
    return xi.detach() * grad


@register_explainer("attnlrp")
class AttnLrp(Explainer):
    description = ("AttnLRP (Achtibat et al. 2024): LRP for vision transformers, gamma rule on "
                   "linear layers, attention-aware rules (timm ViTs)")
    signed = True
    needs = frozenset({"module-hooks", "gradients"})
    native_resolution = "pixel"
    cost = 2.0
    params = {
        "attention": Param("attnlrp", "choice", choices=("attnlrp", "cp"),
                           help="attnlrp: relevance also through query/key (softmax rule); "
                                "cp: attention weights as constants (CP-LRP)"),
        "linear_gamma": Param(0.05, "float", 0.0, 100.0,
                              help="gamma of linear layers (0 = epsilon rule)"),
        "conv_gamma": Param(0.25, "float", 0.0, 100.0, help="gamma of the patch embedding"),
        "stabilizer": Param(1e-6, "float", 0.0, 1.0, help="denominator stabiliser"),
    }
    vit_only = True  # refuses CNNs with a clear message

    def _attribute(self, module, x, targets, **params):
        return attnlrp_relevance(module, x, targets, **params).sum(1)
