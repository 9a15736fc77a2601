"""Monte-Carlo dropout: exact agreement with predict when dropout is off, convergence, seeding,
BatchNorm left in eval, one read per patch, refusals, and the CLI's mean and std files."""

import json

import numpy as np
import pytest
import tifffile
import torch

from napari_xhisto.errors import ModelError
from napari_xhisto.geometry import Region
from napari_xhisto.models import (
    ModelSpec,
    build_architecture,
    load_model,
    predict_region,
    save_model,
)
from napari_xhisto.models.mc_dropout import (
    dropout_layers,
    has_mc_dropout,
    mc_predict_proba,
    mc_predict_region,
    sampling_dropout,
)
from napari_xhisto.progress import run_to_end

torch.set_num_threads(2)


def _patches(n=8, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _tiny(folder, name, p):
    torch.manual_seed(0)
    module = build_architecture("xhisto_cnn_xs", 2, options={"dropout": p} if p else None)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval vs train would show
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        module.classifier.weight.mul_(8.0)
    spec = ModelSpec(architecture="xhisto_cnn_xs", class_names=["other", "tumour"],
                     patch_size=32, mpp=1.0, arch_options={"dropout": p} if p else {})
    return load_model(save_model(module, spec, folder / f"{name}.json"), device="cpu")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mc_models")
    return {"drop": _tiny(folder, "drop", 0.5), "plain": _tiny(folder, "plain", 0.0)}


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    """A 256 x 384 textured tiled TIFF at 0.5 µm/px (glass below row 192)."""
    rng = np.random.default_rng(3)
    img = np.clip(rng.normal(150, 40, (256, 384, 3)), 0, 255).astype(np.uint8)
    img[..., 2] = np.clip(img[..., 2].astype(int) + np.linspace(-60, 60, 384)[None], 0, 255)
    img[192:] = 255
    path = tmp_path_factory.mktemp("mc_slide") / "tex.tif"
    tifffile.imwrite(path, img, tile=(128, 128), photometric="rgb")
    from napari_xhisto.slide import open_slide

    with open_slide(path, mpp=0.5) as s:
        yield s


def test_dropout_option_keeps_the_weight_keys_and_the_eval_output():
    plain = build_architecture("xhisto_cnn_s", 2)
    drop = build_architecture("xhisto_cnn_s", 2, options={"dropout": 0.3})
    assert list(plain.state_dict()) == list(drop.state_dict())
    assert dropout_layers(drop) == [("dropout", 0.3)] and dropout_layers(plain) == []
    demo = load_model("demo", device="cpu")
    spec = ModelSpec.from_file(demo.spec.source)
    spec.arch_options = {"dropout": 0.3}
    demo_drop = load_model(spec, device="cpu")  # the bundled weights load unchanged
    assert spec.dropout == 0.3 and demo.spec.dropout is None
    x = _patches(4, 64)
    np.testing.assert_array_equal(demo.predict_proba(x), demo_drop.predict_proba(x))
    with pytest.raises(ModelError, match=r"dropout takes a probability in \[0, 1\)"):
        build_architecture("xhisto_cnn_xs", 2, options={"dropout": 1.5})


def test_conv_dropout_option_builds_keeps_keys_when_off_and_refuses_bad_values():
    for arch, stages in (("xhisto_cnn_s", 4), ("xhisto_cnn_xs", 3)):
        plain = build_architecture(arch, 2)
        off = build_architecture(arch, 2, options={"dropout": 0.3, "conv_dropout": 0})
        assert list(plain.state_dict()) == list(off.state_dict())
        assert [type(m) for m in plain.features] == [type(m) for m in off.features]
        conv = build_architecture(arch, 2, options={"dropout": 0.3, "conv_dropout": 0.1})
        chan = [m for m in conv.features if isinstance(m, torch.nn.Dropout2d)]
        assert len(chan) == stages and all(m.p == 0.1 for m in chan)
        assert isinstance(conv.features[-1], torch.nn.Dropout2d)  # after the last stage too
        # the same parameters in the same order (only the features indices shift), and in eval
        # mode the network computes exactly what the one without dropout computes
        sd_plain, sd_conv = plain.state_dict(), conv.state_dict()
        assert [v.shape for v in sd_plain.values()] == [v.shape for v in sd_conv.values()]
        conv.load_state_dict(dict(zip(sd_conv, sd_plain.values(), strict=True)))
        x = torch.from_numpy(_patches(3, 32).astype(np.float32) / 255).permute(0, 3, 1, 2)
        with torch.no_grad():
            torch.testing.assert_close(conv.eval()(x), plain.eval()(x), rtol=0, atol=0)
    from napari_xhisto.models.target_layers import default_target_layer

    assert isinstance(default_target_layer(conv, "xhisto_cnn_xs"), torch.nn.ReLU)  # CAM layer
    spec = ModelSpec(architecture="xhisto_cnn_xs", class_names=["a", "b"], patch_size=32,
                     mpp=1.0, arch_options={"conv_dropout": 0.2})
    assert spec.dropout == 0.2
    for bad in (1.0, -0.1, True, "0.1"):
        with pytest.raises(ModelError, match=r"conv_dropout takes a probability in \[0, 1\)"):
            build_architecture("xhisto_cnn_xs", 2, options={"conv_dropout": bad})


def test_conv_dropout_alone_gives_mc_spread_and_off_gives_exactly_predict(tmp_path):
    torch.manual_seed(0)
    opts = {"conv_dropout": 0.2}
    module = build_architecture("xhisto_cnn_xs", 2, options=opts)
    spec = ModelSpec(architecture="xhisto_cnn_xs", class_names=["other", "tumour"],
                     patch_size=32, mpp=1.0, arch_options=opts)
    model = load_model(save_model(module, spec, tmp_path / "conv.json"), device="cpu")
    assert [n for n, _ in dropout_layers(model.module)] == ["features.3", "features.8",
                                                             "features.13"]
    x = _patches(6)
    res = mc_predict_proba(model, x, n_samples=8, seed=1)
    assert (res.std > 1e-5).all()  # no head dropout: the spread comes from the conv stages
    again = mc_predict_proba(model, x, n_samples=8, seed=1)
    np.testing.assert_array_equal(res.std, again.std)
    layers = [m for m in model.module.modules() if isinstance(m, torch.nn.Dropout2d)]
    for m in layers:
        m.p = 0.0
    off = mc_predict_proba(model, x, n_samples=4, seed=1)
    np.testing.assert_array_equal(off.std, 0.0)
    np.testing.assert_array_equal(off.mean, model.predict_proba(x))


def test_dropout_off_gives_std_zero_and_exactly_predict(models):
    model = models["drop"]
    x = _patches(8)
    model.module.dropout.p = 0.0
    try:
        res = mc_predict_proba(model, x, n_samples=7, seed=0)
        ref = model.predict_proba(x)
    finally:
        model.module.dropout.p = 0.5
    np.testing.assert_array_equal(res.std, 0.0)
    np.testing.assert_array_equal(res.mean, ref)
    np.testing.assert_array_equal(res.median, ref)


def test_dropout_on_std_positive_reproducible_and_mean_converges(models):
    model = models["drop"]
    x = _patches(6)
    bn = [m.running_mean.clone() for m in model.module.modules()
          if isinstance(m, torch.nn.BatchNorm2d)]
    a = mc_predict_proba(model, x, n_samples=16, seed=5, keep_samples=True)
    b = mc_predict_proba(model, x, n_samples=16, seed=5)
    c = mc_predict_proba(model, x, n_samples=16, seed=6)
    assert (a.std > 1e-4).all()
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.std, b.std)
    assert not np.array_equal(a.mean, c.mean)
    # summaries are those of the passes themselves; rows sum to 1
    np.testing.assert_allclose(a.mean, a.samples.mean(0), atol=1e-6)
    np.testing.assert_allclose(a.std, a.samples.std(0), atol=1e-6)
    np.testing.assert_allclose(a.median, np.median(a.samples, 0), atol=1e-6)
    np.testing.assert_allclose(a.samples.sum(-1), 1.0, atol=1e-5)
    # BatchNorm stayed in eval: running statistics untouched, every module still in eval mode
    after = [m.running_mean for m in model.module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.equal(u, v) for u, v in zip(bn, after, strict=True))
    assert not any(m.training for m in model.module.modules())
    # convergence: the error of the mean against a long run shrinks as N grows (averaged over
    # several seeds so a lucky short run cannot decide)
    def mean(n, seed):
        return mc_predict_proba(model, x, n_samples=n, seed=seed, passes_per_forward=64).mean

    x = x[:3]
    big = mean(512, 99)
    err = [np.mean([np.abs(mean(n, s) - big).mean() for s in range(3)]) for n in (2, 16, 128)]
    assert err[0] > err[1] > err[2], err
    assert err[2] < 0.5 * err[0]


