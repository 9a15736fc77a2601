"""The explainer protocol and the registry every caller (widget, CLI, tiling) goes through.

An explainer maps a batch of normalised patches ``x`` (N, C, H, W) and a target class to one
map per patch at input resolution, ``(N, H, W)``. Methods register by name::

    @register_explainer("saliency")
    class Saliency(Explainer):
        ...

and callers use ``get_explainer(name).explain(module, x, target, **params)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ModelError

_REGISTRY: dict[str, type[Explainer]] = {}

NEEDS = frozenset({"module-hooks", "gradients", "many-forwards"})
RESOLUTIONS = ("pixel", "feature-map", "patch")


@dataclass(frozen=True)
class Param:
    """One tunable parameter of an explainer: default, kind and valid range.

    ``kind`` is ``"int"``, ``"float"``, ``"bool"``, ``"choice"``, ``"str"`` (free text, e.g. a
    dotted layer name; ``None`` allowed) or ``"ints"`` / ``"floats"`` (a tuple of numbers).
    ``low`` / ``high`` bound numbers (inclusive); ``choices`` lists the allowed strings.
    """

    default: Any
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    help: str = ""

    def check(self, name: str, value: Any) -> Any:
        """``value`` converted to the parameter's kind; ``ValueError`` when out of range."""
        if self.kind == "str":
            return None if value is None else str(value)
        if self.kind == "bool":
            if isinstance(value, str):
                value = value.lower() in ("1", "true", "yes", "on")
            return bool(value)
        if self.kind == "choice":
            if value not in self.choices:
                raise ValueError(f"parameter {name!r} must be one of {list(self.choices)}, got {value!r}")
            return value
        if self.kind in ("ints", "floats"):
            seq = value if isinstance(value, list | tuple | np.ndarray) else [value]
            if isinstance(value, str):
                seq = [v for v in value.split(",") if v.strip()]
            conv = int if self.kind == "ints" else float
            out = tuple(conv(v) for v in seq)
            if not out:
                raise ValueError(f"parameter {name!r} needs at least one value")
            for v in out:
                self._check_range(name, v)
            return out
        conv = int if self.kind == "int" else float
        try:
            out = conv(value)
        except (TypeError, ValueError):
            raise ValueError(f"parameter {name!r} must be a number ({self.kind}), got {value!r}") from None
        if self.kind == "int" and out != float(value):
            raise ValueError(f"parameter {name!r} must be a whole number, got {value!r}")
        self._check_range(name, out)
        return out

    def _check_range(self, name, v):
        if (self.low is not None and v < self.low) or (self.high is not None and v > self.high):
            lo = "-inf" if self.low is None else self.low
            hi = "inf" if self.high is None else self.high
            raise ValueError(f"parameter {name!r} = {v} is out of range [{lo}, {hi}]")

    def describe(self) -> str:
        if self.kind == "choice":
            return f"{self.default!r} in {list(self.choices)}"
        if self.low is None and self.high is None:
            return repr(self.default)
        lo = "" if self.low is None else self.low
        hi = "" if self.high is None else self.high
        return f"{self.default!r} in [{lo}, {hi}]"


