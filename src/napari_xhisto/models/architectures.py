"""Architectures by name: torchvision and timm classifiers, the project's own small CNNs, and
classes of installed packages.

``build_architecture(name, num_classes, options=..., head=...)`` returns an untrained
``nn.Module``; weights come later from a safe file. Names:

* a project architecture registered with :func:`register_architecture` (``"xhisto_cnn_s"``);
* any torchvision classification model (``"resnet50"``, ``"densenet121"``; also
  ``"torchvision:NAME"``), built with ``weights=None``;
* any timm model (``"timm:efficientnet_b0"``, or the bare name where torchvision has none),
  built with ``pretrained=False`` (nothing is downloaded);
* ``"package.module:Class"``: an ``nn.Module`` subclass of an installed package, constructed
  with the spec's ``arch_options`` (never unpickled).

``options`` are constructor keyword arguments; ``head`` replaces the classifier layer (see
:mod:`.heads`). :func:`required_options` names the options a spec must state because they
change the network's function without changing its weights (GoogLeNet/Inception v3's
``transform_input``).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable

import torch
from torch import nn

from ..errors import ModelError
from .target_layers import (  # noqa: F401 - re-exported
    default_target_layer,
    get_submodule,
    register_target_layer,
    target_layer_name,
)

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

# torchvision builders' defaults: no weight initialisation (weights are loaded), no auxiliary
# heads unless the checkpoint has them (they change nothing in eval mode)
_TV_DEFAULTS = {"googlenet": {"aux_logits": False, "init_weights": False},
                "inception_v3": {"aux_logits": False, "init_weights": False}}
_TV_ALIASES = {"mobilenet_v3": "mobilenet_v3_large"}
_TRANSFORM_INPUT_HELP = (
    "whether the network re-normalises its input: torchvision builds GoogLeNet and Inception v3 "
    "with transform_input=True when it loads its ImageNet weights, so a model fine-tuned from "
    "them needs `arch_options: {transform_input: true}`; one trained from scratch "
    "(or with timm) `transform_input: false`")


def register_architecture(name: str, *, target_layer: str | None = None):
    """Decorator: register ``builder(num_classes, **options) -> nn.Module`` under ``name``.

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
            register_target_layer(name, target_layer)
        return builder

    return deco


def torchvision_names() -> list[str]:
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def list_architectures() -> list[str]:
    """Project architectures and torchvision classification models (timm: ``timm:NAME``)."""
    return sorted(set(_REGISTRY) | set(torchvision_names()) | set(_TV_ALIASES))


