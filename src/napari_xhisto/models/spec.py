"""What a model file promises: architecture, classes, patch geometry, normalisation, weights.

A spec is a small JSON or YAML file beside its weights (safetensors, a ``weights_only`` state
dict or a TorchScript file). A WSInfer ``config.json`` (spec 1.0) reads as a spec too. Every spec
is checked against a schema (:mod:`.spec_schema`): wrong types and unknown keys are errors that
name the file and the key. This module imports no torch, so reading a spec is cheap.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ModelError
from .spec_schema import (
    WSINFER_FIELDS,
    XHISTO_FIELDS,
    is_wsinfer,
    validate,
    validate_head,
    validate_wsinfer_transform,
)

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
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ts", ".torchscript", ".ckpt", ".pkl",
                   ".pickle")
SPEC_SUFFIXES = (".json", ".yaml", ".yml")


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
        A torchvision classification model (``"resnet50"``, ``"googlenet"`` ...), a timm model
        (``"timm:efficientnet_b0"``; a bare timm name works where torchvision has none), a
        registered project architecture (``"xhisto_cnn_s"``) or a class of an installed package
        (``"package.module:Class"``).
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
    arch_options : dict
        Constructor options that change the network, e.g. ``{"transform_input": True}`` for a
        GoogLeNet fine-tuned from torchvision's ImageNet weights (required for GoogLeNet and
        Inception v3), ``{"drop_rate": 0.1}`` for timm, constructor arguments of a custom class.
    head : dict or None
        A classifier head replacing the network's last linear layer (or ``head["replace"]``):
        ``{"layers": [{"dropout": 0.5}, "linear"]}``; the last ``linear`` gets one output per
        class (see :func:`napari_xhisto.models.architectures.build_head`).
    temperature : float
        Temperature scaling (seed 002): probabilities are ``softmax(logits / temperature)``;
        1.0 leaves the network's output as it is (``xhisto calibrate`` fits it).
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
    arch_options: dict = field(default_factory=dict)
    head: dict | None = None
    temperature: float = 1.0
    source: str | None = None  # file the spec was read from (not written)
    notes: list = field(default_factory=list, repr=False, compare=False)  # not written

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
        self.temperature = float(self.temperature)
        if not (self.temperature > 0 and self.temperature < float("inf")):
            raise ModelError(f"temperature must be a finite number > 0, got {self.temperature}")

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
    def dropout(self) -> float | None:
        """Largest dropout probability the spec declares (``arch_options.dropout`` and
        ``conv_dropout`` of the project CNNs, ``drop_rate`` of timm, ``{dropout: p}`` head
        layers); None: none declared.
        Monte-Carlo dropout (:mod:`.mc_dropout`) checks the built network itself."""
        found = [self.arch_options.get(k) for k in ("dropout", "conv_dropout", "drop_rate")
                 if isinstance(self.arch_options, dict)]
        for item in (self.head or {}).get("layers", []):
            if isinstance(item, dict) and len(item) == 1 and "dropout" in item:
                found.append(item["dropout"])
        found = [float(p) for p in found if isinstance(p, int | float) and not isinstance(p, bool)]
        return max(found) if found else None

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
        d.pop("notes")
        d["mean"], d["std"] = list(self.mean), list(self.std)
        if not d["arch_options"]:
            d.pop("arch_options")
        if d["head"] is None:
            d.pop("head")
        if d["temperature"] == 1.0:
            d.pop("temperature")
        return {"xhisto_model_spec": 1, **d}

    def save(self, path) -> Path:
        """Write the spec as JSON (weights path kept as given)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, d: dict, *, source=None) -> ModelSpec:
        """A spec from a mapping checked against the schema (ours, or WSInfer's config)."""
        where = Path(source).name if source else "model spec"
        if isinstance(d, dict) and is_wsinfer(d, where):
            return cls.from_wsinfer(d, source=source)
        v = validate(d, XHISTO_FIELDS, where, "model spec")
        v.pop("xhisto_model_spec", None)
        if v.get("head") is not None:
            validate_head(v["head"], where)
        for key in ("description", "training", "arch_options"):
            if v.get(key) is None:
                v.pop(key, None)
        try:
            return cls(**v, source=str(source) if source else None)
        except ModelError as exc:
            raise ModelError(f"{where}: {exc}") from None

    @classmethod
    def from_wsinfer(cls, d: dict, *, source=None) -> ModelSpec:
        """Read a WSInfer ``config.json`` (spec 1.0) as a spec.

        A timm name with a torchvision twin of the same layout (``resnet34``, ...) builds the
        torchvision network; any other name is built by timm. No ``Normalize`` step means no
        normalisation (mean 0, std 1). Weights are looked for beside the config
        (``model.safetensors``, then ``torchscript_model.pt``, then any single weights file).
        """
        where = Path(source).name if source else "WSInfer config"
        v = validate(d, WSINFER_FIELDS, where, "WSInfer config")
        arch = v["architecture"]
        if len(v["class_names"]) != v["num_classes"]:
            raise ModelError(f"{where}: num_classes is {v['num_classes']} but class_names lists "
                             f"{len(v['class_names'])} names")
        t = validate_wsinfer_transform(v["transform"], where)
        architecture = TIMM_TO_TORCHVISION.get(arch)
        options = {}
        if architecture in ("inception_v3", "googlenet"):
            options["transform_input"] = False  # timm's networks take the input as given
        if architecture is None:
            architecture = arch if arch == "torchscript" else f"timm:{arch}"
        weights = None
        if source:
            folder = Path(source).parent
            for cand in ("model.safetensors", "torchscript_model.pt"):
                if (folder / cand).exists():
                    weights = cand
                    break
            else:
                found = sorted(p.name for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)
                weights = found[0] if len(found) == 1 else None
        return cls(architecture=architecture, class_names=v["class_names"],
                   patch_size=v["patch_size_pixels"], mpp=v["spacing_um_px"], mean=t["mean"],
                   std=t["std"], weights=weights, input_size=t["input_size"],
                   arch_options=options,
                   description=f"WSInfer config (timm architecture {arch!r})",
                   source=str(source) if source else None)

    @classmethod
    def from_file(cls, path) -> ModelSpec:
        """Read our JSON/YAML spec or a WSInfer ``config.json``.

        A weights file given directly (``.safetensors``, ``.pt`` ...) finds its spec beside it
        (same stem ``.json``/``.yaml``, or ``config.json``) and is the file that is loaded, even
        where that spec names another one (a note says so).
        """
        from .spec_files import read_mapping, spec_beside

        path = Path(path)
        if path.suffix.lower() in WEIGHT_SUFFIXES:
            spec_path = spec_beside(path)
            spec = cls.from_file(spec_path)
            named = spec.weights_path()
            if named is not None and named.resolve() != path.resolve():
                spec.notes.append(f"{spec_path.name} names {named.name}; loading "
                                  f"{path.name}, the file you gave")
            spec.weights = str(path.resolve())
            return spec
        return cls.from_dict(read_mapping(path), source=path.resolve())
