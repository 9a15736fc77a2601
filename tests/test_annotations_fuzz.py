"""A corpus of damaged annotation files, generated here, against the readers and the CLI.

Every case must end in one clear line (an AnnotationError, or ``xhisto evaluate: error: ...``)
or in a read whose left-out objects are counted and warned about; never a traceback, another
exception type, a hang or non-finite/absurd coordinates handed on to napari or the metrics.
"""

from __future__ import annotations

import json
import signal
import warnings
from contextlib import contextmanager

import numpy as np
import pytest

from napari_xhisto.annotations import AnnotationWarning, read_annotations, write_annotations
from napari_xhisto.annotations.objects import MAX_COORD
from napari_xhisto.errors import AnnotationError

SLIDE = (2000, 3000)  # level-0 height, width of the slide the files belong to


def _base() -> dict:
    features = []
    for k in range(12):
        features.append({"type": "Feature", "id": f"c{k}",
                         "geometry": {"type": "Point", "coordinates": [100 + 10 * k, 200 + 5 * k]},
                         "properties": {"objectType": "detection", "classification": {
                             "name": "tumour" if k % 2 else "stroma", "color": [200, 0, 0]}}})
    features.append({"type": "Feature", "id": "r1",
                     "geometry": {"type": "Polygon", "coordinates": [
                         [[50, 50], [500, 50], [500, 400], [50, 400], [50, 50]]]},
                     "properties": {"objectType": "annotation", "classification": {
                         "name": "tumour area", "color": [230, 60, 60]}, "name": "area"}})
    features.append({"type": "Feature", "id": "mp",
                     "geometry": {"type": "MultiPoint", "coordinates": [[30, 40], [31, 41]]},
                     "properties": {"objectType": "annotation", "classification": "Tumor",
                                    "measurements": {"n": 2}}})
    return {"type": "FeatureCollection", "features": features}


def _with(mutate) -> bytes:
    doc = _base()
    mutate(doc)
    return json.dumps(doc).encode()


