"""Monte-Carlo dropout: how sure is the model? N stochastic passes per patch (Gal & Ghahramani).

Each patch batch is read and preprocessed once, then run through the network N times with
only its dropout layers sampling: every other layer (BatchNorm above all) stays in eval mode.
The dropout masks come from a seeded ``torch.Generator`` (forward hooks on the model's
``nn.Dropout``/``Dropout1d/2d/3d`` layers, which stay in eval mode), so the result is
reproducible and no global random state is touched. The spread of the N softmax outputs (mean,
median, standard deviation per class) measures the model's uncertainty.

>>> res = mc_predict_proba(model, patches, n_samples=30, seed=0)     # doctest: +SKIP
>>> res.mean.shape, res.std.shape                                   # doctest: +SKIP
((n, n_classes), (n, n_classes))

A region of a slide gives an :class:`UncertaintyMap` (:func:`mc_predict_region`): the mean as a
:class:`~.inference.ProbabilityMap` placed exactly as ``predict_region`` places it (damaged
cells NaN), with median and standard deviation maps beside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from .loading import LoadedModel, load_model, run_halving_on_oom

DEFAULT_SAMPLES = 30   # seed 002 uses 100
_SAMPLED = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
HOW_TO_ADD = ("add dropout and train with it: 'arch_options: {dropout: 0.3}' for xhisto_cnn_s/"
              "xhisto_cnn_xs, 'head: {layers: [{dropout: 0.3}, linear]}' for a torchvision or "
              "timm network")


def dropout_layers(module: nn.Module) -> list[tuple[str, float]]:
    """``(dotted name, p)`` of every dropout module of ``module`` (any ``nn.Dropout*``)."""
    from torch.nn.modules.dropout import _DropoutNd

    return [(name, float(m.p)) for name, m in module.named_modules() if isinstance(m, _DropoutNd)]


def has_mc_dropout(model) -> bool:
    """Whether Monte-Carlo dropout applies: an ``nn.Module`` with at least one dropout layer."""
    module = getattr(model, "module", model)
    if getattr(model, "is_torchscript", False) or not isinstance(module, nn.Module):
        return False
    return any(isinstance(m, _SAMPLED) for m in module.modules())


def require_dropout(model: LoadedModel) -> list[tuple[str, float]]:
    """The model's sampled dropout layers, or a :class:`ModelError` saying why there are none."""
    if model.is_torchscript:
        raise ModelError(f"Monte-Carlo dropout needs the network's dropout layers; {model.name} "
                         "is a TorchScript file. Use its safetensors weights with a spec")
    layers = dropout_layers(model.module)
    sampled = [(n, p) for (n, p), m in zip(layers, _modules(model.module), strict=True)
               if isinstance(m, _SAMPLED)]
    if not sampled:
        other = f" (only {', '.join(n for n, _ in layers)}, which is not sampled)" if layers else ""
        raise ModelError(f"model {model.name} has no dropout layer{other}, so Monte-Carlo "
                         "dropout would give the same probabilities on every pass and no "
                         f"uncertainty; {HOW_TO_ADD}")
    return sampled


def _modules(module: nn.Module) -> list[nn.Module]:
    from torch.nn.modules.dropout import _DropoutNd

    return [m for m in module.modules() if isinstance(m, _DropoutNd)]


@contextlib.contextmanager
def sampling_dropout(module: nn.Module, generator: torch.Generator):
    """Within the block, every ``nn.Dropout``/``DropoutNd`` of ``module`` samples a mask from
    ``generator`` (inverted dropout: kept units scaled by 1 / (1 - p)), although the module
    stays in eval mode. Channel dropout (``Dropout1d/2d/3d``) drops whole channels."""

    def hook(m, _inputs, out):
        if m.p <= 0:
            return out
        if m.p >= 1:
            return torch.zeros_like(out)
        shape = out.shape if type(m) is nn.Dropout else (*out.shape[:2],) + (1,) * (out.ndim - 2)
        keep = torch.rand(shape, generator=generator, device=out.device) >= m.p
        return out * keep.to(out.dtype) / (1.0 - m.p)

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, _SAMPLED)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@dataclass
class MCResult:
    """Monte-Carlo dropout summary of ``n`` patches (arrays (n, n_classes) float32).

    ``std`` is the population standard deviation (ddof 0) over the ``n_samples`` passes;
    ``samples`` (n_samples, n, n_classes) is kept only when asked for.
    """

    mean: np.ndarray
    median: np.ndarray
    std: np.ndarray
    n_samples: int
    seed: int
    samples: np.ndarray | None = None

    @property
    def confidence(self) -> np.ndarray:
        """Largest mean class probability per patch."""
        return self.mean.max(axis=1)


