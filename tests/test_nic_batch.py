"""xhisto batch --task compress (issue #18 with #17): a 2-slide study, idempotent, resumable."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
distributed = pytest.importorskip("distributed")

from napari_xhisto.cohort import StudySettings, run_study  # noqa: E402
from napari_xhisto.nic.codes import read_codes  # noqa: E402
from napari_xhisto.nic.compress import compress_slide  # noqa: E402
from napari_xhisto.nic.encoders import build_net, default_spec, save_encoder  # noqa: E402
from napari_xhisto.progress import run_to_end  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from conftest_slides import textured_image, write_aperio_svs  # noqa: E402


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("nicstudy")
    torch.manual_seed(0)
    spec = default_spec("contrastive", patch_px=16, mpp=0.5, code_size=8, width=8)
    enc = save_encoder(root / "toy.yaml", spec, build_net(spec).eval())
    lines = []
    for k, (h, w) in enumerate([(512, 640), (640, 512)]):
        img = textured_image(h, w, seed=k)
        img[:128] = 240  # a band of glass: not tissue
        write_aperio_svs(root / f"s{k}.svs", [img], mpp=0.5)
        lines.append(f"{root / f's{k}.svs'},s{k}")
    csv_path = root / "study.csv"
    csv_path.write_text("path,id\n" + "\n".join(lines) + "\n")
    return csv_path, enc


@pytest.fixture(scope="module")
def client():
    """An in-process dask client (one worker thread): the study code path without processes."""
    cl = distributed.Client(processes=False, n_workers=1, threads_per_worker=1,
                            dashboard_address=None)
    yield cl
    cl.close()


def _rows(out):
    with open(out / "results.csv", newline="") as fh:
        table = {r["slide_id"]: r for r in csv.DictReader(fh)}
    rows = json.loads((out / "results.json").read_text())["rows"]  # all of a task's numbers
    return {r["slide_id"]: {**table[r["slide_id"]], **r} for r in rows}


def test_compress_study_writes_stores_and_resumes(study, client, tmp_path):
    csv_path, enc = study
    settings = StudySettings(task="compress", extra={"encoder": str(enc)}, batch_size=16)
    out = tmp_path / "out"
    # a killed earlier attempt left half of s1's chunks in its slide folder
    stable = out / "s1" / ".nic-work" / "s1.nic.zarr"
    stable.parent.mkdir(parents=True)
    gen = compress_slide(csv_path.parent / "s1.svs", enc, batch_size=16, out=stable)
    for _ in range(20):  # 16 px cells, 16 x 16 cell chunks, 16 patches a batch: > 1 chunk
        next(gen)
    gen.close()
    run = run_study(csv_path, settings, out, client=client, stream=None)
    assert (run.computed, run.cached, run.failed) == (2, 0, 0)
    rows = _rows(out)
    assert rows["s0"]["status"] == rows["s1"]["status"] == "ok"
    assert int(rows["s1"]["chunks_reused"]) > 0 and int(rows["s0"]["chunks_reused"]) == 0
    for sid in ("s0", "s1"):
        grid = read_codes(out / sid / f"{sid}.nic.zarr")
        ref = run_to_end(compress_slide(csv_path.parent / f"{sid}.svs", enc, batch_size=16))
        np.testing.assert_array_equal(grid.codes.compute(), ref.codes)  # resumed == one run
        assert grid.shape == ref.shape and not grid.tissue[0].any()
        assert (out / sid / "compress.json").is_file()
        assert not (out / sid / ".nic-work").exists()
    assert int(rows["s0"]["n_patches"]) == int(read_codes(out / "s0" / "s0.nic.zarr").tissue.sum())
    again = run_study(csv_path, settings, out, client=client, stream=None)
    assert (again.computed, again.cached) == (0, 2)  # idempotent
    # another encoder is another study: refused without --overwrite, then recomputed
    spec = default_spec("vae", patch_px=16, mpp=0.5, code_size=8, width=8)
    other = save_encoder(tmp_path / "vae.yaml", spec, build_net(spec))
    from napari_xhisto.errors import XhistoError

    with pytest.raises(XhistoError, match="other settings"):
        run_study(csv_path, StudySettings(task="compress", extra={"encoder": str(other)}), out,
                  client=client, stream=None)


def test_batch_cli_refuses_compress_without_an_encoder(study, capsys):
    from napari_xhisto.cli import main

    csv_path, _ = study
    rc = main(["batch", str(csv_path), "--task", "compress", "--out", str(csv_path.parent / "o")])
    assert rc != 0 and "--task compress needs --encoder" in capsys.readouterr().err
