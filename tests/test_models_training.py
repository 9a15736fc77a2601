"""Training: sampling ratio, augmentation, bias options, determinism, folder data, the CLIs."""

import json

import numpy as np
import pytest
import torch
from skimage.io import imsave

from napari_xhisto.cli import main
from napari_xhisto.models import ModelSpec, load_model
from napari_xhisto.models.training import (
    CornerSquare,
    PatchData,
    TrainConfig,
    augment,
    batch_indices,
    patch_metrics,
    train_model,
)
from napari_xhisto.progress import run_to_end

torch.set_num_threads(2)


def _colour_patches(n, seed, size=24):
    """'tumour' = dark purple blobs on pink, 'stroma' = plain noisy pink; labels 1/0."""
    rng = np.random.default_rng(seed)
    imgs = np.clip(rng.normal((225, 150, 190), 18, (n, size, size, 3)), 0, 255)
    labels = rng.integers(0, 2, n)
    yy, xx = np.mgrid[:size, :size]
    for i in np.flatnonzero(labels):
        for _ in range(3):
            r, c = rng.integers(3, size - 3, 2)
            imgs[i][(yy - r) ** 2 + (xx - c) ** 2 < 9] = (90, 50, 160)
    return imgs.astype(np.uint8), labels


def _noise_patches(n, seed, size=24):
    rng = np.random.default_rng(seed)
    return (rng.integers(100, 200, (n, size, size, 3)).astype(np.uint8),
            rng.integers(0, 2, n))


def _data(imgs, labels):
    return PatchData(imgs, labels.astype(np.int64), ["non-tumour", "tumour"], "tumour")