def _set(path, *value):
    def mutate(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value[0]
    return mutate


BASE = json.dumps(_base()).encode()
F0, R1 = ("features", 0), ("features", 12)
GEOJSON_CASES = {
    "valid": BASE,
    "zero bytes": b"",
    "only whitespace": b"  \n\t ",
    "utf-8 BOM": b"\xef\xbb\xbf" + BASE,
    "truncated at 10%": BASE[: len(BASE) // 10],
    "truncated at 50%": BASE[: len(BASE) // 2],
    "truncated by one byte": BASE[:-1],
    "not UTF-8": BASE.replace(b"area", "aréa".encode("latin-1")),
    "binary garbage": bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8)),
    "deep nesting": b"[" * 200_000 + b"]" * 200_000,
    "deep nesting in properties": _with(lambda d: d["features"][0]["properties"].update(
        metadata=json.loads("[" * 900 + "]" * 900))),
    "top level a string": b'"FeatureCollection"',
    "top level a number": b"42",
    "features an object": _with(lambda d: d.update(features={"a": 1})),
    "feature a number": _with(lambda d: d["features"].__setitem__(0, 5)),
    "geometry a string": _with(_set((*F0, "geometry"), "Point")),
    "geometry null (RFC 7946)": _with(_set((*F0, "geometry"), None)),
    "geometry without type": _with(_set((*F0, "geometry"), {"coordinates": [1, 2]})),
    "geometry of unknown type": _with(_set((*F0, "geometry"), {"type": "Circle", "radius": 3})),
    "coordinates a string": _with(_set((*F0, "geometry", "coordinates"), "1,2")),
    "coordinates too deep": _with(_set((*F0, "geometry", "coordinates"), [[[1, 2]]])),
    "coordinates booleans": _with(_set((*F0, "geometry", "coordinates"), [True, False])),
    "coordinates one number": _with(_set((*F0, "geometry", "coordinates"), [1])),
    "polygon rings a dict": _with(_set((*R1, "geometry", "coordinates"), {"a": 1})),
    "polygon empty": _with(_set((*R1, "geometry", "coordinates"), [])),
    "polygon degenerate": _with(_set((*R1, "geometry", "coordinates"), [[[0, 0], [1, 1], [0, 0]]])),
    "multipoint empty": _with(_set(("features", 13, "geometry", "coordinates"), [])),
    "properties a list": _with(_set((*F0, "properties"), [1, 2])),
    "classification a number": _with(_set((*F0, "properties", "classification"), 7)),
    "classification colour a string": _with(_set((*F0, "properties", "classification", "color"),
                                                 "red")),
    "classification name empty": _with(_set((*F0, "properties", "classification", "name"), "")),
    "id an object": _with(_set((*F0, "id"), {"x": 1})),
    "objectType a list": _with(_set((*F0, "properties", "objectType"), ["cell"])),
    "coordinates 1e9": _with(_set((*F0, "geometry", "coordinates"), [1e9, 10])),
    "coordinates -1e9": _with(_set((*F0, "geometry", "coordinates"), [10, -1e9])),
    "coordinates 1e308 in a polygon": _with(_set((*R1, "geometry", "coordinates"), [
        [[0, 0], [1e308, 0], [1e308, 1e308], [0, 0]]])),
    "coordinates beyond float range": BASE.replace(b"[100, 200]", b"[1e999, 200]"),
    "integer beyond float range": BASE.replace(b"[100, 200]", b"[" + b"9" * 400 + b", 200]"),
    "NaN and Infinity literals": BASE.replace(b"[110, 205]", b"[NaN, Infinity]"),
    "off the slide": _with(_set((*F0, "geometry", "coordinates"), [5000, 5000])),
    "region off the slide": _with(_set((*R1, "geometry", "coordinates"), [
        [[9000, 9000], [9100, 9000], [9100, 9100], [9000, 9000]]])),
    "line annotation": _with(_set((*F0, "geometry"), {"type": "LineString",
                                                      "coordinates": [[0, 0], [5, 5]]})),
}
GEOJSON_CASES.update({
    f"bit flips (seed {seed})": bytes(
        b ^ (1 << int(bit)) if flip else b for b, flip, bit in zip(
            BASE, np.random.default_rng(seed).random(len(BASE)) < 0.003,
            np.random.default_rng(seed + 100).integers(0, 8, len(BASE))))
    for seed in range(8)
})

CSV_BASE = "x,y,class,id\n" + "".join(f"{10 + 9 * k},{20 + 7 * k},{('stroma', 'tumour')[k % 2]},c{k}\n"
                                     for k in range(10))
CSV_CASES = {
    "valid": CSV_BASE.encode(),
    "zero bytes": b"",
    "header only": b"x,y,class\n",
    "no x column": b"a,y,class\n1,2,t\n",
    "short row": (CSV_BASE + "5\n").encode(),
    "not a number": (CSV_BASE + "1,abc,tumour,z\n").encode(),
    "NaN, inf and 1e9": (CSV_BASE + "nan,1,t,n1\n1,inf,t,n2\n1e9,5,t,n3\n").encode(),
    "off the slide": (CSV_BASE + "9999,9999,t,o1\n").encode(),
    "NUL bytes": CSV_BASE.encode().replace(b"tumour", b"tu\x00our"),
    "field over the csv size limit": ("x,y,class\n1,2," + "a" * 200_000 + "\n").encode(),
    "utf-8 BOM": b"\xef\xbb\xbf" + CSV_BASE.encode(),
    "tab separated": CSV_BASE.replace(",", "\t").encode(),
    "not UTF-8": CSV_BASE.replace("tumour", "tumeur é").encode("latin-1"),
    "unbalanced quotes": (CSV_BASE + '1,2,"tumour\n').encode(),
    "binary garbage": bytes(np.random.default_rng(2).integers(0, 256, 3000, dtype=np.uint8)),
    "truncated": CSV_BASE.encode()[: len(CSV_BASE) // 2 + 3],
}


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging."""
    def stop(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s")
    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check_read(path) -> tuple[str, object]:
    """('error', message) or ('read', annotations); anything else fails the test."""
    with deadline(20), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            annotations = read_annotations(path, image_shape=SLIDE)
        except AnnotationError as err:
            message = str(err)
            assert "\n" not in message and len(message) < 400, message
            assert message.startswith(path.name), message
            return "error", message
    cells = annotations.cells
    assert np.isfinite(cells.rows).all() and np.isfinite(cells.cols).all()
    assert (np.abs(cells.rows) <= MAX_COORD).all() and (np.abs(cells.cols) <= MAX_COORD).all()
    assert ((cells.rows >= 0) & (cells.rows <= SLIDE[0])).all()
    for region in annotations.regions:
        assert np.isfinite(region.exterior).all() and (np.abs(region.exterior) <= MAX_COORD).all()
    notes = [w for w in caught if issubclass(w.category, AnnotationWarning)]
    if annotations.skipped or annotations.kept:
        assert len(notes) == 1, "one warning with the counts"
        text = str(notes[0].message)
        assert "\n" not in text
        for count in annotations.skipped.values():
            assert str(count) in text
    else:
        assert not notes
    # what was read can be written again (or says clearly why not)
    try:
        write_annotations(path.with_name(path.name + ".out.geojson"), annotations)
    except AnnotationError as err:
        assert "\n" not in str(err)
    return "read", annotations


@pytest.mark.parametrize("name", sorted(GEOJSON_CASES))
def test_damaged_geojson_reads_or_fails_in_one_line(tmp_path, name):
    path = tmp_path / "case.geojson"
    path.write_bytes(GEOJSON_CASES[name])
    outcome, value = check_read(path)
    expected = {
        "valid": "read", "utf-8 BOM": "read", "zero bytes": "error", "deep nesting": "error",
        "deep nesting in properties": "read", "not UTF-8": "error", "truncated at 50%": "error",
        "geometry null (RFC 7946)": "read", "coordinates 1e9": "read", "off the slide": "read",
        "NaN and Infinity literals": "read", "line annotation": "read",
    }
    if name in expected:
        assert outcome == expected[name], value
    if outcome == "read" and name in ("geometry null (RFC 7946)", "coordinates 1e9",
                                      "coordinates -1e9", "off the slide", "region off the slide",
                                      "coordinates beyond float range",
                                      "integer beyond float range", "NaN and Infinity literals",
                                      "coordinates 1e308 in a polygon", "polygon degenerate",
                                      "polygon empty", "multipoint empty"):
        assert sum(value.skipped.values()) == 1, value.skipped
    if name in ("geometry null (RFC 7946)", "coordinates 1e9", "off the slide"):
        assert len(value.cells) == 13  # 12 points and the MultiPoint's 2, one left out


@pytest.mark.parametrize("name", sorted(CSV_CASES))
def test_damaged_csv_reads_or_fails_in_one_line(tmp_path, name):
    path = tmp_path / "case.csv"
    path.write_bytes(CSV_CASES[name])
    outcome, value = check_read(path)
    expected = {"valid": "read", "utf-8 BOM": "read", "tab separated": "read", "zero bytes": "error",
                "field over the csv size limit": "error",
                "not a number": "error", "NaN, inf and 1e9": "read", "off the slide": "read"}
    if name in expected:
        assert outcome == expected[name], value
    if name == "NaN, inf and 1e9":
        assert len(value.cells) == 10 and sum(value.skipped.values()) == 3
    if name in ("valid", "utf-8 BOM", "tab separated"):
        assert len(value.cells) == 10 and value.cells.ids.tolist()[0] == "c0"


def test_wrong_extensions_fail_in_one_line(tmp_path):
    for name, data in [("a.txt", BASE), ("a.geojson", CSV_BASE.encode()),
                       ("a.csv", BASE), ("a.svs", b"II*\x00")]:
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(AnnotationError) as info:
            read_annotations(path)
        assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def heatmap(tmp_path_factory):
    from napari_xhisto.export.heatmap_io import write_heatmap
    from napari_xhisto.geometry import Placement

    folder = tmp_path_factory.mktemp("heat")
    values = np.random.default_rng(0).normal(size=(64, 96)).astype(np.float32)
    return write_heatmap(folder / "h.ome.tif", values, Placement(0, 0, 8, 8), mpp=0.5)


def test_the_cli_answers_every_case_in_one_line(tmp_path, heatmap, capsys):
    """``xhisto evaluate --cells FILE`` on the whole corpus: exit 0 or 1, one line per problem
    (``xhisto evaluate: error: ...`` / ``warning: ...``), no traceback, no output on error."""
    from napari_xhisto.cli import main

    cases = [(f"g{k}.geojson", data) for k, data in enumerate(GEOJSON_CASES.values())]
    cases += [(f"c{k}.csv", data) for k, data in enumerate(CSV_CASES.values())]
    outcomes = {}
    for name, data in cases:
        path = tmp_path / name
        path.write_bytes(data)
        out = tmp_path / f"{name}.json"
        with deadline(60), warnings.catch_warnings():
            warnings.simplefilter("always")
            rc = main(["evaluate", "--heatmap", str(heatmap), "--cells", str(path),
                       "--radius-um", "3", "--random-runs", "1", "--no-curves", "--out", str(out)])
        captured = capsys.readouterr()
        assert rc in (0, 1), (name, rc)
        assert "Traceback" not in captured.err
        problems = [line for line in captured.err.splitlines() if line.strip()]
        assert all(line.startswith("xhisto evaluate: ") for line in problems), (name, problems)
        assert sum("error:" in line for line in problems) == (rc == 1), (name, problems)
        assert out.exists() == (rc == 0), name
        outcomes[name] = rc
    assert outcomes["g0.geojson"] == 0 and outcomes["c0.csv"] == 0  # the valid files
    assert 0 in outcomes.values() and 1 in outcomes.values()
