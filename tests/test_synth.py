"""Synthetic tissue: determinism, ground truth consistency, stain statistics, patch options."""

import numpy as np
import pytest
from skimage.color import rgb2hed

from napari_xhisto.annotations import AnnotationSet, read_annotations, write_annotations
from napari_xhisto.synth import (
    CELL_CLASSES,
    TISSUE_CODES,
    add_square,
    generate_tissue,
    sample_patches,
)
from napari_xhisto.synth.render import SynthWorld

CODE = {v: k for k, v in TISSUE_CODES.items()}


@pytest.fixture(scope="module")
def tissue():
    return generate_tissue(1024, 1024, seed=3, mpp=0.5, jpeg_quality=None)


def test_deterministic_by_seed():
    a = generate_tissue(300, 260, seed=11)
    b = generate_tissue(300, 260, seed=11)
    c = generate_tissue(300, 260, seed=12)
    assert np.array_equal(a.rgb, b.rgb)
    assert np.array_equal(a.cells.rows, b.cells.rows) and list(a.cells.ids) == list(b.cells.ids)
    assert not np.array_equal(a.rgb, c.rgb)


def test_windows_agree_with_the_whole_field():
    """Any window renders the same pixels and cells as the whole field (streaming relies on it)."""
    world = SynthWorld(1500, 1500, seed=4, mpp=0.5, layout="slide")
    whole, codes = world.render(0, 0, 1500, 1500)
    part, part_codes = world.render(700, 950, 300, 400)
    diff = np.abs(part.astype(int) - whole[700:1000, 950:1350].astype(int))
    assert diff.max() <= 1  # float rounding only
    assert np.mean(part_codes == codes[700:1000, 950:1350]) > 0.999


def test_cell_counts_match_ground_truth_table_and_survive_geojson(tmp_path, tissue):
    counts = tissue.cell_counts()
    assert set(counts) == set(CELL_CLASSES)
    assert all(counts[c] > 0 for c in CELL_CLASSES), counts
    names, n = np.unique(tissue.cells.classes, return_counts=True)
    assert dict(zip(names.tolist(), n.tolist())) == {k: v for k, v in counts.items() if v}
    assert len(set(tissue.cells.ids)) == len(tissue.cells)
    path = tmp_path / "gt.geojson"
    write_annotations(path, AnnotationSet(tissue.cells, tissue.regions, {}))
    back = read_annotations(path)
    assert back.cells.counts() == {k: v for k, v in counts.items() if v}
    order = np.argsort(back.cells.ids)
    ref = np.argsort(tissue.cells.ids)
    np.testing.assert_allclose(back.cells.rows[order], tissue.cells.rows[ref], atol=1e-6)
    assert sorted(r.cls for r in back.regions) == sorted(r.cls for r in tissue.regions)


def test_cells_lie_in_their_tissue(tissue):
    r = np.clip(np.floor(tissue.cells.rows).astype(int), 0, 1023)
    c = np.clip(np.floor(tissue.cells.cols).astype(int), 0, 1023)
    code = tissue.tissue_map[r, c]
    tum = tissue.cells.classes == "tumour"
    assert np.mean(code[tum] == CODE["tumour"]) > 0.97
    fib = tissue.cells.classes == "stroma"
    assert np.mean(np.isin(code[fib], [CODE["stroma"], CODE["vessel"]])) > 0.97


def test_nuclei_darker_and_more_haematoxylin_than_stroma(tissue):
    hed = rgb2hed(tissue.rgb)
    lum = tissue.rgb.astype(float).mean(-1)
    cells = tissue.cells
    sel = np.isin(cells.classes, ["tumour", "lymphocyte"])
    r = np.floor(cells.rows[sel] + 0.5).astype(int).clip(0, 1023)
    c = np.floor(cells.cols[sel] + 0.5).astype(int).clip(0, 1023)
    # stroma background: stroma pixels at least 12 µm from any cell centre
    occupied = np.zeros(tissue.tissue_map.shape, bool)
    for rr, cc in zip(cells.rows.astype(int), cells.cols.astype(int)):
        occupied[max(rr - 24, 0):rr + 25, max(cc - 24, 0):cc + 25] = True
    bg = (tissue.tissue_map == CODE["stroma"]) & ~occupied
    assert bg.sum() > 1000
    assert np.median(hed[..., 0][r, c]) > np.median(hed[..., 0][bg]) + 0.05
    assert np.median(lum[r, c]) < np.median(lum[bg]) - 40
    # bluer: the blue/red ratio of nuclei exceeds that of eosinophilic stroma
    ratio = (tissue.rgb[..., 2].astype(float) + 1) / (tissue.rgb[..., 0].astype(float) + 1)
    assert np.median(ratio[r, c]) > np.median(ratio[bg])


def test_necrosis_has_fewer_intact_nuclei_than_tumour():
    t = generate_tissue(1536, 1536, seed=8, jpeg_quality=None)
    r = np.floor(t.cells.rows).astype(int).clip(0, 1535)
    c = np.floor(t.cells.cols).astype(int).clip(0, 1535)
    code = t.tissue_map[r, c]
    area = {k: np.sum(t.tissue_map == CODE[k]) for k in ("tumour", "necrosis")}
    assert area["necrosis"] > 20000, "this seed should show necrosis"
    dens_nec = np.sum(code == CODE["necrosis"]) / area["necrosis"]
    dens_tum = np.sum(code == CODE["tumour"]) / area["tumour"]
    assert dens_nec < 0.25 * dens_tum


