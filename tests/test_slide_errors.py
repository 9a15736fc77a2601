"""Bad input (missing, empty, not a slide, truncated, undecodable tiles), tiles failing mid-session,
and memory staying bounded while a whole slide is scanned at level 0."""

from __future__ import annotations

import gc
import logging
import re
import struct

import numpy as np
import pytest
import tifffile

from napari_xhisto._reader import get_reader
from napari_xhisto.errors import SlideError
from napari_xhisto.slide import TileCache, open_slide
from napari_xhisto.slide.core import damaged_pattern

try:
    import conftest_slides as cs
except ImportError:  # tests collected as a package
    from . import conftest_slides as cs


@pytest.fixture(scope="module")
def svs_bytes(tmp_path_factory):
    path = cs.standard_svs(tmp_path_factory.mktemp("src") / "good.svs")
    return path.read_bytes(), path


tile_span = cs.tile_span


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(SlideError, match="nope.svs: no such file"):
        open_slide(tmp_path / "nope.svs")
    empty = tmp_path / "empty.svs"
    empty.write_bytes(b"")
    with pytest.raises(SlideError, match=r"empty\.svs: the file is empty \(0 bytes\)"):
        open_slide(empty)
    # the cheap check already knows: napari may offer the file to another plugin
    assert get_reader(str(empty)) is None
    assert get_reader(str(tmp_path / "nope.svs")) is None


def test_not_a_slide(tmp_path):
    text = tmp_path / "notes.svs"
    text.write_text("this is not a slide\n" * 20)
    with pytest.raises(SlideError, match=r"notes\.svs: cannot be opened as a slide"):
        open_slide(text)
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert get_reader(str(other)) is None
    # an ordinary small striped RGB TIFF, a float heatmap TIFF and a grey TIFF go to other readers
    tifffile.imwrite(tmp_path / "photo.tif", np.zeros((64, 64, 3), np.uint8), photometric="rgb")
    tifffile.imwrite(tmp_path / "heat.tif", np.zeros((512, 512), np.float32), tile=(256, 256))
    tifffile.imwrite(tmp_path / "grey.tif", np.zeros((512, 512), np.uint8), tile=(256, 256))
    for name in ("photo.tif", "heat.tif", "grey.tif"):
        assert get_reader(str(tmp_path / name)) is None, name
    tif_text = tmp_path / "fake.tif"
    tif_text.write_text("not a tiff")
    assert get_reader(str(tif_text)) is None
    assert get_reader([str(other), str(text)]) is None


def _generic_pyramid(path):
    """A plain tiled TIFF pyramid: level 0 then reduced-resolution pages (no OME, no vendor)."""
    base = cs.textured_image(900, 1100, seed=2)
    with tifffile.TiffWriter(path) as tw:
        for k, level in enumerate((base, base[::2, ::2], base[::4, ::4])):
            tw.write(np.ascontiguousarray(level), tile=(128, 128), photometric="rgb",
                     compression="jpeg", subfiletype=1 if k else 0, metadata=None)
    return path


TRUNCATED = re.compile(r"the file is truncated \((\d+) of (at least )?(\d+) bytes\): copy it again$")


@pytest.mark.parametrize("kind", ["svs", "cmu1", "ome", "generic"])
def test_truncated_file(tmp_path, svs_bytes, kind, caplog, request):
    if kind == "svs":
        data = svs_bytes[0]
    elif kind == "cmu1":
        data = request.getfixturevalue("cmu1_path").read_bytes()
    elif kind == "ome":
        levels = [cs.textured_image(600, 700), cs.textured_image(300, 350)]
        data = cs.write_ome_tiff(tmp_path / "src.ome.tif", levels, compression="jpeg").read_bytes()
    else:
        data = _generic_pyramid(tmp_path / "src.tif").read_bytes()
    suffix = ".svs" if kind in ("svs", "cmu1") else ".tif"
    cut = tmp_path / f"cut{suffix}"
    for fraction in (0.1, 0.6, 0.95, 0.9995):
        n = int(len(data) * fraction)
        cut.write_bytes(data[:n])
        with caplog.at_level(logging.DEBUG):
            caplog.clear()
            with pytest.raises(SlideError) as info:
                open_slide(cut)
        message = str(info.value)
        assert message.startswith(f"{cut}: ") and "\n" not in message
        m = TRUNCATED.search(message)
        assert m, message
        assert int(m.group(1)) == n and int(m.group(3)) > n
        if m.group(2) is None:  # every directory was read: the size is exact
            assert int(m.group(3)) == len(data), message
        else:
            assert int(m.group(3)) <= len(data), message
        # no stray tifffile (or other) warning reaches the user beside the message
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.records


