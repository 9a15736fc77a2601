"""Train the slide-level CNN on compressed slides with slide labels only (seed 004, section 3.2).

Training follows the paper: random R x R crops of the code grids centred on tissue (a grid no
larger than R is placed at a random offset in an R x R canvas instead), each in one of the 8
flips/rotations, binary cross-entropy, Adam with L2 weight decay. A stratified part of the
slides is held out for validation and the weights with the best validation loss are kept.
Everything is a deterministic function of the seed.

``iter_train_slide_model`` is a generator (yields ``(done, total)`` per epoch, returns the model
and its history), so the CLI, a widget or a study can drive it.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import XhistoError
from .slide_model import SlideCNN, SlideModelSpec, dihedral, encoder_info, grid_arrays


@dataclass
class SlideTrainConfig:
    """Training settings (all recorded in the model's spec)."""

    epochs: int = 30
    batch_size: int = 16
    crop: int = 16            # R, in code cells
    lr: float = 1e-2          # the paper's starting rate; cosine decay to 1% of it
    weight_decay: float = 1e-5
    width: int = 64
    strides: tuple = (1, 2, 1, 2)
    hidden: int = 64
    dropout: float = 0.2
    val_fraction: float = 0.2
    seed: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["strides"] = [int(s) for s in self.strides]
        return d


@dataclass
class CodeSet:
    """Compressed slides matched with their labels."""

    keys: list
    grids: list
    labels: np.ndarray
    paths: list = field(default_factory=list)


def load_code_set(codes_dir, labels_csv, *, column: str = "label") -> CodeSet:
    """Every ``*.nic.zarr`` under ``codes_dir`` with its label from ``labels_csv`` (codes read
    into memory).

    Raises :class:`XhistoError` with one line when a code file has no label, a labelled slide has
    no code file, the code sizes differ, or the codes come from different encoders.
    """
    from ..synth.cohort import read_labels, slide_key
    from .codes import read_codes

    codes_dir = Path(codes_dir)
    if not codes_dir.is_dir():
        raise XhistoError(f"codes folder not found: {codes_dir}")
    labels = read_labels(labels_csv, column=column)
    paths = sorted(codes_dir.glob("*.nic.zarr"))
    if not paths:
        raise XhistoError(f"no *.nic.zarr in {codes_dir}: compress the slides first "
                          "(xhisto compress, or xhisto batch --task compress)")
    by_key = {slide_key(p.name): p for p in paths}
    unlabelled = sorted(set(by_key) - set(labels))
    if unlabelled:
        raise XhistoError(f"{Path(labels_csv).name} has no label for {len(unlabelled)} "
                          f"compressed slide(s), e.g. {unlabelled[0]}: add them or move their "
                          "codes out of the folder")
    missing = sorted(set(labels) - set(by_key))
    if missing:
        raise XhistoError(f"{len(missing)} slide(s) of {Path(labels_csv).name} have no codes in "
                          f"{codes_dir}, e.g. {missing[0]}: compress them or drop them from the "
                          "labels file")
    keys = sorted(by_key)
    grids = [_in_memory(read_codes(by_key[k])) for k in keys]
    check_compatible(grids, keys)
    y = np.array([labels[k] for k in keys], np.int64)
    if len(np.unique(y)) < 2:
        raise XhistoError(f"every slide has label {int(y[0])}: training needs both labels")
    return CodeSet(keys, grids, y, [by_key[k] for k in keys])


def _in_memory(grid):
    """The grid with its codes read into memory (training reads every grid many times; a
    slide's grid is small: 16 x 16 x 128 float32 is 128 kB)."""
    grid.codes = np.asarray(grid.codes, dtype=np.float32)
    return grid


def check_compatible(grids, keys) -> None:
    """One code size and one encoder across a training set (clear error naming two slides)."""
    c0 = int(grids[0].codes.shape[2])
    for g, k in zip(grids, keys):
        c = int(g.codes.shape[2])
        if c != c0:
            raise XhistoError(f"codes differ in size: {keys[0]} has C = {c0}, {k} has C = {c}; "
                              "compress every slide with the same encoder")
    e0 = encoder_info(grids[0].provenance).get("sha256")
    for g, k in zip(grids, keys):
        e = encoder_info(g.provenance).get("sha256")
        if e0 and e and e != e0:
            raise XhistoError(f"{keys[0]} and {k} were compressed by different encoders "
                              f"({e0[:12]} vs {e[:12]}); compress every slide with one encoder")


def split_validation(labels: np.ndarray, fraction: float, seed: int):
    """Stratified train/validation indices; no validation when a class has fewer than 4 slides."""
    rng = np.random.default_rng([int(seed), 17])
    train, val = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        k = int(round(len(idx) * fraction)) if len(idx) >= 4 else 0
        val.extend(idx[:k])
        train.extend(idx[k:])
    return np.array(sorted(train)), np.array(sorted(val), dtype=np.int64)


def code_statistics(arrays) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of tissue cells over ``[(codes (C,h,w), tissue (h,w)), ...]``."""
    cells = np.concatenate([c[:, t].T for c, t in arrays if t.any()], axis=0)
    if not len(cells):
        raise XhistoError("no tissue cell in the training codes: check the tissue masks")
    mean = cells.mean(axis=0)
    std = cells.std(axis=0)
    return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


def _standardised(arrays, mean, std):
    out = []
    for c, t in arrays:
        z = (c - mean[:, None, None]) / std[:, None, None]
        out.append((np.where(t[None], z, 0).astype(np.float32), t))
    return out


def random_crop(z: np.ndarray, tissue: np.ndarray, size: int, rng) -> np.ndarray:
    """An ``(C, size, size)`` crop: centred on a random tissue cell along axes longer than
    ``size``, the whole axis at a random offset (zero padded) along the others."""
    c, h, w = z.shape
    out = np.zeros((c, size, size), np.float32)
    on = np.argwhere(tissue)
    centre = on[rng.integers(len(on))] if len(on) else (h // 2, w // 2)
    src, dst = [], []
    for n, ctr in ((h, centre[0]), (w, centre[1])):
        if n <= size:
            off = int(rng.integers(0, size - n + 1))
            src.append(slice(0, n))
            dst.append(slice(off, off + n))
        else:
            start = int(np.clip(ctr - size // 2, 0, n - size))
            src.append(slice(start, start + size))
            dst.append(slice(0, size))
    out[:, dst[0], dst[1]] = z[:, src[0], src[1]]
    return out


@torch.no_grad()
def _evaluate(model: SlideCNN, data, labels, *, augment: bool) -> dict:
    model.eval()
    probs = []
    for z, _t in data:
        x = torch.from_numpy(z)[None]
        ks = range(8) if augment else (0,)
        probs.append(float(torch.stack([torch.sigmoid(model(dihedral(x, k)))[0, 0]
                                        for k in ks]).mean()))
    return slide_metrics(np.array(probs), labels)


def slide_metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy at 0.5, ROC AUC (NaN with one class) and log loss of slide probabilities."""
    probs, labels = np.asarray(probs, float), np.asarray(labels, int)
    p = np.clip(probs, 1e-6, 1 - 1e-6)
    loss = float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))
    auc = roc_auc(probs, labels)
    return {"accuracy": float(np.mean((probs >= 0.5) == labels)), "auc": auc, "loss": loss,
            "n": int(len(labels)), "probs": probs.tolist()}


