"""Seed-001 sanity check: maps of the trained demo model vs the same model with random weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def demo():
    from napari_xhisto.models import load_model

    return load_model("demo", device="cpu")  # bundled with the package


@pytest.mark.parametrize("method", ["lrp-epsilon-plus", "gradcam"])
def test_randomised_weights_give_maps_unrelated_to_the_trained_ones(demo, method):
    import copy

    from scipy.stats import spearmanr

    from napari_xhisto.explain import explain_patches
    from napari_xhisto.synth import sample_patches

    spec = demo.spec
    patches = sample_patches(8, patch_size=spec.patch_size, mpp=spec.mpp, seed=11).images
    trained = explain_patches(demo, patches, method, spec.positive_class)
    randomised = copy.copy(demo)
    randomised.module = copy.deepcopy(demo.module)
    torch.manual_seed(0)
    for m in randomised.module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    random_maps = explain_patches(randomised, patches, method, spec.positive_class)
    again = explain_patches(demo, patches, method, spec.positive_class)
    rho = [spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(trained, random_maps)]
    rho = float(np.nanmean(rho))
    print(f"seed-001 sanity {method}: mean Spearman trained vs randomised = {rho:.3f}")
    np.testing.assert_allclose(again, trained, rtol=1e-5, atol=1e-7)  # deterministic
    assert abs(rho) < 0.5
