"""NIC encoders: each kind trains (seeded, toy size) with a falling loss, saves and reloads."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_xhisto.errors import ModelError  # noqa: E402
from napari_xhisto.nic.encoder_train import FieldSampler, train_encoder  # noqa: E402
from napari_xhisto.nic.encoders import load_encoder, save_encoder  # noqa: E402
from napari_xhisto.progress import run_to_end  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from conftest_slides import textured_image  # noqa: E402

TOY = dict(patch_px=32, code_size=16, width=8, batch_size=16, lr=2e-3)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Toy networks: one thread is fastest, and robust on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def fields():
    # cheap stand-ins for synthetic tissue fields (``render_fields``, used by the CLI, takes
    # seconds per field): smooth colour gradients with blocky noise, different per field
    return [textured_image(160, 160, seed=k) for k in range(2)]


def test_sampler_pairs_are_neighbours_or_strangers(fields):
    s = FieldSampler(32, 1.0, fields=fields, seed=1)
    a, b, same = s.pairs(64)
    assert a.shape == b.shape == (64, 32, 32, 3) and 10 < same.sum() < 54
    # a positive pair overlaps (same field, shift <= half a patch): similar colour statistics
    diff = np.abs(a.reshape(64, -1).mean(1) - b.reshape(64, -1).mean(1))
    assert diff[same == 1].mean() < diff[same == 0].mean()


@pytest.mark.parametrize("kind,steps", [("contrastive", 25), ("vae", 15), ("bigan", 12)])
def test_each_kind_trains_and_reloads(kind, steps, fields, tmp_path):
    spec, net, losses = run_to_end(train_encoder(kind, steps=steps, seed=0, fields=fields, **TOY))
    assert len(losses) == steps and np.isfinite(losses).all()
    k = max(2, steps // 4)
    assert np.mean(losses[-k:]) < np.mean(losses[:k]), losses  # the loss falls
    spec2, net2, losses2 = run_to_end(train_encoder(kind, steps=3, seed=0, fields=fields, **TOY))
    np.testing.assert_allclose(losses2, losses[:3], rtol=1e-5)  # seeded
    path = save_encoder(tmp_path / f"{kind}.yaml", spec, net)
    enc = load_encoder(path)
    assert (enc.kind, enc.code_size, enc.patch_px, enc.mpp) == (kind, 16, 32, 1.0)
    patches = np.stack([f[:64, :64] for f in fields])  # resized to 32 px inside
    z = enc.encode(patches)
    assert z.shape == (2, 16) and z.dtype == np.float32
    np.testing.assert_array_equal(z, enc.encode(patches))
    prov = enc.provenance()
    assert prov["kind"] == kind and len(prov["weights_sha256"]) == 64
    assert prov["training"]["steps"] == steps


def test_supervised_is_the_classifiers_penultimate_layer(tmp_path):
    from napari_xhisto.models import load_model

    spec, net, _ = run_to_end(train_encoder("supervised", model="demo"))
    assert net is None and spec["mpp"] == 1.0 and spec["patch_px"] == 64
    enc = load_encoder(save_encoder(tmp_path / "sup.yaml", spec, None))
    clf = load_model("demo", device="cpu")
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    z = enc.encode(patches)
    assert z.shape == (3, enc.code_size) == (3, 128)
    # the classifier's last layer applied to the codes gives the classifier's probabilities
    head = clf.module.classifier
    with torch.no_grad():
        probs = torch.softmax(head(torch.from_numpy(z)), 1).numpy()
    np.testing.assert_allclose(probs, clf.predict_proba(patches), atol=1e-5)


def test_bad_kinds_and_weights(tmp_path, fields):
    with pytest.raises(ModelError, match="kind must be one of"):
        run_to_end(train_encoder("pca"))
    spec, net, _ = run_to_end(train_encoder("vae", steps=1, seed=0, fields=fields, **TOY))
    path = save_encoder(tmp_path / "v.yaml", spec, net)
    path.with_suffix(".safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="v.safetensors"):
        load_encoder(path)


def test_bundled_encoders_load_by_name():
    for kind, patch in (("contrastive", 128), ("vae", 128), ("bigan", 128),
                        ("supervised", 64)):
        enc = load_encoder(kind)
        assert (enc.kind, enc.patch_px, enc.mpp, enc.code_size) == (kind, patch, 1.0, 128)
        z = enc.encode(np.full((2, patch, patch, 3), 180, np.uint8))
        assert z.shape == (2, 128) and np.isfinite(z).all()


@pytest.mark.parametrize("kind", ["contrastive", "vae", "bigan"])
def test_loaded_encoders_fold_batch_norms_and_give_the_same_codes(kind):
    from safetensors.torch import load_file

    from napari_xhisto.nic.encoders import Encoder, build_net, bundled_dir, fold_batchnorm

    enc = load_encoder(kind)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in enc.net.modules())
    net = build_net(enc.spec)
    net.load_state_dict(load_file(str(bundled_dir() / enc.spec["weights"])))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    plain = Encoder(enc.spec, net)  # the network as trained: conv, batch norm, LeakyReLU
    patches = np.random.default_rng(0).integers(0, 256, (8, 128, 128, 3), dtype=np.uint8)
    z, want = enc.encode(patches), plain.encode(patches)
    np.testing.assert_allclose(z, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    fold_batchnorm(net)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # untouched