def test_sampled_masks_follow_p_and_rescale():
    drop = torch.nn.Dropout(0.25).eval()
    chan = torch.nn.Dropout2d(0.5).eval()
    net = torch.nn.Sequential(drop)
    g = torch.Generator().manual_seed(0)
    with sampling_dropout(net, g):
        y = net(torch.ones(200, 100))
    np.testing.assert_allclose(np.unique(y.numpy()), [0.0, 1 / 0.75], rtol=1e-6)
    assert abs((y == 0).float().mean().item() - 0.25) < 0.02
    net2 = torch.nn.Sequential(chan)
    with sampling_dropout(net2, g):
        z = net2(torch.ones(64, 32, 4, 4))
    per_channel = z.reshape(64, 32, 16)
    assert torch.all(per_channel.amin(-1) == per_channel.amax(-1))  # whole channels dropped
    assert abs((per_channel[..., 0] == 0).float().mean().item() - 0.5) < 0.05
    assert torch.equal(net(torch.ones(3, 4)), torch.ones(3, 4))  # hooks gone afterwards


def test_refusals(models, tmp_path):
    with pytest.raises(ModelError, match="no dropout layer.*arch_options: \\{dropout: 0.3\\}"):
        mc_predict_proba(models["plain"], _patches(2))
    assert not has_mc_dropout(models["plain"]) and has_mc_dropout(models["drop"])
    with pytest.raises(ModelError, match="at least 2 passes"):
        mc_predict_proba(models["drop"], _patches(2), n_samples=1)
    with pytest.raises(ModelError, match="no dropout layer"):
        next(mc_predict_region(None, None, models["plain"]))  # before any read


