"""The Explain widget's uncertainty toggle (Monte-Carlo dropout) in a real napari viewer (Xvfb):
the std layer is there, above the slide and the probability map and below the annotations, its
legend is drawn, its values are the MC std computed directly; a model without dropout is
refused with the reason and adds nothing."""

import numpy as np
import pytest
import test_explain_display as disp  # tests/ is on sys.path (rootdir conftest)
import test_explain_widget as base

pytestmark = pytest.mark.viewer

slide_path, setup, _wait_idle = base.slide_path, base.setup, base._wait_idle
notifications = base.notifications


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory):
    """A small random xhisto_cnn_xs with dropout 0.5 before its classifier."""
    import torch

    from napari_xhisto.models import ModelSpec, build_architecture, save_model

    torch.manual_seed(0)
    spec = ModelSpec(architecture="xhisto_cnn_xs", class_names=["non-tumour", "tumour"],
                     patch_size=32, mpp=1.0, arch_options={"dropout": 0.5})
    module = build_architecture(spec.architecture, 2, options=spec.arch_options).eval()
    with torch.no_grad():
        module.classifier.weight.mul_(10.0)  # a visible spread between the passes
    return save_model(module, spec, tmp_path_factory.mktemp("mc_model") / "tinydrop.json")


def _kind(viewer, kind):
    return [ly for ly in viewer.layers if ly.metadata.get("xhisto", {}).get("kind") == kind]


def test_uncertainty_toggle_adds_a_std_layer_with_its_legend(setup, spec_path):
    from napari_xhisto.models import load_model
    from napari_xhisto.models.mc_dropout import mc_predict_region
    from napari_xhisto.progress import run_to_end
    from napari_xhisto.slide import open_slide

    s, w = setup, setup.widget
    cells = s.viewer.add_points(np.array([[10.0, 10.0]]), name="cells", units="µm")
    s.viewer.reset_view()
    w.uncertainty_check.setChecked(True)
    w.mc_spin.setValue(8)
    w.probability_map("view")
    _wait_idle(s)
    (prob,), (std,) = _kind(s.viewer, "probability"), _kind(s.viewer, "uncertainty")
    order = list(s.viewer.layers)
    assert order.index(s.slide) < order.index(prob) < order.index(std) < order.index(cells)
    assert std.name.startswith("std p(tumour)")
    assert std.metadata["xhisto"]["provenance"]["mc_dropout"]["n_samples"] == 8
    # the values: MC dropout run directly on the same region with the same seed and passes
    region = w.controller.last_run["region"]
    with open_slide(s.slide_path) as slide:
        umap = run_to_end(mc_predict_region(slide, region, load_model(spec_path, device="cpu"),
                                            n_samples=8, seed=0))
    expected = umap.std_map("tumour")
    tissue = umap.mean.tissue_mask
    assert tissue.any() and np.isnan(std.data[~tissue]).all()
    np.testing.assert_allclose(std.data[tissue], expected[tissue], atol=1e-6)
    assert (std.data[tissue] > 0).all()
    np.testing.assert_allclose(prob.data[tissue], umap.mean.positive[tissue], atol=1e-6)
    # placed on the slide like the probability map; its own colormap and a drawn legend
    np.testing.assert_allclose(std.scale, prob.scale)
    np.testing.assert_allclose(std.translate, prob.translate)
    assert std.colormap.name != prob.colormap.name
    s.viewer.layers.selection.active = std
    s.qtbot.waitUntil(lambda: w.legend.spec is not None and "std" in w.legend.spec.title)
    disp._legend_checks(w, std, ("std of p(tumour)", "8 MC-dropout passes"))
    assert std.contrast_limits[1] == pytest.approx(
        float(f"{np.percentile(expected[tissue], 99):.3g}"))


def test_uncertainty_refused_for_a_model_without_dropout(setup, notifications, tmp_path):
    import torch

    from napari_xhisto.models import ModelSpec, build_architecture, save_model

    s, w = setup, setup.widget
    torch.manual_seed(0)
    spec = ModelSpec(architecture="xhisto_cnn_xs", class_names=["non-tumour", "tumour"],
                     patch_size=32, mpp=1.0)
    w._load_spec(str(save_model(build_architecture("xhisto_cnn_xs", 2), spec,
                                tmp_path / "plain.json")))
    w.uncertainty_check.setChecked(True)
    n_layers = len(s.viewer.layers)
    w.probability_map("view")
    _wait_idle(s)
    assert len(s.viewer.layers) == n_layers
    assert any("no dropout layer" in str(getattr(n, "message", n)) for n in notifications)
