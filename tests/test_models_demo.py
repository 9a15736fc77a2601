"""The bundled demo classifier on fresh synthetic tissue (patches and a slide)."""

import numpy as np
import pytest
import tifffile
import torch

from napari_xhisto.geometry import Region
from napari_xhisto.models import ModelSpec, default_target_layer, load_model, predict_region
from napari_xhisto.models.demo import DEMO_SPEC_PATH
from napari_xhisto.models.training import patch_metrics
from napari_xhisto.progress import run_to_end

torch.set_num_threads(2)
FRESH_SEED = 777  # tissue never used to train or select the demo model


def _sample_patches(*args, **kw):
    from napari_xhisto.synth import sample_patches

    return sample_patches(*args, **kw)


@pytest.fixture(scope="module")
def demo():
    return load_model("demo", device="cpu")


def test_demo_spec_describes_its_training(demo):
    spec = ModelSpec.from_file(DEMO_SPEC_PATH)
    assert spec.weights_path().exists() and spec.weights_path().stat().st_size < 5_000_000
    assert spec.class_names == ["non-tumour", "tumour"] and spec.positive_class == "tumour"
    assert spec.training["config"]["seed"] == 0
    assert spec.training["metrics"]["held_out"]["f1"] >= 0.9
    assert not demo.is_torchscript
    layer = default_target_layer(demo.module, spec.architecture)
    assert isinstance(layer, torch.nn.ReLU) and layer is demo.module.features[-1]


def test_demo_reaches_its_f1_on_fresh_synthetic_patches(demo):
    spec = demo.spec
    ps = _sample_patches(400, patch_size=spec.patch_size, mpp=spec.mpp, seed=FRESH_SEED)
    m = patch_metrics(demo.predict_proba(ps.images), ps.labels, spec.positive_index)
    assert 0.2 < m["n_positive"] / m["n"] < 0.8
    assert m["f1"] >= 0.9, m
    assert m["auc"] >= 0.95, m


def test_demo_map_is_high_on_the_tumour_half(demo, tmp_path):
    """A slide of synthetic tissue tiles: tumour nests left, stroma right (0.5 µm/px)."""
    foot = int(round(demo.spec.patch_size * demo.spec.mpp / 0.5))  # 128 level-0 px
    ps = _sample_patches(160, patch_size=foot, mpp=0.5, seed=FRESH_SEED + 1)
    frac = ps.meta["tumour_area_fraction"]
    tumour = ps.images[(ps.labels == 1) & (frac > 0.6)][:12]
    stroma = ps.images[(ps.labels == 0) & (ps.meta["centre_tissue"] == "stroma")
                       & (frac == 0)][:12]
    assert len(tumour) == 12 and len(stroma) == 12
    tiles = np.concatenate([tumour.reshape(3, 4, foot, foot, 3),
                            stroma.reshape(3, 4, foot, foot, 3)], axis=1)  # 3 x 8 tiles
    img = tiles.transpose(0, 2, 1, 3, 4).reshape(3 * foot, 8 * foot, 3)
    tifffile.imwrite(tmp_path / "halves.tif", img, tile=(128, 128), photometric="rgb")
    from napari_xhisto.slide import open_slide

    with open_slide(tmp_path / "halves.tif", mpp=0.5) as slide:
        pmap = run_to_end(predict_region(slide, Region(0, 0, 3 * foot, 8 * foot), demo))
    p = pmap.positive
    assert p.shape == (3, 8) and pmap.tissue_mask.all()
    assert p[:, :4].mean() > 0.8 and p[:, 4:].mean() < 0.2, np.round(p, 2)
    assert (p[:, :4] > 0.5).mean() >= 0.9 and (p[:, 4:] < 0.5).mean() >= 0.9
