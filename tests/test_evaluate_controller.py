"""The Evaluate controller and its core generator without a window (napari's ViewerModel only)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from napari_xhisto.geometry import Placement
from napari_xhisto.metrics import cell_scores
from napari_xhisto.progress import run_to_end

MPP = 0.5
SLIDE = 6000  # level-0 px
STEP = 4.0


class RecordingArray:
    """A slide-wide canvas level that records which windows were read."""

    def __init__(self, values):
        self.values, self.reads = values, []
        self.shape, self.dtype, self.ndim = values.shape, values.dtype, 2

    def __getitem__(self, key):
        self.reads.append(key)
        return self.values[key]


def _viewer_with_canvas(n_cells=22000, seed=0):
    from napari.components import ViewerModel

    from napari_xhisto._widgets.layers import heatmap_metadata

    rng = np.random.default_rng(seed)
    n = int(SLIDE / STEP)
    canvas = np.zeros((n, n), np.float32)
    region = (2048, 1024, 1024, 1024)  # the one explained region, level-0 px
    i0, j0 = int(region[0] / STEP), int(region[1] / STEP)
    explained = rng.normal(0, 0.2, (256, 256)).astype(np.float32)
    explained[:128] += 1.0  # top half: evidence
    canvas[i0:i0 + 256, j0:j0 + 256] = explained
    data = RecordingArray(canvas)
    placement = Placement(0, 0, STEP, STEP)
    meta = heatmap_metadata(kind="heatmap", placement=placement, mpp=MPP,
                            provenance={"target_class": "tumour", "patch_px": 64, "heatmap_mpp": 2.0},
                            canvas=True, pastes=[{"placement": {}, "provenance": {"region": list(region)}}])
    viewer = ViewerModel()
    viewer.add_image(np.zeros((64, 64, 3), np.uint8), rgb=True, name="slide", scale=(MPP * 94, MPP * 94),
                     metadata={"xhisto": {"slide_path": "s.svs", "mpp": MPP}})
    viewer.add_image(data, name="canvas", **placement.layer_transform(MPP), metadata={"xhisto": meta})
    rows, cols = rng.uniform(0, SLIDE, n_cells), rng.uniform(0, SLIDE, n_cells)
    top = (rows < region[0] + 512)
    classes = np.where(rng.random(n_cells) < 0.8, np.where(top, "tumour", "stroma"), "lymphocyte")
    viewer.add_points(np.stack([rows, cols], 1) * MPP, name="ground truth cells",
                      features={"class": classes})
    return viewer, data, canvas, placement, region, (rows, cols, classes)


def test_cells_scored_only_on_the_explained_area_and_only_it_is_read():
    from napari_xhisto._widgets.evaluate import EvaluateController, Settings, iter_evaluate_job

    viewer, data, canvas, placement, region, (rows, cols, classes) = _viewer_with_canvas()
    data.reads.clear()  # napari itself read it when the layer was added
    c = EvaluateController(viewer)
    assert c.heatmap_names() == ["canvas"]
    assert c.default_positive("canvas", c.cell_classes(["ground truth cells"])) == "tumour"
    assert c.default_patch_um("canvas") == pytest.approx(128.0)
    job = c.job(Settings(heatmap="canvas", points=["ground truth cells"], positive="tumour",
                         n_random=2, patch_um=128.0), render=False)
    assert data.reads == []  # nothing read on the GUI thread
    steps = []
    gen = iter_evaluate_job(job)
    while True:
        try:
            steps.append(next(gen))
        except StopIteration as stop:
            outcome = stop.value
            break
    assert steps[-1][0] == steps[-1][1] and all(a[0] <= b[0] for a, b in zip(steps, steps[1:]))
    # only the explained 1024 x 1024 px box (256 x 256 canvas px) was read
    assert len(data.reads) == 1 and outcome.values.shape == (256, 256)
    # the reference: every cell scored on the whole canvas with NaN outside the explained box
    masked = np.full_like(canvas, np.nan)
    box = np.s_[int(region[0] / STEP):int((region[0] + region[2]) / STEP),
                int(region[1] / STEP):int((region[1] + region[3]) / STEP)]
    masked[box] = canvas[box]
    all_scores = cell_scores(masked, np.stack([rows, cols], 1), radius_um=8.0, mpp=MPP,
                             placement=placement)
    from napari_xhisto._widgets.evaluate.layerdata import on_explained

    # the cells whose centre lies on an explained pixel (the disc integral alone also scores
    # discs that only reach into the explained box)
    on = np.isfinite(all_scores) & on_explained(masked, placement, rows, cols)
    area = outcome.result["explained_area"]
    assert area["n_cells_checked"] == 22000
    assert area["n_cells_on_area"] == outcome.result["cells"]["n"] == int(on.sum())
    assert 400 < on.sum() < 900  # a few hundred of 22k, as on the demo slide
    truth = classes[on] == "tumour"
    assert outcome.result["roc"]["auc"] == pytest.approx(roc_auc_score(truth, all_scores[on]))
    assert c.accept(outcome) is outcome.result
    assert c.auc_rows()[0][1].startswith(f"{outcome.result['roc']['auc']:.4g} [")
    assert "of 22000 cells" in c.summary()


def test_closing_the_generator_stops_the_work():
    from napari_xhisto._widgets.evaluate import EvaluateController, Settings, iter_evaluate_job

    viewer, *_ = _viewer_with_canvas(n_cells=2000, seed=1)
    c = EvaluateController(viewer)
    gen = iter_evaluate_job(c.job(Settings(heatmap="canvas", points=["ground truth cells"],
                                           n_random=500), render=False))
    for _ in range(5):
        done, total = next(gen)
    assert total > 500 and done < total
    gen.close()  # what the worker does on Cancel
    with pytest.raises(StopIteration):
        next(gen)


def test_bad_choices_say_what_to_do():
    from napari_xhisto._widgets.evaluate import EvaluateController, Settings, iter_evaluate_job
    from napari_xhisto.errors import XhistoError

    viewer, *_ = _viewer_with_canvas(n_cells=10)
    c = EvaluateController(viewer)
    with pytest.raises(XhistoError, match="pick a heatmap layer"):
        c.job(Settings(heatmap=None, points=["ground truth cells"]))
    with pytest.raises(XhistoError, match="tick a cell layer"):
        c.job(Settings(heatmap="canvas", points=[]))
    viewer.layers["ground truth cells"].data = np.array([[10.0, 10.0]])
    viewer.layers["ground truth cells"].features = {"class": ["tumour"]}
    job = c.job(Settings(heatmap="canvas", points=["ground truth cells"]), render=False)
    with pytest.raises(XhistoError, match="explained area"):
        run_to_end(iter_evaluate_job(job))


def test_the_compute_process_gives_the_same_numbers_and_maps_cells_back():
    from napari_xhisto._widgets.evaluate import EvaluateController, Settings, iter_evaluate_job
    from napari_xhisto._widgets.evaluate.process import SERVER

    viewer, *_ = _viewer_with_canvas(n_cells=3000, seed=2)
    c = EvaluateController(viewer)
    request = c.job(Settings(heatmap="canvas", points=["ground truth cells"], n_random=2))
    inline = run_to_end(iter_evaluate_job(request))
    remote = run_to_end(iter_evaluate_job(request, in_process=True))
    assert SERVER._proc is not None and SERVER._proc.poll() is None  # kept for the next job
    assert remote.result["roc"]["auc"] == inline.result["roc"]["auc"]
    assert remote.result["baselines"]["random_aucs"] == inline.result["baselines"]["random_aucs"]
    np.testing.assert_array_equal(remote.cell_index, inline.cell_index)
    layer = viewer.layers["ground truth cells"]
    assert {s[0] is layer for s in remote.cell_source} == {True}
    picked = np.array([s[1] for s in remote.cell_source])
    np.testing.assert_allclose(layer.data[picked] / MPP,
                               np.stack([remote.cells.rows, remote.cells.cols], 1))
    assert set(remote.images) == {"roc", "radius", "dice", "rates", "bias"}
    assert remote.images["roc"].shape[2] == 4 and remote.images["roc"].std() > 0
    # closing the generator half-way (Cancel) ends the process at once
    gen = iter_evaluate_job(c.job(Settings(heatmap="canvas", points=["ground truth cells"],
                                           n_random=1000)), in_process=True)
    next(gen), next(gen)
    gen.close()
    assert SERVER._proc is None


def test_an_unpainted_canvas_is_not_chosen_and_says_what_to_do():
    from napari_xhisto._widgets.evaluate import EvaluateController, Settings, iter_evaluate_job
    from napari_xhisto._widgets.layers import heatmap_metadata
    from napari_xhisto.errors import XhistoError

    viewer, *_ = _viewer_with_canvas(n_cells=100)
    meta = heatmap_metadata(kind="heatmap", placement=Placement(0, 0, STEP, STEP), mpp=MPP,
                            provenance={}, canvas=True, pastes=[])
    viewer.add_image(np.zeros((100, 100), np.float32), name="made ahead", metadata={"xhisto": meta})
    c = EvaluateController(viewer)
    assert c.is_unpainted_canvas("made ahead") and not c.is_unpainted_canvas("canvas")
    request = c.job(Settings(heatmap="made ahead", points=["ground truth cells"]))
    with pytest.raises(XhistoError, match="nothing was explained on 'made ahead' yet"):
        run_to_end(iter_evaluate_job(request))


def test_hotspot_boxes_are_not_offered_as_regions():
    from napari_xhisto._widgets.evaluate import EvaluateController

    viewer, *_ = _viewer_with_canvas(n_cells=10)
    viewer.add_shapes([np.array([[0, 0], [0, 5], [5, 5], [5, 0]])], name="bias hotspots",
                      metadata={"xhisto": {"kind": "bias hotspots"}})
    viewer.add_shapes([np.array([[0, 0], [0, 5], [5, 5]])], name="mine", shape_type="polygon",
                      features={"class": ["necrosis"]})
    assert EvaluateController(viewer).shapes_names() == ["mine"]
