"""The slide-level CNN of Neural Image Compression (seed 004) and its model files.

A compressed slide (a :class:`~napari_xhisto.nic.codes.CodeGrid`, ``(rows, cols, C)``) is a
small image with C channels; the CNN reads it with depthwise-separable convolutions (BN,
leaky ReLU, feature-wise dropout), as in the paper's supplement, and returns one logit:
``p(label) = sigmoid(logit)``. Unlike the paper (a dense layer over a fixed 400 x 400 crop) the
features are pooled over the grid (maximum and mean side by side), so one network reads a crop
while training and a whole slide of any size at inference; the maximum suits "is there a
lesion anywhere", the mean gives every cell a gradient while training.

Codes are standardised per channel with the training set's mean and standard deviation of
tissue cells (kept in the weights); cells off tissue stay 0.

Model files: ``OUT/model.safetensors`` (weights and code statistics) and ``OUT/slide_model.yaml``
(architecture, label names, the encoder the codes came from, training settings).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from .codes import _jsonable as _plain  # one JSON-plain helper for nic's files

SPEC_NAME = "slide_model.yaml"
WEIGHTS_NAME = "model.safetensors"
KIND = "nic-slide-cnn"


@dataclass
class SlideModelSpec:
    """What a slide-level model file says about itself.

    Attributes
    ----------
    code_size : int
        C of the code grids it reads.
    width : int
        Filters of every convolution.
    strides : list of int
        One stride per depthwise-separable block (the first should be 1 so Grad-CAM at the first
        layer has one value per code cell).
    hidden : int
        Units of the dense layer before the output.
    dropout : float
        Feature-wise (channel) dropout after each block while training.
    label_names : list of str
        ``[negative, positive]``: what ``p(label)`` is the probability of (the second).
    encoder : dict
        Provenance of the encoder whose codes it was trained on (kind, sha256, P, S, mpp).
    training : dict
        Seed, epochs, crop, validation figures, cohort.
    cam_layer : str
        Default Grad-CAM layer (``"blocks.0"``: the first layer, as the paper).
    """

    code_size: int
    width: int = 64
    strides: list = field(default_factory=lambda: [1, 2, 1, 2])
    hidden: int = 64
    dropout: float = 0.2
    label_names: list = field(default_factory=lambda: ["absent", "present"])
    encoder: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    cam_layer: str = "blocks.0"
    kind: str = KIND

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, *, where: str = "spec") -> SlideModelSpec:
        if d.get("kind") != KIND:
            raise ModelError(f"{where} is not a slide-level model (kind {d.get('kind')!r}, "
                             f"expected {KIND!r}); train one with xhisto train-slide")
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{k: v for k, v in d.items() if k in known})
        except TypeError as exc:
            raise ModelError(f"{where}: {exc}") from None

    @property
    def positive(self) -> str:
        return str(self.label_names[1])


class SeparableBlock(nn.Module):
    """Depthwise 3x3 conv, pointwise 1x1 conv, BN, leaky ReLU, channel dropout."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.LeakyReLU(0.1)
        self.drop = nn.Dropout2d(dropout)

    def forward(self, x):
        return self.drop(self.act(self.bn(self.pointwise(self.depthwise(x)))))


class SlideCNN(nn.Module):
    """Depthwise-separable CNN on ``(N, C, rows, cols)`` code grids -> ``(N, 1)`` logits."""

    def __init__(self, spec: SlideModelSpec):
        super().__init__()
        self.spec = spec
        c = int(spec.code_size)
        self.register_buffer("code_mean", torch.zeros(c))
        self.register_buffer("code_std", torch.ones(c))
        blocks, cin = [], c
        for s in spec.strides:
            blocks.append(SeparableBlock(cin, int(spec.width), int(s), float(spec.dropout)))
            cin = int(spec.width)
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Linear(2 * cin, int(spec.hidden)), nn.BatchNorm1d(int(spec.hidden)),
                                  nn.LeakyReLU(0.1), nn.Linear(int(spec.hidden), 1))

    def standardise(self, x: torch.Tensor, tissue: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, C, h, w)`` raw codes -> standardised; off-tissue cells (all-zero codes, or
        outside ``tissue`` ``(N, h, w)``) stay 0."""
        on = (x != 0).any(dim=1, keepdim=True) if tissue is None else tissue[:, None].bool()
        z = (x - self.code_mean[None, :, None, None]) / self.code_std[None, :, None, None]
        return torch.where(on, z, torch.zeros_like(z))

    def features(self, z: torch.Tensor) -> torch.Tensor:
        return self.blocks(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, 1)`` of standardised grids ``z`` (see :meth:`standardise`)."""
        f = self.blocks(z)
        return self.head(torch.cat([torch.amax(f, dim=(2, 3)), torch.mean(f, dim=(2, 3))], 1))


# ---- the 8 flips / rotations ------------------------------------------------------------------

