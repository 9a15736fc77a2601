"""Train small patch classifiers on synthetic tissue or a folder of labelled patches.

The options are the ones the bias experiments of Hägele et al. (seed 000) need: the tumour
fraction of every mini-batch, translation augmentation on/off, labels from the centre cell only,
excluded tissue types, and a class-correlated corner square. ``train_model`` is a generator of
``(step, total_steps)`` that returns a :class:`TrainResult`; it is deterministic for a seed on a
given machine and thread count.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError
from .architectures import build_architecture
from .spec import ModelSpec

HELD_OUT_SEED_OFFSET = 10_000  # held-out synthetic tissue comes from seed + this


@dataclass
class CornerSquare:
    """A single-colour square pasted into every patch of one class (class-correlated bias)."""

    cls: str = "tumour"
    size: int = 5
    color: tuple[int, int, int] = (0, 255, 0)
    position: tuple[int, int] = (0, 0)  # top-left corner (row, col) in patch pixels

    def apply(self, images: np.ndarray) -> np.ndarray:
        r, c = self.position
        images[:, r:r + self.size, c:c + self.size] = np.asarray(self.color, np.uint8)
        return images


@dataclass
class TrainConfig:
    """Recipe of one training run (stored in the model spec's ``training`` field)."""

    source: str = "synthetic"            # "synthetic" or a folder with one sub-folder per class
    architecture: str = "xhisto_cnn_s"
    n_train: int = 4000                  # synthetic patches for training
    n_val: int = 800                     # held-out synthetic patches (other tissue seeds)
    patch_size: int = 64
    mpp: float = 1.0
    seed: int = 0
    epochs: int = 6
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    tumour_ratio: float | None = None    # tumour fraction of every mini-batch (None: as sampled)
    translate: bool = True               # random patch positions + random-shift augmentation
    label: str = "tumour-fraction"       # or "centre-cell"
    exclude: tuple[str, ...] = ()        # tissue types (synthetic) or class folders left out
    corner_square: CornerSquare | None = None
    flips: bool = True                   # flips and 90° rotations
    positive_class: str | None = None    # folder data: which class is "tumour"
    threads: int = 2
    dropout: float = 0.0                 # before the classifier (Monte-Carlo dropout)
    conv_dropout: float = 0.0            # after every conv stage (xhisto_cnn_* only)

    def arch_options(self) -> dict:
        """The spec's ``arch_options``: the dropout options that are set (none by default)."""
        return {k: float(v) for k, v in (("dropout", self.dropout),
                                         ("conv_dropout", self.conv_dropout)) if v}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["exclude"] = list(self.exclude)
        return d


@dataclass
class PatchData:
    images: np.ndarray     # (N, s, s, 3) uint8
    labels: np.ndarray     # (N,) int64 class index
    class_names: list[str]
    positive_class: str
    meta: dict | None = None   # per-patch facts from synth (centre tissue, anchor ...)


@dataclass
class TrainResult:
    module: torch.nn.Module
    spec: ModelSpec
    metrics: dict
    history: list[dict] = field(default_factory=list)


# ---- data ------------------------------------------------------------------------------------
def synthetic_patches(n: int, cfg: TrainConfig, *, seed: int, biased: bool = True) -> PatchData:
    """Patches from ``napari_xhisto.synth.sample_patches`` (tumour = 1, non-tumour = 0)."""
    from ..synth import sample_patches

    ps = sample_patches(n, patch_size=cfg.patch_size, mpp=cfg.mpp, seed=seed,
                        label=cfg.label if biased else "tumour-fraction",
                        translate=cfg.translate if biased else True,
                        exclude=tuple(cfg.exclude) if biased else ())
    return PatchData(np.asarray(ps.images, np.uint8), np.asarray(ps.labels, np.int64),
                     ["non-tumour", "tumour"], "tumour", meta=dict(ps.meta))


def folder_patches(folder, cfg: TrainConfig) -> PatchData:
    """Images of ``folder/<class>/*.png`` (resized to ``patch_size`` where they differ)."""
    from skimage.io import imread
    from skimage.transform import resize

    folder = Path(folder)
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in cfg.exclude)
    if len(classes) < 2:
        raise ModelError(f"{folder} needs at least two class sub-folders of PNG patches, found "
                         f"{classes}")
    images, labels = [], []
    for k, cls in enumerate(classes):
        files = sorted((folder / cls).glob("*.png")) + sorted((folder / cls).glob("*.jpg"))
        for f in files:
            im = imread(f)[..., :3]
            if im.shape[:2] != (cfg.patch_size, cfg.patch_size):
                im = (resize(im, (cfg.patch_size, cfg.patch_size), anti_aliasing=True,
                             preserve_range=True)).astype(np.uint8)
            images.append(im)
            labels.append(k)
    if not images:
        raise ModelError(f"no PNG/JPEG patches found under {folder}/<class>/")
    from .spec import _guess_positive

    positive = cfg.positive_class or _guess_positive(classes)
    if positive not in classes:
        raise ModelError(f"positive class {positive!r} is not one of the folders {classes}")
    return PatchData(np.stack(images), np.asarray(labels, np.int64), classes, positive)


