"""Studies without a cluster: STUDY.csv checks, fingerprints, the slide store, AUC intervals."""

from __future__ import annotations

import csv
import hashlib
import json
import os

import numpy as np
import pytest

from napari_xhisto.cohort import auc_interval, read_study, study_auc
from napari_xhisto.cohort import fingerprint as fp
from napari_xhisto.cohort.results import write_results
from napari_xhisto.cohort.store import (
    DONE,
    clean_partials,
    commit,
    new_workdir,
    read_done,
    study_lock,
)
from napari_xhisto.cohort.summary import binary_labels
from napari_xhisto.errors import XhistoError
from napari_xhisto.geometry import Region


@pytest.fixture
def files(tmp_path):
    """Three stand-in slide files, one annotation file and a subfolder."""
    (tmp_path / "sub").mkdir()
    for name in ("A-1.svs", "B.ome.tif", "sub/A-1.svs"):
        (tmp_path / name).write_bytes(name.encode() * 10)
    (tmp_path / "A-1.geojson").write_text("{}")
    return tmp_path


def _csv(path, text):
    path.write_text(text)
    return path


# ---- STUDY.csv ----------------------------------------------------------------------------
def test_read_study_resolves_paths_ids_regions_and_keeps_extra_columns(files):
    study = _csv(files / "study.csv",
                 "Path,annotations,label,region,patient\n"
                 "A-1.svs,A-1.geojson,tumour,,p1\n"
                 "B.ome.tif,,normal,\"10,20,300,400\",p2\n"
                 "\n# a comment line\n"
                 "sub/A-1.svs,,,,p3\n")
    rows = read_study(study)
    assert [r.line for r in rows] == [2, 3, 6]
    assert rows[0].path == files / "A-1.svs" and rows[0].path.is_absolute()
    assert rows[0].annotations == files / "A-1.geojson"
    assert rows[1].region == Region(10, 20, 300, 400) and rows[1].slide_id == "B"
    assert rows[1].label == "normal" and rows[2].label is None
    assert [r.extra["patient"] for r in rows] == ["p1", "p2", "p3"]
    # two files share the stem A-1: both get a distinct folder name
    assert rows[0].slide_id != rows[2].slide_id and rows[0].slide_id.startswith("A-1")
    assert len({r.slide_id for r in rows}) == 3


def test_regions_of_one_slide_get_their_own_ids_and_explicit_ids_win(files):
    rows = read_study(_csv(files / "s.csv", "path,region,id\nA-1.svs,\"0,0,64,64\",\n"
                                            "A-1.svs,\"64,0,64,64\",\nB.ome.tif,,my slide/1\n"))
    assert [r.slide_id for r in rows] == ["A-1_0_0_64_64", "A-1_64_0_64_64", "my_slide_1"]


@pytest.mark.parametrize("text, message", [
    ("slide,label\nA-1.svs,x\n", "line 1: no 'path' column"),
    ("path,label\n,x\n", "line 2: the path is empty"),
    ("path\nA-1.svs\nmissing.svs\n", "line 3: slide not found"),
    ("path,region\nA-1.svs,\"1,2,3\"\n", "line 2: a region is 'row,col,height,width'"),
    ("path,region\nA-1.svs,\"0,0,0,5\"\n", "line 2: Region needs a positive height"),
    ("path,region\nA-1.svs,1,2,3,4\n", "line 2: 5 fields but the header has 2"),
    ("path\nA-1.svs\nA-1.svs\n", "line 3: repeats line 2"),
    ("path,id\nA-1.svs,x\nB.ome.tif,x\n", "line 3: id 'x' is also used on line 2"),
    ("path,annotations\nA-1.svs,nope.geojson\n", "line 2: annotations file not found"),
    ("path\n", "lists no slides"),
    ("", "is empty"),
    ("path,path\nA-1.svs,A-1.svs\n", "appear more than once"),
])
def test_study_errors_name_the_line(files, text, message):
    with pytest.raises(XhistoError, match=message):
        read_study(_csv(files / "bad.csv", text))


def test_evaluate_needs_annotations_on_every_row(files):
    study = _csv(files / "s.csv", "path,annotations\nA-1.svs,A-1.geojson\nB.ome.tif,\n")
    assert len(read_study(study)) == 2
    with pytest.raises(XhistoError, match="line 3: --task evaluate needs an annotations file"):
        read_study(study, need_annotations=True)


