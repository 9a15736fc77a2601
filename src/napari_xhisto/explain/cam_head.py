"""The part of a network after one layer: run only the head on changed activations.

Ablation-CAM scores one copy of the target layer's activations per channel; running the whole
network for each copy recomputes the layers before the target for nothing. ``torch.fx`` splits
the traced graph at the target layer: the head takes the layer's output, plus any tensor from
before the layer that the head still reads (a skip connection), and returns the logits.
Networks fx cannot trace, or whose head does not reproduce the logits, fall back to the whole
forward pass with the layer's output replaced by a hook.
"""

from __future__ import annotations

import weakref

import torch
from torch import fx

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _LeafTracer(fx.Tracer):
    def __init__(self, leaf: str):
        super().__init__()
        self.leaf = leaf

    def is_leaf_module(self, m, qualname):
        return qualname == self.leaf or super().is_leaf_module(m, qualname)


class Head:
    """``head(act, x_index)``: logits from the target layer's output on.

    Build with :func:`split_at`; ``prepare(x)`` runs the trunk once to keep the tensors the
    head reads besides the layer's output.
    """

    def __init__(self, trunk: fx.GraphModule, head: fx.GraphModule, n_frontier: int):
        self.trunk, self.head, self.n_frontier = trunk, head, n_frontier
        self.frontier: tuple = ()

    def prepare(self, x: torch.Tensor):
        """Activations of the layer and the logits for ``x``; keeps the frontier tensors."""
        with torch.no_grad():
            outs = self.trunk(x)
            act, rest = outs[0], tuple(outs[1:])
            self.frontier = rest
            logits = self.head(act.clone(), *rest)  # the head may work in place on its input
        return act, logits

    def __call__(self, act: torch.Tensor, index: int) -> torch.Tensor:
        m = act.shape[0]
        rest = tuple(f[index:index + 1].repeat(m, *([1] * (f.ndim - 1)))
                     if isinstance(f, torch.Tensor) and f.ndim > 0 else f
                     for f in self.frontier)
        with torch.no_grad():
            return self.head(act, *rest)


def split_at(module: torch.nn.Module, layer_name: str) -> Head | None:
    """The network split at ``layer_name``, or None where fx cannot do it (cached)."""
    per = _CACHE.setdefault(module, {})
    if layer_name not in per:
        try:
            per[layer_name] = _split(module, layer_name)
        except Exception:
            per[layer_name] = None
    return per[layer_name]


def _split(module, layer_name):
    graph = _LeafTracer(layer_name).trace(module)
    nodes = list(graph.nodes)
    targets = [n for n in nodes if n.op == "call_module" and n.target == layer_name]
    if len(targets) != 1:
        return None
    cut = targets[0]
    downstream = {cut}
    for n in nodes[nodes.index(cut) + 1:]:
        if any(a in downstream for a in n.all_input_nodes):
            downstream.add(n)
    output = next(n for n in nodes if n.op == "output")
    frontier = []
    for n in nodes:
        if (n in downstream and n is not cut) or n.op == "output":
            for a in n.all_input_nodes:
                if a not in downstream and a.op not in ("get_attr",) and a not in frontier:
                    frontier.append(a)
    if any(a not in downstream for a in output.all_input_nodes):
        return None  # part of the output does not depend on the layer
    # trunk: the layer's output and the frontier tensors
    trunk = fx.Graph()
    env = {}
    for n in nodes:
        if n in downstream and n is not cut:
            continue
        if n.op == "output":
            continue
        env[n] = trunk.node_copy(n, lambda a: env[a])
    trunk.output(tuple(env[n] for n in [cut, *frontier]))
    # head: placeholders for the layer's output and the frontier, then the downstream nodes
    head = fx.Graph()
    henv = {cut: head.placeholder("act")}
    for i, n in enumerate(frontier):
        henv[n] = head.placeholder(f"frontier_{i}")
    for n in nodes:
        if n.op == "get_attr" and any(u in downstream for u in n.users):
            henv[n] = head.node_copy(n, lambda a: henv[a])
    for n in nodes:
        if n in downstream and n is not cut:
            henv[n] = head.node_copy(n, lambda a: henv[a])
    head.node_copy(output, lambda a: henv[a])
    trunk_gm = fx.GraphModule(module, trunk)
    trunk_gm.graph.eliminate_dead_code()
    trunk_gm.recompile()
    head_gm = fx.GraphModule(module, head)
    return Head(trunk_gm, head_gm, len(frontier))
