"""Fuzz corpus of broken slides, generated here (never committed): zero-byte, wrong extension,
truncated, bit-flipped header and bit-flipped tile data. Each runs against ``open_slide``, the
napari reader (``get_reader`` + the reader function) and the CLI (``xhisto info``, ``predict``,
``explain``). Every case must end in one clear line (exit 1) or a counted skip, never a
traceback, a hang, a partial output file or a silently wrong result."""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_xhisto._reader import get_reader
from napari_xhisto.cli import main
from napari_xhisto.errors import SlideError
from napari_xhisto.slide import TileCache, open_slide

try:
    import conftest_slides as cs
except ImportError:  # tests collected as a package
    from . import conftest_slides as cs

LIMIT_S = 120  # per call; far above the ~1 s each takes, far below a hang
N_HEADER_FLIPS = 16


def bounded(fn, *args, **kwargs):
    """Run ``fn`` in a thread; fail the test if it does not return within LIMIT_S."""
    box = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(LIMIT_S)
    assert not thread.is_alive(), f"{fn.__name__}{args} hangs (> {LIMIT_S} s)"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _flip_header_bits(data: bytes, ifd: int, seed: int, n: int = 8) -> bytes:
    """``n`` random bit flips in the first directory (entry count, entries, next pointer)."""
    out = bytearray(data)
    rng = np.random.default_rng(seed)
    for _ in range(n):
        at = ifd + int(rng.integers(0, 2 + 12 * 16 + 4))
        out[at] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """{name: (path, source path or None)}: the broken files and the intact file they came from."""
    d = tmp_path_factory.mktemp("fuzz")
    image = cs.textured_image(600, 700, seed=9)
    svs = cs.write_aperio_svs(d / "intact.svs", [image, cs.nearest_resize(image, (300, 350))])
    ome = cs.write_ome_tiff(d / "intact.ome.tif", [image, cs.nearest_resize(image, (300, 350))],
                            compression="jpeg")
    svs_data, ome_data = svs.read_bytes(), ome.read_bytes()
    cases: dict[str, tuple[Path, Path | None]] = {}

    def add(name, data, source=None):
        path = d / name
        path.write_bytes(data)
        cases[name] = (path, source)

    add("empty.svs", b"")
    add("empty.tif", b"")
    png = io.BytesIO()
    from PIL import Image

    Image.fromarray(image[:64, :64]).save(png, format="PNG")
    add("png_renamed.svs", png.getvalue())
    add("png_renamed.tif", png.getvalue())
    add("text_as.tif", b"sample,score\n" * 200)
    add("text_as.svs", b"this is not a slide\n" * 100)
    jpeg = io.BytesIO()
    Image.fromarray(image).save(jpeg, format="JPEG")
    add("jpeg_renamed.svs", jpeg.getvalue())
    add("header_only.svs", svs_data[:16])
    for fraction in (0.3, 0.8, 0.999):
        add(f"truncated_{fraction}.svs", svs_data[:int(len(svs_data) * fraction)], svs)
    add("truncated_0.5.ome.tif", ome_data[:len(ome_data) // 2], ome)
    with tifffile.TiffFile(svs) as tf:
        ifd = tf.pages[0].offset
    for seed in range(N_HEADER_FLIPS):  # 8 bits, then single bits (some of which still open)
        add(f"flipped_header_{seed}.svs",
            _flip_header_bits(svs_data, ifd, 100 + seed, n=8 if seed < 4 else 1), svs)
    row, col = cs.largest_tile(svs)
    cs.flip_entropy_bits(svs, d / "flipped_tile.svs", row, col, nbytes=2048)
    cases["flipped_tile.svs"] = (d / "flipped_tile.svs", svs)
    return cases


CASES = (["empty.svs", "empty.tif", "png_renamed.svs", "png_renamed.tif", "text_as.tif",
          "text_as.svs", "jpeg_renamed.svs", "header_only.svs", "truncated_0.3.svs",
          "truncated_0.8.svs", "truncated_0.999.svs", "truncated_0.5.ome.tif"]
         + [f"flipped_header_{seed}.svs" for seed in range(N_HEADER_FLIPS)]
         + ["flipped_tile.svs"])


def _one_line(message: str, path: Path) -> None:
    assert "\n" not in message.strip() and "Traceback" not in message, message
    assert path.name in message, message


def _same_or_damaged(slide, source: Path) -> None:
    """An opened broken file shows the intact pixels at the intact scale, or stripes only where
    it lists damage. (A lost description may cost the file's coarse levels, which are then
    computed from level 0, or its µm/px, which is then unknown and asked for: not wrong.)"""
    with open_slide(source) as ref:
        assert slide.dimensions == ref.dimensions
        assert slide.mpp in (ref.mpp, None)
        for level in range(slide.level_count):
            h, w = slide.level_dimensions[level]
            if (h, w) not in ref.level_dimensions[:ref.level_count]:
                continue
            ref_level = ref.level_dimensions.index((h, w))
            ours = slide.read_region(0, 0, h, w, level)
            theirs = ref.read_region(0, 0, h, w, ref_level)
            differ = np.any(ours != theirs, axis=-1)
            allowed = np.zeros((h, w), bool)
            for d in slide.damaged_tiles:
                if d["level"] == level:
                    th, tw = slide.levels[level].tile
                    allowed[d["tile_row"] * th:(d["tile_row"] + 1) * th,
                            d["tile_col"] * tw:(d["tile_col"] + 1) * tw] = True
            assert not (differ & ~allowed).any(), f"level {level}: wrong pixels, not flagged"


def test_corpus_covers_both_outcomes(corpus):
    """The header flips must exercise both paths: refused with a message, and opened (then the
    pixel comparison in test_open_slide_and_reader is what guards against wrong results)."""
    opened = 0
    for seed in range(N_HEADER_FLIPS):
        try:
            open_slide(corpus[f"flipped_header_{seed}.svs"][0]).close()
            opened += 1
        except SlideError:
            pass
    assert 2 <= opened <= N_HEADER_FLIPS - 8, opened


@pytest.mark.parametrize("name", CASES)
def test_open_slide_and_reader(corpus, name, caplog):
    caplog.set_level(logging.DEBUG)
    path, source = corpus[name]
    try:
        slide = bounded(open_slide, path, cache=TileCache(32 * 2**20))
    except SlideError as exc:
        _one_line(str(exc), path)
        opened = False
    else:
        opened = True
        try:
            assert source is not None, f"{name} opened as a slide"
            _same_or_damaged(slide, source)
        finally:
            slide.close()
    reader = get_reader(str(path))
    try:
        if reader is None:
            assert not opened, "get_reader turned down a file open_slide reads"
            return
        layers = bounded(reader, str(path))
    except SlideError as exc:
        assert not opened
        _one_line(str(exc), path)
    else:
        assert opened and len(layers) == 1
        layers[0][1]["metadata"]["xhisto_slide"].close()
    finally:
        # no stray warning from a library: only our own reader's "does not read X: why" line
        stray = [r for r in caplog.records if r.levelno >= logging.WARNING
                 and not r.name.startswith("napari_xhisto")]
        assert not stray, [r.getMessage() for r in stray]


@pytest.fixture(scope="module")
def demo_loaded():
    from napari_xhisto.models import load_model

    load_model("demo", device="cpu")  # torch and the model imported once, outside the timers


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("command", ["info", "predict", "explain"])
def test_cli(corpus, name, command, tmp_path, capfd, demo_loaded):
    path, source = corpus[name]
    out = tmp_path / "out.ome.tif"
    argv = {"info": ["info", str(path)],
            "predict": ["predict", str(path), "--out", str(out), "--device", "cpu"],
            "explain": ["explain", str(path), "--out", str(out), "--device", "cpu",
                        "--method", "probability", "--region", "0,0,400,400"]}[command]
    code = bounded(main, argv)
    captured = capfd.readouterr()  # file-descriptor level: C libraries' stray lines count too
    if code == 0:
        assert source is not None and captured.out.strip()
        if command != "info":
            assert out.exists()
        # silent, or one counted warning (a damaged level-0 tile is not read when the model's
        # scale reads the file's own intact coarser level)
        assert captured.err == "" or (captured.err.count("\n") == 1
                                      and "damaged tile(s)" in captured.err), captured.err
    else:
        assert code == 1, (code, captured.err)
        err = captured.err.strip()
        assert err.startswith(f"xhisto {command}: error: "), err
        _one_line(err, path)
        assert captured.out == ""
    assert [p.name for p in tmp_path.iterdir()] in ([], ["out.ome.tif"])  # nothing partial
    if code != 0:
        assert not out.exists()


def test_bit_flipped_tile_is_nan_in_the_probability_map(cmu1_path, tmp_path, capfd,
                                                        demo_loaded):
    """The issue's case: CMU-1 with 4 kB of one tile's JPEG data bit-flipped, whole slide."""
    from napari_xhisto.export.heatmap_io import read_heatmap

    row, col = cs.largest_tile(cmu1_path)
    path = cs.flip_entropy_bits(cmu1_path, tmp_path / "cmu1_flip.svs", row, col)
    out = tmp_path / "prob.ome.tif"
    assert bounded(main, ["predict", str(path), "--out", str(out), "--device", "cpu"]) == 0
    err = capfd.readouterr().err
    assert "1 damaged tile(s)" in err
    heat = read_heatmap(out)
    pl = heat.placement
    top, left = row * 240, col * 240
    # every cell whose patch lies on the damaged tile is NaN, whatever the tissue mask said
    i0, i1 = int((top - pl.origin_row) // pl.step_row), int((top + 239 - pl.origin_row) // pl.step_row)
    j0, j1 = int((left - pl.origin_col) // pl.step_col), int((left + 239 - pl.origin_col) // pl.step_col)
    assert np.isnan(heat.values[i0:i1 + 1, j0:j1 + 1]).all()
    assert np.isfinite(heat.values).sum() > 100
    (entry,) = heat.provenance["damaged_tiles"]
    assert (entry["tile_row"], entry["tile_col"]) == (row, col)
