"""``xhisto calibrate`` end to end on a small synthetic slide, and its one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_xhisto.cli import main


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    from napari_xhisto.synth.writer import write_slide

    folder = tmp_path_factory.mktemp("calslide")
    path, gt = write_slide(folder / "s.svs", size=2048, seed=3)
    return path, gt


def _run(capsys, *argv):
    rc = main(["calibrate", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def calibrated(slide, tmp_path_factory):
    path, gt = slide
    out = tmp_path_factory.mktemp("calout") / "demo-calibrated.yaml"
    rc = main(["calibrate", str(path), "--model", "demo", "--annotations", str(gt), "--out", str(out),
               "--splits", "5", "--seed", "1"])
    assert rc == 0
    return out


def test_calibrate_writes_spec_png_json_that_read_back(calibrated, slide):
    from skimage.io import imread

    from napari_xhisto.models import load_model
    from napari_xhisto.models.demo import DEMO_SPEC_PATH

    out = calibrated
    png = out.with_name("demo-calibrated.reliability.png")
    doc = json.loads(out.with_name("demo-calibrated.reliability.json").read_text())
    model = load_model(out, device="cpu")
    t = model.spec.temperature
    assert t == pytest.approx(doc["temperature"]) and t != 1.0
    assert model.spec.weights_path().resolve() == load_model("demo").spec.weights_path().resolve()
    assert model.spec.training["calibration"]["ece_after"] == pytest.approx(
        doc["test_split"]["after"]["ece"])
    assert model.provenance()["temperature"] == t
    # the demo spec itself is unchanged
    assert "temperature" not in json.loads(DEMO_SPEC_PATH.read_text())
    # the JSON's test-split numbers are those of its own bins
    for key in ("before", "after"):
        s = doc["test_split"][key]
        assert s["n_bins"] == 10 and s["convention"] == "top-label"
        b = s["bins"]
        count = np.array(b["count"], float)
        acc = np.array([np.nan if v is None else v for v in b["accuracy"]])
        conf = np.array([np.nan if v is None else v for v in b["confidence"]])
        assert s["ece"] == pytest.approx(np.nansum(count * np.abs(acc - conf)) / count.sum())
    assert doc["test_split"]["after"]["nll"] <= doc["test_split"]["before"]["nll"] + 1e-9
    assert len(doc["repeated_splits"]["temperatures"]) == 5
    assert np.array(doc["repeated_splits"]["after"]["accuracy"], dtype=float).shape == (5, 10)
    lab = doc["labelling"]["slides"][0]
    assert lab["rule"] == "cells" and lab["labelled_patches"] == doc["n_patches"] > 20
    assert doc["n_patches"] == doc["test_split"]["n_val"] + doc["test_split"]["n_test"]
    assert sum(doc["per_class"].values()) == doc["n_patches"] and min(doc["per_class"].values())
    img = imread(png)
    assert img.ndim == 3 and img.shape[0] > 300 and img[..., :3].std() > 20
    # red (before) and blue (after) bars are drawn
    rgb = img[..., :3].astype(int)
    assert ((rgb[..., 0] > 180) & (rgb[..., 2] < 120)).sum() > 200
    assert ((rgb[..., 2] > 150) & (rgb[..., 0] < 100)).sum() > 200


def test_loaded_spec_changes_predict_probabilities(calibrated, slide):
    from napari_xhisto.models import load_model, predict_region
    from napari_xhisto.progress import run_to_end
    from napari_xhisto.slide import open_slide

    base, cal = load_model("demo", device="cpu"), load_model(calibrated, device="cpu")
    from napari_xhisto.geometry import Region

    with open_slide(slide[0]) as s:
        region = Region(512, 512, 1024, 1024)
        p0 = run_to_end(predict_region(s, region, base))
        p1 = run_to_end(predict_region(s, region, cal))
    t = cal.spec.temperature
    m = p0.tissue_mask
    z = np.log(np.clip(p0.probs[m].astype(np.float64), 1e-30, None))
    want = np.exp(z / t) / np.exp(z / t).sum(-1, keepdims=True)
    np.testing.assert_allclose(p1.probs[m], want, atol=2e-4)
    assert p1.provenance["temperature"] == t


def test_outputs_are_never_overwritten_without_force(calibrated, slide, capsys):
    path, gt = slide
    before = calibrated.read_text()
    rc, _, err = _run(capsys, path, "--model", "demo", "--annotations", gt, "--out", calibrated)
    assert rc == 1 and "exists" in err and "--force" in err and err.count("\n") == 1
    assert calibrated.read_text() == before
    png = calibrated.with_name("other.reliability.png")
    png.write_bytes(b"mine")
    rc, _, err = _run(capsys, path, "--model", "demo", "--out", calibrated.with_name("other.json"))
    assert rc == 1 and "other.reliability.png exists" in err
    assert png.read_bytes() == b"mine"


def test_force_replaces_and_annotations_default_beside_the_slide(calibrated, slide, capsys):
    path, _ = slide
    out = calibrated.with_name("again.json")
    out.write_text("{}")
    rc, stdout, _ = _run(capsys, path, "--model", "demo", "--out", out, "--splits", "2",
                         "--force", "--seed", "5")
    assert rc == 0
    summary = json.loads(stdout)
    assert json.loads(out.read_text())["temperature"] == pytest.approx(summary["temperature"],
                                                                       abs=1e-4)
    first = json.loads(calibrated.with_name("demo-calibrated.reliability.json").read_text())
    assert summary["n_patches"] == first["n_patches"]  # the same labels from s.geojson


def test_bad_inputs_give_one_line_errors(slide, tmp_path, capsys):
    from napari_xhisto.annotations import AnnotationSet, CellPoints, write_annotations
    from napari_xhisto.models.demo import DEMO_SPEC_PATH

    path, gt = slide
    out = tmp_path / "m.yaml"
    empty = tmp_path / "empty.geojson"
    write_annotations(empty, AnnotationSet.empty())
    rng = np.random.default_rng(0)
    one = tmp_path / "one.geojson"
    write_annotations(one, AnnotationSet(CellPoints(rng.uniform(0, 2048, 3000),
                                                    rng.uniform(0, 2048, 3000),
                                                    ["tumour"] * 3000), [], {}))
    cases = [
        ((path, "--model", "demo", "--annotations", gt, gt), "one --annotations file per slide"),
        ((path, "--model", "demo", "--annotations", tmp_path / "no.geojson"), "no.geojson"),
        ((path, "--model", "demo", "--annotations", empty), "holds no cells or regions"),
        ((path, "--model", "demo", "--annotations", one), "every labelled patch is of class"),
        ((path, "--model", "demo", "--annotations", gt, "--min-cells", "100000"),
         "only 0 labelled patches"),
        ((path, "--model", "demo", "--annotations", gt, "--label-rule", "regions",
          "--tissue-threshold", "2"), "tissue"),
        ((tmp_path / "none.svs", "--model", "demo"), "does not exist"),
        ((path, "--model", DEMO_SPEC_PATH, "--annotations", gt, "--force"), "own spec"),
        ((path, "--model", "demo", "--val-fraction", "1"), "--val-fraction"),
        ((path, "--model", "demo", "--bins", "1"), "--bins"),
    ]
    for argv, msg in cases:
        target = DEMO_SPEC_PATH if "own spec" in msg else out
        rc, _, err = _run(capsys, *argv, "--out", target)
        assert rc == 1, (argv, err)
        assert msg in err, (msg, err)
        assert err.count("\n") == 1 and "Traceback" not in err
    rc, _, err = _run(capsys, path, "--model", "demo", "--out", tmp_path / "m.txt")
    assert rc == 1 and ".yaml, .yml or .json" in err and err.count("\n") == 1
    assert not out.exists()


def test_cancel_closes_the_slides_it_opened(slide, monkeypatch):
    import napari_xhisto.slide as slide_module
    from napari_xhisto.models.calibrate import iter_collect_logits

    path, gt = slide
    real, closed = slide_module.open_slide, []

    def tracked(*args, **kwargs):
        s = real(*args, **kwargs)
        close = s.close

        def close_and_note():
            closed.append(True)
            close()

        s.close = close_and_note
        return s

    monkeypatch.setattr(slide_module, "open_slide", tracked)
    gen = iter_collect_logits([path], [gt], "demo", batch_size=16)
    assert next(gen)[0] == 0
    assert next(gen)[0] == 16
    gen.close()  # what Cancel does
    assert closed == [True]
    gen = iter_collect_logits([path], [path.with_name("nothing.geojson")], "demo")
    with pytest.raises(Exception, match="nothing.geojson"):
        next(gen)
    assert closed == [True, True]
