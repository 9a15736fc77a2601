"""The settings of a study: what every slide is run with, and which of them decide its results.

Settings that change numbers (model, method, parameters, region handling, metric options) enter
each slide's key; settings that only change speed or placement (device, batch size, reader
threads, number of workers, scheduler) do not, so a study resumes on another machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import XhistoError

__all__ = ["RUNTIME_FIELDS", "StudySettings", "encoder_fingerprint", "model_fingerprint",
           "parse_params"]

RUNTIME_FIELDS = ("device", "batch_size", "reader_threads")


@dataclass(frozen=True)
class StudySettings:
    """Options of a study run (names as the single-slide commands' options)."""

    task: str
    model: str = "demo"
    # explain / evaluate
    method: str = "lrp-epsilon-plus"
    params: tuple = ()  # sorted (name, value) pairs, checked by the method
    target: str | None = None
    overlap: float = 0.1
    normalize: str = "global-max"
    percentile: float = 99.5
    # predict
    class_name: str | None = None
    stride: float | None = None
    tissue_threshold: float = 0.1
    # slides
    mpp: float | None = None
    # evaluate (and predict when a row has annotations)
    radius_um: float | None = None
    positive: tuple = ("tumour",)
    negative: tuple | None = None
    tile_um: float = 256.0
    random_runs: int = 20
    localize: tuple | None = None
    # runtime only (not in the key)
    device: str | None = None
    batch_size: int | None = None
    reader_threads: int | None = None
    extra: dict = field(default_factory=dict)  # options of tasks added later (e.g. an encoder)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["params"] = [list(p) for p in self.params]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> StudySettings:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["params"] = tuple(tuple(p) for p in kw.get("params", ()))
        for k in ("positive", "negative", "localize"):
            if kw.get(k) is not None:
                kw[k] = tuple(kw[k])
        return cls(**kw)

    def keyed(self, uses: tuple[str, ...]) -> dict:
        """The settings named in ``uses`` (those that decide a task's results)."""
        d = self.to_dict()
        return {k: d[k] for k in uses if k in d and k not in RUNTIME_FIELDS}


def parse_params(items, method: str) -> tuple:
    """``["steps=64"]`` -> ``(("steps", 64),)``, checked by the method's parameter specs."""
    from ..explain import get_explainer

    try:
        explainer = get_explainer(method)
    except (KeyError, ValueError) as exc:
        raise XhistoError(str(exc).strip("'\"")) from None
    raw = {}
    for item in items or ():
        name, sep, value = str(item).partition("=")
        if not sep or not name.strip():
            raise XhistoError(f"--param takes NAME=VALUE, got {item!r}")
        raw[name.strip()] = value.strip()
    out = {}
    for name, value in raw.items():
        spec = explainer.params.get(name)
        if spec is not None and spec.kind == "float":
            value = _number(float, value, name)
        elif spec is not None and spec.kind == "int":
            value = _number(int, value, name)
        out[name] = value
    try:
        checked = explainer.check_params(**out)
    except ValueError as exc:
        raise XhistoError(str(exc)) from None
    given = {k: checked[k] for k in out}  # only what the user set: defaults stay the method's
    return tuple(sorted((k, list(v) if isinstance(v, tuple) else v) for k, v in given.items()))


def _number(conv, value: str, name: str):
    try:
        return conv(value)
    except ValueError:
        kind = "a whole number" if conv is int else "a number"
        raise XhistoError(f"--param {name} must be {kind}, got {value!r}") from None


def model_fingerprint(model: str) -> dict:
    """Name, spec path and content fingerprints of a model's spec and weights files."""
    from ..models.spec import ModelSpec
    from .fingerprint import file_fingerprint

    if model == "demo":
        from ..models.demo import DEMO_SPEC_PATH

        path = Path(DEMO_SPEC_PATH)
    else:
        path = Path(model).expanduser()
    if not path.exists():
        raise XhistoError(f"model not found: {model} (give 'demo', a spec .json or a WSInfer "
                          "config.json)")
    spec = ModelSpec.from_file(path)
    weights = spec.weights_path()
    if weights is None or not weights.exists():
        raise XhistoError(f"the weights file {weights} named by {path} does not exist")
    return {"name": spec.name, "spec": str(path.resolve()), "spec_hash": file_fingerprint(path),
            "weights": str(weights), "weights_hash": file_fingerprint(weights),
            "architecture": spec.architecture}


def encoder_fingerprint(encoder: str) -> dict:
    """Spec path and content fingerprints of a NIC encoder (``xhisto compress --encoder``).

    ``encoder`` is a spec .yaml or a bundled kind name (``nic/bundled/<kind>.yaml``). The
    ``content`` entry (spec, weights and, for a supervised encoder, its classifier's files) is
    what enters a slide's key; torch is not imported.
    """
    import yaml

    from .fingerprint import file_fingerprint

    path = Path(encoder).expanduser()
    if not path.exists():
        bundled = Path(__file__).parents[1] / "nic" / "bundled" / f"{encoder}.yaml"
        if "/" not in str(encoder) and bundled.is_file():
            path = bundled
    if not path.is_file():
        raise XhistoError(f"encoder not found: {encoder} (give a spec .yaml from xhisto "
                          "train-encoder, or a bundled kind such as 'contrastive')")
    try:
        spec = yaml.safe_load(path.read_text())
    except Exception:  # noqa: BLE001 - a binary or broken file: one line
        spec = None
    if not isinstance(spec, dict) or "xhisto_encoder_spec" not in spec:
        raise XhistoError(f"{path}: not an encoder spec (make one with xhisto train-encoder)")
    content = {"kind": spec.get("kind"), "spec_hash": file_fingerprint(path)}
    if spec.get("weights"):
        weights = path.with_name(str(spec["weights"]))
        if not weights.is_file():
            raise XhistoError(f"{path}: its weights file {weights.name!r} is missing beside it")
        content["weights_hash"] = file_fingerprint(weights)
    if spec.get("kind") == "supervised":
        fp = model_fingerprint(str(spec.get("model", "demo")))
        content["model"] = {k: fp[k] for k in ("name", "spec_hash", "weights_hash")}
    return {"spec": str(path.resolve()), "content": content}
