"""What a model file promises: architecture, classes, patch geometry, normalisation, weights.

A spec is a small JSON file beside its weights (safetensors, a ``weights_only`` state dict or a
TorchScript file). A WSInfer ``config.json`` (spec 1.0) reads as a spec too. This module imports
no torch, so reading a spec is cheap.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ModelError

# timm names that WSInfer configs use -> the torchvision architecture with the same layout.
TIMM_TO_TORCHVISION = {
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "tv_resnet34": "resnet34",
    "tv_resnet50": "resnet50",
    "resnet18.tv_in1k": "resnet18",
    "resnet34.tv_in1k": "resnet34",
    "resnet50.tv_in1k": "resnet50",
    "vgg16": "vgg16",
    "vgg16_bn": "vgg16_bn",
    "densenet121": "densenet121",
    "mobilenetv2_100": "mobilenet_v2",
    "mobilenetv3_large_100": "mobilenet_v3_large",
    "mobilenetv3_small_100": "mobilenet_v3_small",
    "inception_v3": "inception_v3",
    "tv_in1k_inception_v3": "inception_v3",
    "googlenet": "googlenet",
    "alexnet": "alexnet",
}

POSITIVE_WORDS = ("tumour", "tumor", "cancer", "positive", "malignant", "lesion")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ts", ".torchscript")


def _guess_positive(class_names: list[str]) -> str:
    """The class that reads as 'tumour' (or the like); the last class otherwise."""
    for name in class_names:
        low = name.lower()
        if any(w in low for w in POSITIVE_WORDS) and not low.startswith(("no", "non")):
            return name
    return class_names[-1]


@dataclass
class ModelSpec:
    """Everything needed to turn slide pixels into class probabilities.

    Parameters
    ----------
    architecture : str
        A torchvision name (``"resnet18"``, ``"googlenet"`` ...) or a registered project
        architecture (``"xhisto_cnn_s"``).
    class_names : list of str
        Output order of the classifier.
    positive_class : str
        The class whose probability a map shows (e.g. ``"tumour"``).
    patch_size : int
        Side of a patch in pixels at ``mpp`` µm/px.
    mpp : float
        µm per pixel the model expects.
    mean, std : tuple of 3 floats
        Normalisation of RGB values scaled to [0, 1].
    weights : str or None
        Weights file, relative to the spec's folder (or absolute).
    input_size : int or None
        Side of the tensor the network sees, when patches are resized (WSInfer ``Resize``);
        ``None`` means ``patch_size``.
    target_layer : str or None
        Dotted module name CAM methods use; ``None`` means the architecture's default.
    description : str
        Free text.
    training : dict
        How the weights were made (command, seed, data recipe, held-out metrics).
    """

    architecture: str
    class_names: list[str]
    positive_class: str | None = None
    patch_size: int = 64
    mpp: float = 1.0
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    weights: str | None = None
    input_size: int | None = None
    target_layer: str | None = None
    description: str = ""
    training: dict = field(default_factory=dict)
    source: str | None = None  # file the spec was read from (not written)

    def __post_init__(self):
        self.class_names = [str(c) for c in self.class_names]
        if len(self.class_names) < 2:
            raise ModelError(f"a model spec needs at least two class names, got {self.class_names}")
        if self.positive_class is None:
            self.positive_class = _guess_positive(self.class_names)
        if self.positive_class not in self.class_names:
            raise ModelError(f"positive_class {self.positive_class!r} is not one of the class "
                             f"names {self.class_names}; fix the spec")
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ModelError(f"mean and std need three values each (std > 0), got {self.mean} "
                             f"and {self.std}")
        self.patch_size = int(self.patch_size)
        self.mpp = float(self.mpp)
        if self.patch_size <= 0 or self.mpp <= 0:
            raise ModelError(f"patch_size and mpp must be positive, got {self.patch_size} px at "
                             f"{self.mpp} µm/px")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def positive_index(self) -> int:
        return self.class_names.index(self.positive_class)

    @property
    def network_input_size(self) -> int:
        """Side of the tensor the network sees."""
        return int(self.input_size or self.patch_size)

    @property
    def patch_um(self) -> float:
        """Side of a patch in µm on the slide."""
        return self.patch_size * self.mpp

    @property
    def name(self) -> str:
        if self.source:
            return Path(self.source).stem
        return self.architecture

    def weights_path(self) -> Path | None:
        """The weights file as an absolute path (relative names resolve beside the spec)."""
        if not self.weights:
            return None
        p = Path(self.weights)
        if not p.is_absolute() and self.source:
            p = Path(self.source).parent / p
        return p

    # ---- files ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("source")
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return {"xhisto_model_spec": 1, **d}

    def save(self, path) -> Path:
        """Write the spec as JSON (weights path kept as given)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, d: dict, *, source=None) -> ModelSpec:
        if "spacing_um_px" in d or "patch_size_pixels" in d:
            return cls.from_wsinfer(d, source=source)
        known = {f for f in cls.__dataclass_fields__ if f != "source"}
        missing = {"architecture", "class_names"} - set(d)
        if missing:
            raise ModelError(f"model spec {source or ''} lacks {sorted(missing)}; a spec needs at "
                             "least 'architecture' and 'class_names'")
        kwargs = {k: v for k, v in d.items() if k in known}
        return cls(**kwargs, source=str(source) if source else None)

    @classmethod
    def from_wsinfer(cls, d: dict, *, source=None) -> ModelSpec:
        """Read a WSInfer ``config.json`` (spec 1.0) as a spec.

        The timm architecture name is mapped to the torchvision one with the same layout; an
        unknown name is kept (a TorchScript file still loads) and building it raises
        :class:`ModelError` naming it. Weights are looked for beside the
        config (``model.safetensors``, then ``torchscript_model.pt``, then any weights file).
        """
        arch = str(d.get("architecture", ""))
        # Unknown names are kept: a TorchScript file still loads; building one raises ModelError.
        architecture = TIMM_TO_TORCHVISION.get(arch, arch)
        class_names = list(d.get("class_names") or [])
        n = int(d.get("num_classes", len(class_names)))
        if len(class_names) != n:
            raise ModelError(f"WSInfer config says num_classes={n} but lists {len(class_names)} "
                             "class_names")
        mean, std, input_size = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), None
        for t in d.get("transform", []):
            name, args = t.get("name"), t.get("arguments") or {}
            if name == "Normalize":
                mean, std = args["mean"], args["std"]
            elif name == "Resize":
                size = args.get("size")
                input_size = int(size if isinstance(size, int | float) else size[0])
            elif name not in ("ToTensor",):
                raise ModelError(f"WSInfer transform {name!r} is not supported (only Resize, "
                                 "ToTensor, Normalize)")
        weights = None
        if source:
            folder = Path(source).parent
            for cand in ("model.safetensors", "torchscript_model.pt"):
                if (folder / cand).exists():
                    weights = cand
                    break
            else:
                found = sorted(p.name for p in folder.iterdir()
                               if p.suffix in WEIGHT_SUFFIXES)
                weights = found[0] if found else None
        return cls(architecture=architecture, class_names=class_names,
                   patch_size=int(d["patch_size_pixels"]), mpp=float(d["spacing_um_px"]),
                   mean=tuple(mean), std=tuple(std), weights=weights, input_size=input_size,
                   description=f"WSInfer config (timm architecture {arch!r})",
                   source=str(source) if source else None)

    @classmethod
    def from_file(cls, path) -> ModelSpec:
        """Read our JSON (or YAML) spec or a WSInfer ``config.json``.

        A weights file given directly (``.safetensors``/``.pt``) finds its spec beside it
        (same stem ``.json``, or ``config.json``).
        """
        path = Path(path)
        if path.suffix.lower() in WEIGHT_SUFFIXES:
            for cand in (path.with_suffix(".json"), path.parent / "config.json"):
                if cand.exists():
                    spec = cls.from_file(cand)
                    if spec.weights_path() is None or not spec.weights_path().exists():
                        spec.weights = str(path.resolve())
                    return spec
            raise ModelError(f"{path.name}: no spec found beside it (expected "
                             f"{path.with_suffix('.json').name} or config.json)")
        if not path.exists():
            raise ModelError(f"model spec {path} does not exist")
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                d = yaml.safe_load(path.read_text())
            else:
                d = json.loads(path.read_text())
        except Exception as exc:  # JSON/YAML syntax, encoding
            raise ModelError(f"model spec {path.name} cannot be parsed: {exc}") from None
        if not isinstance(d, dict):
            raise ModelError(f"model spec {path.name} must hold a JSON object")
        return cls.from_dict(d, source=path.resolve())