def roc_auc(scores, labels) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count one half); NaN with one class."""
    from scipy.stats import rankdata

    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    n1, n0 = int(labels.sum()), int((1 - labels).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def iter_train_slide_model(grids, labels, config: SlideTrainConfig | None = None, *,
                           label_names=("absent", "present"), extra: dict | None = None):
    """Train a :class:`SlideCNN` on code grids with slide labels (0/1).

    Yields ``(epoch, epochs)``; returns ``(model, history)`` where ``history`` has per-epoch
    training loss and validation figures, and the chosen epoch.
    """
    cfg = config or SlideTrainConfig()
    labels = np.asarray(labels, np.int64)
    if len(grids) != len(labels):
        raise XhistoError(f"{len(grids)} code grids but {len(labels)} labels")
    if len(np.unique(labels)) < 2:
        raise XhistoError("training needs slides of both labels")
    keys = [f"slide {i}" for i in range(len(grids))]
    check_compatible(grids, keys)
    torch.manual_seed(int(cfg.seed))
    rng = np.random.default_rng([int(cfg.seed), 23])
    arrays = [grid_arrays(g) for g in grids]
    train_idx, val_idx = split_validation(labels, cfg.val_fraction, cfg.seed)
    mean, std = code_statistics([arrays[i] for i in train_idx])
    data = _standardised(arrays, mean, std)
    enc = encoder_info(grids[0].provenance)
    enc.update({"patch": int(grids[0].patch), "stride": int(grids[0].stride),
                "mpp": float(grids[0].mpp)})
    spec = SlideModelSpec(code_size=int(arrays[0][0].shape[0]), width=int(cfg.width),
                          strides=[int(s) for s in cfg.strides], hidden=int(cfg.hidden),
                          dropout=float(cfg.dropout), label_names=[str(n) for n in label_names],
                          encoder=enc)
    model = SlideCNN(spec)
    model.code_mean.copy_(torch.from_numpy(mean))
    model.code_std.copy_(torch.from_numpy(std))
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg.lr), weight_decay=float(cfg.weight_decay))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(int(cfg.epochs), 1),
                                                       eta_min=float(cfg.lr) * 0.01)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    history = {"train_loss": [], "val": []}
    best = (np.inf, -1, None)
    bs = max(2, int(cfg.batch_size))  # BatchNorm needs two samples
    for epoch in range(int(cfg.epochs)):
        model.train()
        order = rng.permutation(train_idx)
        losses = []
        for b in range(0, len(order), bs):
            idx = order[b:b + bs]
            if len(idx) < 2:
                continue
            xs = [dihedral(torch.from_numpy(random_crop(*data[i], int(cfg.crop), rng)),
                           int(rng.integers(8))) for i in idx]
            x = torch.stack(xs)
            y = torch.from_numpy(labels[idx].astype(np.float32))[:, None]
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        sched.step()
        history["train_loss"].append(float(np.mean(losses)) if losses else float("nan"))
        if len(val_idx):
            v = _evaluate(model, [data[i] for i in val_idx], labels[val_idx], augment=False)
            v.pop("probs")
            history["val"].append(v)
            if v["loss"] < best[0]:
                best = (v["loss"], epoch, copy.deepcopy(model.state_dict()))
        yield epoch + 1, int(cfg.epochs)
    if best[2] is not None:
        model.load_state_dict(best[2])
    history["chosen_epoch"] = int(best[1]) + 1 if best[2] is not None else int(cfg.epochs)
    if len(val_idx):
        final = _evaluate(model, [data[i] for i in val_idx], labels[val_idx], augment=True)
        final.pop("probs")
        history["validation"] = final
    model.spec.training = {**cfg.to_dict(), "n_train": int(len(train_idx)),
                           "n_val": int(len(val_idx)), "chosen_epoch": history["chosen_epoch"],
                           "validation": history.get("validation"), **(extra or {})}
    model.eval()
    return model, history


def evaluate_slide_model(model: SlideCNN, grids, labels, *, augment: bool = True) -> dict:
    """Accuracy, AUC, log loss and per-slide ``probs`` of a trained model on code grids."""
    from .slide_model import predict_grid

    probs = np.array([predict_grid(model, g, augment=augment) for g in grids])
    return slide_metrics(probs, np.asarray(labels))
