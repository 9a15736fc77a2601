"""Autosave: atomic saves survive SIGKILL at random moments; backups rotate; nothing is lost."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from napari_xhisto.annotations import (
    AnnotationSet,
    AutosaveStore,
    CellPoints,
    autosave_path,
    load_latest,
    read_annotations,
)
from napari_xhisto.annotations.files import TMP_PREFIX

CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from napari_xhisto.annotations import AnnotationSet, AutosaveStore, CellPoints, RegionShape

    slide, n, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = AutosaveStore(slide, keep=2)
    rng = np.random.default_rng(first)
    cols = rng.uniform(0, 50000, n)
    classes = rng.choice(["tumour", "lymphocyte", "stroma", "other"], n)
    ids = np.array([f"c{i}" for i in range(n)])
    square = np.array([[0.0, 0.0], [0.0, 10.0], [10.0, 10.0], [10.0, 0.0]])
    version = first
    while True:
        # every cell of a version carries the version number: a torn file would mix versions
        cells = CellPoints(np.full(n, float(version)), cols, classes, ids)
        regions = [RegionShape("necrosis", square + version, [], "v", f"r{version}")]
        print(f"saving {version}", flush=True)
        store.save(AnnotationSet(cells, regions, {}))
        print(f"saved {version}", flush=True)
        version += 1
    """
)


def _version_of(annotations: AnnotationSet, n: int) -> int:
    rows = annotations.cells.rows
    assert len(rows) == n, "a saved version lost cells"
    assert np.all(rows == rows[0]), "a saved version mixes two saves"
    version = int(rows[0])
    assert annotations.regions[0].id == f"r{version}"
    return version


def test_sigkill_during_saves_never_corrupts_the_last_good_file(tmp_path):
    slide = tmp_path / "slide.svs"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    n = 25_000
    rng = np.random.default_rng(7)
    store = AutosaveStore(slide)
    for trial in range(5):
        first = 1000 * (trial + 1)
        proc = subprocess.Popen(
            [sys.executable, str(script), str(slide), str(n), str(first)],
            stdout=subprocess.PIPE, text=True,
        )
        saved, started = [], []
        try:
            # let at least one save of this child complete, then kill inside a later save
            target = first + 1 + trial % 2
            for line in proc.stdout:
                kind, number = line.split()
                (saved if kind == "saved" else started).append(int(number))
                if kind == "saving" and int(number) == target:
                    time.sleep(rng.uniform(0.0, 0.3))
                    break
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            # the child may have gone on saving while we slept: count what it printed meanwhile
            for line in proc.stdout:
                kind, number = line.split()
                (saved if kind == "saved" else started).append(int(number))
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        # the autosave file parses, is complete, and is the last finished save or the one in flight
        version = _version_of(read_annotations(store.path), n)
        assert saved[-1] <= version <= started[-1]
        # every backup is a complete version too, never newer than the file it backs up
        # (equal when the kill came between keeping the backup and the rename)
        versions = [_version_of(read_annotations(p), n) for p in store.versions()]
        assert versions == sorted(versions, reverse=True)
        assert _version_of(store.load_latest(), n) == version
    # a new store clears temporaries that killed saves left behind, and saves again
    AutosaveStore(slide).save(AnnotationSet(CellPoints([1.0], [2.0], ["tumour"]), [], {}))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]


def _set(version: int) -> AnnotationSet:
    return AnnotationSet(CellPoints([float(version)], [1.0], ["tumour"], [f"id{version}"]), [], {})


def test_backups_rotate_and_load_latest_falls_back(tmp_path):
    slide = tmp_path / "s.svs"
    assert load_latest(slide) is None
    store = AutosaveStore(slide, keep=2)
    for version in range(1, 5):
        store.save(_set(version))
    names = [p.name for p in store.versions()]
    assert names == ["s.svs.annotations.geojson", "s.svs.annotations.geojson.bak",
                     "s.svs.annotations.geojson.2.bak"]
    assert [read_annotations(p).cells.rows[0] for p in store.versions()] == [4.0, 3.0, 2.0]
    store.path.write_text('{"type": "FeatureCollection", "features": [')  # damaged elsewhere
    assert load_latest(slide).cells.rows[0] == 3.0


def test_project_folder_and_foreign_file_kept(tmp_path):
    slide = tmp_path / "slides" / "a.svs"
    project = tmp_path / "project"
    path = autosave_path(slide, folder=project)
    assert path == project / "a.svs.annotations.geojson"
    project.mkdir()
    theirs = {"type": "FeatureCollection", "features": []}
    path.write_text(json.dumps(theirs))
    store = AutosaveStore(slide, folder=project, keep=1)
    store.save(_set(1))
    store.save(_set(2))
    kept = [json.loads(p.read_text()) for p in project.glob("*.bak")]
    assert theirs in kept  # the foreign file survives two saves (keep=1 would rotate it away)
    assert load_latest(slide, folder=project).cells.ids.tolist() == ["id2"]


def test_unreadable_everything_raises(tmp_path):
    slide = tmp_path / "s.svs"
    autosave_path(slide).write_text("not json")
    with pytest.raises(Exception, match="no readable autosave"):
        load_latest(slide)