def test_all_bad_rows_are_listed_at_once(files):
    with pytest.raises(XhistoError) as info:
        read_study(_csv(files / "s.csv", "path\nx.svs\ny.svs\nz.svs\n"), max_errors=2)
    assert "line 2" in str(info.value) and "line 3" in str(info.value)
    assert "(and 1 more)" in str(info.value)


# ---- fingerprints -------------------------------------------------------------------------
def test_small_files_are_hashed_completely_and_times_do_not_matter(tmp_path):
    p = tmp_path / "a.bin"
    data = os.urandom(5000)
    p.write_bytes(data)
    assert fp.file_fingerprint(p) == "sha256:" + hashlib.sha256(data).hexdigest()
    os.utime(p, (1, 1))
    assert fp.file_fingerprint(p) == "sha256:" + hashlib.sha256(data).hexdigest()


def test_large_files_are_sampled_and_changes_in_samples_or_size_show(tmp_path, monkeypatch):
    monkeypatch.setattr(fp, "FULL_HASH_LIMIT", 1 << 16)
    monkeypatch.setattr(fp, "_SAMPLE_BLOCK", 1 << 10)
    data = bytearray(os.urandom(1 << 20))
    p = tmp_path / "big.svs"
    p.write_bytes(data)
    first = fp.file_fingerprint(p)
    assert first.startswith("sampled-sha256:")
    copy = tmp_path / "copy.svs"
    copy.write_bytes(data)
    assert fp.file_fingerprint(copy) == first  # content, not name or time
    data[5] ^= 0xFF  # inside the first sample
    p.write_bytes(data)
    assert fp.file_fingerprint(p) != first
    p.write_bytes(bytes(data[:-100]))  # truncated
    assert fp.file_fingerprint(p) != first


def test_slide_key_depends_on_inputs_and_settings_only():
    k = fp.slide_key(task="predict", settings_hash="s", slide="a", annotations=None, region=None)
    assert k == fp.slide_key(task="predict", settings_hash="s", slide="a", annotations=None,
                             region=None)
    others = [dict(task="explain"), dict(settings_hash="t"), dict(slide="b"),
              dict(annotations="c"), dict(region=(0, 0, 1, 1))]
    base = dict(task="predict", settings_hash="s", slide="a", annotations=None, region=None)
    assert len({k} | {fp.slide_key(**{**base, **o}) for o in others}) == 6


def test_runtime_settings_stay_out_of_the_key():
    from napari_xhisto.cohort import StudySettings, get_task

    task = get_task("predict")
    a = StudySettings(task="predict", device="cpu", batch_size=8, reader_threads=1)
    b = StudySettings(task="predict", device="cuda:1", batch_size=256)
    assert a.keyed(task.uses) == b.keyed(task.uses)
    c = StudySettings(task="predict", tissue_threshold=0.5)
    assert c.keyed(task.uses) != a.keyed(task.uses)
    # a predict study does not depend on the explain method
    d = StudySettings(task="predict", method="gradcam")
    assert d.keyed(task.uses) == a.keyed(task.uses)
    assert StudySettings.from_dict(json.loads(json.dumps(c.to_dict()))) == c


# ---- the slide store ----------------------------------------------------------------------
def test_commit_moves_files_in_and_done_vouches_only_for_unchanged_outputs(tmp_path):
    slide_dir = tmp_path / "s1"
    slide_dir.mkdir()
    work = new_workdir(slide_dir)
    (work / "probability.ome.tif").write_bytes(b"x" * 100)
    (work / "predict.json").write_text("{}")
    assert read_done(slide_dir, "k1") is None
    rec = commit(work, slide_dir, key="k1", row={"status": "ok"})
    assert not work.exists()
    assert sorted(o["name"] for o in rec["outputs"]) == ["predict.json", "probability.ome.tif"]
    assert rec["outputs"][1]["sha256"] == hashlib.sha256(b"x" * 100).hexdigest()
    assert read_done(slide_dir, "k1")["row"] == {"status": "ok"}
    assert read_done(slide_dir, "other key") is None
    (slide_dir / "probability.ome.tif").write_bytes(b"y" * 99)  # changed by hand
    assert read_done(slide_dir, "k1") is None
    (slide_dir / "predict.json").unlink()
    assert read_done(slide_dir, "k1") is None