def _temperature(model) -> float:
    t = float(getattr(model.spec, "temperature", None) or 1.0)
    if not t > 0:
        raise ModelError(f"model {model.name}: temperature must be positive, got {t}")
    return t


def _sample_batch(model: LoadedModel, images: np.ndarray, n_samples: int,
                  generator: torch.Generator, passes_per_forward: int = 1) -> np.ndarray:
    """Softmax outputs (n_samples, len(images), C) float32 of ``images``, preprocessed once.

    With ``passes_per_forward`` 1 each pass is one forward of the batch exactly as
    ``predict_proba`` runs it (same tensor, same batch size), so with dropout off every pass
    equals ``predict_proba`` bit for bit. More stack that many passes of a small batch into one
    forward (faster for small batches; the last bits may then differ with the batch size).
    """
    temp = _temperature(model)
    out = []
    with torch.inference_mode(), sampling_dropout(model.module, generator):
        x = model.preprocess(images)
        b, done = len(x), 0
        while done < n_samples:
            r = min(max(1, int(passes_per_forward)), n_samples - done)
            xr = x if r == 1 else x.repeat(r, 1, 1, 1)
            if model.amp and model.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.float16):
                    logits = model.module(xr)
            else:
                logits = model.module(xr)
            if isinstance(logits, tuple | list):
                logits = logits[0]
            logits = logits.float()
            if temp != 1.0:
                logits = logits / temp
            out.append(torch.softmax(logits, dim=1).cpu().numpy().reshape(r, b, -1))
            done += r
    return np.concatenate(out).astype(np.float32, copy=False)


