"""Classifier heads described in a spec, and where they go.

A fine-tuned network often has its own head, e.g. ``model.fc = nn.Sequential(nn.Dropout(0.5),
nn.Linear(2048, 2))``. The spec describes it as::

    head:
      replace: fc            # optional: the layer the head replaces (default: the last Linear)
      layers:
        - dropout: 0.5
        - linear             # the last linear layer gets one output per class

and :func:`attach_head` builds the same ``nn.Sequential`` in that place, so the checkpoint's
``fc.1.weight`` keys fit. Layers: ``linear`` (``{linear: 512}`` for a hidden width), ``dropout``
(``{dropout: p}``), ``relu``, ``gelu``, ``silu``, ``tanh``, ``sigmoid``, ``identity``,
``flatten``, ``batchnorm`` and ``layernorm`` (over the current width).
"""

from __future__ import annotations

from torch import nn

from ..errors import ModelError

_PLAIN = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh,
          "sigmoid": nn.Sigmoid, "identity": nn.Identity, "flatten": lambda: nn.Flatten(1)}
_SIZED = ("linear", "dropout", "batchnorm", "layernorm")
LAYER_NAMES = (*_SIZED, *_PLAIN)


def _suggest(name):
    import difflib

    close = difflib.get_close_matches(str(name), LAYER_NAMES, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _parse(item, i: int):
    """``(kind, argument)`` of one head item: ``"relu"``, ``{"linear": 512}`` ..."""
    if isinstance(item, str):
        kind, arg = item.strip().lower(), None
    elif isinstance(item, dict) and len(item) == 1:
        (kind, arg), = item.items()
        kind = str(kind).strip().lower()
    else:
        raise ModelError(f"head.layers[{i}] must be a layer name or a one-key mapping such as "
                         f"{{dropout: 0.5}}, got {item!r}")
    if kind not in LAYER_NAMES:
        raise ModelError(f"head.layers[{i}]: unknown layer {kind!r}{_suggest(kind)}; known: "
                         f"{', '.join(LAYER_NAMES)}")
    return kind, arg


def build_head(layers: list, in_features: int, num_classes: int) -> nn.Sequential:
    """The ``nn.Sequential`` a head description stands for (last linear: ``num_classes``)."""
    parsed = [_parse(item, i) for i, item in enumerate(layers)]
    linear_at = [i for i, (k, _) in enumerate(parsed) if k == "linear"]
    if not linear_at:
        raise ModelError("head.layers needs a 'linear' layer (the last one gives one output "
                         "per class)")
    modules, width = [], int(in_features)
    for i, (kind, arg) in enumerate(parsed):
        if kind == "linear":
            last = i == linear_at[-1]
            out = num_classes if (last and arg is None) else arg
            if isinstance(out, bool) or not isinstance(out, int) or out < 1:
                raise ModelError(f"head.layers[{i}]: linear needs a whole number of outputs "
                                 f"(only the last may omit it), got {arg!r}")
            if last and out != num_classes:
                raise ModelError(f"head.layers[{i}]: the last linear layer has {out} outputs "
                                 f"but the spec lists {num_classes} class names")
            modules.append(nn.Linear(width, out))
            width = out
        elif kind == "dropout":
            p = 0.0 if arg is None else arg
            if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p < 1:
                raise ModelError(f"head.layers[{i}]: dropout takes a probability in [0, 1), "
                                 f"got {arg!r}")
            modules.append(nn.Dropout(float(p)))
        elif kind in ("batchnorm", "layernorm"):
            if arg not in (None, width):
                raise ModelError(f"head.layers[{i}]: {kind} normalises the {width} features "
                                 f"that reach it, got {arg!r}")
            modules.append(nn.BatchNorm1d(width) if kind == "batchnorm" else nn.LayerNorm(width))
        else:
            if arg is not None:
                raise ModelError(f"head.layers[{i}]: {kind} takes no argument, got {arg!r}")
            modules.append(_PLAIN[kind]())
    return nn.Sequential(*modules)


def default_head_place(module: nn.Module) -> str:
    """Dotted name of the network's last ``nn.Linear`` (its classifier layer)."""
    last = None
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            last = name
    if last is None:
        raise ModelError("the network has no Linear layer for the head to replace; name the "
                         "layer in head.replace")
    return last


def in_features_of(layer: nn.Module, where: str) -> int:
    if isinstance(layer, nn.Linear):
        return layer.in_features
    for m in layer.modules():
        if isinstance(m, nn.Linear):
            return m.in_features
    raise ModelError(f"head.replace names {where!r}, which holds no Linear layer to take the "
                     "input width from")


def attach_head(module: nn.Module, head: dict, num_classes: int) -> nn.Module:
    """Replace ``head['replace']`` (default: the last Linear) by the described head."""
    place = head.get("replace") or default_head_place(module)
    try:
        old = module.get_submodule(place)
    except AttributeError:
        top = [n for n, _ in module.named_children()]
        raise ModelError(f"head.replace: the network has no layer {place!r}; top-level layers: "
                         f"{top}") from None
    new = build_head(head["layers"], in_features_of(old, place), num_classes)
    parent, _, name = place.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, name, new)
    return module