def test_batches_hold_the_asked_tumour_ratio():
    labels = np.array([1] * 30 + [0] * 270)
    rng = np.random.default_rng(0)
    for ratio in (0.5, 0.8):
        batches = batch_indices(labels, 1, batch_size=20, n_batches=12, tumour_ratio=ratio, rng=rng)
        counts = [int(labels[b].sum()) for b in batches]
        assert counts == [round(ratio * 20)] * 12
        # no tumour patch repeats before all 30 were used
        n_pos = round(ratio * 20)
        first = np.concatenate(batches[:30 // n_pos])
        first = first[labels[first] == 1]
        assert len(set(first.tolist())) == len(first) == (30 // n_pos) * n_pos
    natural = batch_indices(labels, 1, batch_size=30, n_batches=10, tumour_ratio=None, rng=rng)
    assert sorted(np.concatenate(natural).tolist()) == list(range(300))


def test_augment_moves_pixels_but_keeps_them():
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    flipped = augment(imgs, rng, flips=True, shift=0)
    for a, b in zip(imgs, flipped):
        assert any(np.array_equal(np.rot90(f, k), b) for k in range(4) for f in (a, a[:, ::-1]))
    shifted = augment(imgs, np.random.default_rng(2), flips=False, shift=2)
    assert shifted.shape == imgs.shape
    # a shift by (dr, dc) keeps the centre block of the original
    for a, b in zip(imgs, shifted):
        assert any(np.array_equal(a[4:12, 4:12], b[4 + dr:12 + dr, 4 + dc:12 + dc])
                   for dr in range(-2, 3) for dc in range(-2, 3))


def test_patch_metrics_match_sklearn():
    from sklearn.metrics import f1_score, roc_auc_score

    rng = np.random.default_rng(0)
    p1 = rng.random(50)
    probs = np.stack([1 - p1, p1], 1)
    labels = rng.integers(0, 2, 50)
    m = patch_metrics(probs, labels, 1)
    assert m["f1"] == pytest.approx(f1_score(labels, p1 > 0.5))
    assert m["auc"] == pytest.approx(roc_auc_score(labels, p1))


CFG = dict(architecture="xhisto_cnn_xs", patch_size=24, epochs=3, batch_size=32, lr=5e-3,
           threads=2)


def test_training_learns_and_is_deterministic(tmp_path):
    train, val = _data(*_colour_patches(384, 0)), _data(*_colour_patches(200, 1))
    cfg = TrainConfig(seed=3, **CFG)
    res = run_to_end(train_model(cfg, out=tmp_path / "a.json", train_data=train, val_data=val))
    assert res.metrics["held_out"]["f1"] >= 0.95
    assert len(res.history) == 3 and res.spec.training["config"]["seed"] == 3
    # determinism: a short run twice with one seed, once with another
    small = _data(train.images[:128], train.labels[:128])
    short = dict(CFG, epochs=1)
    a = run_to_end(train_model(TrainConfig(seed=3, **short), train_data=small)).module
    b = run_to_end(train_model(TrainConfig(seed=3, **short), train_data=small)).module
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    c = run_to_end(train_model(TrainConfig(seed=4, **short), train_data=small)).module
    assert not torch.equal(c.classifier.weight, a.classifier.weight)
    # the saved model predicts what the trained module predicts
    model = load_model(tmp_path / "a.json", device="cpu")
    spec = ModelSpec.from_file(tmp_path / "a.json")
    assert spec.training["metrics"]["held_out"]["f1"] == res.metrics["held_out"]["f1"]
    p = model.predict_proba(val.images)
    assert patch_metrics(p, val.labels, 1)["f1"] == pytest.approx(res.metrics["held_out"]["f1"])


def test_corner_square_is_a_shortcut_the_model_takes():
    """Class-correlated bias: labels are noise, only the square tells them apart."""
    train, val = _data(*_noise_patches(384, 0)), _data(*_noise_patches(200, 1))
    cfg = TrainConfig(seed=0, flips=False, translate=False,
                      corner_square=CornerSquare(cls="tumour", size=5, color=(0, 255, 0)),
                      **CFG)
    res = run_to_end(train_model(cfg, train_data=train, val_data=val))
    assert res.metrics["held_out_with_square"]["accuracy"] >= 0.95
    assert res.metrics["held_out"]["accuracy"] <= 0.7  # without the square: chance


def _patch_folder(folder, n):
    """``n`` colour patches written as PNGs into ``folder``/stroma and ``folder``/tumour."""
    imgs, labels = _colour_patches(n, 5)
    for k, cls in enumerate(["stroma", "tumour"]):
        (folder / cls).mkdir(parents=True)
        for i in np.flatnonzero(labels == k):
            imsave(folder / cls / f"{i:03d}.png", imgs[i], check_contrast=False)
    return imgs


def test_train_and_predict_clis_on_a_patch_folder(tmp_path, capsys):
    imgs = _patch_folder(tmp_path / "patches", 160)
    (tmp_path / "patches" / "necrosis").mkdir()
    imsave(tmp_path / "patches" / "necrosis" / "x.png", imgs[0], check_contrast=False)
    rc = main(["train", str(tmp_path / "m.json"), "--data", str(tmp_path / "patches"),
               "--architecture", "xhisto_cnn_xs", "--patch-size", "24", "--epochs", "3",
               "--batch-size", "16", "--lr", "5e-3", "--exclude", "necrosis", "--seed", "1"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    spec = ModelSpec.from_file(tmp_path / "m.json")
    assert spec.class_names == ["stroma", "tumour"] and spec.positive_class == "tumour"
    assert report["metrics"]["held_out"]["n"] == 32  # 20% of each class folder
    assert report["metrics"]["held_out"]["f1"] >= 0.9
    assert (tmp_path / "m.safetensors").exists()


def test_synthetic_bias_options_reach_the_sampler():
    from napari_xhisto.models.training import synthetic_patches

    cfg = TrainConfig(patch_size=32, mpp=1.0, label="centre-cell", translate=False,
                      exclude=("necrosis",))
    data = synthetic_patches(40, cfg, seed=5)
    assert data.images.shape == (40, 32, 32, 3)
    assert "necrosis" not in set(data.meta["centre_tissue"])
    # no translation: the labelling cell sits on the patch centre, and decides the label
    assert (data.meta["anchor_row"] == 16).all() and (data.meta["anchor_col"] == 16).all()
    np.testing.assert_array_equal(data.labels, data.meta["centre_class"] == "tumour")
    # the held-out set is unbiased: random positions, any tissue
    clean = synthetic_patches(40, cfg, seed=6, biased=False)
    assert not ((clean.meta["anchor_row"] == 16) & (clean.meta["anchor_col"] == 16)).all()


def test_train_cli_options_map_to_the_config():
    from napari_xhisto.cli import build_parser
    from napari_xhisto.commands.train import config_from_args

    args = build_parser().parse_args([
        "train", "out.json", "--tumour-ratio", "0.8", "--no-translate", "--label", "centre-cell",
        "--exclude", "necrosis", "vessel", "--corner-square", "5", "--corner-color", "255,0,0",
        "--corner-position", "2,3", "--corner-class", "tumour", "--seed", "7", "--no-flips"])
    cfg = config_from_args(args)
    assert (cfg.tumour_ratio, cfg.translate, cfg.label, cfg.exclude, cfg.seed, cfg.flips) == \
        (0.8, False, "centre-cell", ("necrosis", "vessel"), 7, False)
    assert cfg.corner_square == CornerSquare(cls="tumour", size=5, color=(255, 0, 0),
                                             position=(2, 3))
    img = cfg.corner_square.apply(np.zeros((1, 10, 10, 3), np.uint8))
    assert (img[0, 2:7, 3:8] == (255, 0, 0)).all() and img.sum() == 25 * 255


def test_train_cli_makes_a_model_with_dropout_for_mc_uncertainty(tmp_path, capsys):
    from napari_xhisto.models import load_model
    from napari_xhisto.models.mc_dropout import mc_predict_proba

    imgs = _patch_folder(tmp_path / "patches", 96)
    rc = main(["train", str(tmp_path / "mc.json"), "--data", str(tmp_path / "patches"),
               "--architecture", "xhisto_cnn_xs", "--patch-size", "24", "--epochs", "1",
               "--batch-size", "16", "--dropout", "0.3", "--conv-dropout", "0.1"])
    assert rc == 0
    capsys.readouterr()
    spec = ModelSpec.from_file(tmp_path / "mc.json")
    assert spec.arch_options == {"dropout": 0.3, "conv_dropout": 0.1}
    model = load_model(tmp_path / "mc.json", device="cpu")
    kinds = {type(m).__name__ for m in model.module.modules()}
    assert {"Dropout", "Dropout2d"} <= kinds
    res = mc_predict_proba(model, imgs[:4], n_samples=8, seed=0)
    assert float(np.max(res.std)) > 0
    # out of range: one clear line, nothing written
    rc = main(["train", str(tmp_path / "bad.json"), "--data", str(tmp_path / "patches"),
               "--dropout", "1.0"])
    assert rc != 0 and "--dropout" in capsys.readouterr().err
    assert not (tmp_path / "bad.json").exists()
