"""Studies on a real dask LocalCluster (2 worker processes): end to end, resume, worker loss.

One cluster serves the module (starting workers imports torch in each). Slides are tiny
synthetic ones (512-768 px); the model is the bundled demo classifier.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import time

import numpy as np
import pytest

from napari_xhisto.cohort import StudySettings, run_study

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    """Five synthetic slides with ground truth, and one truncated copy (a damaged file)."""
    from napari_xhisto.synth.writer import write_slide

    root = tmp_path_factory.mktemp("slides")
    paths = []
    for seed in range(5):
        slide, geojson = write_slide(root / f"s{seed}.svs", size=(512, 512 + 64 * seed),
                                     seed=seed, workers=1)
        paths.append((slide, geojson))
    data = paths[1][0].read_bytes()
    (root / "damaged.svs").write_bytes(data[: len(data) // 2])
    return root, paths


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of two worker processes (one thread each) on the loopback interface."""
    from napari_xhisto.cohort import open_client

    cl, cluster = open_client(workers=2)
    yield cl
    cl.close()
    cluster.close()


def _study(root, name, lines):
    path = root / name
    path.write_text("path,annotations,label,region\n" + "\n".join(lines) + "\n")
    return path


def _table(out):
    with open(out / "results.csv", newline="") as fh:
        return {r["slide_id"]: r for r in csv.DictReader(fh)}


