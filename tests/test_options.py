"""Numeric options: one module checks them all (pure), the CLI commands answer bad values with one
line and a non-zero exit before any output is written, and 0 patches is an error."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from napari_xhisto import options
from napari_xhisto.cli import main
from napari_xhisto.geometry import Region
from napari_xhisto.options import OptionError

try:
    import conftest_slides as cs
except ImportError:  # tests collected as a package
    from . import conftest_slides as cs


def test_doctests():
    result = doctest.testmod(options)
    assert result.attempted >= 3 and result.failed == 0


@pytest.mark.parametrize("value, expected", [
    ("32", 32), (32, 32), (np.int64(7), 7), ("1e3", 1000), (4.0, 4), (" 12 ", 12), (65536, 65536)])
def test_batch_size_accepts(value, expected):
    got = options.batch_size(value)
    assert got == expected and type(got) is int


@pytest.mark.parametrize("value, fragment", [
    (-1, "from 1 to 65536, got -1"), (0, "got 0"), ("abc", "must be a whole number, got 'abc'"),
    (2.5, "whole number, got 2.5"), ("inf", "finite"), (float("nan"), "finite"), (True, "True"),
    (None, "None"), (10**6, "got 1000000")])
def test_batch_size_rejects(value, fragment):
    with pytest.raises(OptionError, match="^--batch-size ") as info:
        options.batch_size(value)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)  # widgets catching ValueError see it too


def test_ranges_and_names():
    assert options.tissue_threshold("0") == 0.0 and options.tissue_threshold(1) == 1.0
    for bad in (2, -0.1, "nan", "1e400"):
        with pytest.raises(OptionError, match=r"^Tissue threshold must be from 0 to 1"
                           if bad in (2, -0.1) else r"^Tissue threshold must be a finite"):
            options.tissue_threshold(bad, "Tissue threshold")
    assert options.overlap(0.9) == 0.9
    with pytest.raises(OptionError, match=r"--overlap must be from 0 to 0\.9, got 0\.95"):
        options.overlap(0.95)
    with pytest.raises(OptionError, match=r"--percentile must be in \(0, 100\], got 0"):
        options.percentile(0)
    with pytest.raises(OptionError, match=r"--radius-um must be in \(0, 10000\], got -3"):
        options.radius_um(-3)
    with pytest.raises(OptionError, match=r"--mpp must be in \(0, 1000\], got 0"):
        options.mpp(0)
    with pytest.raises(OptionError, match=r"--stride must be > 0, got -5"):
        options.positive(-5, "--stride")
    assert options.optional(options.mpp, None, "--mpp") is None
    assert options.optional(options.mpp, "  ", "--mpp") is None
    assert options.optional(options.mpp, "0.25", "--mpp") == 0.25
    assert options.seed(2**32 - 1) == 2**32 - 1
    with pytest.raises(OptionError):
        options.seed(-1)


@pytest.mark.parametrize("text, fragment", [
    ("inf,0,10,10", "row must be a finite whole number, got 'inf'"),
    ("0,0,512,nan", "width must be a finite whole number, got 'nan'"),
    ("0,0,-5,10", "height must be >= 1"), ("-10,0,5,10", "row must be >= 0"),
    ("0,0,0,10", "height must be >= 1"), ("1,2,3", "is 'row,col,height,width'"),
    ("1.5,2,3,4", "row must be a finite whole number, got '1.5'"),
    ("a,b,c,d", "row must be a finite whole number"), ("1e400,0,1,1", "row must be a finite"),
])
def test_parse_region_rejects(text, fragment):
    with pytest.raises(OptionError, match="^--region") as info:
        options.parse_region(text)
    assert fragment in str(info.value)


def test_region_on_slide():
    assert options.parse_region("10, 20, 300, 400") == Region(10, 20, 300, 400)
    assert options.parse_region([1, 2, 3, 4]) == Region(1, 2, 3, 4)
    assert options.parse_region("100,100,1000,1000", slide_shape=(500, 600)) == Region(
        100, 100, 400, 500)  # cut to the slide
    with pytest.raises(OptionError, match=r"lies outside the slide \(500 x 600 level-0 px\)"):
        options.parse_region("500,0,10,10", slide_shape=(500, 600))
    with pytest.raises(OptionError, match="outside"):
        options.region_on_slide(Region(0, 9000, 10, 10), (500, 600))


def test_patch_fits_and_require_patches():
    assert options.patch_fits(128.0, (500, 600)) == 128.0
    with pytest.raises(OptionError, match=r"covers 1024 x 1024 level-0 px, more than the slide "
                                          r"\(500 x 600 px\)"):
        options.patch_fits(1024.0, (500, 600))
    with pytest.raises(OptionError, match="check the model's patch size"):
        options.patch_fits(math.nan, (500, 600))
    with pytest.raises(OptionError, match=r"tissue-threshold 0\.5 \(0 patches\)"):
        options.require_patches(0, tissue_threshold=0.5)


def test_options_module_is_pure():
    import subprocess
    import sys

    code = ("import sys, napari_xhisto.options; "
            "bad = [m for m in ('torch', 'qtpy', 'napari', 'PyQt6') if m in sys.modules]; "
            "print(bad); sys.exit(bool(bad))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


# -- the CLI: one line, exit 1, nothing written ---------------------------------------------------
@pytest.fixture(scope="module")
def small_svs(tmp_path_factory):
    return cs.standard_svs(tmp_path_factory.mktemp("opts") / "small.svs")


def _fails(argv, capsys, fragment, *, code=1):
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors (usage mistakes)
        rc = exc.code
    assert rc == code
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert fragment in err, err
    return err


@pytest.mark.parametrize("extra, fragment", [
    (["--batch-size", "-1"], "--batch-size must be a whole number from 1 to 65536, got -1"),
    (["--batch-size", "0"], "--batch-size must be"),
    (["--tissue-threshold", "2"], "--tissue-threshold must be from 0 to 1, got 2.0"),
    (["--tissue-threshold", "nan"], "--tissue-threshold must be a finite number"),
    (["--region", "inf,0,10,10"], "--region: row must be a finite whole number, got 'inf'"),
    (["--region", "0,0,-1,10"], "--region: height must be >= 1"),
    (["--region", "90000,0,100,100"], "lies outside the slide (1998 x 2610 level-0 px)"),
    (["--stride", "0"], "--stride must be > 0, got 0.0"),
    (["--workers", "0"], "--workers must be a whole number from 1 to 1024"),
    (["--mpp", "-0.5"], "--mpp must be in (0, 1000], got -0.5"),
])
def test_predict_rejects_bad_numbers(small_svs, tmp_path, capsys, extra, fragment):
    out = tmp_path / "p.ome.tif"
    _fails(["predict", str(small_svs), "--out", str(out), "--device", "cpu", *extra], capsys,
           fragment)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_predict_zero_patches_and_huge_patch_are_errors(small_svs, tmp_path, capsys):
    out = tmp_path / "p.ome.tif"
    blank = cs.write_aperio_svs(tmp_path / "blank.svs", [np.full((600, 700, 3), 250, np.uint8)])
    _fails(["predict", str(blank), "--out", str(out), "--device", "cpu"], capsys,
           "no patch of the region has tissue at --tissue-threshold 0.1 (0 patches)")
    assert not out.exists()
    # the demo model sees 64 px at 1 µm/px: at 0.005 µm/px that is 12800 level-0 px
    _fails(["predict", str(small_svs), "--out", str(out), "--device", "cpu", "--mpp", "0.005"],
           capsys, "more than the slide (1998 x 2610 px)")
    assert not out.exists()


@pytest.mark.parametrize("command", ["predict", "explain"])
def test_an_existing_result_is_kept_without_force(small_svs, tmp_path, capsys, command):
    from napari_xhisto.cli import main
    from napari_xhisto.export.heatmap_io import read_heatmap

    out = tmp_path / "mine.ome.tif"
    out.write_bytes(b"a result the user made")
    argv = [command, str(small_svs), "--out", str(out), "--device", "cpu", "--region",
            "0,0,256,256"] + (["--method", "saliency"] if command == "explain" else [])
    _fails(argv, capsys, f"{out} exists; choose another --out or pass --force to replace it")
    assert out.read_bytes() == b"a result the user made"
    assert main(argv + ["--force"]) == 0
    assert read_heatmap(out).values.size > 0


def test_predict_usage_mistakes_are_one_line(small_svs, tmp_path, capsys):
    _fails(["predict", str(small_svs), "--out", str(tmp_path / "p.tif"), "--batch-size", "abc"],
           capsys, "argument --batch-size: invalid int value: 'abc' (see xhisto predict --help)",
           code=2)


@pytest.mark.parametrize("extra, fragment", [
    (["--overlap", "0.95"], "--overlap must be from 0 to 0.9, got 0.95"),
    (["--batch-size", "-3"], "--batch-size must be"),
    (["--percentile", "101"], "--percentile must be in (0, 100], got 101.0"),
    (["--region", "0,0,nan,10"], "--region: height must be a finite whole number"),
    (["--param", "steps=inf"], "finite"),
])
def test_explain_rejects_bad_numbers(small_svs, tmp_path, capsys, extra, fragment):
    argv = ["explain", str(small_svs), "--out", str(tmp_path / "h.ome.tif"), "--device", "cpu",
            "--method", "integrated-gradients"]
    if "--region" not in extra:
        argv += ["--region", "0,0,256,256"]
    _fails(argv + extra, capsys, fragment)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv, fragment", [
    (["synth", "{d}/s.svs", "--size", "inf"], "--size must be a finite number"),
    (["synth", "{d}/s.svs", "--size", "32"], "--size must be a whole number from 64"),
    (["synth", "{d}/s.svs", "--size", "512", "--quality", "0"], "--quality must be"),
    (["synth", "{d}/s.svs", "--size", "512", "--workers", "-2"], "--workers must be"),
    (["synth", "{d}/s.svs", "--size", "512", "--seed", "-1"], "--seed must be"),
    (["train", "{d}/m.json", "--epochs", "0"], "--epochs must be a whole number from 1"),
    (["train", "{d}/m.json", "--lr", "nan"], "--lr must be a finite number"),
    (["train", "{d}/m.json", "--tumour-ratio", "1"], "--tumour-ratio must be in (0, 1)"),
    (["train", "{d}/m.json", "--corner-square", "8", "--corner-position", "60,0"],
     "puts the 8 px square outside the 64 px patch"),
    (["bias-lab", "{d}/lab", "--threads", "0"], "--threads must be"),
    (["info", "{slide}", "--mpp", "inf"], "--mpp must be a finite number"),
    (["export", "png", "{d}/h.tif", "--out", "{d}/o.png", "--alpha", "3"],
     "--alpha must be from 0 to 1, got 3.0"),
    (["export", "png", "{d}/h.tif", "--out", "{d}/o.png", "--max-size", "-5"],
     "--max-size must be"),
    (["export", "contours", "{d}/h.tif", "--out", "{d}/c.geojson", "--threshold", "nan"],
     "--threshold must be a finite number"),
    (["export", "png", "{d}/h.tif", "--out", "{d}/o.png", "--region", "0,0,inf,1"],
     "--region: height must be a finite"),
])
def test_other_commands_reject_bad_numbers(small_svs, tmp_path, capsys, argv, fragment):
    argv = [a.format(d=tmp_path, slide=small_svs) for a in argv]
    _fails(argv, capsys, fragment, code=2 if "--corner-position" in fragment else 1)
    assert not list(tmp_path.iterdir())
