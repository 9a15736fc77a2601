"""The schema of model specs: our JSON/YAML spec and WSInfer's ``config.json`` (spec 1.0).

Every key is checked for its type and range before a spec is built; an unknown key is an error
with a "did you mean" suggestion (a typo such as ``pach_size`` must not silently fall back to a
default). Messages name the file, the key, the expected type and what was found. No torch here.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ModelError


@dataclass(frozen=True)
class Field:
    """One key of a spec: what it must hold (``expected`` is shown to the user)."""

    expected: str
    check: Callable[[object], object]  # returns the cleaned value or raises _Bad
    required: bool = False
    help: str = ""


class _Bad(Exception):
    pass


def describe(value) -> str:
    """``value`` in words for error messages: "a string 'a,b'", "a number 3.5" ..."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a true/false value ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number {value!r}"
    if isinstance(value, str):
        short = value if len(value) <= 40 else value[:37] + "..."
        return f"a string {short!r}"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def suggestion(key: str, known) -> str:
    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---------------------------------------------------------------------------------------------
# value checks

def _int(low=None):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int | float) or not float(v).is_integer():
            raise _Bad
        if low is not None and v < low:
            raise _Bad
        return int(v)
    return check


def _number(positive=False):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise _Bad
        if positive and v <= 0:
            raise _Bad
        return float(v)
    return check


def _text(v):
    if not isinstance(v, str):
        raise _Bad
    return v


def _name(v):
    if not isinstance(v, str) or not v.strip():
        raise _Bad
    return v.strip()


def _optional(check):
    def opt(v):
        return None if v is None else check(v)
    return opt


def _triple(positive=False):
    def check(v):
        if not isinstance(v, list | tuple) or len(v) != 3:
            raise _Bad
        return tuple(_number(positive)(x) for x in v)
    return check


def _class_names(v):
    if not isinstance(v, list | tuple) or len(v) < 2:
        raise _Bad
    names = []
    for x in v:
        if isinstance(x, bool) or not isinstance(x, str | int) or not str(x).strip():
            raise _Bad
        names.append(str(x).strip())
    if len(set(names)) != len(names):
        raise _Bad
    return names


def _mapping(v):
    if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
        raise _Bad
    return dict(v)


def _head(v):
    if isinstance(v, list):
        v = {"layers": v}
    if not isinstance(v, dict):
        raise _Bad
    return dict(v)


XHISTO_FIELDS: dict[str, Field] = {
    "xhisto_model_spec": Field("the spec format version 1", _int(1)),
    "architecture": Field("a name such as 'resnet50', 'timm:efficientnet_b0' or "
                          "'package.module:Class'", _name, required=True),
    "class_names": Field("a list of at least two different names, e.g. [benign, tumour]",
                         _class_names, required=True),
    "positive_class": Field("one of the class names", _optional(_name)),
    "patch_size": Field("a whole number of pixels > 0", _int(1)),
    "mpp": Field("a number of µm per pixel > 0", _number(positive=True)),
    "mean": Field("a list of three numbers", _triple()),
    "std": Field("a list of three numbers > 0", _triple(positive=True)),
    "weights": Field("a file name (relative to the spec) or path", _optional(_name)),
    "input_size": Field("a whole number of pixels > 0, or null", _optional(_int(1))),
    "target_layer": Field("a dotted layer name such as 'layer4', or null", _optional(_name)),
    "description": Field("text", _optional(_text)),
    "training": Field("a mapping", _optional(_mapping)),
    "arch_options": Field("a mapping of constructor options, e.g. {transform_input: true}",
                          _optional(_mapping)),
    "head": Field("a list of layers, or a mapping with 'layers' (and 'replace')",
                  _optional(_head)),
    "temperature": Field("a number > 0 dividing the logits before the softmax (1: none)",
                         _number(positive=True)),
}

HEAD_FIELDS = {"layers", "replace"}


def _spec_version(v):
    if str(v) != "1.0":
        raise _Bad
    return "1.0"


def _transform(v):
    if not isinstance(v, list):
        raise _Bad
    return v


WSINFER_FIELDS: dict[str, Field] = {
    "spec_version": Field("the string '1.0'", _spec_version, required=True),
    "architecture": Field("a timm model name", _name, required=True),
    "num_classes": Field("a whole number >= 2", _int(2), required=True),
    "class_names": Field("a list of different names, one per class", _class_names,
                         required=True),
    "patch_size_pixels": Field("a whole number of pixels > 0", _int(1), required=True),
    "spacing_um_px": Field("a number of µm per pixel > 0", _number(positive=True),
                           required=True),
    "transform": Field("a list of {name: Resize|ToTensor|Normalize, arguments: {...}}",
                       _transform, required=True),
}

