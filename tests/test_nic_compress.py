"""xhisto compress (napari_xhisto.nic.compress): grid alignment, determinism, resuming, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_xhisto.errors import XhistoError  # noqa: E402
from napari_xhisto.nic.codes import CodesError, read_codes  # noqa: E402
from napari_xhisto.nic.compress import compress_slide, partial_path  # noqa: E402
from napari_xhisto.nic.encoders import (  # noqa: E402
    build_net,
    default_spec,
    load_encoder,
    save_encoder,
)
from napari_xhisto.progress import run_to_end  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from conftest_slides import write_aperio_svs  # noqa: E402

P = 32                      # encoder patch (px at 1 µm/px); the slide is at 0.5 µm/px
LESION = (8, 12, 4, 6)      # cell rows 8..11, cols 12..17 hold a distinct texture


def _slide_image(seed=0):
    rng = np.random.default_rng(seed)
    h, w = 20 * 2 * P, 24 * 2 * P  # 20 x 24 cells of 64 level-0 px
    img = np.full((h, w, 3), 235, np.uint8)  # glass
    tissue = np.clip(rng.normal([200, 120, 170], 18, (h - 256, w - 128, 3)), 0, 255)
    img[128:h - 128, 64:w - 64] = tissue.astype(np.uint8)  # pink stroma-like noise
    r, c, hh, ww = (v * 2 * P for v in LESION)
    dots = np.zeros((hh, ww), bool)
    dots[::8, ::8] = True
    lesion = np.where(np.repeat(np.repeat(dots[::8, ::8], 8, 0), 8, 1)[..., None]
                      & (rng.random((hh, ww, 1)) < 0.6), [60, 30, 120], [150, 60, 160])
    img[r:r + hh, c:c + ww] = lesion.astype(np.uint8)
    return img


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    img = _slide_image()
    small = img[::4, ::4].copy()
    return write_aperio_svs(tmp_path_factory.mktemp("nic") / "s.svs", [img, small], mpp=0.5,
                            tile=128)


@pytest.fixture(scope="module")
def encoder_path(tmp_path_factory):
    torch.manual_seed(0)
    spec = default_spec("contrastive", patch_px=P, mpp=1.0, code_size=16, width=8)
    net = build_net(spec).eval()
    return save_encoder(tmp_path_factory.mktemp("enc") / "toy.yaml", spec, net)


def test_lesion_lands_in_its_code_cells(slide_path, encoder_path):
    grid = run_to_end(compress_slide(slide_path, encoder_path, batch_size=16, chunk=8))
    assert (grid.stride, grid.patch, grid.origin, grid.mpp) == (64, 64, (0, 0), 0.5)
    assert grid.shape == (20, 24) and grid.code_size == 16
    # glass rows (0, 1 and 18, 19) are not tissue and stay 0
    assert not grid.tissue[:2].any() and not grid.tissue[-2:].any() and grid.tissue[5, 5]
    assert (grid.codes[~grid.tissue] == 0).all()
    r, c, h, w = LESION
    inside = np.zeros(grid.shape, bool)
    inside[r:r + h, c:c + w] = True
    codes = np.asarray(grid.codes)
    centre_in = codes[inside].mean(0)
    centre_out = codes[grid.tissue & ~inside].mean(0)
    # every cell is nearer to the centre of its own side: the lesion is exactly where it is drawn
    d_in = np.linalg.norm(codes - centre_in, axis=-1)
    d_out = np.linalg.norm(codes - centre_out, axis=-1)
    nearer_lesion = (d_in < d_out) & grid.tissue
    np.testing.assert_array_equal(nearer_lesion, inside)
    # placement: a lesion cell's napari position is the lesion's position on the slide (µm)
    (s, _), (t, _) = grid.world_transform()
    assert t + r * s == pytest.approx((r * 64 + 31.5) * 0.5)
    assert grid.provenance["encoder"]["kind"] == "contrastive"
    assert grid.provenance["n_patches"] == int(grid.tissue.sum())


def test_deterministic_and_resumable(slide_path, encoder_path, tmp_path):
    one = tmp_path / "one.nic.zarr"
    full = run_to_end(compress_slide(slide_path, encoder_path, batch_size=16, chunk=4, out=one))
    ref = full.codes.compute()
    again = run_to_end(compress_slide(slide_path, encoder_path, batch_size=16, chunk=4))
    np.testing.assert_array_equal(np.asarray(again.codes), ref)  # deterministic, memory == zarr
    # a run killed midway (generator closed after a few batches) resumes to the same bytes
    out = tmp_path / "two.nic.zarr"
    gen = compress_slide(slide_path, encoder_path, batch_size=16, chunk=4, out=out)
    for _ in range(7):
        next(gen)
    gen.close()
    assert not out.exists() and partial_path(out).exists()
    with pytest.raises(CodesError, match="unfinished"):
        read_codes(partial_path(out))
    res = run_to_end(compress_slide(slide_path, encoder_path, batch_size=16, chunk=4, out=out))
    assert res.provenance["resumed"] and res.provenance["chunks_reused"] > 0
    assert res.provenance["n_encoded_this_run"] < res.provenance["n_patches"]
    np.testing.assert_array_equal(res.codes.compute(), ref)
    np.testing.assert_array_equal(res.tissue, full.tissue)
    assert not partial_path(out).exists()
    # never overwritten silently; a partial run with other settings is not mixed in
    with pytest.raises(CodesError, match="already exists"):
        run_to_end(compress_slide(slide_path, encoder_path, out=out))
    gen = compress_slide(slide_path, encoder_path, batch_size=16, chunk=4,
                         out=tmp_path / "three.nic.zarr")
    next(gen)
    gen.close()
    with pytest.raises(CodesError, match="other settings"):
        run_to_end(compress_slide(slide_path, encoder_path, batch_size=8, chunk=4,
                                  out=tmp_path / "three.nic.zarr"))


def test_clear_errors(slide_path, encoder_path, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("hello: 1\n")
    with pytest.raises(XhistoError, match="not an encoder spec"):
        load_encoder(bad)
    with pytest.raises(XhistoError, match="no such encoder"):
        load_encoder(tmp_path / "none.yaml")
    spec = default_spec("vae", patch_px=P, mpp=4.0, code_size=8, width=8)
    far = save_encoder(tmp_path / "far.yaml", spec, build_net(spec))
    run_to_end(compress_slide(slide_path, far))  # 8x coarser: fine (downsampled patches)
    spec["mpp"] = 0.25
    near = save_encoder(tmp_path / "near.yaml", spec, build_net(spec))
    with pytest.raises(XhistoError, match="too far to resample"):
        run_to_end(compress_slide(slide_path, near))