def test_truncated_file_cli_one_line(tmp_path, svs_bytes, capsys):
    from napari_xhisto.cli import main

    cut = tmp_path / "cut.svs"
    cut.write_bytes(svs_bytes[0][:500_000])
    assert main(["info", str(cut)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and TRUNCATED.search(err.strip()), err


def test_undecodable_tiles_at_open(tmp_path, svs_bytes):
    data, good = svs_bytes
    # the first tile open_slide decodes to check the file: the middle of level 0
    middle = ((1998 // 2) // 128, (2610 // 2) // 128)
    offset, count = tile_span(good, 0, *middle)
    broken = bytearray(data)
    broken[offset:offset + count] = bytes(count)
    path = tmp_path / "broken.svs"
    path.write_bytes(bytes(broken))
    with open_slide(path) as slide:  # one damaged tile: the file opens, the tile is listed
        assert [(d["level"], d["tile_row"], d["tile_col"]) for d in slide.damaged_tiles] == [
            (0, *middle)]
        assert slide.damaged_tiles[0]["level0_region"] == [middle[0] * 128, middle[1] * 128,
                                                          128, 128]
    # every tile of level 0 zeroed: nothing decodes, the file is refused
    with tifffile.TiffFile(good) as tf:
        spans = list(zip(tf.pages[0].dataoffsets, tf.pages[0].databytecounts))
    for offset, count in spans:
        broken[offset:offset + count] = bytes(count)
    path.write_bytes(bytes(broken))
    with pytest.raises(SlideError, match=r"broken\.svs: .*cannot be decoded"):
        open_slide(path)


def test_tile_failing_mid_session_is_striped_and_reported_once(tmp_path, svs_bytes, caplog):
    data, good = svs_bytes
    offset, count = tile_span(good, 0, 1, 2)  # level-0 rows 128..255, cols 256..383
    broken = bytearray(data)
    broken[offset:offset + count] = bytes(count)
    path = tmp_path / "one_bad_tile.svs"
    path.write_bytes(bytes(broken))
    reports = []
    with open_slide(path, cache=TileCache(32 * 2**20)) as slide, open_slide(good) as ref:
        slide.on_tile_error.append(lambda s, *args: reports.append(args[:3]))
        with caplog.at_level(logging.WARNING, logger="napari_xhisto.slide"):
            region = slide.read_region(100, 200, 200, 250)
            again = slide.pyramid()[0][0:512, 0:512].compute()
        expected = ref.read_region(100, 200, 200, 250)
        stripes = damaged_pattern(128, 128)
        np.testing.assert_array_equal(region[28:156, 56:184], stripes[:128, :128])  # the bad tile
        np.testing.assert_array_equal(region[:28], expected[:28])  # its neighbours intact
        np.testing.assert_array_equal(region[156:], expected[156:])
        np.testing.assert_array_equal(again[128:256, 256:384], stripes)
        assert reports == [(0, 1, 2)]
        assert slide.failed_tiles == {(0, 1, 2)}
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "one_bad_tile.svs" in warnings[0].getMessage()


def _rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.slow
def test_memory_bounded_scanning_whole_level0(tmp_path):
    """8k x 8k JPEG slide (192 MB decoded) scanned at level 0 through a 24 MB cache."""
    pytest.importorskip("resource")
    size, tile = 8192, 256
    pattern = cs.textured_image(1024, 1024, seed=4)

    def tiles():
        for i in range(size // tile):
            for j in range(size // tile):
                r, c = (i * tile) % 1024, (j * tile) % 1024
                yield pattern[r:r + tile, c:c + tile]

    path = tmp_path / "big.svs"
    desc = (f"Aperio Image Library v12.0.15\r\n{size}x{size} [0,0 {size}x{size}] ({tile}x{tile}) "
            "JPEG/RGB Q=80|AppMag = 40|MPP = 0.2500")
    with tifffile.TiffWriter(path) as tw:
        tw.write(tiles(), shape=(size, size, 3), dtype=np.uint8, tile=(tile, tile),
                 photometric="rgb", compression="jpeg", description=desc, metadata=None)
    cache = TileCache(24 * 2**20)
    with open_slide(path, cache=cache) as slide:
        assert slide.synthetic_level_count == 3
        step = 1024
        slide.read_region(0, 0, step, step)  # warm up pools and imports
        gc.collect()
        before = _rss_bytes()
        peak = before
        checksum = 0
        for r in range(0, size, step):
            for c in range(0, size, step):
                block = slide.read_region(r, c, step, step)
                checksum += int(block[::97, ::89].sum())
                peak = max(peak, _rss_bytes())
        assert cache.nbytes <= cache.max_bytes
        # the level is 192 MB decoded; growth stays near the cache budget, not the slide size
        assert peak - before < 100 * 2**20, (peak - before) / 2**20
        assert checksum > 0


def _patch_tag(data: bytes, tag: int, *, value: int | None = None, code: int | None = None,
               ifd: int = 8) -> bytes:
    """Rewrite the inline value (or the tag code) of one entry of a little-endian classic TIFF
    directory at byte ``ifd``."""
    out = bytearray(data)
    (n,) = struct.unpack("<H", out[ifd:ifd + 2])
    for k in range(n):
        at = ifd + 2 + 12 * k
        if struct.unpack("<H", out[at:at + 2])[0] == tag:
            if code is not None:
                out[at:at + 2] = struct.pack("<H", code)
            if value is not None:
                typ = struct.unpack("<H", out[at + 2:at + 4])[0]
                out[at + 8:at + 12] = struct.pack("<I" if typ == 4 else "<HH", value,
                                                  *([] if typ == 4 else [0]))
            return bytes(out)
    raise KeyError(tag)


def test_damaged_structure_is_not_called_truncated(tmp_path, svs_bytes):
    data, good = svs_bytes
    with tifffile.TiffFile(good) as tf:
        assert tf.pages[0].offset == 8
    path = tmp_path / "bad.svs"
    # a tile byte count grown past the end: its block overlaps the next tile, so not a cut file
    with tifffile.TiffFile(good) as tf:
        counts_at = tf.pages[0].tags["TileByteCounts"].valueoffset
    grown = bytearray(data)
    grown[counts_at:counts_at + 4] = struct.pack("<I", 2**26)
    path.write_bytes(bytes(grown))
    with pytest.raises(SlideError, match=rf"bad\.svs: the file is damaged: it has {len(data)} "
                                         r"bytes but its structure points to byte \d+; copy it"):
        open_slide(path)
    # ImageLength 1998 -> 1990 keeps the tile grid: only the Aperio description tells
    path.write_bytes(_patch_tag(data, 257, value=1990))
    with pytest.raises(SlideError, match=r"damaged: level 0 is 1990 x 2610 px but its Aperio "
                                         r"description says 1998 x 2610"):
        open_slide(path)
    # ImageLength 1998 -> 2200: one more row of tiles than the file has
    path.write_bytes(_patch_tag(data, 257, value=2200))
    with pytest.raises(SlideError, match=r"has 336 data blocks where its size tags need 378"):
        open_slide(path)
    # the Compression tag's code damaged into a second BitsPerSample
    path.write_bytes(_patch_tag(data, 259, code=258))
    with pytest.raises(SlideError, match=r"the file is damaged \(.*has tag 258 twice\)"):
        open_slide(path)
    # and the Compression tag lost (code turned into an unknown tag): no longer JPEG
    path.write_bytes(_patch_tag(data, 259, code=65000))
    with pytest.raises(SlideError, match=r"says uncompressed, but its byte counts do not match"):
        open_slide(path)
