"""The synthetic cohort with slide-level labels, and the slide-level commands end to end."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest
import tifffile

from napari_xhisto.cli import main
from napari_xhisto.synth.cohort import (
    cohort_plan,
    make_cohort,
    read_lesion_mask,
    slide_key,
)

SIZE = 512


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    make_cohort(out, n=4, lesion_fractions=(0.1, 0.3), size=SIZE, seed=3)
    return out


def test_cohort_labels_match_lesion_presence(cohort):
    rows = list(csv.DictReader(open(cohort / "labels.csv")))
    assert [r["slide"] for r in rows] == [f"slide_{i:04d}.svs" for i in range(4)]
    assert sorted(int(r["label"]) for r in rows) == [0, 0, 1, 1]
    for r in rows:
        lesion = read_lesion_mask(cohort / "lesions" / f"{slide_key(r['slide'])}.lesion.tif")
        assert lesion.mask.shape == (SIZE // 16, SIZE // 16)
        assert lesion.mask.any() == (r["label"] == "1")
        if r["label"] == "1":
            # the measured share of tissue is near the asked one
            assert float(r["lesion_area_fraction"]) == pytest.approx(float(r["lesion_fraction"]),
                                                                     rel=0.5)
        assert (cohort / "slides" / r["slide"]).exists()
    # the ground truth is kept apart from the slides
    assert sorted(p.suffix for p in (cohort / "slides").iterdir()) == [".svs"] * 4


def test_positive_slides_show_tumour_cells_in_the_lesion_only(cohort):
    rows = list(csv.DictReader(open(cohort / "labels.csv")))
    dark = {}
    for r in rows:
        rgb = tifffile.imread(cohort / "slides" / r["slide"])
        lesion = read_lesion_mask(cohort / "lesions" / f"{slide_key(r['slide'])}.lesion.tif")
        big = np.kron(lesion.mask, np.ones((16, 16), bool))
        haem = rgb[..., 0].astype(int) < 120  # dark nuclei
        dark[r["slide"]] = (haem[big].mean() if big.any() else None, haem[~big].mean())
    inside = [v[0] for v in dark.values() if v[0] is not None]
    outside = [v[1] for v in dark.values()]
    assert min(inside) > 2 * max(outside)  # tumour nests are dense with nuclei


def test_cohort_is_deterministic_and_not_overwritten(tmp_path):
    first, again = tmp_path / "first", tmp_path / "again"
    for out in (first, again):
        make_cohort(out, n=2, lesion_fractions=(0.3,), size=256, seed=5)
    assert (again / "labels.csv").read_text() == (first / "labels.csv").read_text()
    for name in ("slide_0000", "slide_0001"):
        assert _digest(again / "lesions" / f"{name}.lesion.tif") == \
            _digest(first / "lesions" / f"{name}.lesion.tif")
        a = tifffile.imread(again / "slides" / f"{name}.svs")
        b = tifffile.imread(first / "slides" / f"{name}.svs")
        assert np.array_equal(a, b)
    before = (again / "labels.csv").read_text()
    assert main(["synth-cohort", str(again), "--n", "2", "--size", "256", "--seed", "6"]) == 1
    assert (again / "labels.csv").read_text() == before  # nothing replaced


def test_cohort_plan_is_balanced_and_cycles_fractions():
    labels, fracs = cohort_plan(10, lesion_fractions=(0.05, 0.2), seed=1)
    assert labels.sum() == 5
    assert sorted(fracs[labels == 1].tolist()) == [0.05, 0.05, 0.05, 0.2, 0.2]
    assert (fracs[labels == 0] == 0).all()
    assert np.array_equal(cohort_plan(10, lesion_fractions=(0.05, 0.2), seed=1)[0], labels)


def test_synth_cohort_cli_rejects_bad_fractions(tmp_path, capsys):
    assert main(["synth-cohort", str(tmp_path / "c"), "--lesion-fraction", "0.1,2"]) == 1
    assert "--lesion-fraction must be from" in capsys.readouterr().err


def test_train_slide_and_explain_slide_commands(tmp_path, capsys):
    from nic_slide_helpers import planted_cohort

    from napari_xhisto.nic.codes import write_codes

    grids, labels, masks = planted_cohort(8, seed=0, rows=8, cols=8, strength=3.0)
    codes = tmp_path / "codes"
    codes.mkdir()
    with open(tmp_path / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["slide", "label"])
        for i, (g, y) in enumerate(zip(grids, labels)):
            write_codes(codes / f"s{i}.nic.zarr", g)
            w.writerow([f"s{i}.svs", int(y)])
    assert main(["train-slide", str(tmp_path / "m"), "--codes", str(codes), "--labels",
                 str(tmp_path / "labels.csv"), "--epochs", "2", "--width", "8"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["slides"] == 8 and summary["code_size"] == 8
    assert (tmp_path / "m" / "slide_model.yaml").exists()
    assert main(["explain-slide", str(codes / "s1.nic.zarr"), "--slide-model",
                 str(tmp_path / "m"), "--out", str(tmp_path / "h.ome.tif")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 0 <= out["p_label"] <= 1 and out["shape"] == [8, 8]
    from napari_xhisto.export.heatmap_io import read_heatmap

    heat = read_heatmap(tmp_path / "h.ome.tif")
    assert heat.provenance["method"] == "gradcam" and heat.provenance["level"] == "slide"
    assert heat.values.shape == (8, 8) and heat.placement.step_row == 128
    assert main(["explain-slide", str(codes / "s1.nic.zarr"), "--slide-model",
                 str(tmp_path / "m"), "--out", str(tmp_path / "h.ome.tif")]) == 1  # no overwrite
