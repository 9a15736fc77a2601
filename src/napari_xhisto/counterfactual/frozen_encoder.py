"""The frozen classifier as the attribution network's encoder: its tapped features, fast.

Two ways to get the features right after the tapped activations, same values:

* :class:`TracedEncoder` (used whenever it can be built): a ``torch.fx`` trace of the classifier
  cut after the last tap (the head never runs), with every BatchNorm that directly follows a
  convolution folded into it (the encoder is frozen and in eval mode, so this is exact up to
  float rounding), activations in place only where nothing else reads their input (a tapped
  output is never overwritten, so never cloned) and its tensors channels-last (what the lean decoder runs fastest on). It is a
  copy made once per classifier; :meth:`TracedEncoder.stale` says when the classifier's weights
  or mode changed since (in-place writes bump each tensor's version counter), so the caller
  rebuilds it.
* :func:`hooked_features`: forward hooks on the classifier itself (any module fx cannot trace);
  the forward stops right after the last tap, and a tapped output is cloned only where the
  tapped module works in place.
"""

from __future__ import annotations

import copy
import operator

import torch
from torch import nn

__all__ = ["TracedEncoder", "hooked_features", "trace_encoder"]


_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.Hardswish, nn.Hardtanh)


class _Stop(Exception):
    """Raised by the last tap's hook: nothing after it is needed."""


def hooked_features(classifier: nn.Module, taps: list[str], x: torch.Tensor) -> list[torch.Tensor]:
    """Tapped features (shallow to deep) by forward hooks, without gradients."""
    got: dict[str, torch.Tensor] = {}
    mods = dict(classifier.named_modules())
    last = taps[-1]

    def hook(m, _i, o, n):
        got[n] = o.clone() if getattr(m, "inplace", False) else o
        if len(got) == len(taps) or n == last:
            raise _Stop

    hooks = [mods[n].register_forward_hook(lambda m, i, o, n=n: hook(m, i, o, n)) for n in taps]
    try:
        with torch.no_grad():
            classifier(x)
    except _Stop:
        pass
    finally:
        for h in hooks:
            h.remove()
    missing = [n for n in taps if n not in got]
    if missing:
        raise RuntimeError(f"tapped module(s) {missing} did not run in the classifier's forward")
    return [got[n] for n in taps]


def _versions(module: nn.Module) -> tuple:
    return tuple(t._version for t in module.state_dict(keep_vars=True).values()
                 if torch.is_tensor(t))


class TracedEncoder(nn.Module):
    """A trimmed, BatchNorm-folded copy of the classifier returning the tapped features."""

    def __init__(self, graph_module: nn.Module, source: nn.Module):
        super().__init__()
        self.gm = graph_module
        object.__setattr__(self, "_source", source)
        self._versions = _versions(source)

    def stale(self, classifier: nn.Module) -> bool:
        """True when ``classifier`` is not the one copied, changed since, or is training."""
        return (classifier is not self._source or classifier.training
                or _versions(classifier) != self._versions)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Tapped features, channels-last ``(N, C, H, W)`` tensors."""
        return list(self.gm(x.contiguous(memory_format=torch.channels_last)))


_IN_PLACE_OPERATORS = {getattr(operator, f"i{name}") for name in (
    "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "and", "or", "xor", "lshift",
    "rshift", "matmul")}


def _in_place(node) -> bool:
    """Whether an fx node changes its first argument in place (``x += y``, ``x.add_(y)``...)."""
    if node.op == "call_function":
        return node.target in _IN_PLACE_OPERATORS or bool(node.kwargs.get("inplace"))
    if node.op == "call_method":
        return str(node.target).endswith("_") and not str(node.target).startswith("_")
    return False


def trace_encoder(classifier: nn.Module, taps: list[str]) -> TracedEncoder | None:
    """:class:`TracedEncoder` for ``classifier`` and ``taps``, or ``None`` where fx cannot do it.

    ``None`` when: the classifier is training, fx cannot trace it, a tap is not called as a
    module of the traced graph (called twice, or not at all), or a tapped output is later
    changed in place by a function or method call.
    """
    if classifier.training:
        return None
    from torch import fx

    try:
        gm = fx.symbolic_trace(copy.deepcopy(classifier))
    except Exception:  # noqa: BLE001 - dynamic control flow etc.: the hooks path handles it
        return None
    graph = gm.graph
    mods = dict(gm.named_modules())
    nodes = {}
    for node in graph.nodes:
        if node.op == "call_module" and node.target in taps:
            if node.target in nodes:
                return None
            nodes[node.target] = node
    if set(nodes) != set(taps):
        return None
    for node in nodes.values():
        if any(_in_place(user) for user in node.users):
            return None
    # fold BatchNorm into the convolution right before it (frozen, eval mode: exact)
    for node in list(graph.nodes):
        if node.op != "call_module" or not isinstance(mods.get(node.target), nn.BatchNorm2d):
            continue
        prev = node.args[0] if node.args else None
        if (not isinstance(prev, fx.Node) or prev.op != "call_module"
                or not isinstance(mods.get(prev.target), nn.Conv2d) or len(prev.users) != 1
                or prev.target in taps or node.target in taps
                or not mods[node.target].track_running_stats):
            continue
        fused = nn.utils.fusion.fuse_conv_bn_eval(mods[prev.target], mods[node.target])
        parent, _, name = prev.target.rpartition(".")
        setattr(gm.get_submodule(parent) if parent else gm, name, fused)
        node.replace_all_uses_with(prev)
        graph.erase_node(node)
    # an activation works in place where that is safe: its input is an intermediate result
    # used by nothing else and not a tap (a fresh buffer per activation costs page faults)
    # (a module called at several places must be safe at all of them)
    tapped, safe = set(nodes.values()), {}
    mods = dict(gm.named_modules())
    for node in graph.nodes:
        mod = mods.get(node.target) if node.op == "call_module" else None
        if mod is not None and hasattr(mod, "inplace"):
            src = node.args[0] if node.args else None
            ok = bool(isinstance(src, fx.Node) and src.op != "placeholder"
                      and len(src.users) == 1 and src not in tapped
                      and isinstance(mod, _ACTIVATIONS))
            safe[node.target] = safe.get(node.target, True) and ok
    for target, ok in safe.items():
        mods[target].inplace = ok
    output = next(n for n in graph.nodes if n.op == "output")
    output.args = (tuple(nodes[t] for t in taps),)  # the head and all after the last tap go
    graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    for p in gm.parameters():
        p.requires_grad_(False)
    # channels-last: on CPU it spares oneDNN a layout reorder per convolution (1.5x here)
    return TracedEncoder(gm.eval().to(memory_format=torch.channels_last), classifier)