class Explainer:
    """Base class: subclasses set the class attributes and implement ``_attribute``.

    Attributes
    ----------
    name : str
        Registry name (set by :func:`register_explainer`).
    description : str
        One line for menus and ``xhisto methods``.
    signed : bool
        Whether the map has meaningful negative values (evidence against the class).
    needs : frozenset of str
        Subset of ``{"module-hooks", "gradients", "many-forwards"}``.
    native_resolution : str
        ``"pixel"``, ``"feature-map"`` (upsampled bilinearly) or ``"patch"``.
    cost : float
        Relative cost per patch, a plain forward + backward pass = 1.
    params : dict of str to Param
        Tunable parameters with defaults and ranges.
    """

    name: str = ""
    description: str = ""
    signed: bool = True
    needs: frozenset = frozenset()
    native_resolution: str = "pixel"
    cost: float = 1.0
    params: dict[str, Param] = {}

    def check_params(self, **params) -> dict:
        """All parameters with defaults filled in; ``ValueError`` on unknown or out-of-range."""
        unknown = set(params) - set(self.params)
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter(s) {sorted(unknown)}; "
                             f"valid: {sorted(self.params)}")
        out = {}
        for key, spec in self.params.items():
            out[key] = spec.check(key, params[key]) if key in params else spec.default
        return out

    def attribute(self, module, x: torch.Tensor, target, **params) -> torch.Tensor:
        """Maps ``(N, H, W)`` as a tensor in ``x``'s dtype and device (for exact comparisons)."""
        if x.ndim != 4:
            raise ValueError(f"{self.name}: x must be a batch (N, C, H, W), got shape {tuple(x.shape)}")
        params = self.check_params(**params)
        if "module-hooks" in self.needs and is_torchscript(module):
            raise ModelError(f"{self.name} needs hooks on the model's layers, which a TorchScript "
                             "model does not offer: load a module-based model (safetensors weights "
                             "+ spec) or choose a gradient-free or gradient method")
        targets = as_targets(target, x.shape[0], x.device)
        out = self._attribute(module, x, targets, **params)
        if out.shape != (x.shape[0], x.shape[2], x.shape[3]):  # pragma: no cover - programming error
            raise RuntimeError(f"{self.name} returned shape {tuple(out.shape)}")
        return out.detach()

    def explain(self, module, x: torch.Tensor, target, **params) -> np.ndarray:
        """One map per patch, ``(N, H, W)`` float32 at input resolution.

        Parameters
        ----------
        module : torch.nn.Module or TorchScript module
            The classifier, in eval mode; outputs logits ``(N, n_classes)``.
        x : torch.Tensor
            Normalised patches ``(N, C, H, W)`` on the module's device.
        target : int or torch.Tensor
            Class index for all patches, or one per patch ``(N,)``.
        **params
            Method parameters (see ``params``); out-of-range values raise ``ValueError``.
        """
        return self.attribute(module, x, target, **params).float().cpu().numpy()

    def _attribute(self, module, x, targets, **params) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def info(self) -> dict:
        """A plain dict for tables and provenance."""
        return {"name": self.name, "description": self.description, "signed": self.signed,
                "needs": sorted(self.needs), "native_resolution": self.native_resolution,
                "cost": self.cost,
                "params": {k: p.describe() for k, p in self.params.items()}}


def register_explainer(name: str):
    """Class decorator adding an :class:`Explainer` subclass to the registry under ``name``."""

    def wrap(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"explainer {name!r} is already registered")
        bad = set(cls.needs) - NEEDS
        if bad or cls.native_resolution not in RESOLUTIONS:
            raise ValueError(f"explainer {name!r}: bad needs {bad} or resolution {cls.native_resolution!r}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _load_methods():
    # importing the family modules registers their explainers
    from . import lrp, cam, cam_more, gradient, perturbation  # noqa: F401, I001
    from . import vit_lrp, vit_rollout  # noqa: F401  vision transformers: AttnLRP, rollout
    from ..counterfactual import occlusion  # noqa: F401  inpaint-occlusion (seed 001)
    from ..counterfactual import attribution_net, mask_opt  # noqa: F401  seed 001


def get_explainer(name: str) -> Explainer:
    """A fresh instance of the explainer registered as ``name``."""
    _load_methods()
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(f"unknown explanation method {name!r}; known: {', '.join(sorted(_REGISTRY))}"
                         " (see `xhisto methods`)") from None


_FAMILY_ORDER = ("lrp", "cam", "gradient", "perturbation")


def list_explainers() -> list[dict]:
    """Name, description, needs, resolution and cost of every registered method.

    Ordered by family (LRP, CAM, gradient, perturbation, then others), registration order within.
    """
    _load_methods()
    names = list(_REGISTRY)

    def key(n):
        family = _REGISTRY[n].__module__.rsplit(".", 1)[-1]
        rank = _FAMILY_ORDER.index(family) if family in _FAMILY_ORDER else len(_FAMILY_ORDER)
        return rank, names.index(n)

    return [_REGISTRY[n]().info() for n in sorted(names, key=key)]


# ---------------------------------------------------------------------------------------------
# helpers shared by the families

def is_torchscript(module) -> bool:
    return isinstance(module, torch.jit.ScriptModule | torch.jit.RecursiveScriptModule)


def as_targets(target, n: int, device) -> torch.Tensor:
    """``target`` (int or per-sample sequence) as a long tensor ``(n,)``."""
    t = torch.as_tensor(target, dtype=torch.long, device=device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"target needs one class per patch ({n}), got {t.numel()}")
    return t.contiguous()


def target_scores(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Logit of each sample's target class, ``(N,)``."""
    if logits.ndim != 2:
        raise ModelError(f"the model must return logits (N, n_classes), got shape {tuple(logits.shape)}")
    if int(targets.max()) >= logits.shape[1] or int(targets.min()) < 0:
        raise ValueError(f"target class {targets.tolist()} out of range for {logits.shape[1]} classes")
    return logits.gather(1, targets[:, None])[:, 0]


def upsample(maps: torch.Tensor, size) -> torch.Tensor:
    """Bilinear upsampling (half-pixel centres) of ``(N, h, w)`` maps to ``size``."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return torch.nn.functional.interpolate(maps[:, None], size=tuple(size), mode="bilinear",
                                           align_corners=False)[:, 0]
