"""AttnLRP on vision transformers equals lxt, conserves relevance, and leaves the model alone.

References:
- lxt's rules on the same timm ViT: lxt 2.1 ships AttnLRP patches for Hugging Face LLMs and a
  CP-LRP map for torchvision's ViT, not for timm; so the reference patches timm's classes with
  lxt's own pieces (``layer_norm_forward``, ``non_linear_forward``, ``wrap_attention_forward`` /
  ``cp_wrap_attention_forward``, ``divide_gradient``, ``identity_rule_implicit``) and uses zennit's
  ``Gamma`` rule with lxt's ``monkey_patch_zennit``, exactly as lxt's ViT example does; every
  patch is undone afterwards;
- lxt's shipped torchvision ViT map (``lxt.efficient.models.vit_torch.cp_LRP``) on a torchvision
  ViT carrying the same weights.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_xhisto.errors import ModelError
from napari_xhisto.explain import get_explainer

pytest.importorskip("lxt")
timm = pytest.importorskip("timm")

try:
    from test_explain_vit import assert_close, batch, make_vit
except ImportError:  # pragma: no cover - run as a package
    from .test_explain_vit import assert_close, batch, make_vit

torch.set_num_threads(2)
TARGET = torch.tensor([1, 2])


def lxt_efficient():
    """lxt's rule modules. ``lxt.efficient/__init__`` imports its LLM patches, which import
    transformers internals that transformers 5 removed; then the package is set up without
    running that file (the rule modules themselves need only torch and zennit)."""
    try:
        import lxt.efficient  # noqa: F401
    except ImportError:
        import lxt

        for sub in ("efficient", "efficient.models"):
            pkg = types.ModuleType("lxt." + sub)
            pkg.__path__ = [os.path.join(os.path.dirname(lxt.__file__), *sub.split("."))]
            sys.modules["lxt." + sub] = pkg
    return (importlib.import_module("lxt.efficient.patches"),
            importlib.import_module("lxt.efficient.rules"),
            importlib.import_module("lxt.efficient.zennit_patches"))


@contextlib.contextmanager
def patched(classes):
    """Undo every monkey patch made inside on exit: ``classes`` lists (class, attribute)."""
    saved = [(c, n, c.__dict__.get(n)) for c, n in classes]
    try:
        yield
    finally:
        for c, n, f in saved:
            if f is None:
                if n in c.__dict__:
                    delattr(c, n)
            else:
                setattr(c, n, f)


def lxt_timm_patches(mode):
    """lxt's rules applied to timm's ViT classes (as lxt's LLM maps do for Hugging Face)."""
    import timm.layers.attention as ta
    import timm.layers.mlp as tm
    import timm.layers.norm as tn

    patches, rules, _ = lxt_efficient()
    wrap = patches.wrap_attention_forward if mode == "attnlrp" else patches.cp_wrap_attention_forward
    attend = wrap(lambda module, q, k, v: F.scaled_dot_product_attention(q, k, v))

    def attention_forward(self, x, attn_mask=None, is_causal=False):  # timm Attention.forward
        n, t, _ = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        x = attend(self, q, k, v)
        x = self.norm(x.transpose(1, 2).reshape(n, t, self.attn_dim))
        return self.proj_drop(self.proj(x))

    def swiglu_forward(self, x):  # lxt's gated_mlp_forward with timm's names
        gate = rules.identity_rule_implicit(self.act, self.fc1_g(x))
        weighted = rules.divide_gradient(gate * self.fc1_x(x), 2)
        return self.drop2(self.fc2(self.norm(self.drop1(weighted))))

    return {ta.Attention: functools.partial(patches.patch_method, attention_forward),
            tn.LayerNorm: functools.partial(patches.patch_method, patches.layer_norm_forward),
            nn.GELU: functools.partial(patches.patch_method, patches.non_linear_forward,
                                       keep_original=True),
            nn.SiLU: functools.partial(patches.patch_method, patches.non_linear_forward,
                                       keep_original=True),
            tm.SwiGLU: functools.partial(patches.patch_method, swiglu_forward)}


def lxt_relevance(model, x, patch_map, *, linear_gamma, conv_gamma, stabilizer=1e-6):
    """Relevance as lxt's ViT example computes it: patched classes, zennit Gamma, x * grad."""
    import zennit.rules as zr
    from zennit.composites import LayerMapComposite
    from zennit.core import BasicHook

    _, _, zennit_patches = lxt_efficient()
    undo = [(c, "forward") for c in patch_map] + [(c, "original_forward") for c in patch_map]
    with patched(undo + [(BasicHook, "forward"), (BasicHook, "backward")]):
        for cls, patch in patch_map.items():
            assert patch(cls)
        zennit_patches.monkey_patch_zennit()
        comp = LayerMapComposite([(nn.Conv2d, zr.Gamma(conv_gamma, stabilizer=stabilizer)),
                                  (nn.Linear, zr.Gamma(linear_gamma, stabilizer=stabilizer))])
        comp.register(model)
        try:
            xi = x.clone().requires_grad_(True)
            y = model(xi)
            onehot = torch.zeros_like(y).scatter_(1, TARGET[:, None], 1.0)
            (g,) = torch.autograd.grad(y, xi, onehot)
        finally:
            comp.remove()
    return (xi * g).sum(1).detach().numpy()


def ours(model, x, target=TARGET, **params):
    return get_explainer("attnlrp").attribute(model, x, target, **params).numpy()


@pytest.fixture(scope="module")
def vit():
    return make_vit("plain", seed=11)


@pytest.fixture(scope="module")
def narrow():
    return make_vit("plain", seed=17, img_size=32, embed_dim=48)


@pytest.fixture(scope="module")
def fancy():
    return make_vit("fancy", seed=12)


@pytest.fixture(scope="module")
def swiglu():
    from timm.layers import SwiGLU

    return make_vit("plain", seed=13, img_size=32, embed_dim=48, depth=3, mlp_layer=SwiGLU,
                    act_layer=nn.SiLU)


# ---------------------------------------------------------------------------------------------
# equal to lxt

CASES = ([("vit", (0.05, 0.25))]  # vit_tiny's width, default gammas
         + [("narrow", g) for g in [(0.05, 0.25), (0.0, 0.0), (1.0, 100.0)]]
         + [("fancy", (0.05, 0.25)), ("swiglu", (0.05, 0.25))])


@pytest.mark.parametrize("kind,gammas", CASES)
@pytest.mark.parametrize("mode", ["attnlrp", "cp"])
def test_attnlrp_equals_lxt_on_the_same_timm_vit(kind, mode, gammas, request):
    model = request.getfixturevalue(kind)
    x = batch(model.patch_embed.img_size[0])
    lin, conv = gammas
    want = lxt_relevance(model, x, lxt_timm_patches(mode), linear_gamma=lin, conv_gamma=conv)
    got = ours(model, x, attention=mode, linear_gamma=lin, conv_gamma=conv)
    assert_close(got, want, 1e-9)


def copy_to_torchvision(vit):
    """A torchvision ViT computing the same function as a plain timm ViT."""
    from torchvision.models import VisionTransformer

    d, depth = vit.embed_dim, len(vit.blocks)
    tv = VisionTransformer(image_size=vit.patch_embed.img_size[0],
                           patch_size=vit.patch_embed.patch_size[0], num_layers=depth,
                           num_heads=vit.blocks[0].attn.num_heads, hidden_dim=d,
                           mlp_dim=vit.blocks[0].mlp.fc1.out_features,
                           num_classes=vit.num_classes).to(vit.cls_token.dtype).eval()
    state = {"conv_proj.weight": vit.patch_embed.proj.weight, "conv_proj.bias": vit.patch_embed.proj.bias,
             "class_token": vit.cls_token, "encoder.pos_embedding": vit.pos_embed,
             "encoder.ln.weight": vit.norm.weight, "encoder.ln.bias": vit.norm.bias,
             "heads.head.weight": vit.head.weight, "heads.head.bias": vit.head.bias}
    for i, b in enumerate(vit.blocks):
        p = f"encoder.layers.encoder_layer_{i}."
        state.update({p + "ln_1.weight": b.norm1.weight, p + "ln_1.bias": b.norm1.bias,
                      p + "self_attention.in_proj_weight": b.attn.qkv.weight,
                      p + "self_attention.in_proj_bias": b.attn.qkv.bias,
                      p + "self_attention.out_proj.weight": b.attn.proj.weight,
                      p + "self_attention.out_proj.bias": b.attn.proj.bias,
                      p + "ln_2.weight": b.norm2.weight, p + "ln_2.bias": b.norm2.bias,
                      p + "mlp.0.weight": b.mlp.fc1.weight, p + "mlp.0.bias": b.mlp.fc1.bias,
                      p + "mlp.3.weight": b.mlp.fc2.weight, p + "mlp.3.bias": b.mlp.fc2.bias})
    tv.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=True)
    return tv


