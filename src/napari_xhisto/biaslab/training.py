"""Data and models of the bias lab: one clean classifier and the three biased ones of seed 000.

Training goes through ``napari_xhisto.models.training.train_model``; the data come from
``napari_xhisto.synth.sample_patches`` with the bias hooks (centre-cell labels without
translation, necrosis excluded). Square models reuse the clean data: ``train_model`` pastes the
square into every tumour patch of every mini-batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..models import SmallCNN, register_architecture
from ..models.training import CornerSquare, PatchData, TrainConfig, train_model
from ..progress import shifted
from ..synth import sample_patches
from .config import BiasLabConfig, SquareArtefact

TEST_SEED_OFFSET = 10_000   # held-out test patches
FIELD_SEED_OFFSET = 20_000  # held-out tissue fields


@register_architecture("xhisto_cnn_bias")
def bias_lab_cnn(num_classes: int):
    """SmallCNN, thin but four stages deep (about 26 k parameters, 66 px receptive field).

    ``xhisto_cnn_xs`` (18 px receptive field, then global pooling) is blind to where a cell
    sits in a 64 px patch, so it cannot learn seed 000's centre bias at all; seed 000's
    GoogLeNet sees the whole patch. This one does too and still trains in CPU minutes.
    """
    return SmallCNN(num_classes, channels=(8, 16, 24, 32), convs_per_stage=(1, 2, 2, 2))


@dataclass
class LabModel:
    """A trained model of the lab and what makes it biased."""

    name: str
    bias: str
    module: object
    spec: object
    metrics: dict
    square: SquareArtefact | None = None


def as_patch_data(ps) -> PatchData:
    return PatchData(np.asarray(ps.images, np.uint8), np.asarray(ps.labels, np.int64),
                     ["non-tumour", "tumour"], "tumour")


def necrosis_as_non_tumour(ps):
    """Label patches centred on necrosis non-tumour (in place; returns ``ps``).

    ``sample_patches``' tumour-fraction label counts intact cells only, so a necrosis patch with
    a few viable tumour cells of the rim was "tumour" about half the time; seed 000 annotates
    necrosis as a non-cancer region, and the sampling-bias test needs the clean model to have
    learnt that.
    """
    nec = np.asarray(ps.meta["centre_tissue"]) == "necrosis"
    ps.labels = np.where(nec, 0, np.asarray(ps.labels)).astype(np.int64)
    ps.meta["relabelled_necrosis"] = nec
    return ps


def sample_data(cfg: BiasLabConfig) -> dict:
    """Training sets (clean, centre-cell, necrosis excluded) and the held-out test sets."""
    common = dict(patch_size=cfg.patch_size, mpp=cfg.mpp, necrosis=cfg.necrosis)
    test_seed = cfg.seed + TEST_SEED_OFFSET
    return {
        "clean": necrosis_as_non_tumour(sample_patches(cfg.n_train, seed=cfg.seed, **common)),
        "centre": sample_patches(cfg.n_train, seed=cfg.seed, label="centre-cell",
                                 translate=False, **common),
        "no-necrosis": sample_patches(cfg.n_train, seed=cfg.seed, exclude=("necrosis",),
                                      **common),
        "test": necrosis_as_non_tumour(sample_patches(cfg.n_test, seed=test_seed, **common)),
        "test-centred": sample_patches(cfg.n_test, seed=test_seed, label="centre-cell",
                                       translate=False, **common),
    }


def model_plans(cfg: BiasLabConfig) -> list[dict]:
    """What to train: name, bias description, data key and TrainConfig of each model."""
    base = dict(architecture=cfg.architecture, patch_size=cfg.patch_size, mpp=cfg.mpp,
                seed=cfg.seed, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                threads=cfg.threads, n_train=cfg.n_train, n_val=cfg.n_test)
    plans = [{"name": "clean", "bias": "none (tumour-fraction labels, translations, all tissue)",
              "data": "clean", "square": None, "config": TrainConfig(**base)}]
    for sq in cfg.squares:
        plans.append({
            "name": f"square-{sq.name}", "square": sq, "data": "clean",
            "bias": f"class-correlated: {sq.describe()} on every tumour patch",
            "config": TrainConfig(**base, corner_square=CornerSquare(
                "tumour", sq.size, tuple(sq.color), tuple(sq.position)))})
    plans.append({"name": "centre-label", "square": None, "data": "centre",
                  "bias": "dataset: label of the centre cell only, no translation augmentation",
                  "config": TrainConfig(**base, label="centre-cell", translate=False)})
    plans.append({"name": "no-necrosis", "square": None, "data": "no-necrosis",
                  "bias": "sampling: necrosis excluded from training",
                  "config": TrainConfig(**base, exclude=("necrosis",))})
    return plans


def steps_of(cfg: BiasLabConfig) -> int:
    """Optimizer steps of one model (for the progress total)."""
    return max(1, cfg.n_train // cfg.batch_size) * cfg.epochs


def train_all(cfg: BiasLabConfig, data: dict):
    """Train every planned model; a generator of (done steps, total) returning {name: LabModel}."""
    plans = model_plans(cfg)
    total = steps_of(cfg) * len(plans)
    val = as_patch_data(data["test"])
    models, done = {}, 0
    for plan in plans:
        res = yield from shifted(
            train_model(plan["config"], train_data=as_patch_data(data[plan["data"]]), val_data=val),
            offset=done, total=total)
        done += steps_of(cfg)
        models[plan["name"]] = LabModel(plan["name"], plan["bias"], res.module, res.spec,
                                        res.metrics, plan["square"])
    return models
