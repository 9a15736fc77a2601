"""The layer CAM methods hook by default: the network's last spatial feature map.

Known architectures name it (``layer4`` of a ResNet, ``features.norm5`` of a DenseNet);
otherwise it is found from the module's layout, or by one probing forward pass that records
which block produces the last ``(N, K, h, w)`` tensor before pooling.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from ..errors import ModelError

# architecture name -> dotted name of its last conv block
_TARGET_LAYERS: dict[str, str] = {}
# class name -> dotted name (torchvision and timm use the same for these)
_BY_CLASS = {"ResNet": "layer4", "DenseNet": "features.norm5", "GoogLeNet": "inception5b",
             "Inception3": "Mixed_7c", "InceptionV3": "Mixed_7c"}
_PROBED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def register_target_layer(architecture: str, dotted: str) -> None:
    _TARGET_LAYERS[architecture] = dotted


def get_submodule(module: nn.Module, dotted: str) -> nn.Module:
    """``module.<dotted>`` with a clear error naming what exists."""
    try:
        return module.get_submodule(dotted)
    except AttributeError:
        top = [n for n, _ in module.named_children()]
        raise ModelError(f"the model has no layer {dotted!r}; top-level layers: {top}") from None


def _last_relu_name(module: nn.Module, prefix: str = "features") -> str:
    seq = dict(module.named_modules())[prefix]
    idx = [i for i, m in enumerate(seq) if isinstance(m, nn.ReLU)][-1]
    return f"{prefix}.{idx}"


def probe_last_feature_map(module: nn.Module) -> str | None:
    """The outermost block that produces the last spatial map of a forward pass, or None.

    Runs one forward pass on a blank 3-channel image (64 px, else 224 px) on the module's
    device and dtype; cached per module.
    """
    if module in _PROBED:
        return _PROBED[module]
    ref = next(module.parameters(), None)
    kw = {"device": ref.device, "dtype": ref.dtype} if ref is not None else {}
    seen: list[tuple[str, object]] = []
    hooks = []
    for name, m in module.named_modules():
        if name:
            hooks.append(m.register_forward_hook(
                lambda _m, _i, out, name=name: seen.append((name, out))))
    found = None
    was_training = module.training
    module.eval()  # a probe must not update BatchNorm statistics
    try:
        for size in (64, 224):
            seen.clear()
            try:
                with torch.no_grad():
                    module(torch.zeros(1, 3, size, size, **kw))
            except Exception:
                continue
            maps = [(n, o) for n, o in seen if isinstance(o, torch.Tensor) and o.ndim == 4
                    and o.shape[-1] * o.shape[-2] > 1]  # pooled (N, K, 1, 1) maps do not count
            if maps:
                last = maps[-1][1]
                names = [n for n, o in maps if o is last]
                found = min(names, key=lambda n: (n.count("."), len(n)))
                break
    finally:
        for h in hooks:
            h.remove()
        module.train(was_training)
    _PROBED[module] = found
    return found


def target_layer_name(module: nn.Module, architecture: str | None = None, *,
                      override: str | None = None) -> str:
    """Dotted name of the layer CAM methods hook by default (the last conv block).

    Parameters
    ----------
    module : nn.Module
        A module-based model (TorchScript has no hooks: raises :class:`ModelError`).
    architecture : str, optional
        Architecture name; without it the default is found from the module's class or layout.
    override : str, optional
        A dotted module name that wins over the default.
    """
    if isinstance(module, torch.jit.ScriptModule):
        raise ModelError("CAM and LRP methods need module hooks; this model is TorchScript. "
                         "Use a safetensors/state-dict model, or a gradient-free method")
    if override:
        get_submodule(module, override)
        return override
    if architecture in _TARGET_LAYERS:
        return _TARGET_LAYERS[architecture]
    cls = type(module).__name__
    if cls in _BY_CLASS and _has(module, _BY_CLASS[cls]):
        return _BY_CLASS[cls]
    features = getattr(module, "features", None)
    if isinstance(features, nn.Sequential):
        if any(isinstance(m, nn.ReLU) for m in features):  # VGG, AlexNet, SmallCNN
            return _last_relu_name(module)
        return f"features.{len(features) - 1}"  # MobileNets: last Conv-BN-activation block
    probed = probe_last_feature_map(module)
    if probed:
        return probed
    last = None
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            last = name
    if last is None:
        raise ModelError("no convolutional layer found for CAM; name one with target_layer")
    return last


def _has(module, dotted) -> bool:
    try:
        module.get_submodule(dotted)
        return True
    except AttributeError:
        return False


def default_target_layer(module: nn.Module, architecture: str | None = None, *,
                         override: str | None = None) -> nn.Module:
    """The layer CAM methods hook by default (see :func:`target_layer_name`)."""
    return get_submodule(module, target_layer_name(module, architecture, override=override))