def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Transform ``k`` (0..7) of the dihedral group on the last two axes: ``k % 4`` quarter
    turns, then a left-right flip when ``k >= 4``."""
    y = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if k >= 4 else y


def dihedral_inverse(x: torch.Tensor, k: int) -> torch.Tensor:
    """Undo :func:`dihedral` ``k``."""
    y = torch.flip(x, dims=(-1,)) if k >= 4 else x
    return torch.rot90(y, -(k % 4), dims=(-2, -1))


# ---- grids as tensors ---------------------------------------------------------------------------

def grid_arrays(grid) -> tuple[np.ndarray, np.ndarray]:
    """``(C, rows, cols)`` float32 codes (NaN of damaged cells -> 0) and the tissue mask."""
    codes = np.asarray(grid.codes, dtype=np.float32)
    if codes.ndim != 3:
        raise ModelError(f"codes must be (rows, cols, C), got shape {codes.shape}")
    bad = ~np.isfinite(codes).all(axis=2)
    tissue = np.asarray(grid.tissue, bool) & ~bad
    codes = np.where(tissue[..., None], np.nan_to_num(codes), 0.0).astype(np.float32)
    return np.ascontiguousarray(codes.transpose(2, 0, 1)), tissue


def check_grid(model: SlideCNN, grid, *, where: str = "codes") -> None:
    """Clear errors when a grid does not fit the model (code size; encoder fingerprint)."""
    spec = model.spec
    c = int(grid.codes.shape[2])
    if c != int(spec.code_size):
        raise ModelError(f"{where} has C = {c} codes per cell but the slide model reads "
                         f"C = {spec.code_size}: compress the slide with the model's encoder "
                         f"({spec.encoder.get('kind', '?')})")
    want = spec.encoder.get("sha256")
    have = encoder_info(grid.provenance).get("sha256")
    if want and have and want != have:
        raise ModelError(f"{where} was compressed by another encoder (sha256 {have[:12]}) than "
                         f"the slide model was trained on ({want[:12]}); compress it again "
                         "with the model's encoder")


def encoder_info(provenance) -> dict:
    """``{"kind", "sha256", "name"}`` of the encoder named in a code grid's provenance (nested
    ``{"encoder": {...}}`` or flat ``encoder_kind`` / ``encoder_sha256`` keys); missing -> absent."""
    prov = provenance or {}
    enc = prov.get("encoder")
    if isinstance(enc, dict):
        src = enc
        out = {"kind": src.get("kind"), "name": src.get("name"),
               "sha256": src.get("sha256") or src.get("weights_sha256")}
    else:
        out = {"kind": prov.get("encoder_kind") or (enc if isinstance(enc, str) else None),
               "name": prov.get("encoder_name"),
               "sha256": prov.get("encoder_sha256") or prov.get("weights_sha256")}
    for key in ("patch", "stride", "mpp", "code_size"):
        if key in prov:
            out[key] = prov[key]
    return {k: v for k, v in out.items() if v is not None}


@torch.no_grad()
def predict_grid(model: SlideCNN, grid, *, augment: bool = True) -> float:
    """``p(label)`` of one slide: the whole grid, averaged over the 8 flips/rotations
    (the paper's test-time augmentation) when ``augment``."""
    check_grid(model, grid)
    codes, tissue = grid_arrays(grid)
    model.eval()
    x = torch.from_numpy(codes)[None]
    t = torch.from_numpy(tissue)[None]
    z = model.standardise(x, t)
    ks = range(8) if augment else (0,)
    probs = [torch.sigmoid(model(dihedral(z, k)))[0, 0] for k in ks]
    return float(torch.stack(probs).mean())


# ---- files --------------------------------------------------------------------------------------

def save_slide_model(out_dir, model: SlideCNN, *, overwrite: bool = False) -> Path:
    """Write ``model.safetensors`` and ``slide_model.yaml`` into ``out_dir``; returns the spec path.

    Refuses to replace an existing model unless ``overwrite``.
    """
    import yaml
    from safetensors.torch import save_file

    out = Path(out_dir)
    spec_path = out / SPEC_NAME
    if spec_path.exists() and not overwrite:
        raise ModelError(f"{out} already holds a slide model; choose another folder or pass "
                         "--overwrite")
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    wtmp = out / (WEIGHTS_NAME + ".partial")
    save_file(state, str(wtmp))
    digest = hashlib.sha256(wtmp.read_bytes()).hexdigest()
    wtmp.replace(out / WEIGHTS_NAME)
    d = model.spec.to_dict()
    d["weights"] = {"file": WEIGHTS_NAME, "sha256": digest}
    stmp = out / (SPEC_NAME + ".partial")
    stmp.write_text(yaml.safe_dump(_plain(d), sort_keys=False))
    stmp.replace(spec_path)
    return spec_path


def load_slide_model(path) -> SlideCNN:
    """A slide model from its folder or its ``slide_model.yaml`` (eval mode, CPU)."""
    import yaml
    from safetensors.torch import load_file

    p = Path(path)
    spec_path = p / SPEC_NAME if p.is_dir() else p
    if not spec_path.exists():
        raise ModelError(f"no slide model at {p} (expected {SPEC_NAME} and {WEIGHTS_NAME}); "
                         "train one with xhisto train-slide")
    try:
        d = yaml.safe_load(spec_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ModelError(f"{spec_path.name} is not valid YAML: {exc}") from None
    if not isinstance(d, dict):
        raise ModelError(f"{spec_path.name} is not a slide model spec")
    spec = SlideModelSpec.from_dict(d, where=spec_path.name)
    wpath = spec_path.parent / d.get("weights", {}).get("file", WEIGHTS_NAME)
    if not wpath.exists():
        raise ModelError(f"weights file missing beside {spec_path.name}: {wpath.name}")
    model = SlideCNN(spec)
    try:
        model.load_state_dict(load_file(str(wpath)))
    except RuntimeError as exc:
        raise ModelError(f"{wpath.name} does not match {spec_path.name}: "
                         f"{str(exc).splitlines()[0]}") from None
    model.eval()
    model.source = str(spec_path)
    model.weights_sha256 = d.get("weights", {}).get("sha256")
    return model