def test_cp_lrp_equals_lxts_shipped_torchvision_vit_map(narrow):
    """lxt's own ViT recipe (torchvision map, CP-LRP) on a weight-equal torchvision ViT.

    That recipe's gamma rule reaches the MLP, head and patch embedding but not the attention
    projections (torchvision calls them functionally), so linear gamma is 0 here: then both are
    gradient x input there, up to the stabilisers (1e-12 on outputs; lxt's 1e-10 on inputs
    applies to our projections but not to torchvision's functional ones: ~1e-8)."""
    x = batch(32)
    tv = copy_to_torchvision(narrow)
    with torch.no_grad():
        assert_close(tv(x).numpy(), narrow(x).numpy(), 1e-12)
    lxt_efficient()
    vit_torch = importlib.import_module("lxt.efficient.models.vit_torch")
    want = lxt_relevance(tv, x, vit_torch.cp_LRP, linear_gamma=0.0, conv_gamma=0.25,
                         stabilizer=1e-12)
    got = ours(narrow, x, attention="cp", linear_gamma=0.0, conv_gamma=0.25, stabilizer=1e-12)
    assert_close(got, want, 1e-6)


def test_lxt_patches_were_undone():
    import timm.layers.attention as ta

    assert "original_forward" not in nn.GELU.__dict__
    assert nn.GELU.forward.__module__ == "torch.nn.modules.activation"
    assert ta.Attention.forward.__module__ == "timm.layers.attention"


