"""The CLI framework and the shared geometry types."""

import subprocess
import sys

import pytest

from napari_xhisto import cli
from napari_xhisto.geometry import Placement, Region


def test_region_parse_and_clip():
    r = Region.parse("10, 20, 300, 400")
    assert r.as_tuple() == (10, 20, 300, 400)
    assert (r.bottom, r.right) == (310, 420)
    assert r.clip(200, 1000) == Region(10, 20, 190, 400)
    with pytest.raises(ValueError, match="row,col,height,width"):
        Region.parse("1,2,3")
    for bad in ("0,0,inf,5", "0,0,nan,5", "0,0,ten,5"):
        with pytest.raises(ValueError, match="four integers"):
            Region.parse(bad)
    with pytest.raises(ValueError, match="positive"):
        Region(0, 0, 0, 5)
    with pytest.raises(ValueError, match="outside"):
        Region(500, 500, 10, 10).clip(100, 100)


def test_placement_layer_transform_lines_up_pixel_centres():
    # a heatmap at 4 level-0 px per pixel, starting at level-0 (100, 200), slide at 0.5 µm/px
    t = Placement(100, 200, 4, 4).layer_transform(0.5)
    assert t["scale"] == (2.0, 2.0)
    # centre of heatmap pixel 0 = centre of level-0 pixels 100..103 = 101.5 px = 50.75 µm
    assert t["translate"] == pytest.approx((50.75, 100.75))
    assert Placement.from_dict(Placement(1, 2, 3, 4).to_dict()) == Placement(1, 2, 3, 4)


def test_cli_help_lists_commands_and_each_has_help(capsys):
    parser = cli.build_parser()
    names = [a for a in parser._subparsers._group_actions[0].choices]  # noqa: SLF001
    assert names, "no sub-commands registered"
    for name in names:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([name, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: xhisto {name}" in capsys.readouterr().out


def test_cli_without_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "usage: xhisto" in capsys.readouterr().out


def test_help_does_not_import_torch():
    code = ("import sys; from napari_xhisto import cli; cli.build_parser(); "
            "print('torch' in sys.modules, 'napari' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_split_index_2d_matches_numpy_indexing():
    import numpy as np

    from napari_xhisto.geometry import split_index_2d, squeeze_2d

    a = np.arange(7 * 9).reshape(7, 9)
    for key in [(slice(None),), (2,), (slice(1, 6, 2), 3), (np.int64(4), slice(2, None)),
                (slice(-3, None), slice(None, None, 4)), slice(2, 5)]:
        (r0, r1, rs), (c0, c1, cs), squeeze = split_index_2d(key, a.shape)
        got = squeeze_2d(a[r0:r1:rs, c0:c1:cs], squeeze)
        np.testing.assert_array_equal(got, a[key])


def test_progress_helpers_relay_steps_and_return_results():
    from napari_xhisto.progress import run_to_end, shifted

    def step(n):
        for i in range(1, n + 1):
            yield i, n
        return f"done {n}"

    def run():
        first = yield from shifted(step(2), offset=0, total=5)
        second = yield from shifted(step(3), offset=2, total=5)
        return first, second

    seen = []
    assert run_to_end(run(), on_progress=lambda d, t: seen.append((d, t))) == ("done 2", "done 3")
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