def resolve_name(name: str) -> tuple[str, str]:
    """``(source, key)`` of an architecture name: source is registry, torchvision, timm or class."""
    name = str(name).strip()
    if name in _REGISTRY:
        return "registry", name
    if name.startswith("timm:"):
        _check_timm(name[5:])
        return "timm", name[5:]
    if name.startswith("torchvision:"):
        key = name[len("torchvision:"):]
        if key not in torchvision_names():
            close = difflib.get_close_matches(key, torchvision_names(), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ModelError(f"torchvision has no classification model {key!r}{hint}")
        return "torchvision", key
    if ":" in name:
        return "class", name
    name = _TV_ALIASES.get(name, name)
    if name in torchvision_names():
        return "torchvision", name
    try:
        import timm

        if timm.is_model(name):
            return "timm", name
    except ImportError:  # pragma: no cover - timm is a dependency
        pass
    known = list(_REGISTRY) + torchvision_names()
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ModelError(f"cannot build architecture {name!r}{hint}: not a project or torchvision "
                     "classification model name, nor a timm model; write 'timm:NAME' for timm, "
                     "'package.module:Class' for your own class (a TorchScript file loads "
                     "without one)")


def required_options(name: str) -> dict[str, str]:
    """Options a spec must state for ``name`` (option -> why)."""
    try:
        source, key = resolve_name(name)
    except ModelError:
        return {}
    if source == "torchvision" and key in ("googlenet", "inception_v3"):
        return {"transform_input": _TRANSFORM_INPUT_HELP}
    return {}


def _call(builder, what: str, num_classes: int, options: dict, *, pass_classes=True):
    kwargs = dict(options)
    if pass_classes:
        kwargs.setdefault("num_classes", num_classes)
    try:
        return builder(**kwargs)
    except TypeError as exc:
        msg = str(exc)
        if "unexpected keyword" in msg or "got an unexpected" in msg:
            bad = msg.rsplit("'", 2)[-2] if msg.count("'") >= 2 else msg
            raise ModelError(f"architecture {what}: arch_options has {bad!r}, which its "
                             "constructor does not take") from None
        raise ModelError(f"architecture {what} cannot be built with arch_options {options}: "
                         f"{msg}") from None
    except Exception as exc:  # constructors raise what they like for options they refuse
        msg = " ".join(str(exc).split())[:200]
        raise ModelError(f"architecture {what} cannot be built with arch_options {options}: "
                         f"{type(exc).__name__}: {msg}") from None


def _build_torchvision(key: str, num_classes: int, options: dict) -> nn.Module:
    import torchvision.models as tvm

    opts = {**_TV_DEFAULTS.get(key, {}), **options}
    if opts.get("aux_logits") is False and key in _TV_DEFAULTS:
        opts.setdefault("init_weights", False)
    return _call(lambda **kw: tvm.get_model(key, weights=None, **kw), key, num_classes, opts)


def _check_timm(key: str) -> None:
    import timm

    if not timm.is_model(key):
        close = difflib.get_close_matches(key, timm.list_models(), n=1, cutoff=0.7)
        hint = f" (did you mean 'timm:{close[0]}'?)" if close else ""
        raise ModelError(f"cannot build architecture 'timm:{key}': timm has no model {key!r}"
                         f"{hint}")


def check_options(name: str, options: dict, where: str = "model spec") -> tuple[str, str]:
    """Resolve ``name`` and check ``options`` before anything is built or read.

    Returns ``resolve_name(name)``; raises :class:`ModelError` for a missing required option
    or an option that would download weights.
    """
    source, key = resolve_name(name)
    for opt, why in required_options(name).items():
        if opt not in options:
            raise ModelError(f"{where}: architecture {name!r} needs arch_options.{opt}: {why}")
    for bad in ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path",
                "weights", "progress"):
        if bad in options:
            raise ModelError(f"{where}: arch_options {bad!r} is not allowed: weights come only "
                             "from the spec's weights file (nothing is downloaded)")
    return source, key


def _build_timm(key: str, num_classes: int, options: dict) -> nn.Module:
    import timm

    return _call(lambda **kw: timm.create_model(key, pretrained=False, **kw), f"timm:{key}",
                 num_classes, options)


def _build_class(name: str, num_classes: int, options: dict) -> nn.Module:
    modname, _, clsname = name.partition(":")
    if not modname or not clsname or not all(p.isidentifier() for p in modname.split(".")) \
            or not all(p.isidentifier() for p in clsname.split(".")):
        raise ModelError(f"architecture {name!r}: write a class as 'package.module:Class'")
    try:
        obj = importlib.import_module(modname)
    except ImportError as exc:
        raise ModelError(f"architecture {name!r}: cannot import {modname!r} ({exc}); is its "
                         "package installed in this environment?") from None
    for part in clsname.split("."):
        obj = getattr(obj, part, None)
    if not (inspect.isclass(obj) and issubclass(obj, nn.Module)):
        raise ModelError(f"architecture {name!r}: {modname} has no nn.Module class {clsname!r}")
    try:
        params = inspect.signature(obj.__init__).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        params = {}
    takes = "num_classes" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    return _call(obj, name, num_classes, options, pass_classes=takes)