# ---------------------------------------------------------------------------------------------
# conservation

def bias_free(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or name in ("pos_embed", "cls_token", "reg_token"):
                p.zero_()
    return model


@pytest.mark.parametrize("kind", ["plain", "fancy"])
def test_cp_lrp_conserves_the_logit_without_biases(kind):
    model = bias_free(make_vit(kind, seed=14, img_size=32, embed_dim=48))
    x = batch(model.patch_embed.img_size[0])
    logits = model(x).detach()
    rel = ours(model, x, attention="cp", linear_gamma=0.05, conv_gamma=0.25, stabilizer=1e-12)
    want = logits[torch.arange(2), TARGET].numpy()
    np.testing.assert_allclose(rel.sum(axis=(1, 2)), want, rtol=1e-6)


def test_only_attnlrps_softmax_rule_loses_relevance():
    """Without biases, CP-LRP's pixel relevance sums to the logit and AttnLRP's does not: its
    softmax rule (Taylor expansion at the input) drops the softmax's bias term."""
    model = bias_free(make_vit("plain", seed=15, img_size=32, embed_dim=48))
    x = batch(32)
    logit = model(x).detach()[torch.arange(2), TARGET].numpy()
    full = ours(model, x, attention="attnlrp", stabilizer=1e-12).sum(axis=(1, 2))
    cp = ours(model, x, attention="cp", stabilizer=1e-12).sum(axis=(1, 2))
    np.testing.assert_allclose(cp, logit, rtol=1e-6)
    assert np.all(np.abs(full - logit) > 1e-6 * np.abs(logit))  # the softmax's bias term


# ---------------------------------------------------------------------------------------------
# the user's model

def test_attnlrp_leaves_the_model_untouched_and_follows_weight_changes(narrow):
    vit, x = narrow, batch(32)
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    first = ours(vit, x, stabilizer=1e-12)
    assert all(torch.equal(v, before[k]) for k, v in vit.state_dict().items())
    assert all(p.requires_grad for p in vit.parameters())
    assert type(vit.blocks[0].attn).__name__ == "Attention"
    assert np.array_equal(ours(vit, x, stabilizer=1e-12), first)  # cached rule copy
    with torch.no_grad():
        vit.head.weight.mul_(2)
        vit.head.bias.mul_(2)
    try:  # twice the logits, twice the relevance: the copy follows the new weights
        assert_close(ours(vit, x, stabilizer=1e-12), 2 * first, 1e-9)
    finally:
        with torch.no_grad():
            vit.head.weight.div_(2)
            vit.head.bias.div_(2)


def test_attnlrp_runs_in_float32_like_a_slide_run(narrow):
    x = batch(32)
    v32 = make_vit("plain", seed=17, img_size=32, embed_dim=48, dtype=torch.float32)
    assert_close(ours(v32, x.float()), ours(narrow, x), 1e-3)


def test_attnlrp_names_a_layer_it_has_no_rule_for():
    model = make_vit("fancy", seed=16)

    class Square(nn.Module):
        def forward(self, x):
            return x * x

    model.blocks[1].mlp.act = Square()
    with pytest.raises(ModelError, match="no rule for Square at 'blocks.1.mlp.act'"):
        ours(model, batch(32))