def test_regions_cover_their_tissue(tissue):
    from skimage.draw import polygon as fill

    for cls, code in (("tumour area", CODE["tumour"]), ("necrosis", CODE["necrosis"])):
        mask = np.zeros(tissue.tissue_map.shape, bool)
        for reg in tissue.regions:
            if reg.cls == cls:
                rr, cc = fill(reg.exterior[:, 0], reg.exterior[:, 1], mask.shape)
                mask[rr, cc] = True
                for hole in reg.holes:
                    rr, cc = fill(hole[:, 0], hole[:, 1], mask.shape)
                    mask[rr, cc] = False
        truth = tissue.tissue_map == code
        if truth.sum() < 500:
            continue
        assert np.mean(mask[truth]) > 0.9, cls


# ---- patches -----------------------------------------------------------------------------
def test_centre_cell_labels_without_translation():
    ps = sample_patches(60, patch_size=48, mpp=1.0, seed=1, label="centre-cell", translate=False)
    assert ps.images.shape == (60, 48, 48, 3)
    assert np.all(ps.meta["anchor_row"] == 24) and np.all(ps.meta["anchor_col"] == 24)
    assert np.array_equal(ps.labels, (ps.meta["centre_class"] == "tumour").astype(int))
    for cells in ps.meta["cells"]:  # a ground-truth cell sits on the centre pixel
        assert np.min(np.hypot(cells[:, 0] - 24, cells[:, 1] - 24)) <= 0.71


def test_translation_moves_the_anchor_and_fraction_labels():
    ps = sample_patches(80, patch_size=48, mpp=1.0, seed=2, translate=True)
    off = np.hypot(ps.meta["anchor_row"] - 24, ps.meta["anchor_col"] - 24)
    assert off.max() > 8 and np.all(ps.meta["anchor_row"] >= 4)
    frac = np.array([np.mean(c[:, 2] == 0) if len(c) else 0 for c in ps.meta["cells"]])
    np.testing.assert_allclose(frac, ps.meta["tumour_fraction"])
    assert np.array_equal(ps.labels, (frac >= 0.5).astype(int))
    assert 0 < ps.labels.mean() < 1


def test_exclusion_and_tumour_ratio():
    ps = sample_patches(100, patch_size=48, mpp=1.0, seed=3, exclude=("necrosis",),
                        tumour_ratio=0.8)
    assert int(ps.labels.sum()) == 80
    assert "necrosis" not in set(ps.meta["centre_tissue"])
    ref = sample_patches(100, patch_size=48, mpp=1.0, seed=3)
    assert "necrosis" in set(ref.meta["centre_tissue"])


def test_corner_square_only_on_one_class():
    ps = sample_patches(40, patch_size=32, mpp=1.0, seed=4,
                        corner_square={"label": 1, "size": 5, "color": (0, 255, 0)})
    pos = ps.labels == 1
    assert pos.any() and (~pos).any()
    assert np.all(ps.images[pos][:, :5, :5] == [0, 255, 0])
    assert np.array_equal(ps.meta["square"], pos)
    assert not np.any(np.all(ps.images[~pos][:, :5, :5] == [0, 255, 0], axis=-1).all(axis=(1, 2)))


def test_add_square_pixels():
    img = np.full((2, 10, 12, 3), 7, np.uint8)
    out = add_square(img, size=3, color=(1, 2, 3), position=(4, 5))
    assert np.all(out[:, 4:7, 5:8] == [1, 2, 3])
    out[:, 4:7, 5:8] = 7
    assert np.all(out == 7) and np.all(img == 7)
    with pytest.raises(ValueError):
        add_square(img, size=5, position=(8, 0))


def test_comedo_necrosis_changes_only_necrosis():
    """"comedo" necrosis: same layout and intact cells; only necrosis (and its ghosts' reach)
    is drawn differently, with many more tumour-nucleus-sized haematoxylin objects."""
    from scipy import ndimage as ndi

    a = generate_tissue(1024, 1024, seed=8, mpp=1.0, jpeg_quality=None)
    b = generate_tissue(1024, 1024, seed=8, mpp=1.0, jpeg_quality=None, necrosis="comedo")
    assert np.array_equal(a.tissue_map, b.tissue_map)
    assert np.array_equal(a.cells.rows, b.cells.rows)
    assert list(a.cells.classes) == list(b.cells.classes)
    nec = a.tissue_map == CODE["necrosis"]
    assert nec.mean() > 0.05, "this seed should show necrosis"
    far = ~ndi.binary_dilation(nec, iterations=30)
    far[:30], far[-30:], far[:, :30], far[:, -30:] = False, False, False, False
    assert np.array_equal(a.rgb[far], b.rgb[far])
    tumour = a.tissue_map == CODE["tumour"]
    core = ndi.binary_erosion(nec, iterations=3)

    def big_nuclei_per_area(t, where):
        h = rgb2hed(t.rgb)[..., 0]
        lab, _ = ndi.label((h > np.percentile(h[tumour], 60)) & where)
        return np.sum(np.bincount(lab.ravel())[1:] >= 40) / where.sum()

    tum = big_nuclei_per_area(a, ndi.binary_erosion(tumour, iterations=3))
    classic, comedo = big_nuclei_per_area(a, core), big_nuclei_per_area(b, core)
    assert comedo > 2.5 * classic  # ghosts of the dead tumour cells
    assert 0.5 * tum < comedo < 1.2 * tum  # about the viable nests' density, no more
    with pytest.raises(ValueError, match="necrosis must be one of"):
        SynthWorld(64, 64, necrosis="liquefactive")


def test_comedo_windows_agree_with_the_whole_field():
    world = SynthWorld(1024, 1024, seed=8, mpp=1.0, necrosis="comedo")
    whole, _ = world.render(0, 0, 1024, 1024)
    part, _ = world.render(300, 420, 400, 500)
    assert np.abs(part.astype(int) - whole[300:700, 420:920].astype(int)).max() <= 1