def build_architecture(name: str, num_classes: int, *, options: dict | None = None,
                       head: dict | None = None) -> nn.Module:
    """An untrained module of architecture ``name`` with ``num_classes`` outputs (eval mode).

    Parameters
    ----------
    name : str
        See the module docstring for the accepted names.
    num_classes : int
    options : dict, optional
        Constructor keyword arguments (the spec's ``arch_options``).
    head : dict, optional
        A head description (the spec's ``head``) replacing the classifier layer.
    """
    options = dict(options or {})
    source, key = resolve_name(name)
    if source == "registry":
        module = _call(lambda **kw: _REGISTRY[key](int(num_classes), **kw), key, num_classes,
                       options, pass_classes=False)
    elif source == "torchvision":
        module = _build_torchvision(key, int(num_classes), options)
    elif source == "timm":
        module = _build_timm(key, int(num_classes), options)
    else:
        module = _build_class(key, int(num_classes), options)
    if not isinstance(module, nn.Module):
        raise ModelError(f"architecture {name!r} did not build an nn.Module")
    if head:
        from .heads import attach_head

        attach_head(module, head, int(num_classes))
    return module.eval()


# project architectures; torchvision's are found by name, with their CAM layers known
for _name, _layer in [("googlenet", "inception5b"), ("inception_v3", "Mixed_7c"),
                      ("resnet18", "layer4"), ("resnet34", "layer4"), ("resnet50", "layer4"),
                      ("vgg16", "features.29"), ("vgg16_bn", "features.42"),
                      ("densenet121", "features.norm5"), ("mobilenet_v2", "features.18"),
                      ("mobilenet_v3_large", "features.16"), ("mobilenet_v3", "features.16"),
                      ("mobilenet_v3_small", "features.12"), ("alexnet", "features.11")]:
    register_target_layer(_name, _layer)


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
    dropout : float
        Probability of an ``nn.Dropout`` on the pooled features before ``classifier`` (for
        Monte-Carlo dropout, :mod:`.mc_dropout`). 0 (the default) puts an ``nn.Identity``
        there; neither has parameters, so the weights' keys are the same either way.
    conv_dropout : float
        Probability of an ``nn.Dropout2d`` (whole channels) after every stage of ``features``,
        before the next stage's MaxPool and before the global pooling: dropout in the
        convolutional part as in Gal & Ghahramani's Bayesian CNN. 0 (the default) adds no
        module, so the network and its weight keys are exactly those without the option;
        above 0 the ``features`` indices after the first stage shift by one per stage.
    """

    def __init__(self, num_classes: int = 2, *, channels=(16, 32, 64, 128),
                 convs_per_stage=(1, 2, 2, 2), dropout: float = 0.0,
                 conv_dropout: float = 0.0):
        super().__init__()
        for opt, p in (("dropout", dropout), ("conv_dropout", conv_dropout)):
            if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p < 1:
                raise ModelError(f"{opt} takes a probability in [0, 1) (0: none), got {p!r}")
        layers: list[nn.Module] = []
        c_in = 3
        for i, (c_out, n) in enumerate(zip(channels, convs_per_stage, strict=True)):
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            for _ in range(n):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                           nn.BatchNorm2d(c_out), nn.ReLU(inplace=False)]
                c_in = c_out
            if conv_dropout > 0:
                layers.append(nn.Dropout2d(float(conv_dropout)))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(float(dropout)) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.flatten(self.pool(self.features(x)))))


@register_architecture("xhisto_cnn_s")
def _small_cnn(num_classes: int, *, dropout: float = 0.0,
               conv_dropout: float = 0.0) -> nn.Module:
    """About 0.29 M parameters; 64 px input gives an 8 x 8 last feature map.

    ``arch_options: {dropout: 0.3}`` adds dropout before the classifier (same weight keys);
    ``conv_dropout: 0.1`` channel dropout after each conv stage (see :class:`SmallCNN`).
    """
    return SmallCNN(num_classes, dropout=dropout, conv_dropout=conv_dropout)


@register_architecture("xhisto_cnn_xs")
def _tiny_cnn(num_classes: int, *, dropout: float = 0.0,
              conv_dropout: float = 0.0) -> nn.Module:
    """About 25 k parameters, for tests; ``dropout``, ``conv_dropout`` as for ``xhisto_cnn_s``."""
    return SmallCNN(num_classes, channels=(8, 16, 32), convs_per_stage=(1, 1, 1),
                    dropout=dropout, conv_dropout=conv_dropout)