def _split(data: PatchData, frac: float, seed: int) -> tuple[PatchData, PatchData]:
    rng = np.random.default_rng(seed)
    val = np.zeros(len(data.labels), bool)
    for k in np.unique(data.labels):
        idx = rng.permutation(np.flatnonzero(data.labels == k))
        val[idx[:max(1, int(round(frac * len(idx))))]] = True

    def subset(m):
        return PatchData(data.images[m], data.labels[m], data.class_names, data.positive_class)

    return subset(~val), subset(val)


# ---- sampling and augmentation -------------------------------------------------------------
def batch_indices(labels: np.ndarray, positive: int, *, batch_size: int, n_batches: int,
                  tumour_ratio: float | None, rng: np.random.Generator) -> list[np.ndarray]:
    """Indices of each mini-batch; with ``tumour_ratio`` each batch holds
    ``round(tumour_ratio * batch_size)`` positive patches (drawn without replacement per pass)."""
    if tumour_ratio is None:
        order = np.concatenate([rng.permutation(len(labels))
                                for _ in range(-(-n_batches * batch_size // len(labels)))])
        return [order[i * batch_size:(i + 1) * batch_size] for i in range(n_batches)]
    if not 0.0 < tumour_ratio < 1.0:
        raise ModelError(f"tumour_ratio must lie strictly between 0 and 1, got {tumour_ratio}")
    pos, neg = np.flatnonzero(labels == positive), np.flatnonzero(labels != positive)
    if len(pos) == 0 or len(neg) == 0:
        raise ModelError("tumour_ratio needs both tumour and non-tumour patches in the data")
    n_pos = int(round(tumour_ratio * batch_size))

    def stream(pool):
        while True:
            yield from rng.permutation(pool)

    sp, sn = stream(pos), stream(neg)
    out = []
    for _ in range(n_batches):
        b = np.array([next(sp) for _ in range(n_pos)] + [next(sn) for _ in range(batch_size - n_pos)])
        out.append(rng.permutation(b))
    return out


def augment(images: np.ndarray, rng: np.random.Generator, *, flips: bool,
            shift: int) -> np.ndarray:
    """Random flips/90° rotations and random shifts (reflect padding) of uint8 NHWC patches."""
    out = images.copy()
    n, s = len(out), out.shape[1]
    if shift > 0:
        pad = np.pad(out, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="reflect")
        dr, dc = rng.integers(0, 2 * shift + 1, size=(2, n))
        out = np.stack([pad[i, dr[i]:dr[i] + s, dc[i]:dc[i] + s] for i in range(n)])
    if flips:
        k, f = rng.integers(0, 4, n), rng.integers(0, 2, n).astype(bool)
        out = np.stack([np.rot90(im[:, ::-1] if fl else im, kk) for im, kk, fl in zip(out, k, f)])
    return np.ascontiguousarray(out)


def to_tensor(images: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


# ---- metrics -------------------------------------------------------------------------------
def patch_metrics(probs: np.ndarray, labels: np.ndarray, positive: int) -> dict:
    """F1/precision/recall of the positive class, accuracy and ROC AUC (sklearn)."""
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y = (labels == positive).astype(int)
    pred = (probs.argmax(1) == positive).astype(int)
    out = {"n": int(len(y)), "n_positive": int(y.sum()),
           "f1": float(f1_score(y, pred, zero_division=0)),
           "precision": float(precision_score(y, pred, zero_division=0)),
           "recall": float(recall_score(y, pred, zero_division=0)),
           "accuracy": float(accuracy_score(y, pred))}
    out["auc"] = float(roc_auc_score(y, probs[:, positive])) if 0 < y.sum() < len(y) else None
    return out


def predict_module(module, images: np.ndarray, mean, std, *, batch_size: int = 256) -> np.ndarray:
    module.eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            outs.append(torch.softmax(module(to_tensor(images[i:i + batch_size], mean, std)), 1))
    return torch.cat(outs).numpy()


# ---- training ------------------------------------------------------------------------------
def train_model(cfg: TrainConfig, *, out=None, train_data: PatchData | None = None,
                val_data: PatchData | None = None):
    """Train a classifier per ``cfg``; a generator of (step, total) returning TrainResult.

    Parameters
    ----------
    cfg : TrainConfig
    out : path, optional
        Spec JSON to write (weights go beside it as ``.safetensors``).
    train_data, val_data : PatchData, optional
        Use these instead of sampling synthetic tissue / reading ``cfg.source``.
    """
    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cfg.threads))
    try:
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        held_out_desc = "patches given by the caller"
        if train_data is None:
            if cfg.source == "synthetic":
                held_out_desc = (f"synthetic tissue seed {cfg.seed + HELD_OUT_SEED_OFFSET}, "
                                 "label tumour-fraction, translate, nothing excluded, no square")
                train_data = synthetic_patches(cfg.n_train, cfg, seed=cfg.seed)
                val_data = val_data or synthetic_patches(
                    cfg.n_val, cfg, seed=cfg.seed + HELD_OUT_SEED_OFFSET, biased=False)
            else:
                held_out_desc = "20% of each class folder, split by seed"
                train_data, split_val = _split(folder_patches(cfg.source, cfg), 0.2, cfg.seed)
                val_data = val_data or split_val
        positive = train_data.class_names.index(train_data.positive_class)
        if cfg.corner_square and cfg.corner_square.cls not in train_data.class_names:
            raise ModelError(f"corner square class {cfg.corner_square.cls!r} is not one of "
                             f"{train_data.class_names}")
        spec = ModelSpec(architecture=cfg.architecture, class_names=train_data.class_names,
                         positive_class=train_data.positive_class, patch_size=cfg.patch_size,
                         mpp=cfg.mpp, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                         arch_options=cfg.arch_options())
        module = build_architecture(cfg.architecture, spec.num_classes,
                                    options=spec.arch_options or None)
        opt = torch.optim.Adam(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        per_epoch = max(1, len(train_data.labels) // cfg.batch_size)
        total = per_epoch * cfg.epochs
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total)
        shift = cfg.patch_size // 8 if cfg.translate else 0
        square_cls = (train_data.class_names.index(cfg.corner_square.cls)
                      if cfg.corner_square else None)
        history, step = [], 0
        yield 0, total
        for epoch in range(cfg.epochs):
            module.train()
            losses = []
            for idx in batch_indices(train_data.labels, positive, batch_size=cfg.batch_size,
                                     n_batches=per_epoch, tumour_ratio=cfg.tumour_ratio, rng=rng):
                imgs = augment(train_data.images[idx], rng, flips=cfg.flips, shift=shift)
                y = train_data.labels[idx]
                if square_cls is not None:
                    sel = y == square_cls
                    imgs[sel] = cfg.corner_square.apply(imgs[sel])
                loss = torch.nn.functional.cross_entropy(
                    module(to_tensor(imgs, spec.mean, spec.std)), torch.from_numpy(y))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.item())
                step += 1
                yield step, total
            entry = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
            if val_data is not None:
                p = predict_module(module, val_data.images, spec.mean, spec.std)
                entry.update({f"val_{k}": v for k, v in
                              patch_metrics(p, val_data.labels, positive).items()
                              if k in ("f1", "accuracy", "auc")})
            history.append(entry)
        module.eval()
        metrics = {}
        if val_data is not None:
            p = predict_module(module, val_data.images, spec.mean, spec.std)
            metrics["held_out"] = patch_metrics(p, val_data.labels, positive)
            if square_cls is not None:  # the same patches with the shortcut pasted in
                sq = val_data.images.copy()
                sel = val_data.labels == square_cls
                sq[sel] = cfg.corner_square.apply(sq[sel])
                p = predict_module(module, sq, spec.mean, spec.std)
                metrics["held_out_with_square"] = patch_metrics(p, val_data.labels, positive)
        spec.training = {
            "config": cfg.to_dict(), "metrics": metrics, "history": history,
            "held_out": held_out_desc,
            "parameters": int(sum(p.numel() for p in module.parameters())),
            "seconds": round(time.perf_counter() - t0, 1), "torch": torch.__version__,
            "threads": cfg.threads,
        }
        if out is not None:
            from .loading import save_model

            save_model(module, spec, out)
        return TrainResult(module=module, spec=spec, metrics=metrics, history=history)
    finally:
        torch.set_num_threads(old_threads)
