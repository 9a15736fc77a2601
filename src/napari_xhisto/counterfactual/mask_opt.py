"""Counterfactual masks by optimisation (seed 001, the slow reference of the attribution net).

For a patch ``I``, class ``c`` and a marginaliser ``pi`` (the inpainter: masked pixels become
healthy tissue) the seed looks for the smallest compact mask ``M`` with ``p(c | pi(M)) <= theta``
and ``d(M) <= delta``. Both this module and :mod:`.attribution_train` minimise

    L(M) = g(phi(M)) + g(psi(M)) + lambda_tv * TV(M) + lambda_area * d(M) + barrier(d(M) - delta)

* ``phi(M) = -log(1 - p(c | pi(M)))`` and ``psi(M) = log odds(pi(M)) - log odds(I)``. The seed
  prints ``phi = -log p(c|pi(M))`` and ``psi = log odds(I) - log odds(pi(M))``; minimising those
  would *raise* ``p(c | pi(M))``, against the stated aim ``p(c | pi(M)) <= theta``, so the signs
  are read in the direction of that aim (for two classes ``1 - p(c)`` is the healthy class).
* ``g`` is a generalised logistic ``s * tanh(t / (2 s))`` (the seed normalises every term with a
  generalised logistic; ``s`` keeps the slope 1/2 near zero and bounds each term by ``s``).
* ``TV`` is the mean absolute difference of neighbouring mask pixels (the seed's regulariser);
  ``d(M)`` the mask's area fraction; the area constraint uses the log-barrier extension of
  Kervadec et al. (the seed's ref. [15]); the small ``lambda_area`` term makes the mask the
  *smallest* one, as the argmin asks.
* Masks are mapped into the compact set ``S`` by a Gaussian-weighted smooth maximum
  (Fong & Vedaldi 2019, the seed's "smoothed maximum of a convolution with a Gaussian kernel",
  sigma = 5 % of the side, smoothing 30).

The mask the loss sees is binary in the forward pass (straight-through: ``M > 0.5``, gradients of
the soft mask), so ``p(c | pi(M))`` during optimisation is the probability of the final mask.
The classifier and the inpainter are never changed; their weights need no gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Objective", "MaskResult", "compact", "counterfactual_loss", "optimise_masks",
           "total_variation", "log_barrier", "to_rgb", "to_model", "class_log_odds"]


@dataclass(frozen=True)
class Objective:
    """Weights and limits of the counterfactual objective (defaults tuned on the demo model).

    Attributes
    ----------
    theta : float
        Classification threshold the marginalised patch must fall below.
    delta : float
        Largest mask area as a fraction of the patch (``d(M) <= delta``).
    tv_weight, area_weight : float
        ``lambda_tv`` and ``lambda_area``.
    barrier_t : float
        Sharpness of the log-barrier extension.
    logistic_scale : float
        ``s`` of the generalised logistic applied to ``phi`` and ``psi``.
    sigma_frac, smooth_beta : float
        Gaussian of the compact mapping as a fraction of the patch side; smooth-max sharpness.
    """

    theta: float = 0.5
    delta: float = 0.5
    tv_weight: float = 0.5
    area_weight: float = 0.25
    barrier_t: float = 20.0
    logistic_scale: float = 5.0
    sigma_frac: float = 0.05
    smooth_beta: float = 30.0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class MaskResult:
    """Masks of one batch and what they do to the classifier.

    Attributes
    ----------
    mask : ndarray (N, H, W) bool
        The counterfactual mask (``True`` = replaced by healthy tissue).
    soft : ndarray (N, H, W) float32
        The compact soft mask in [0, 1] before thresholding at 0.5.
    p_before, p_after : ndarray (N,)
        ``p(c | I)`` and ``p(c | pi(M))``.
    area : ndarray (N,)
        Mask area fraction ``d(M)``.
    info : dict
        Objective and optimiser settings (provenance).
    """

    mask: np.ndarray
    soft: np.ndarray
    p_before: np.ndarray
    p_after: np.ndarray
    area: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def drop(self) -> np.ndarray:
        """Probability drop ``p(c | I) - p(c | pi(M))`` per patch."""
        return self.p_before - self.p_after

    @property
    def reached(self) -> np.ndarray:
        """Whether ``p(c | pi(M)) <= theta`` (bool per patch)."""
        return self.p_after <= self.info.get("objective", {}).get("theta", 0.5)


def _stats(values, x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)


def to_rgb(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Normalised patches back to RGB in [0, 1] (what the inpainter takes)."""
    return (x * _stats(std, x) + _stats(mean, x)).clamp(0.0, 1.0)


