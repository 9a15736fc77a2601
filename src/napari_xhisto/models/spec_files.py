"""Reading spec files: one clear line for every way a file can be the wrong thing.

A spec is JSON or YAML text. Weights files handed over as a spec (a ``.ckpt`` pickle, a
``torch.save`` zip, safetensors), binary junk, empty or huge files, syntax errors, duplicate keys
and runaway nesting each get a message that says what the file is and what to do.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from ..errors import ModelError

MAX_SPEC_BYTES = 1 << 20

CONVERT_HINT = (
    "convert it to safetensors with: python -c \"import torch, safetensors.torch as st; "
    "d = torch.load('{name}', map_location='cpu', weights_only=False); "
    "d = d.get('state_dict', d); "
    "st.save_file({{k: v.contiguous() for k, v in d.items()}}, '{stem}.safetensors')\" "
    "(this unpickles the file: do it only for a file you trust), then describe the network "
    "with `xhisto spec init`")


def convert_hint(path: Path) -> str:
    return CONVERT_HINT.format(name=path.name, stem=path.stem)


def binary_kind(head: bytes) -> str | None:
    """What a binary file is, from its first bytes: 'zip', 'pickle', 'safetensors' or None."""
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n < (1 << 28) and head[8:9] == b"{":
            return "safetensors"
    return None


def _not_a_spec(path: Path, kind: str) -> ModelError:
    if kind == "safetensors":
        return ModelError(f"{path.name} is a safetensors weights file, not a model spec: give "
                          "the spec (.json/.yaml) that names it, or put one beside it "
                          "(`xhisto spec init`)")
    what = "a pickle checkpoint" if kind == "pickle" else "a torch checkpoint (zip archive)"
    return ModelError(f"{path.name} is {what}, not a model spec: {convert_hint(path)}")


def _no_duplicates_json(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice")
        out[key] = value
    return out


def _yaml_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        keys = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in keys:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark)
            keys.add(key)
        return loader.construct_mapping(node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return Loader


def _parse_yaml(text: str, name: str):
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        raise ModelError(f"{name} is not valid YAML: {problem}{where}") from None
    except yaml.YAMLError as exc:
        raise ModelError(f"{name} is not valid YAML: {' '.join(str(exc).split())}") from None


def _parse_json(text: str, name: str):
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates_json)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{name} is not valid JSON: {exc.msg} at line {exc.lineno}, "
                         f"column {exc.colno}") from None
    except ValueError as exc:
        raise ModelError(f"{name} is not valid JSON: {exc}") from None


def read_mapping(path) -> dict:
    """The mapping a spec file holds; :class:`ModelError` with one line otherwise."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model spec {path} does not exist")
    if path.is_dir():
        raise ModelError(f"{path} is a folder: give the model spec inside it (e.g. "
                         f"{path / 'config.json'}) or its weights file")
    size = path.stat().st_size
    if size == 0:
        raise ModelError(f"model spec {path.name} is empty (0 bytes)")
    with open(path, "rb") as fh:
        head = fh.read(16)
    kind = binary_kind(head)
    if kind:
        raise _not_a_spec(path, kind)
    if size > MAX_SPEC_BYTES:
        raise ModelError(f"{path.name} is {size / 2**20:.1f} MB, too large for a model spec "
                         "(JSON/YAML text of a few lines); is it a weights file?")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ModelError(f"{path.name} is not a text file (no UTF-8 JSON/YAML); a model spec "
                         "is a small JSON or YAML file naming the architecture, classes and "
                         "weights (`xhisto spec init` writes one)") from None
    if "\x00" in text:
        raise ModelError(f"{path.name} holds binary data, not a JSON/YAML model spec")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            d = _parse_yaml(text, path.name)
        elif path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
            d = _parse_json(text, path.name)
        else:
            d = _parse_yaml(text, path.name)
    except RecursionError:
        raise ModelError(f"{path.name} is nested too deeply to be a model spec") from None
    if not isinstance(d, dict):
        from .spec_schema import describe

        raise ModelError(f"{path.name}: a model spec must be a mapping of keys to values "
                         f"(architecture, class_names, ...), found {describe(d)}")
    return d


def spec_beside(weights: Path) -> Path:
    """The spec describing a weights file: ``<stem>.json/.yaml/.yml`` or ``config.json``."""
    weights = Path(weights)
    cands = [weights.with_suffix(s) for s in (".json", ".yaml", ".yml")]
    cands.append(weights.parent / "config.json")
    for cand in cands:
        if cand.exists() and cand != weights:
            return cand
    if not weights.exists():
        raise ModelError(f"weights file {weights} does not exist")
    if weights.suffix.lower() == ".ckpt":
        raise ModelError(f"{weights.name} is a pickle checkpoint with no spec beside it "
                         f"({weights.stem}.yaml or config.json): {convert_hint(weights)}")
    raise ModelError(f"{weights.name}: no spec found beside it (expected {weights.stem}.json, "
                     f"{weights.stem}.yaml or config.json); write one with `xhisto spec init "
                     f"--arch NAME --classes a,b --mpp MPP --patch PX {weights.stem}.yaml`")