class CountingSlide:
    def __init__(self, slide):
        self._s, self.reads = slide, 0

    def read_scaled(self, *a, **k):
        self.reads += 1
        return self._s.read_scaled(*a, **k)

    def __getattr__(self, name):
        return getattr(self._s, name)


def test_region_reads_each_patch_once_and_is_placed_like_predict(models, slide):
    model = models["drop"]
    region = Region(0, 0, 256, 384)
    counted = CountingSlide(slide)
    ref = run_to_end(predict_region(counted, region, model, batch_size=4, workers=1))
    ref_reads, counted.reads = counted.reads, 0
    umap = run_to_end(mc_predict_region(counted, region, model, n_samples=9, seed=1,
                                        batch_size=4, workers=1))
    assert counted.reads == ref_reads  # 9 passes, one read per patch (plus the tissue thumbnail)
    pmap = umap.mean
    assert pmap.placement == ref.placement
    np.testing.assert_array_equal(pmap.tissue_mask, ref.tissue_mask)
    assert pmap.tissue_mask.sum() == 18 and not pmap.tissue_mask[3:].any()  # glass skipped
    assert pmap.provenance["mc_dropout"]["n_samples"] == 9
    # the std map is exactly what mc_predict_proba gives on the patches as read, cell by cell
    from napari_xhisto.models import plan_patches, read_patch_batch

    plan = plan_patches(slide, region, model.spec)
    imgs = read_patch_batch(slide, plan, plan.cells)
    direct = mc_predict_proba(model, imgs, n_samples=9, seed=1, batch_size=4)
    np.testing.assert_allclose(umap.std[plan.cells[:, 0], plan.cells[:, 1]], direct.std,
                               atol=1e-6)
    np.testing.assert_allclose(pmap.probs[plan.cells[:, 0], plan.cells[:, 1]], direct.mean,
                               atol=1e-6)
    assert (umap.std_map()[pmap.tissue_mask] > 0).all()
    assert (umap.std_map()[~pmap.tissue_mask] == 0).all()


