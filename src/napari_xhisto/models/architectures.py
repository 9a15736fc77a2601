"""Architectures by name: torchvision classifiers and the project's own small CNNs.

``build_architecture(name, num_classes)`` returns an untrained ``nn.Module``; weights come later
from a safe file. ``register_architecture(name)`` adds a builder. ``default_target_layer`` picks
the last convolutional block, where CAM methods read their feature maps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..errors import ModelError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
# dotted name of the last conv block of each architecture (CAM methods' default layer)
_TARGET_LAYERS: dict[str, str] = {}


def register_architecture(name: str, *, target_layer: str | None = None):
    """Decorator: register ``builder(num_classes) -> nn.Module`` under ``name``.

    Parameters
    ----------
    name : str
        Name used in specs.
    target_layer : str, optional
        Dotted name of the module CAM methods should hook by default.
    """

    def deco(builder):
        _REGISTRY[name] = builder
        if target_layer:
            _TARGET_LAYERS[name] = target_layer
        return builder

    return deco


def list_architectures() -> list[str]:
    return sorted(_REGISTRY)


def build_architecture(name: str, num_classes: int) -> nn.Module:
    """An untrained module of architecture ``name`` with ``num_classes`` outputs (eval mode)."""
    if name not in _REGISTRY:
        raise ModelError(f"cannot build architecture {name!r}; known: {', '.join(list_architectures())}"
                         " (a TorchScript file loads without one)")
    module = _REGISTRY[name](int(num_classes))
    return module.eval()


def _tv(factory_name: str, **kwargs):
    def build(num_classes: int) -> nn.Module:
        import torchvision.models as tvm

        return getattr(tvm, factory_name)(weights=None, num_classes=num_classes, **kwargs)

    return build


# torchvision; googlenet and inception already pool globally (any input size >= a minimum);
# auxiliary heads are off, so the module returns plain logits.
for _name, _layer, _kw in [
    ("googlenet", "inception5b", {"aux_logits": False, "init_weights": False}),
    ("inception_v3", "Mixed_7c", {"aux_logits": False, "init_weights": False}),
    ("resnet18", "layer4", {}),
    ("resnet34", "layer4", {}),
    ("resnet50", "layer4", {}),
    ("vgg16", "features.29", {}),
    ("vgg16_bn", "features.42", {}),
    ("densenet121", "features.norm5", {}),
    ("mobilenet_v2", "features.18", {}),
    ("mobilenet_v3_large", "features.16", {}),
    ("mobilenet_v3_small", "features.12", {}),
    ("alexnet", "features.11", {}),
]:
    register_architecture(_name, target_layer=_layer)(_tv(_name, **_kw))
register_architecture("mobilenet_v3", target_layer="features.16")(_tv("mobilenet_v3_large"))


class SmallCNN(nn.Module):
    """A VGG-like patch classifier small enough to train on a laptop CPU in minutes.

    ``features`` is a plain ``nn.Sequential`` of Conv-BN-ReLU (MaxPool between stages), so
    zennit's ``SequentialMergeBatchNorm``/``VGGCanonizer`` fold the BatchNorms for LRP; global
    average pooling makes any input size work; ``classifier`` is one ``Linear``.

    Parameters
    ----------
    num_classes : int
    channels : tuple of int
        Output channels of each stage; each stage after the first halves the resolution first.
    convs_per_stage : tuple of int
        Number of 3x3 conv layers per stage.
    """

    def __init__(self, num_classes: int = 2, *, channels=(16, 32, 64, 128),
                 convs_per_stage=(1, 2, 2, 2)):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i, (c_out, n) in enumerate(zip(channels, convs_per_stage, strict=True)):
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            for _ in range(n):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                           nn.BatchNorm2d(c_out), nn.ReLU(inplace=False)]
                c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


def _last_relu_name(module: nn.Module, prefix: str = "features") -> str:
    seq = dict(module.named_modules())[prefix]
    idx = [i for i, m in enumerate(seq) if isinstance(m, nn.ReLU)][-1]
    return f"{prefix}.{idx}"


@register_architecture("xhisto_cnn_s")
def _small_cnn(num_classes: int) -> nn.Module:
    """About 0.29 M parameters; 64 px input gives an 8 x 8 last feature map."""
    return SmallCNN(num_classes)


@register_architecture("xhisto_cnn_xs")
def _tiny_cnn(num_classes: int) -> nn.Module:
    """About 25 k parameters, for tests."""
    return SmallCNN(num_classes, channels=(8, 16, 32), convs_per_stage=(1, 1, 1))


def get_submodule(module: nn.Module, dotted: str) -> nn.Module:
    """``module.<dotted>`` with a clear error naming what exists."""
    try:
        return module.get_submodule(dotted)
    except AttributeError:
        top = [n for n, _ in module.named_children()]
        raise ModelError(f"the model has no layer {dotted!r}; top-level layers: {top}") from None


# torchvision class name -> the dotted name of its last conv block, when no registry name is given
_BY_CLASS = {"ResNet": "layer4", "DenseNet": "features.norm5", "GoogLeNet": "inception5b",
             "Inception3": "Mixed_7c"}


def target_layer_name(module: nn.Module, architecture: str | None = None, *,
                      override: str | None = None) -> str:
    """Dotted name of the layer CAM methods hook by default (the last conv block).

    Parameters
    ----------
    module : nn.Module
        A module-based model (TorchScript has no hooks: raises :class:`ModelError`).
    architecture : str, optional
        Registry name; without it the default is found from the module's class or layout.
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
    if cls in _BY_CLASS:
        return _BY_CLASS[cls]
    features = getattr(module, "features", None)
    if isinstance(features, nn.Sequential):
        if any(isinstance(m, nn.ReLU) for m in features):  # VGG, AlexNet, SmallCNN
            return _last_relu_name(module)
        return f"features.{len(features) - 1}"  # MobileNets: last Conv-BN-activation block
    last = None
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            last = name
    if last is None:
        raise ModelError("no convolutional layer found for CAM; name one with target_layer")
    return last


def default_target_layer(module: nn.Module, architecture: str | None = None, *,
                         override: str | None = None) -> nn.Module:
    """The layer CAM methods hook by default (see :func:`target_layer_name`)."""
    return get_submodule(module, target_layer_name(module, architecture, override=override))