WSINFER_ONLY = {"spec_version", "num_classes", "patch_size_pixels", "spacing_um_px", "transform"}
XHISTO_ONLY = {"xhisto_model_spec", "patch_size", "mpp", "mean", "std", "weights",
               "positive_class", "input_size", "arch_options", "head", "temperature"}


def is_wsinfer(d: dict, where: str) -> bool:
    """Whether ``d`` is a WSInfer config; a mix of both formats is an error."""
    ws, ours = WSINFER_ONLY & set(d), XHISTO_ONLY & set(d)
    if ws and ours:
        raise ModelError(f"{where}: mixes WSInfer keys ({', '.join(sorted(ws))}) with xhisto "
                         f"spec keys ({', '.join(sorted(ours))}); use one format")
    return bool(ws)


def validate(d, fields: dict[str, Field], where: str, kind: str) -> dict:
    """Cleaned values of ``d`` checked against ``fields``; :class:`ModelError` otherwise."""
    if not isinstance(d, dict):
        raise ModelError(f"{where}: a {kind} must be a mapping of keys to values, "
                         f"found {describe(d)}")
    for key in d:
        if key not in fields:
            raise ModelError(f"{where}: unknown key {key!r}{suggestion(key, fields)}; "
                             f"a {kind} knows: {', '.join(fields)}")
    missing = [k for k, f in fields.items() if f.required and k not in d]
    if missing:
        raise ModelError(f"{where}: missing key {missing[0]!r} ({fields[missing[0]].expected})"
                         f"; a {kind} needs {', '.join(k for k, f in fields.items() if f.required)}")
    out = {}
    for key, value in d.items():
        f = fields[key]
        try:
            out[key] = f.check(value)
        except (_Bad, TypeError, ValueError):
            hint = ""
            if key == "class_names" and isinstance(value, str):
                hint = f" (write it as a list: [{', '.join(p.strip() for p in value.split(','))}])"
            raise ModelError(f"{where}: key {key!r} must be {f.expected}, found "
                             f"{describe(value)}{hint}") from None
    return out


def validate_head(head: dict, where: str) -> dict:
    for key in head:
        if key not in HEAD_FIELDS:
            raise ModelError(f"{where}: unknown key 'head.{key}'{suggestion(key, HEAD_FIELDS)}; "
                             "head knows: layers, replace")
    if "layers" not in head or not isinstance(head["layers"], list) or not head["layers"]:
        raise ModelError(f"{where}: 'head.layers' must be a list of layers, e.g. "
                         "[{dropout: 0.5}, linear]")
    if "replace" in head and not (isinstance(head["replace"], str) and head["replace"]):
        raise ModelError(f"{where}: 'head.replace' must be a dotted layer name such as 'fc', "
                         f"found {describe(head['replace'])}")
    return head


def validate_wsinfer_transform(steps: list, where: str) -> dict:
    """``mean``, ``std`` and ``input_size`` from WSInfer's ``transform`` list."""
    out = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "input_size": None}
    for i, step in enumerate(steps):
        at = f"transform[{i}]"
        if not isinstance(step, dict) or not isinstance(step.get("name"), str):
            raise ModelError(f"{where}: {at} must be a mapping with a 'name' (Resize, ToTensor "
                             f"or Normalize), found {describe(step)}")
        unknown = set(step) - {"name", "arguments"}
        if unknown:
            k = sorted(unknown)[0]
            raise ModelError(f"{where}: unknown key {at}.{k}{suggestion(k, ['name', 'arguments'])}")
        name, args = step["name"], step.get("arguments") or {}
        if not isinstance(args, dict):
            raise ModelError(f"{where}: {at}.arguments must be a mapping, found {describe(args)}")
        if name == "Normalize":
            for key in ("mean", "std"):
                if key not in args:
                    raise ModelError(f"{where}: {at} (Normalize) lacks {key!r}: three numbers, "
                                     "one per RGB channel")
                try:
                    out[key] = _triple(positive=key == "std")(args[key])
                except (_Bad, TypeError):
                    raise ModelError(f"{where}: {at}.arguments.{key} must be three numbers"
                                     f"{' > 0' if key == 'std' else ''}, found "
                                     f"{describe(args[key])}") from None
        elif name == "Resize":
            size = args.get("size")
            if isinstance(size, list | tuple) and len(size) == 2 and size[0] == size[1]:
                size = size[0]
            try:
                out["input_size"] = _int(1)(size)
            except _Bad:
                raise ModelError(f"{where}: {at}.arguments.size must be one whole number "
                                 f"(square patches), found {describe(size)}") from None
        elif name != "ToTensor":
            raise ModelError(f"{where}: {at}: WSInfer transform {name!r} is not supported "
                             "(only Resize, ToTensor, Normalize)")
    return out