def test_a_killed_attempt_leaves_nothing_that_looks_done(tmp_path):
    slide_dir = tmp_path / "s1"
    slide_dir.mkdir()
    work = new_workdir(slide_dir)
    (work / "heatmap.ome.tif").write_bytes(b"half")
    assert not (slide_dir / DONE).exists() and read_done(slide_dir, "k") is None
    assert not (slide_dir / "heatmap.ome.tif").exists()
    keep = new_workdir(slide_dir)
    assert clean_partials(slide_dir, keep=keep) == 1
    assert not work.exists() and keep.exists()


def test_study_lock_refuses_a_second_run_and_takes_over_a_stale_lock(tmp_path):
    with study_lock(tmp_path):
        with pytest.raises(XhistoError, match="another xhisto batch"):
            with study_lock(tmp_path):
                pass
    assert not (tmp_path / ".lock").exists()
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead)}))
    with study_lock(tmp_path):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()


# ---- AUC intervals ------------------------------------------------------------------------
def test_auc_interval_matches_sklearn_and_evaluates_interval():
    from sklearn.metrics import roc_auc_score

    from napari_xhisto.metrics import auc_interval as metrics_auc_interval

    rng = np.random.default_rng(3)
    n_pos, n_neg = 40, 70
    scores = np.concatenate([rng.normal(0.6, 0.2, n_pos), rng.normal(0.4, 0.2, n_neg)])
    scores = np.round(scores, 1)  # many ties
    scores[[3, 50]] = np.nan  # left out, as in cell_roc
    classes = np.array(["tumour"] * n_pos + ["stroma"] * (n_neg - 10) + ["lymphocyte"] * 10)
    res = auc_interval(scores, classes, positive=("tumour",), negative=("stroma",),
                       n_boot=200, seed=7)
    finite = np.isfinite(scores)
    p_idx = np.flatnonzero((classes == "tumour") & finite)
    n_idx = np.flatnonzero((classes == "stroma") & finite)
    y = np.r_[np.ones(p_idx.size), np.zeros(n_idx.size)]
    assert res["auc"] == pytest.approx(roc_auc_score(y, scores[np.r_[p_idx, n_idx]]), abs=1e-12)
    assert (res["n_positive"], res["n_negative"]) == (p_idx.size, n_idx.size)
    # the interval is xhisto evaluate's, on the chosen groups
    ref = metrics_auc_interval(scores[np.r_[p_idx, n_idx]], y.astype(bool), n_boot=200, seed=7)
    assert (res["low"], res["high"]) == (ref["low"], ref["high"])
    assert res["low"] < res["auc"] < res["high"]


def test_auc_interval_needs_both_groups():
    res = auc_interval([0.1, 0.2], ["tumour", "tumour"])
    assert res["auc"] is None and res["n_negative"] == 0


def test_study_auc_uses_binary_labels_of_finished_slides():
    assert binary_labels(["0", "1", "1"]) == ("1", "0")
    assert binary_labels(["normal", "Tumour"]) == ("Tumour", "normal")
    assert binary_labels(["a", "b"]) is None and binary_labels(["a", "b", "c"]) is None
    assert binary_labels(["met", "clear"], positive_class="met") == ("met", "clear")
    rows = [{"status": "ok", "label": lab, "mean_p": p} for lab, p in
            [("tumour", 0.9), ("tumour", 0.6), ("normal", 0.7), ("normal", 0.2)]]
    rows.append({"status": "failed", "label": "normal", "mean_p": None})
    res = study_auc(rows)
    assert res["auc"] == pytest.approx(0.75) and res["n_positive"] == 2 and res["n_negative"] == 2
    assert study_auc([{**r, "label": ""} for r in rows]) is None


# ---- results table ------------------------------------------------------------------------
def test_results_table_reads_back_with_extra_columns(tmp_path):
    rows = [{"slide_id": "b", "line": 3, "status": "failed", "error": "truncated", "cached": False,
             "extra": {"patient": "p2"}},
            {"slide_id": "a", "line": 2, "status": "ok", "mean_p": 0.25, "cached": True,
             "cell_auc": 0.9, "extra": {"patient": "p1"}}]
    csv_path, json_path = write_results(tmp_path, rows, {"task": "predict"})
    with open(csv_path, newline="") as fh:
        got = list(csv.DictReader(fh))
    assert [g["slide_id"] for g in got] == ["a", "b"]  # study order
    assert got[0]["mean_p"] == "0.25" and got[0]["cached"] == "yes" and got[0]["patient"] == "p1"
    assert got[1]["error"] == "truncated" and got[1]["mean_p"] == ""
    data = json.loads(json_path.read_text())
    assert data["study"] == {"task": "predict"} and len(data["rows"]) == 2