def to_model(rgb: torch.Tensor, mean, std) -> torch.Tensor:
    """RGB in [0, 1] to the classifier's normalised input."""
    return (rgb - _stats(mean, rgb)) / _stats(std, rgb)


def class_log_odds(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``log p(c)`` and ``log(1 - p(c))`` per sample, computed stably from logits."""
    logp = torch.log_softmax(logits.float(), dim=1)
    lp = logp.gather(1, targets[:, None])[:, 0]
    others = logp.masked_fill(F.one_hot(targets, logits.shape[1]).bool(), float("-inf"))
    return lp, torch.logsumexp(others, dim=1)


def _gaussian_offsets(sigma_px: float, device, dtype) -> tuple[int, torch.Tensor]:
    radius = max(1, int(math.ceil(1.5 * sigma_px)))
    ax = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    w = torch.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2.0 * sigma_px ** 2))
    return radius, w.reshape(1, -1, 1)


def compact(mask: torch.Tensor, *, sigma_px: float, beta: float = 30.0) -> torch.Tensor:
    """Gaussian-weighted smooth maximum of ``mask`` (N, 1, H, W) in [0, 1] (the set ``S``).

    ``out(u) = smax_beta_v w(u - v) m(v)``, ``w`` a Gaussian with peak 1; a single pixel becomes
    a Gaussian blob and gaps narrower than ~sigma close, so thin or scattered masks turn compact.
    """
    if sigma_px <= 0:
        return mask
    n, _, h, w = mask.shape
    radius, weights = _gaussian_offsets(sigma_px, mask.device, mask.dtype)
    cols = F.unfold(F.pad(mask, (radius,) * 4, mode="constant", value=0.0), 2 * radius + 1)
    z = cols * weights                                         # (N, K, H*W)
    soft = torch.softmax(beta * z, dim=1)
    return (soft * z).sum(1).reshape(n, 1, h, w)


def total_variation(mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels per sample, ``(N,)``."""
    dr = (mask[..., 1:, :] - mask[..., :-1, :]).abs().flatten(1).mean(1)
    dc = (mask[..., :, 1:] - mask[..., :, :-1]).abs().flatten(1).mean(1)
    return dr + dc


def log_barrier(z: torch.Tensor, t: float) -> torch.Tensor:
    """Log-barrier extension for ``z <= 0`` (Kervadec et al. 2019): finite and linear past ``-1/t^2``."""
    edge = -1.0 / t ** 2
    inside = -torch.log(torch.clamp(-z, min=1e-12)) / t
    outside = t * z - math.log(1.0 / t ** 2) / t + 1.0 / t
    return torch.where(z <= edge, inside, outside)


def _logistic(t: torch.Tensor, s: float) -> torch.Tensor:
    return s * torch.tanh(t / (2.0 * s))


def _inpaint(inpainter, rgb: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``inpainter(rgb, keep)`` in the inpainter's dtype, returned in ``rgb``'s."""
    p = next(inpainter.parameters(), None)
    if p is None:
        p = next(inpainter.buffers(), None)
    dt = p.dtype if p is not None and p.is_floating_point() else rgb.dtype
    return inpainter(rgb.to(dt), keep.to(dt)).to(rgb.dtype)


def binarise(soft: torch.Tensor, threshold: float) -> torch.Tensor:
    """Straight-through threshold: binary forward, the soft mask's gradient backward."""
    hard = (soft > threshold).to(soft.dtype)
    return hard + soft - soft.detach()


def counterfactual_loss(classifier, inpainter, rgb: torch.Tensor, mask: torch.Tensor,
                        targets: torch.Tensor, log_odds_before: torch.Tensor, *, mean, std,
                        objective: Objective = Objective()) -> tuple[torch.Tensor, dict]:
    """Per-sample loss of ``mask`` (N, 1, H, W; 1 = marginalise) and what it does.

    Parameters
    ----------
    classifier : torch.nn.Module
        Takes normalised patches, returns logits.
    inpainter : torch.nn.Module
        ``forward(rgb, keep)`` with ``keep = 1 - mask`` (1 = valid pixel), returns RGB in [0, 1].
    rgb : torch.Tensor
        Patches (N, 3, H, W) in [0, 1].
    log_odds_before : torch.Tensor
        ``log odds(I)`` per sample (constant).

    Returns
    -------
    loss : torch.Tensor (N,)
    parts : dict of (N,) tensors
        ``p_after``, ``phi``, ``psi``, ``tv``, ``area`` (detached).
    """
    filled = _inpaint(inpainter, rgb, 1.0 - mask)
    lp, lq = class_log_odds(classifier(to_model(filled, mean, std)), targets)
    phi = -lq                                   # -log(1 - p(c | pi(M)))
    psi = (lp - lq) - log_odds_before           # log odds(pi(M)) - log odds(I)
    tv = total_variation(mask)
    area = mask.flatten(1).mean(1)
    s = objective.logistic_scale
    loss = (_logistic(phi, s) + _logistic(psi, s) + objective.tv_weight * tv
            + objective.area_weight * area + log_barrier(area - objective.delta, objective.barrier_t))
    parts = {"p_after": lp.exp().detach(), "phi": phi.detach(), "psi": psi.detach(),
             "tv": tv.detach(), "area": area.detach()}
    return loss, parts


def optimise_masks(classifier, inpainter, x: torch.Tensor, targets, *, mean, std,
                   objective: Objective = Objective(), steps: int = 120, lr: float = 0.1,
                   grid: int = 8, seed: int = 0, start: str = "off") -> MaskResult:
    """Solve the counterfactual objective per patch with Adam on a low-resolution mask.

    Parameters
    ----------
    classifier, inpainter : torch.nn.Module
        See :func:`counterfactual_loss`; both in eval mode, neither is modified.
    x : torch.Tensor
        Normalised patches (N, 3, H, W) as the classifier takes them.
    targets : int or sequence
        Class ``c`` per patch.
    mean, std : sequence of float
        The classifier's normalisation (to give the inpainter RGB).
    steps, lr : int, float
        Adam iterations and step size on the mask logits.
    grid : int
        Side of the low-resolution mask (upsampled bilinearly to the patch).
    seed : int
        Seeds the initial mask logits (small noise around sigmoid 0.27 or 0.73).
    start : {"off", "on"}
        Grow the mask from nothing, or shrink it from the whole patch.

    Returns
    -------
    MaskResult
    """
    n, _, h, w = x.shape
    targets = torch.as_tensor(targets, dtype=torch.long, device=x.device).reshape(-1).expand(n)
    params = [p for m in (classifier, inpainter) for p in m.parameters()]
    was = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            rgb = to_rgb(x, mean, std)
            lp0, lq0 = class_log_odds(classifier(x), targets)
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        if start not in ("off", "on"):
            raise ValueError(f"start must be 'off' or 'on', got {start!r}")
        offset = 1.0 if start == "on" else -1.0
        logits = (0.1 * torch.randn(n, 1, grid, grid, generator=gen) + offset).to(x.device)
        logits.requires_grad_(True)
        opt = torch.optim.Adam([logits], lr=lr)
        sigma = objective.sigma_frac * max(h, w)
        best = torch.full((n,), float("inf"), device=x.device)
        best_logits = logits.detach().clone()
        with torch.enable_grad():
            for _ in range(int(steps)):
                soft = _soft_mask(logits, (h, w), sigma, objective.smooth_beta)
                loss, parts = counterfactual_loss(classifier, inpainter, rgb, binarise(soft, 0.5),
                                                  targets, (lp0 - lq0).detach(), mean=mean,
                                                  std=std, objective=objective)
                # best iterate per patch: the smallest mask reaching theta, else the lowest p
                feasible = (parts["p_after"] <= objective.theta) & (parts["area"] <= objective.delta)
                score = torch.where(feasible, parts["area"], 2.0 + parts["p_after"])
                better = score < best
                best = torch.where(better, score, best)
                best_logits[better] = logits.detach()[better]
                opt.zero_grad()
                loss.sum().backward()
                opt.step()
        with torch.no_grad():
            soft = _soft_mask(best_logits, (h, w), sigma, objective.smooth_beta)
            hard = (soft > 0.5).to(x.dtype)
            filled = _inpaint(inpainter, rgb, 1.0 - hard)
            lp, _ = class_log_odds(classifier(to_model(filled, mean, std)), targets)
    finally:
        for p, r in zip(params, was):
            p.requires_grad_(r)
    info = {"objective": objective.as_dict(), "steps": int(steps), "lr": float(lr),
            "grid": int(grid), "seed": int(seed), "start": start, "optimiser": "Adam"}
    return MaskResult(mask=hard[:, 0].bool().cpu().numpy(), soft=soft[:, 0].float().cpu().numpy(),
                      p_before=lp0.exp().float().cpu().numpy(), p_after=lp.exp().float().cpu().numpy(),
                      area=hard.flatten(1).mean(1).float().cpu().numpy(), info=info)


def _soft_mask(logits: torch.Tensor, size, sigma: float, beta: float) -> torch.Tensor:
    up = F.interpolate(torch.sigmoid(logits), size=tuple(size), mode="bilinear", align_corners=False)
    return compact(up, sigma_px=sigma, beta=beta)


# ---------------------------------------------------------------------------------------------
# the inpainter the explainers use, and the registered explainer

_INPAINTERS: dict = {}


def use_inpainter(name: str, module: torch.nn.Module) -> None:
    """Make an in-memory inpainter (``forward(rgb, keep)``) available under ``name``.

    The explainers' ``inpainter`` parameter takes such a name, a spec path, or ``"demo"``.
    """
    _INPAINTERS[str(name)] = module


def resolve_inpainter(name, device=None) -> torch.nn.Module:
    """The inpainter module for ``name``: registered in memory, else ``load_inpainter(name)``."""
    name = "demo" if name in (None, "") else str(name)
    if name not in _INPAINTERS:
        from ..errors import ModelError

        try:
            from .inpainter import load_inpainter
        except ImportError:  # pragma: no cover - the inpainter package is part of the project
            raise ModelError("no inpainter is available in this build; counterfactual methods "
                             "need a trained inpainter (`xhisto train-inpainter`)") from None
        _INPAINTERS[name] = load_inpainter(name, device=device).module.eval()
    module = _INPAINTERS[name]
    p = next(module.parameters(), None)
    if device is not None and p is not None and p.device != torch.device(device):
        module = module.to(device)
    return module


from ..explain.registry import Explainer, Param, register_explainer  # noqa: E402

_DEMO_MEAN, _DEMO_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@register_explainer("counterfactual-mask")
class CounterfactualMask(Explainer):
    description = ("smallest compact region whose inpainting as healthy tissue drops p(class) "
                   "below theta (seed 001, optimised per patch; slow reference); needs a "
                   "trained inpainter")
    signed = False
    needs = frozenset({"gradients", "many-forwards"})
    native_resolution = "pixel"
    cost = 300.0
    requires = ("a trained inpainter (default: the bundled demo one; `xhisto train-inpainter`)",)
    params = {
        "inpainter": Param("demo", "str", help="inpainter spec path or 'demo'"),
        "output": Param("drop", "choice", choices=("drop", "mask", "soft"),
                        help="mask x probability drop, the binary mask, or the soft mask"),
        "theta": Param(0.5, "float", 0.0, 1.0, help="p(class) the inpainted patch must reach"),
        "delta": Param(0.5, "float", 0.01, 1.0, help="largest mask area (fraction of the patch)"),
        "tv_weight": Param(0.2, "float", 0.0, 100.0, help="total-variation weight"),
        "area_weight": Param(0.1, "float", 0.0, 100.0, help="area weight (smallest mask)"),
        "steps": Param(150, "int", 1, 10000, help="Adam iterations"),
        "lr": Param(0.2, "float", 1e-5, 10.0, help="Adam step size"),
        "grid": Param(8, "int", 2, 256, help="side of the optimised low-resolution mask"),
        "seed": Param(0, "int", 0, 2**31 - 1),
        "mean": Param(_DEMO_MEAN, "floats", help="the model's normalisation mean"),
        "std": Param(_DEMO_STD, "floats", 1e-12, None, help="the model's normalisation std"),
    }
    last_result: MaskResult | None = None

    def _attribute(self, module, x, targets, *, inpainter, output, theta, delta, tv_weight,
                   area_weight, steps, lr, grid, seed, mean, std):
        objective = Objective(theta=theta, delta=delta, tv_weight=tv_weight,
                              area_weight=area_weight)
        net = resolve_inpainter(inpainter, device=x.device)
        res = optimise_masks(module, net, x, targets, mean=mean, std=std, objective=objective,
                             steps=steps, lr=lr, grid=grid, seed=seed)
        res.info["inpainter"] = inpainter
        self.last_result = res
        if output == "mask":
            out = res.mask.astype(np.float32)
        elif output == "soft":
            out = res.soft
        else:
            out = res.mask * np.clip(res.drop, 0.0, None)[:, None, None].astype(np.float32)
        return torch.as_tensor(out, dtype=x.dtype, device=x.device)

    def info(self) -> dict:
        return {**super().info(), "requires": list(self.requires)}