def _done_events(slide_dir):
    lines = (slide_dir / "history.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if json.loads(x)["event"] == "done"]


def _running(dask_worker):
    """Tasks a worker's threads are executing (cancelled ones included)."""
    return len(dask_worker.active_threads)


def _outputs(out, ids):
    """(name -> (mtime_ns, sha256 of bytes)) of every finished output of ``ids``."""
    import hashlib

    got = {}
    for sid in ids:
        for p in sorted((out / sid).iterdir()):
            if p.name != "history.jsonl":
                got[f"{sid}/{p.name}"] = (p.stat().st_mtime_ns,
                                          hashlib.sha256(p.read_bytes()).hexdigest())
    return got


def test_predict_study_end_to_end_then_rerun_recomputes_nothing(slides, client, tmp_path):
    root, paths = slides
    lines = [f"{s.name},{g.name},{'tumour' if i % 2 else 'normal'}," for i, (s, g) in
             enumerate(paths)]
    lines.insert(2, "damaged.svs,,normal,")
    study = _study(root, "predict.csv", lines)
    out = tmp_path / "study"
    run = run_study(study, StudySettings(task="predict"), out, client=client, stream=None)
    table = _table(out)
    ids = [f"s{i}" for i in range(5)]
    assert sorted(table) == sorted(ids + ["damaged"])
    # the damaged slide fails its own row with one line; every other slide is done
    assert table["damaged"]["status"] == "failed"
    assert "truncated" in table["damaged"]["error"] and "\n" not in table["damaged"]["error"]
    assert not (out / "damaged" / "done.json").exists()
    assert all(table[i]["status"] == "ok" for i in ids)
    assert (run.computed, run.cached, run.failed) == (5, 0, 1)
    # workers loaded the model once each, whatever number of slides they ran
    computed = [r for r in run.rows if r.get("status") == "ok"]
    assert {r["model_loads"] for r in computed} == {1}
    assert len({r["worker"] for r in computed}) == 2 or len(computed) < 2

    # the same files as `xhisto predict` on one slide, pixel for pixel
    from napari_xhisto.cli import main
    from napari_xhisto.export.heatmap_io import read_heatmap

    single = tmp_path / "single.ome.tif"
    assert main(["predict", str(paths[3][0]), "--out", str(single)]) == 0
    mine, ref = read_heatmap(out / "s3" / "probability.ome.tif"), read_heatmap(single)
    np.testing.assert_array_equal(mine.values, ref.values)
    assert mine.placement == ref.placement
    summary = json.loads((out / "s3" / "predict.json").read_text())
    assert float(table["s3"]["mean_p"]) == pytest.approx(np.nanmean(ref.values), rel=1e-5)
    assert summary["mean_probability"] == pytest.approx(np.nanmean(ref.values), rel=1e-6)

    # annotations give a cell AUC with its interval, read back from metrics.json
    metrics = json.loads((out / "s3" / "metrics.json").read_text())
    auc = metrics["roc"]["auc"]
    assert float(table["s3"]["cell_auc"]) == pytest.approx(auc, rel=1e-5)
    assert float(table["s3"]["cell_auc_low"]) <= auc <= float(table["s3"]["cell_auc_high"])
    res = json.loads((out / "results.json").read_text())
    assert res["study"]["counts"] == {"total": 6, "computed": 5, "cached": 0, "failed": 1,
                                      "pending": 0}
    assert res["study"]["slide_auc"]["n_positive"] + res["study"]["slide_auc"]["n_negative"] == 5

    # a re-run recomputes nothing: outputs untouched, one completion per slide in the history
    before = _outputs(out, ids)
    again = run_study(study, StudySettings(task="predict", batch_size=16), out, client=client,
                      stream=None)
    assert (again.computed, again.cached, again.failed) == (0, 5, 1)
    assert _outputs(out, ids) == before
    assert all(len(_done_events(out / i)) == 1 for i in ids)
    again_table = _table(out)
    assert all(again_table[i]["cached"] == "yes" for i in ids)
    assert again_table["s3"]["mean_p"] == table["s3"]["mean_p"]

    # other settings into the same folder are refused (nothing silently replaced)
    from napari_xhisto.errors import XhistoError

    with pytest.raises(XhistoError, match="other settings.*tissue_threshold"):
        run_study(study, StudySettings(task="predict", tissue_threshold=0.5), out,
                  client=client, stream=None)
    assert _outputs(out, ids) == before


def test_a_lost_worker_costs_a_retry_and_every_slide_completes_once(slides, client, tmp_path):
    root, paths = slides
    lines = [f"{s.name},,," for s, _ in paths] + [f"{paths[4][0].name},,,\"0,0,256,512\""]
    study = _study(root, "explain.csv", lines)
    out = tmp_path / "study"
    killed = []

    def kill_a_busy_worker(row, cl):
        if killed:
            return
        busy = [w for w, keys in cl.processing().items() if keys]
        if not busy:
            return
        pid = cl.run(os.getpid, workers=[busy[0]])[busy[0]]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    settings = StudySettings(task="explain", method="gradcam")
    run = run_study(study, settings, out, client=client, stream=None,
                    on_result=kill_a_busy_worker)
    assert killed, "no worker was busy after the first slide: nothing was killed"
    table = _table(out)
    assert len(table) == 6 and all(r["status"] == "ok" for r in table.values()), table
    assert run.computed + run.cached == 6 and run.failed == 0
    for sid in table:
        assert len(_done_events(out / sid)) == 1, sid
        assert not list((out / sid).glob(".partial-*"))  # the killed attempt was cleared
        assert (out / sid / "heatmap.ome.tif").is_file()
    assert {r["pid"] for r in run.rows} - set(killed)  # work went on in the other processes
    # the restarted worker is back (nanny); the cluster serves the next study
    deadline = time.time() + 60
    while len(client.scheduler_info()["workers"]) < 2 and time.time() < deadline:
        time.sleep(0.5)
    assert len(client.scheduler_info()["workers"]) == 2


def test_cli_evaluate_study_on_an_existing_cluster_via_scheduler_file(slides, client, tmp_path,
                                                                      capsys):
    from napari_xhisto.cli import main
    from napari_xhisto.export.heatmap_io import read_heatmap

    root, paths = slides
    study = _study(root, "evaluate.csv", [f"{paths[0][0].name},{paths[0][1].name},,",
                                          f"{paths[2][0].name},{paths[2][1].name},,"])
    sched = tmp_path / "scheduler.json"
    # What `dask scheduler --scheduler-file` writes, reduced to what a client reads. (Client.
    # write_scheduler_file dumps scheduler_info(), whose metric keys are tuples once tasks ran on
    # this cluster: json refuses them in distributed 2026.8.)
    sched.write_text(json.dumps({"type": "Scheduler", "address": client.scheduler.address}))
    out = tmp_path / "study"
    rc = main(["batch", str(study), "--task", "evaluate", "--method", "gradcam",
               "--radius-um", "4", "--random-runs", "2", "--out", str(out),
               "--scheduler", str(sched)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "dask dashboard:" in captured.err and "2/2" in captured.err
    assert "2 computed, 0 already done, 0 failed" in captured.out
    table = _table(out)
    for sid in ("s0", "s2"):
        metrics = json.loads((out / sid / "metrics.json").read_text())
        heat = read_heatmap(out / sid / "heatmap.ome.tif")
        assert metrics["heatmap"]["shape"] == list(heat.values.shape)
        assert heat.provenance["method"] == "gradcam"
        assert float(table[sid]["cell_auc"]) == pytest.approx(metrics["roc"]["auc"], rel=1e-5)
        ci = metrics["roc"]["ci"]
        assert ci["low"] <= metrics["roc"]["auc"] <= ci["high"] and ci["n_boot"] == 1000
    # the cluster stays up (not ours to close); a second run (address form) is all cached
    addr = client.scheduler.address
    rc = main(["batch", str(study), "--task", "evaluate", "--method", "gradcam",
               "--radius-um", "4", "--random-runs", "2", "--out", str(out),
               "--scheduler", addr])
    assert rc == 0 and "0 computed, 2 already done" in capsys.readouterr().out


def test_an_interrupted_study_resumes_with_the_slides_it_had_not_finished(slides, client,
                                                                         tmp_path):
    root, paths = slides
    study = _study(root, "resume.csv", [f"{s.name},,," for s, _ in paths])
    out = tmp_path / "study"
    seen = []

    def interrupt(row, cl):
        seen.append(row["slide_id"])
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(study, StudySettings(task="predict"), out, client=client, stream=None,
                  on_result=interrupt)
    table = _table(out)  # written on the way out: two done, the rest pending
    assert sorted(r["status"] for r in table.values()).count("ok") == 2
    assert {table[s]["status"] for s in table if s not in seen} <= {"pending"}
    assert not (out / ".lock").exists()
    deadline = time.time() + 60  # a slide already running when interrupted may still finish
    while any(client.run(_running).values()) and time.time() < deadline:
        time.sleep(0.2)
    run = run_study(study, StudySettings(task="predict"), out, client=client, stream=None)
    assert run.failed == 0 and run.computed + run.cached == 5 and run.cached >= 2
    assert all(r["status"] == "ok" for r in _table(out).values())
    for sid in (f"s{i}" for i in range(5)):
        assert len(_done_events(out / sid)) == 1, sid
