"""Safe loading of model weights, device choice, and batched prediction that survives OOM.

Weights come from safetensors, or from ``torch.load(..., weights_only=True)`` for state dicts,
or from TorchScript archives. Nothing here unpickles arbitrary objects: a pickle that would run
code is refused before it runs anything.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from .architectures import build_architecture, check_options
from .spec import ModelSpec
from .weights import (  # noqa: F401 - re-exported
    fit_state_dict,
    is_torchscript_file,
    load_weights_strict,
    read_state_dict,
)

log = logging.getLogger(__name__)


def choose_device(device=None) -> torch.device:
    """``device`` if given, else ``$XHISTO_DEVICE``, else CUDA when present, else CPU."""
    device = device or os.environ.get("XHISTO_DEVICE") or None
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} asked for, but CUDA is not available here; use 'cpu'")
    return dev


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def run_halving_on_oom(fn: Callable[[np.ndarray], np.ndarray], items: np.ndarray,
                       batch_size: int, *, on_halve: Callable[[int], None] | None = None
                       ) -> tuple[np.ndarray, int]:
    """``fn`` over ``items`` in batches; an out-of-memory error halves the batch and goes on.

    Returns
    -------
    (concatenated outputs, the batch size that worked)
    """
    outs, i, bs = [], 0, max(1, int(batch_size))
    while i < len(items):
        try:
            outs.append(fn(items[i:i + bs]))
            i += bs
        except Exception as exc:
            if not is_oom(exc):
                raise
            if bs == 1:
                raise ModelError("out of GPU memory even with a batch of one patch; use "
                                 "--device cpu or a smaller model") from None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            bs = max(1, bs // 2)
            if on_halve:
                on_halve(bs)
    return (np.concatenate(outs) if outs else np.zeros((0,))), bs


@dataclass
class LoadedModel:
    """A model ready for inference: module in eval mode on its device plus its spec."""

    module: nn.Module
    spec: ModelSpec
    device: torch.device
    is_torchscript: bool = False
    amp: bool = False
    batch_size: int = 64
    notes: list = field(default_factory=list)
    # batches may run on several threads at once (``inference.run_batches``); False for
    # wrappers whose forward keeps state in call order (MC dropout's seeded masks)
    parallel_batches: ClassVar[bool] = True

    def preprocess(self, images) -> torch.Tensor:
        """uint8 NHWC RGB (numpy or tensor) -> normalised float NCHW on the model's device."""
        x = torch.as_tensor(np.ascontiguousarray(images))
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ModelError(f"images must be (N, H, W, 3) RGB, got shape {tuple(x.shape)}")
        x = x.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        size = self.spec.network_input_size
        if x.shape[-2:] != (size, size):
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                                align_corners=False, antialias=True)
        mean = torch.tensor(self.spec.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.spec.std, device=self.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def _forward_logits_t(self, images: np.ndarray) -> torch.Tensor:
        """Raw network outputs (N, n_classes) float32, before temperature and softmax."""
        with torch.inference_mode():
            x = self.preprocess(images)
            if self.amp and self.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.float16):
                    logits = self.module(x)
            else:
                logits = self.module(x)
            if isinstance(logits, tuple | list):  # inception-style (logits, aux)
                logits = logits[0]
            return logits.float()

    def _forward_proba(self, images: np.ndarray) -> np.ndarray:
        # the one place logits become probabilities: the spec's temperature applies here
        logits = self._forward_logits_t(images)
        temperature = float(getattr(self.spec, "temperature", 1.0) or 1.0)
        if temperature != 1.0:
            logits = logits / temperature
        return torch.softmax(logits, dim=1).cpu().numpy()

    def predict_logits(self, images, *, batch_size: int | None = None) -> np.ndarray:
        """Raw logits (N, n_classes) float32 for uint8 NHWC patches (no temperature applied).

        Used to fit a temperature (``xhisto calibrate``); batches halve on out-of-memory.
        """
        return self._batched(lambda b: self._forward_logits_t(b).cpu().numpy(), images,
                             batch_size)

    def predict_proba(self, images, *, batch_size: int | None = None) -> np.ndarray:
        """Class probabilities (N, n_classes) float32 for uint8 NHWC patches.

        A CUDA out-of-memory error halves the batch and goes on; the size that worked is kept.
        """
        return self._batched(self._forward_proba, images, batch_size)

    def _batched(self, forward, images, batch_size: int | None) -> np.ndarray:
        """``forward`` over ``images`` (uint8 NHWC, or one HWC patch) in batches, as float32
        (N, n_classes); a CUDA out-of-memory error halves the batch and the size that worked
        is kept."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if len(images) == 0:
            return np.zeros((0, self.spec.num_classes), np.float32)

        def keep(bs):
            self.batch_size = bs

        out, _ = run_halving_on_oom(forward, images, batch_size or self.batch_size,
                                    on_halve=keep)
        return out.astype(np.float32, copy=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def require_module(self, what: str = "this method") -> nn.Module:
        """The ``nn.Module``, or a ModelError saying that ``what`` needs module hooks."""
        if self.is_torchscript:
            raise ModelError(f"{what} needs module hooks or gradients through named layers; "
                             f"{self.spec.name} is a TorchScript file. Use a safetensors model, "
                             "or a gradient-free method (occlusion, LIME)")
        return self.module

    def provenance(self) -> dict:
        return {"model": self.spec.name, "architecture": self.spec.architecture,
                "spec": self.spec.source, "weights": str(self.spec.weights_path() or ""),
                "class_names": list(self.spec.class_names),
                "positive_class": self.spec.positive_class, "patch_size": self.spec.patch_size,
                "mpp": self.spec.mpp, "device": str(self.device),
                "temperature": float(getattr(self.spec, "temperature", 1.0)),
                **({"arch_options": dict(self.spec.arch_options)} if self.spec.arch_options
                   else {}),
                **({"head": self.spec.head} if self.spec.head else {}),
                **({"notes": list(self.notes)} if self.notes else {})}


def load_model(model, *, device=None, amp: bool | None = None,
               batch_size: int = 64) -> LoadedModel:
    """Load ``"demo"``, a :class:`ModelSpec`, a spec path or a weights path.

    Parameters
    ----------
    model : str, Path, ModelSpec or LoadedModel
        ``"demo"`` is the bundled classifier.
    device : str or torch.device, optional
        Default: CUDA when present, else CPU (``$XHISTO_DEVICE`` overrides).
    amp : bool, optional
        Mixed precision for inference; default on for CUDA, off for CPU.
    batch_size : int
        Starting batch size (halved on out-of-memory).
    """
    from .._runtime import tune_malloc

    tune_malloc()
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, str) and model == "demo":
        from .demo import DEMO_SPEC_PATH

        model = DEMO_SPEC_PATH
    spec = model if isinstance(model, ModelSpec) else ModelSpec.from_file(model)
    where = Path(spec.source).name if spec.source else spec.name
    dev = choose_device(device)
    wpath = spec.weights_path()
    if wpath is None:
        if spec.description.startswith("WSInfer"):
            raise ModelError(f"{where}: no single weights file beside it (model.safetensors, "
                             "torchscript_model.pt); give the weights file itself as the model")
        raise ModelError(f"model spec {where} names no weights file (add 'weights: FILE')")
    if not wpath.exists():
        raise ModelError(f"weights file {wpath} named by {where} does not exist")
    notes = list(spec.notes)
    scripted = spec.architecture == "torchscript" or is_torchscript_file(wpath)
    if scripted:
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated upstream, still supported
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(wpath), map_location=dev)
        except Exception as exc:
            msg = " ".join(str(exc).split())[:200]
            raise ModelError(f"{wpath.name} is not a loadable TorchScript file: {msg}") from None
    else:
        try:  # an unknown name or a missing option is reported before the weights are read
            check_options(spec.architecture, spec.arch_options or {}, where)
            module = build_module(spec, read_state_dict(wpath), notes)
        except ModelError as exc:
            msg = str(exc)
            if msg.startswith("weights do not fit"):
                raise ModelError(f"{wpath.name}: {msg}") from None
            if not msg.startswith((f"{where}:", f"{wpath.name}", "weights ", "refused ")):
                raise ModelError(f"{where}: {msg}") from None
            raise
        module = module.to(dev)
    module.eval()
    for note in notes:
        log.warning("model %s: %s", spec.name, note)
    return LoadedModel(module=module, spec=spec, device=dev, is_torchscript=scripted,
                       amp=(dev.type == "cuda") if amp is None else bool(amp),
                       batch_size=batch_size, notes=notes)


_AUX = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}


def build_module(spec: ModelSpec, state: dict, notes: list) -> nn.Module:
    """The spec's network with ``state`` loaded (prefixes stripped, auxiliary heads matched).

    ``notes`` receives one line per adjustment made to the file's keys.
    """
    where = Path(spec.source).name if spec.source else spec.name
    options = dict(spec.arch_options or {})
    source, name = check_options(spec.architecture, options, where)
    if source == "torchvision" and name in _AUX:
        prefixes = _AUX[name]
        has_aux = any(k.split(".", 1)[-1].startswith(prefixes) or k.startswith(prefixes)
                      for k in state)
        if has_aux and "aux_logits" not in options:
            options["aux_logits"] = True  # unused in eval mode, but its weights are in the file
            notes.append("built with aux_logits=True: the file holds the auxiliary classifiers "
                         "(they do not change the output)")
    module = build_architecture(spec.architecture, spec.num_classes, options=options,
                                head=spec.head)
    state, fixed = fit_state_dict(state, module.state_dict().keys())
    notes.extend(fixed)
    load_weights_strict(module, state, architecture=spec.architecture)
    return module


def save_model(module: nn.Module, spec: ModelSpec, spec_path) -> Path:
    """Write ``module``'s weights as safetensors beside ``spec_path`` and the spec JSON."""
    from safetensors.torch import save_file

    spec_path = Path(spec_path)
    wpath = spec_path.with_suffix(".safetensors")
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(wpath))
    spec.weights = wpath.name
    spec.save(spec_path)
    spec.source = str(spec_path.resolve())
    return spec_path