def test_cli_writes_mean_and_std_maps_placed_like_predict(models, slide, tmp_path, capsys):
    from napari_xhisto.cli import main
    from napari_xhisto.export.heatmap_io import read_heatmap

    model = models["drop"]
    common = [str(slide.path), "--model", model.spec.source, "--region", "0,0,256,384",
              "--mpp", "0.5", "--device", "cpu", "--batch-size", "4"]
    plain = tmp_path / "p.ome.tif"
    assert main(["predict", *common, "--out", str(plain)]) == 0
    capsys.readouterr()
    out = tmp_path / "mc.ome.tif"
    assert main(["predict", *common, "--out", str(out), "--mc-dropout", "6",
                 "--mc-seed", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    std_file = tmp_path / "mc-std.ome.tif"
    assert summary["std_out"] == str(std_file) and summary["mc_dropout"] == 6
    ref, mean, std = read_heatmap(plain), read_heatmap(out), read_heatmap(std_file)
    assert mean.placement == ref.placement == std.placement
    np.testing.assert_array_equal(np.isnan(mean.values), np.isnan(ref.values))
    np.testing.assert_array_equal(np.isnan(std.values), np.isnan(ref.values))
    umap = run_to_end(mc_predict_region(slide, Region(0, 0, 256, 384), model, n_samples=6,
                                        seed=2, batch_size=4))
    fin = np.isfinite(std.values)
    np.testing.assert_allclose(std.values[fin], umap.std_map()[fin], atol=1e-6)
    np.testing.assert_allclose(mean.values[fin], umap.mean.positive[fin], atol=1e-6)
    assert std.provenance["kind"] == "probability-std"
    assert std.provenance["mc_dropout"]["seed"] == 2
    assert summary["mean_std"] == pytest.approx(float(std.values[fin].mean()), rel=1e-5)
    # the same run again keeps both results unless --force
    before = std_file.read_bytes()
    assert main(["predict", *common, "--out", str(out), "--mc-dropout", "6"]) != 0
    assert "exists; choose another --out or pass --force" in capsys.readouterr().err
    assert std_file.read_bytes() == before
    assert main(["predict", *common, "--out", str(out), "--mc-dropout", "6", "--mc-seed", "2",
                 "--force"]) == 0
    capsys.readouterr()
    # a derived std name that holds someone else's file is refused, nothing is written
    mine = tmp_path / "other.ome.tif"
    (tmp_path / "other-std.ome.tif").write_text("keep me")
    assert main(["predict", *common, "--out", str(mine), "--mc-dropout", "3"]) != 0
    assert "other-std.ome.tif exists" in capsys.readouterr().err
    assert (tmp_path / "other-std.ome.tif").read_text() == "keep me" and not mine.exists()
    # a model without dropout is refused with the reason
    assert main(["predict", *common[:1], "--model", models["plain"].spec.source, *common[3:],
                 "--out", str(tmp_path / "x.ome.tif"), "--mc-dropout", "3"]) != 0
    assert "no dropout layer" in capsys.readouterr().err


def test_bundled_demo_mc_has_dropout_and_the_demo_keys():
    from napari_xhisto.models.demo import DEMO_DIR

    mc = load_model(DEMO_DIR / "demo_mc.json", device="cpu")
    demo = load_model("demo", device="cpu")
    assert has_mc_dropout(mc) and mc.spec.dropout == 0.3
    assert mc.spec.arch_options == {"dropout": 0.3, "conv_dropout": 0.1}
    # channel dropout after each of the four conv stages, dropout before the classifier
    assert dropout_layers(mc.module) == [("features.3", 0.1), ("features.11", 0.1),
                                         ("features.19", 0.1), ("features.27", 0.1),
                                         ("dropout", 0.3)]
    # demo's parameters in demo's order: only the features indices shift
    assert ([v.shape for v in mc.module.state_dict().values()]
            == [v.shape for v in demo.module.state_dict().values()])
    res = mc_predict_proba(mc, _patches(3, 64), n_samples=5, seed=0)
    assert res.mean.shape == (3, 2) and (res.std >= 0).all()


def test_damaged_tile_cells_are_nan_in_mean_median_and_std(tmp_path, cmu1_path):
    try:
        import conftest_slides as cs
    except ImportError:  # tests collected as a package
        from . import conftest_slides as cs
    from napari_xhisto.models.demo import DEMO_DIR
    from napari_xhisto.slide import open_slide

    tile = cs.largest_tile(cmu1_path)
    path = cs.flip_entropy_bits(cmu1_path, tmp_path / "flip.svs", *tile)
    region = Region(960, 720, 768, 768)
    model = load_model(DEMO_DIR / "demo_mc.json", device="cpu")
    with open_slide(path) as slide:
        umap = run_to_end(mc_predict_region(slide, region, model, n_samples=3, batch_size=16))
        ref = run_to_end(predict_region(slide, region, model, batch_size=16))
    bad = umap.mean.damaged_mask
    assert bad is not None and bad.sum() == 9
    np.testing.assert_array_equal(bad, ref.damaged_mask)
    for arr in (umap.mean.probs, umap.median, umap.std):
        assert np.isnan(arr[bad]).all() and np.isfinite(arr[~bad]).all()
    assert umap.provenance["n_damaged_cells"] == 9


def test_bundled_demo_mc_std_rises_on_the_second_stain_style_where_it_fails():
    """demo_mc was trained on stain style "a" only; on the same tissue in style "b" it misses
    tumour, and its MC std on those tumour patches rises (docs/uncertainty.md has the full
    400-patch, three-seed measurement)."""
    from napari_xhisto.models.demo import DEMO_DIR
    from napari_xhisto.synth import sample_patches

    mc = load_model(DEMO_DIR / "demo_mc.json", device="cpu")
    std, recall = {}, {}
    for style in ("a", "b"):
        ps = sample_patches(64, patch_size=64, mpp=1.0, seed=11, stain_style=style)
        y = np.asarray(ps.labels)
        res = mc_predict_proba(mc, ps.images, n_samples=10, seed=0)
        cls = res.mean.argmax(1)
        std[style] = res.std[np.arange(len(cls)), cls]
        recall[style] = (cls[y == 1] == 1).mean()
    tumour = y == 1
    assert tumour.sum() >= 10
    assert recall["b"] < recall["a"] - 0.3  # the second style is a real shift for this model
    assert std["b"][tumour].mean() > 2 * std["a"][tumour].mean()
    assert std["b"].mean() > std["a"].mean()
