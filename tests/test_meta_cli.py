"""``xhisto meta`` end to end on a small synthetic slide with ground truth; outputs read back."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from napari_xhisto.cli import main

N = 64


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    from napari_xhisto.synth.writer import write_slide

    folder = tmp_path_factory.mktemp("meta")
    return write_slide(folder / "small.svs", size=1536, seed=3)


@pytest.fixture(scope="module")
def flipped(slide, tmp_path_factory):
    """The ground truth with tumour and non-tumour swapped: mislabelled data."""
    data = json.loads(Path(slide[1]).read_text())
    swap = {"tumour": "stroma", "stroma": "tumour", "lymphocyte": "tumour", "other": "tumour",
            "tumour area": "stroma", "necrosis": "tumour area", "vessel": "tumour area",
            "artefact": "tumour area"}
    for f in data["features"]:
        cls = f["properties"].get("classification")
        if cls and cls.get("name") in swap:
            cls["name"] = swap[cls["name"]]
    path = tmp_path_factory.mktemp("flip") / "flipped.geojson"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def run(slide, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "meta"
    rc = main(["meta", str(slide[0]), "--model", "demo", "--method", "gradcam", "--n", str(N),
               "--out", str(out), "--annotations", str(slide[1]), "--seed", "2"])
    assert rc == 0
    return out


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_outputs_read_back_and_match_the_model(run, slide):
    from napari_xhisto.export.meta_figures import DISAGREEMENT_COLUMNS, PATCH_COLUMNS
    from napari_xhisto.models import load_model
    from napari_xhisto.models.inference import read_window
    from napari_xhisto.slide import open_slide

    summary = json.loads((run / "meta.json").read_text())
    rows = _csv(run / "patches.csv")
    assert len(rows) == N == summary["n_patches"] and list(rows[0]) == PATCH_COLUMNS
    assert json.loads((run / "patches.json").read_text())[5]["index"] == 5
    assert (run / "disagreements.csv").read_text().splitlines()[0].split(",") == \
        DISAGREEMENT_COLUMNS
    # every group count adds up, 6 bins on [0.5, 1] for two classes
    assert sum(g["count"] for g in summary["groups"]) == N
    assert summary["bin_edges"][0] == 0.5 and len(summary["bin_edges"]) == 7
    assert 0.0 <= summary["purity"] <= 1.0 and summary["n_labelled"] > N // 2
    footprint = summary["footprint_level0"]
    model = load_model("demo")
    with open_slide(slide[0]) as s:
        mpp = s.mpp
        pick = rows[:: N // 8]
        images = np.stack([read_window(s, float(r["row_px"]) - footprint / 2,
                                       float(r["col_px"]) - footprint / 2, footprint, footprint,
                                       64, 64) for r in pick])
    p = model.predict_proba(images)
    names = model.spec.class_names
    for r, pr in zip(pick, p):
        assert r["predicted"] == names[int(pr.argmax())]
        assert float(r["confidence"]) == pytest.approx(float(pr.max()), abs=2e-3)
        assert float(r["y_um"]) == pytest.approx(float(r["row_px"]) * mpp)
        assert float(r["x_um"]) == pytest.approx(float(r["col_px"]) * mpp)
    # the grid's mean maps are the means of the saved maps
    saved = np.load(run / "maps.npz")
    assert saved["maps"].shape[0] == N and saved["thumbnails"].shape[1:] == (32, 32, 3)
    # figures are images with content
    import matplotlib.image as mpimg

    for name in ("meta_grid.png", "meta_embedding.png"):
        img = mpimg.imread(run / name)
        assert img.shape[0] > 200 and img[..., :3].std() > 0.05


def test_mislabelled_annotations_give_confident_disagreements(slide, flipped, tmp_path, capsys):
    out = tmp_path / "flip"
    assert main(["meta", str(slide[0]), "--n", str(N), "--out", str(out), "--annotations",
                 str(flipped), "--seed", "2"]) == 0
    err = capsys.readouterr().err
    rows, dis = _csv(out / "patches.csv"), _csv(out / "disagreements.csv")
    expected = [r for r in rows if r["label"] and r["label"] != r["predicted"]
                and float(r["confidence"]) > 0.9]
    assert len(dis) == len(expected) > 5
    assert {d["index"] for d in dis} == {r["index"] for r in expected}
    assert all(float(d["p"]) > 0.9 and d["label"] != d["predicted"] for d in dis)
    assert f"{len(dis)} confident disagreement(s)" in err and "µm" in err
    assert json.loads((out / "disagreements.json").read_text())[0]["x_um"] == \
        pytest.approx(float(dis[0]["x_um"]))


def test_no_annotations_skips_purity_with_a_note(slide, tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    out = tmp_path / "plain"
    assert main(["meta", str(slide[0]), "--n", "16", "--out", str(out)]) == 0
    assert torch.get_num_threads() == before  # the study's single thread is given back
    err = capsys.readouterr().err
    assert "no annotations: cluster purity and confident disagreements skipped" in err
    summary = json.loads((out / "meta.json").read_text())
    assert summary["purity"] is None and summary["n_labelled"] == 0
    # an existing, non-empty --out is kept: the next run goes to a sibling
    assert main(["meta", str(slide[0]), "--n", "8", "--out", str(out)]) == 0
    assert (tmp_path / "plain-2" / "meta.json").exists()
    assert json.loads((out / "meta.json").read_text())["n_patches"] == 16


def test_bad_inputs_give_one_line_errors(slide, tmp_path, capsys):
    try:
        from conftest_slides import write_ome_tiff
    except ImportError:  # pragma: no cover - tests run as a package
        from .conftest_slides import write_ome_tiff

    assert main(["meta", str(slide[0]), "--n", "0", "--out", str(tmp_path / "a")]) == 1
    assert "--n must be a whole number >= 1" in capsys.readouterr().err
    assert main(["meta", str(slide[0]), "--n", "3", "--out", str(tmp_path / "s")]) == 1
    assert "the embedding needs at least 4" in capsys.readouterr().err
    assert main(["meta", str(slide[0]), "--out", str(tmp_path / "t"), "--threads", "0"]) == 1
    assert "--threads" in capsys.readouterr().err
    assert main(["meta", str(slide[0]), "--out", str(tmp_path / "b"), "--annotations",
                 str(tmp_path / "missing.geojson")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["meta", str(slide[0]), "--out", str(tmp_path / "c"), "--method", "nope"]) == 1
    assert "nope" in capsys.readouterr().err
    white = write_ome_tiff(tmp_path / "white.ome.tif", [np.full((512, 512, 3), 255, np.uint8)],
                           mpp=0.5)
    assert main(["meta", str(white), "--n", "10", "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no tissue patch" in err[0]
    assert not (tmp_path / "d").exists()