def summarise(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, median, std) over axis 0 of ``samples``, computed in float64, as float32."""
    s = np.asarray(samples, np.float64)
    return (s.mean(0).astype(np.float32), np.median(s, 0).astype(np.float32),
            s.std(0).astype(np.float32))


def mc_predict_proba(model, images, *, n_samples: int = DEFAULT_SAMPLES, seed: int = 0,
                     batch_size: int | None = None, keep_samples: bool = False,
                     passes_per_forward: int = 1) -> MCResult:
    """Monte-Carlo dropout class probabilities of uint8 NHWC patches.

    Parameters
    ----------
    model : LoadedModel, spec, path or "demo"
        Must have dropout layers (refused with a clear message otherwise).
    images : ndarray (N, H, W, 3) uint8
    n_samples : int
        Stochastic passes per patch (seed 002: 100).
    seed : int
        Seed of the dropout masks; the same seed, patches and batch size give the same result.
    batch_size : int, optional
        Patches per batch (default the model's): each batch is preprocessed once and run
        ``n_samples`` times. Halved on GPU out-of-memory.
    keep_samples : bool
        Also return every pass's probabilities.
    passes_per_forward : int
        Passes stacked into one forward (1: each pass is the batch as ``predict_proba`` runs
        it, bit-identical with dropout off; more: faster on small batches).

    Returns
    -------
    MCResult
    """
    model = load_model(model)
    n_samples = check_samples(n_samples)
    require_dropout(model)
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    c = model.spec.num_classes
    if len(images) == 0:
        z = np.zeros((0, c), np.float32)
        return MCResult(z, z.copy(), z.copy(), n_samples, int(seed),
                        np.zeros((n_samples, 0, c), np.float32) if keep_samples else None)
    gen = torch.Generator(device=model.device)
    gen.manual_seed(int(seed))
    bs = int(batch_size or model.batch_size)

    def one(batch):  # (B, n_samples, C): batches concatenate along the patch axis
        return _sample_batch(model, batch, n_samples, gen,
                             passes_per_forward).transpose(1, 0, 2)

    samples, _ = run_halving_on_oom(one, images, bs)
    samples = samples.transpose(1, 0, 2)
    mean, median, std = summarise(samples)
    return MCResult(mean, median, std, n_samples, int(seed),
                    samples if keep_samples else None)


def check_samples(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 2:
        raise ModelError(f"Monte-Carlo dropout needs at least 2 passes (30 is usual, seed 002 "
                         f"uses 100), got {n!r}")
    return int(n)


def std_path(out, std_out=None):
    """Where ``xhisto predict --mc-dropout`` writes the std map: ``std_out``, else ``out`` with
    ``-std`` before its suffix (``map.ome.tif`` -> ``map-std.ome.tif``).

    A derived name that already holds a file other than an earlier std map is refused (the
    user's file is never overwritten silently); the two outputs must differ.
    """
    from pathlib import Path

    out = Path(out)
    if std_out is None:
        name = out.name
        for suf in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
            if name.lower().endswith(suf):
                stem, ext = name[:-len(suf)], name[-len(suf):]
                break
        else:
            stem, ext = name, ".ome.tif"
        path = out.with_name(f"{stem}-std{ext}")
        if path.exists() and not _is_std_map(path):
            raise ModelError(f"{path} exists and is not a std map written by xhisto predict; "
                             "give --std-out FILE for the standard deviation map")
    else:
        path = Path(std_out)
    if path.resolve() == out.resolve():
        raise ModelError(f"--std-out and --out both name {out}; give two different files")
    return path


def _is_std_map(path) -> bool:
    try:
        from ..export.heatmap_io import read_heatmap

        return read_heatmap(path).provenance.get("kind") == "probability-std"
    except Exception:
        return False


# ---- slide regions -----------------------------------------------------------------------------
@dataclass
class UncertaintyMap:
    """Monte-Carlo dropout over a region: the mean as a ProbabilityMap, median and std beside it.

    Attributes
    ----------
    mean : ProbabilityMap
        Mean class probabilities, placed, masked and damage-marked as ``predict_region`` does;
        its provenance has ``mc_dropout`` (passes, seed, dropout layers).
    median, std : ndarray (H', W', n_classes) float32
        0 where no patch ran, NaN on damaged cells (as ``mean.probs``).
    """

    mean: object
    median: np.ndarray
    std: np.ndarray
    n_samples: int
    seed: int
    provenance: dict = field(default_factory=dict)

    def _index(self, name) -> int:
        names = self.mean.class_names
        name = name or self.mean.positive_class or names[-1]
        if name not in names:
            raise ModelError(f"class {name!r} is not one of {names}")
        return names.index(name)

    def std_map(self, name: str | None = None) -> np.ndarray:
        """(H', W') float32 standard deviation of p(``name``) (default: the positive class)."""
        return np.ascontiguousarray(self.std[..., self._index(name)])

    def median_map(self, name: str | None = None) -> np.ndarray:
        return np.ascontiguousarray(self.median[..., self._index(name)])


class _MCModel(LoadedModel):
    """A LoadedModel whose ``predict_proba`` returns the MC mean and keeps median and std."""

    parallel_batches = False  # one generator and the kept results follow the batch order

    def __init__(self, base: LoadedModel, n_samples: int, seed: int, layers):
        super().__init__(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)})
        self.n_samples, self.seed, self.layers = n_samples, seed, layers
        self.generator = torch.Generator(device=base.device)
        self.generator.manual_seed(int(seed))
        self.medians: list[np.ndarray] = []
        self.stds: list[np.ndarray] = []

    def predict_proba(self, images, *, batch_size: int | None = None) -> np.ndarray:
        images = np.asarray(images)
        bs = int(batch_size or self.batch_size)

        def one(batch):
            s = _sample_batch(self, batch, self.n_samples, self.generator)
            return np.stack(summarise(s), axis=1)  # (B, 3, C)

        out, _ = run_halving_on_oom(one, images, bs)
        self.medians.append(out[:, 1])
        self.stds.append(out[:, 2])
        return out[:, 0]

    def provenance(self) -> dict:
        return {**super().provenance(),
                "mc_dropout": {"n_samples": self.n_samples, "seed": self.seed,
                               "dropout_layers": [[n, p] for n, p in self.layers],
                               "temperature": _temperature(self)}}


def mc_predict_region(slide, region, model, *, n_samples: int = DEFAULT_SAMPLES, seed: int = 0,
                      batch_size: int = 64, stride: float | None = None,
                      tissue_threshold: float = 0.1, workers: int | None = None,
                      prefetch: int | None = None):
    """Monte-Carlo dropout over ``region``: a generator of (done, total) patches returning an
    :class:`UncertaintyMap`.

    Patches are planned, read (once each, prefetched) and damage-checked exactly as in
    :func:`~.inference.predict_region`, whose arguments these are; each batch then runs
    ``n_samples`` stochastic passes. A model without dropout is refused before anything is read.
    """
    from .inference import predict_region

    model = load_model(model)
    n_samples = check_samples(n_samples)
    layers = require_dropout(model)
    mc = _MCModel(model, n_samples, seed, layers)
    pmap = yield from predict_region(slide, region, mc, batch_size=batch_size, stride=stride,
                                     tissue_threshold=tissue_threshold, workers=workers,
                                     prefetch=prefetch)
    model.batch_size = mc.batch_size
    shape = pmap.probs.shape
    median, std = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    if mc.stds:  # predict_region runs the tissue cells in row-major order, batch by batch
        median[pmap.tissue_mask] = np.concatenate(mc.medians)
        std[pmap.tissue_mask] = np.concatenate(mc.stds)
    if pmap.damaged_mask is not None:
        median[pmap.damaged_mask] = np.nan
        std[pmap.damaged_mask] = np.nan
    return UncertaintyMap(mean=pmap, median=median, std=std, n_samples=n_samples, seed=int(seed),
                          provenance=pmap.provenance)
