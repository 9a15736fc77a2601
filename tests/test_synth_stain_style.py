"""synth's second stain style: same tissue, another laboratory's colours; style "a" unchanged."""

import numpy as np
import pytest
from skimage.color import rgb2hed

from napari_xhisto.synth import SynthWorld
from napari_xhisto.synth.stain import StainParams, stain_for_style


def test_style_a_is_the_default_stain_and_b_differs():
    a = stain_for_style("a", np.random.default_rng([4, 99]))
    ref = StainParams.random(np.random.default_rng([4, 99]))
    np.testing.assert_array_equal(a.h_vector, ref.h_vector)
    np.testing.assert_array_equal(a.white, ref.white)
    assert (a.h_scale, a.e_scale) == (ref.h_scale, ref.e_scale)
    b = stain_for_style("b", np.random.default_rng([4, 99]))
    assert b.h_scale > 1.2 and b.e_scale < 0.75
    with pytest.raises(ValueError, match="stain_style must be one of"):
        stain_for_style("c", np.random.default_rng(0))


def test_style_b_renders_the_same_tissue_with_more_haematoxylin_less_eosin():
    wa = SynthWorld(192, 192, seed=5, mpp=1.0)
    wb = SynthWorld(192, 192, seed=5, mpp=1.0, stain_style="b")
    (rgb_a, codes_a), (rgb_b, codes_b) = wa.render(0, 0, 192, 192), wb.render(0, 0, 192, 192)
    np.testing.assert_array_equal(codes_a, codes_b)  # same tissue
    np.testing.assert_array_equal(SynthWorld(192, 192, seed=5, mpp=1.0).render(0, 0, 192, 192)[0],
                                  rgb_a)  # default = style "a", deterministic
    hed_a, hed_b = rgb2hed(rgb_a), rgb2hed(rgb_b)
    tissue = codes_a > 0
    assert hed_b[..., 0][tissue].mean() > hed_a[..., 0][tissue].mean()  # haematoxylin up
    assert hed_b[..., 1][tissue].mean() < hed_a[..., 1][tissue].mean()  # eosin down
