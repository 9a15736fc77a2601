"""The Explain controller without a window: a plain napari ``ViewerModel`` and a runner that
drives the core generator at once. Results, layer order, outlines, the click rule, the legend's
range and the compare panels, checked against direct calls on the same inputs."""

import numpy as np
import pytest
import test_explain_widget as base  # tests/ is on sys.path (rootdir conftest)

from napari_xhisto.geometry import Region

slide_path, spec_path = base.slide_path, base.spec_path
MPP = base.MPP


def _sync_runner(make_generator, label, on_result, on_finished):
    from napari_xhisto.progress import run_to_end

    on_result(run_to_end(make_generator()))
    on_finished(False)


@pytest.fixture
def ctl(slide_path, spec_path):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    from napari.components import ViewerModel

    from napari_xhisto._reader import slide_layer_data
    from napari_xhisto._widgets.explain.controller import ExplainController, ExplainSettings

    viewer = ViewerModel()
    data, kwargs, _ = slide_layer_data(slide_path)[0]
    slide = viewer.add_image(data, **kwargs)
    viewer.add_points(np.array([[20.0, 20.0]]), name="cells", units="µm")
    settings = ExplainSettings(slide=slide.name, method="saliency", target="tumour",
                               size_um=64.0, use_canvas=False, normalize="global-max")
    status = []
    c = ExplainController(viewer, settings=lambda: settings, runner=_sync_runner,
                          status=status.append)
    c.load_spec(str(spec_path))
    c.test = (viewer, slide, settings, status)
    return c


def test_a_click_explains_and_adds_the_layer_below_annotations(ctl, slide_path):
    viewer, slide, settings, _ = ctl.test
    world = slide.data_to_world((300, 410))
    ctl.explain_at(world)
    names = [ly.name for ly in viewer.layers]
    heat = viewer.layers[names[1]]
    assert names[-1] == "cells" and names[-2] == "explained areas"
    region = ctl.region_at(world, settings)
    assert heat.metadata["xhisto"]["provenance"]["region"] == list(region.as_tuple())
    direct = base._direct(slide_path, region, ctl.spec_path, "saliency", target=1, overlap=0.1,
                          normalize="global-max")
    np.testing.assert_allclose(heat.data, direct.values, rtol=1e-5, atol=1e-6)
    assert heat.name.startswith("saliency · tumour · tiny @ x ")
    spec = ctl.legend_spec()
    assert (spec.lo, spec.hi) == tuple(heat.contrast_limits) and "tumour" in spec.title


def test_annotation_modes_own_the_click(ctl):
    from types import SimpleNamespace

    from napari_xhisto._widgets.explain.controller import click_owner

    viewer, slide, _, status = ctl.test
    cells = viewer.layers["cells"]
    viewer.layers.selection.active = cells
    ctl.explain_mode = True
    event = SimpleNamespace(button=1, modifiers=[], position=slide.data_to_world((300, 300)),
                            pos=(0, 0), type="mouse_press")
    for mode, owner in (("add", cells), ("select", cells), ("pan_zoom", None)):
        cells.mode = mode
        assert click_owner(viewer) is owner
    cells.mode = "add"
    gen = ctl.on_mouse(viewer, event)
    assert next(gen, "done") == "done"  # returns at once: the click is the layer's
    assert "cells" in status[-1] and len(viewer.layers) == 2
    cells.mode = "pan_zoom"
    gen = ctl.on_mouse(viewer, event)
    next(gen)
    event.type = "mouse_release"
    assert next(gen, "done") == "done"
    assert any(ly.metadata.get("xhisto", {}).get("kind") == "heatmap" for ly in viewer.layers)


def test_compare_panels_one_per_layer_with_titles(ctl):
    from napari_xhisto._widgets.explain.compare import compare_layers, compare_panels

    viewer, slide, settings, _ = ctl.test
    settings.compare = ["saliency", "gradcam"]
    settings.with_probability = True
    ctl.explain_region(Region(128, 128, 128, 128))
    layers, region, slide_name = compare_layers(viewer, ctl.last_run)
    assert region == Region(128, 128, 128, 128) and slide_name == slide.name
    panels = compare_panels(slide, layers, region)
    assert [p.title for p in panels] == ["saliency · tumour · normalised: global-max",
                                         "gradcam · tumour · normalised: global-max",
                                         "p(tumour) · probability (0 to 1)"]
    assert all(p.rgb.shape == (128, 128, 3) for p in panels)
    with pytest.raises(ValueError, match="nothing to compare"):
        compare_layers(viewer, None)


def test_names_and_demo_banner_rules():
    from napari_xhisto._widgets.explain import naming

    r = Region(2000, 4000, 1024, 1024)  # centre (2512, 4512) px
    assert naming.heatmap_name("lrp", "tumour", "demo", r, 0.5) == \
        "lrp · tumour · demo @ x 2.26 mm, y 1.26 mm"
    assert naming.probability_name("tumour", "cnn", Region(0, 0, 100, 200), 0.25) == \
        "p(tumour) · cnn @ x 25 µm, y 12 µm"
    assert naming.position_label(r, None) == "x 4512 px, y 2512 px"
    assert naming.canvas_name("gradcam", "stroma", "demo") == "gradcam · stroma · demo (canvas)"
    real = {"slide_path": "/data/CMU-1.svs", "properties": {"aperio.MPP": "0.499"}}
    synth = {"slide_path": "/x/a.svs", "properties": {"aperio.XhistoSynthetic": "seed 1"}}
    cached = {"slide_path": "/c/synthetic-he-seed0-8192px.svs", "properties": {}}
    assert naming.needs_demo_banner(None, real)
    assert not naming.needs_demo_banner(None, synth) and not naming.needs_demo_banner(None, cached)
    assert not naming.needs_demo_banner("/models/mine.json", real)