def test_autosave_in_qupath_coordinates_for_bounded_slides(tmp_path):
    from napari_xhisto.annotations import qupath_origin

    origin = qupath_origin({"openslide.bounds-x": "300", "openslide.bounds-y": "100"})
    store = AutosaveStore(tmp_path / "b.mrxs", origin=origin)
    store.save(_set(500))
    feature = json.loads(store.path.read_text())["features"][0]
    assert feature["geometry"]["coordinates"] == [1.0 - 300, 500.0 - 100]
    assert load_latest(tmp_path / "b.mrxs", origin=origin).cells.rows.tolist() == [500.0]


def test_concurrent_saves_never_leave_an_older_snapshot(tmp_path, monkeypatch):
    import threading

    from napari_xhisto.annotations import autosave

    store = AutosaveStore(tmp_path / "c.svs")
    release = threading.Event()
    real_text = autosave.geojson_text

    def slow_for_the_first(annotations, **kwargs):
        if annotations.cells.rows[0] == 1.0:
            release.wait(5)  # the older snapshot is formatted slowly
        return real_text(annotations, **kwargs)

    monkeypatch.setattr(autosave, "geojson_text", slow_for_the_first)
    older = threading.Thread(target=store.save, args=(_set(1),))
    older.start()
    time.sleep(0.05)
    store.save(_set(2))  # newer snapshot, written first
    release.set()
    older.join()
    assert load_latest(tmp_path / "c.svs").cells.rows.tolist() == [2.0]


def test_atomic_write_gives_files_the_usual_permissions(tmp_path):
    import os

    from napari_xhisto.annotations.files import atomic_write

    new = atomic_write(tmp_path / "a.geojson", "{}")
    mask = os.umask(0)
    os.umask(mask)
    assert new.stat().st_mode & 0o777 == 0o666 & ~mask
    os.chmod(new, 0o640)
    atomic_write(new, "{ }")  # replacing keeps the mode the user gave the file
    assert new.stat().st_mode & 0o777 == 0o640


def _make_read_only(folder):
    """Make ``folder`` read-only for this process (chmod; as root, the immutable flag); returns
    an undo, or None when neither works here."""
    import shutil

    folder.chmod(0o555)
    undo = [lambda: folder.chmod(0o755)]
    probe = folder / ".probe"
    try:
        probe.write_text("x")
    except OSError:
        return lambda: [u() for u in undo]
    probe.unlink()
    chattr = shutil.which("chattr")
    if chattr and subprocess.call([chattr, "+i", str(folder)], stderr=subprocess.DEVNULL) == 0:
        undo.insert(0, lambda: subprocess.call([chattr, "-i", str(folder)]))
        try:
            probe.write_text("x")
        except OSError:
            return lambda: [u() for u in undo]
        probe.unlink()
    for u in undo:
        u()
    return None


@pytest.fixture
def read_only_folder(tmp_path):
    folder = tmp_path / "read-only slides"
    folder.mkdir()
    (folder / "slide.svs").write_bytes(b"not really a slide")
    undo = _make_read_only(folder)
    if undo is None:
        pytest.skip("cannot make a read-only folder here")
    yield folder
    undo()


def test_read_only_slide_folder_falls_back_to_the_user_data_dir(read_only_folder, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setenv("XHISTO_DATA_DIR", str(tmp_path / "data"))
    slide = read_only_folder / "slide.svs"
    store = AutosaveStore(slide)
    cells = CellPoints([1.0, 2.0], [3.0, 4.0], ["tumour", "stroma"], ["a", "b"])
    path = store.save(AnnotationSet(cells, [], {}))
    assert store.fell_back and path == store.path
    assert path.parent.parent == tmp_path / "data" / "autosave"
    assert path.parent.name.startswith("slide.svs-") and path.name == "slide.svs" + ".annotations.geojson"
    assert str(path.parent) in store.notice and str(read_only_folder) in store.notice
    assert sorted(os.listdir(read_only_folder)) == ["slide.svs"]  # nothing written beside it
    assert read_annotations(path).cells.ids.tolist() == ["a", "b"]
    # a second save keeps a backup there; a fresh store (a new session) restores from there
    store.save(AnnotationSet(CellPoints([5.0], [6.0], ["other"], ["c"]), [], {}))
    again = AutosaveStore(slide)
    assert again.load_latest().cells.ids.tolist() == ["c"]
    assert load_latest(slide).cells.ids.tolist() == ["c"]
    assert [p.name for p in again.versions()] == ["slide.svs.annotations.geojson",
                                                  "slide.svs.annotations.geojson.bak"]
    # another slide of the same name elsewhere does not share the fallback folder
    other = AutosaveStore(tmp_path / "elsewhere" / "slide.svs")
    assert other.fallback.parent != store.fallback.parent


def test_restore_takes_the_newest_of_both_places(tmp_path, monkeypatch):
    monkeypatch.setenv("XHISTO_DATA_DIR", str(tmp_path / "data"))
    slide = tmp_path / "slides" / "s.svs"
    slide.parent.mkdir()
    beside = AutosaveStore(slide)
    assert not beside.fell_back and beside.notice == ""
    beside.save(AnnotationSet(CellPoints([1.0], [1.0], ["tumour"], ["old"]), [], {}))
    fallback = beside.fallback
    fallback.parent.mkdir(parents=True)
    newer = AnnotationSet(CellPoints([2.0], [2.0], ["tumour"], ["new"]), [], {})
    from napari_xhisto.annotations.geojson import geojson_text

    fallback.write_text(geojson_text(newer))
    later = beside.path.stat().st_mtime + 10
    os.utime(fallback, (later, later))
    assert AutosaveStore(slide).load_latest().cells.ids.tolist() == ["new"]
