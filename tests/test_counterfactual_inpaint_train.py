"""Training the inpainter at toy size: the CLI writes a spec that loads, two phases, masks."""

from __future__ import annotations

import numpy as np
import torch

from napari_xhisto.counterfactual.inpaint_train import (
    InpainterTrainConfig,
    healthy_patches,
    random_holes,
    train_inpainter,
)


def test_random_holes_cover_what_they_promise():
    rng = np.random.default_rng(0)
    holes = random_holes(64, 64, rng, min_frac=0.1, max_frac=0.5)
    frac = holes.mean(axis=(1, 2))
    assert holes.dtype == bool and frac.min() >= 0.05 and frac.max() < 0.95
    assert len({h.tobytes() for h in holes}) == 64  # all different


def test_healthy_patches_hold_no_tumour():
    from napari_xhisto.synth.layout import CODE
    from napari_xhisto.synth.render import SynthWorld

    pats = healthy_patches(1, patch_px=32, field_px=160, seed=4, stride=32, margin_um=0)
    world = SynthWorld(160, 160, seed=4 * 100_003 + 7919, mpp=1.0, layout="mixed", bank_seed=4)
    rgb, codes = world.render(0, 0, 160, 160)
    ok = [(r, c) for r in range(0, 129, 32) for c in range(0, 129, 32)
          if not (codes[r:r + 32, c:c + 32] == CODE["tumour"]).any()]
    assert len(pats) == len(ok) > 0


def test_two_phases_freeze_the_encoder_batchnorm():
    from napari_xhisto.progress import run_to_end

    rng = np.random.default_rng(0)
    pats = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    cfg = InpainterTrainConfig(patch_px=32, steps=2, steps_phase2=2, batch_size=4,
                               channels=(4, 8), kernels=(7, 5), threads=1)
    res = run_to_end(train_inpainter(cfg, patches=pats, held_out=pats[:4]))
    enc_bn = res.module.enc_bn[1]
    assert not any(p.requires_grad for p in enc_bn.parameters())
    assert all(p.requires_grad for p in res.module.dec_bn[0].parameters())
    assert res.spec["training"]["metrics"]["held_out_patches"] == 4
    assert {h["phase"] for h in res.history} == {1}  # logged every 25 steps: step 1 only
    assert res.spec["classifier"]["patch_size"] == 64


def test_cli_trains_a_toy_inpainter_that_loads(tmp_path, capsys):
    from napari_xhisto.cli import main
    from napari_xhisto.counterfactual import load_inpainter

    torch.set_num_threads(1)
    out = tmp_path / "toy.yaml"
    args = ["train-inpainter", str(out), "--fields", "1", "--field-px", "128", "--patch-size",
            "32", "--steps", "2", "--steps-phase2", "1", "--batch-size", "2",
            "--channels", "4,8", "--threads", "1"]
    assert main(args) == 0
    inp = load_inpainter(out)
    assert (inp.patch_px, inp.mpp, inp.module.channels) == (32, 1.0, (4, 8))
    assert "demo classifier" in inp.provenance()["feature_network"]
    rgb = np.full((1, 32, 32, 3), 200, np.uint8)
    hole = np.zeros((1, 32, 32), bool)
    hole[0, 8:20, 8:20] = True
    assert np.array_equal(inp.inpaint(rgb, hole)[~hole], rgb[~hole])
    # an existing result is never replaced silently
    assert main(args) != 0
    assert "exists" in capsys.readouterr().err
    assert main(["train-inpainter", str(tmp_path / "x"), "--channels", "a,b"]) != 0
    assert "--channels is a list of positive integers" in capsys.readouterr().err