def test_a_slide_without_a_cell_auc_says_why_in_its_row(tmp_path):
    # no tumour cell on the slide: its evaluation has no cell AUC, and the row's note says why
    from napari_xhisto.annotations import CellPoints
    from napari_xhisto.cohort.tasks import _metric_headline
    from napari_xhisto.metrics.report import evaluate_heatmap

    heat = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    cells = CellPoints(np.full(4, 8.0), np.arange(4) * 8.0, np.full(4, "stroma"))
    head = _metric_headline(evaluate_heatmap(heat, mpp=1.0, cells=cells, radius_um=2.0,
                                             n_random=0))
    assert "cell_auc" not in head and head["note"].startswith("no cell AUC: a cell ROC needs")
    csv_path, _ = write_results(tmp_path, [{"slide_id": "a", "status": "ok", **head}], {})
    with open(csv_path, newline="") as fh:
        got = next(csv.DictReader(fh))
    assert got["status"] == "ok" and got["cell_auc"] == "" and got["note"] == head["note"]


# ---- tasks --------------------------------------------------------------------------------
def test_compress_needs_an_encoder(files, capsys):
    # --task compress runs since #17 (tests/test_nic_batch.py); without --encoder it is refused
    from napari_xhisto.cli import main
    from napari_xhisto.cohort import TASKS, get_task

    assert "compress" in TASKS and get_task("compress").run is not None
    _csv(files / "s.csv", "path\nA-1.svs\n")
    rc = main(["batch", str(files / "s.csv"), "--task", "compress", "--out", str(files / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and "--task compress needs --encoder" in err
    assert not (files / "o").exists()


def test_cli_checks_options_before_touching_slides(files, capsys):
    from napari_xhisto.cli import main

    study = _csv(files / "s.csv", "path,annotations\nA-1.svs,A-1.geojson\n")
    cases = [(["--task", "evaluate"], "needs --radius-um"),
             (["--task", "explain", "--param", "nope=1"], "unknown parameter"),
             (["--task", "explain", "--method", "no-such-method"], "unknown explanation method"),
             (["--task", "predict", "--workers", "0"], "--workers must be at least 1")]
    for extra, message in cases:
        rc = main(["batch", str(study), "--out", str(files / "o"), *extra])
        assert rc == 1 and message in capsys.readouterr().err
    assert not (files / "o").exists()


# ---- progress, devices, lost workers ------------------------------------------------------
class _Terminal:
    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_terminal_progress_is_one_redrawn_bar_with_eta():
    from napari_xhisto.cohort.results import Reporter

    term = _Terminal()
    rep = Reporter(term, 4, label="batch predict")
    rep.start(1, 1, 3)
    rep.step({"slide_id": "a", "status": "ok", "seconds": 1.0})
    rep.step({"slide_id": "b", "status": "failed", "error": "truncated"})
    bars = [p for p in term.text.split("\r") if p.startswith("batch predict [")]
    assert len(bars) == 2
    assert "2/4 (1 cached)" in bars[0] and "ETA" in bars[0]
    assert "3/4 (1 cached, 1 failed)" in bars[1] and "b: failed: truncated" in bars[1]


def test_one_gpu_per_worker_when_cuda_is_present(monkeypatch):
    import torch

    from napari_xhisto.cohort import worker

    monkeypatch.delenv("XHISTO_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(worker, "_worker_name", lambda: ("tcp://127.0.0.1:1", 3))
    assert worker.worker_device(None) == "cuda:1"
    assert worker.worker_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert worker.worker_device(None) is None


def test_a_slide_that_kills_its_workers_fails_its_row_only():
    from distributed.scheduler import KilledWorker

    from napari_xhisto.cohort.runner import _lost_row
    from napari_xhisto.cohort.worker import error_line

    job = {"task": "predict", "row": {"slide_id": "s", "line": 2, "path": "/x/s.svs",
                                      "region": [0, 0, 5, 5]}}
    row = _lost_row(job, KilledWorker("xhisto-s", None, 3))
    assert row["status"] == "failed" and "died each time" in row["error"]
    assert row["region"] == "0,0,5,5"
    assert error_line(RuntimeError("bad\nsecond line")) == "RuntimeError: bad"
    assert error_line(XhistoError("x" * 400)).endswith("...")
