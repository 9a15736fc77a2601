"""Weights files: safe reading (safetensors or ``weights_only`` torch files), checkpoint key
prefixes, and a strict fit to the network that names the first layer that does not fit.

Nothing here unpickles arbitrary objects: a pickle that would run code is refused before it runs
anything.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError

# checkpoint key prefixes stripped when the network's own keys then fit: torch.compile,
# Lightning, DataParallel / DistributedDataParallel, common wrapper attributes
PREFIXES = ("_orig_mod.", "model.", "module.", "net.", "network.")


def is_torchscript_file(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    # torch.jit.save archives hold compiled code and constants; torch.save ones do not
    return any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names)


def _unwrap_state_dict(obj) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or \
            not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError("the weights file holds no state dict of tensors (a whole pickled model "
                         "is not accepted: save model.state_dict() or use safetensors)")
    return obj


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file or a ``weights_only`` torch file; never runs code."""
    from .spec_files import binary_kind, convert_hint

    path = Path(path)
    if not path.exists():
        raise ModelError(f"weights file {path} does not exist")
    if path.is_dir():
        raise ModelError(f"weights {path} is a folder, not a file")
    size = path.stat().st_size
    if size == 0:
        raise ModelError(f"weights file {path.name} is empty (0 bytes)")
    with open(path, "rb") as fh:
        kind = binary_kind(fh.read(16))
    if path.suffix == ".safetensors" or kind == "safetensors":
        return _read_safetensors(path, size)
    if kind is None:
        raise ModelError(f"{path.name} is not a weights file (neither safetensors nor a torch "
                         "checkpoint); give the weights, or a spec (.json/.yaml) that names them")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "GLOBAL" in ln or "global" in ln]
        why = f" ({lines[0][:160]})" if lines else ""
        raise ModelError(f"refused to load {path.name}: it is a pickle checkpoint holding Python "
                         f"objects that would run code when unpickled{why}; nothing was run. "
                         f"Only tensors are accepted: {convert_hint(path)}") from None
    except Exception as exc:
        msg = " ".join(str(exc).split())[:200]
        raise ModelError(f"{path.name} is not a readable weights file (damaged or truncated?): "
                         f"{msg}") from None
    return _unwrap_state_dict(obj)


def _read_safetensors(path: Path, size: int) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, with the header checked against the file's size first."""
    import json
    import struct

    from safetensors.torch import load_file

    with open(path, "rb") as fh:
        head = fh.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        header = fh.read(n) if n is not None and 0 < n < min(size, 1 << 28) else b""
    try:
        meta = json.loads(header.decode("utf-8"))
        end = max((int(v["data_offsets"][1]) for k, v in meta.items() if k != "__metadata__"),
                  default=0)
    except Exception:
        raise ModelError(f"{path.name} is not a readable safetensors file: its header is "
                         "damaged (copy it again or re-export it)") from None
    if 8 + n + end > size:
        raise ModelError(f"{path.name} is truncated ({size} of {8 + n + end} bytes): copy it "
                         "again")
    try:
        return load_file(str(path))
    except Exception as exc:
        msg = " ".join(str(exc).split())[:200]
        raise ModelError(f"{path.name} is not a readable safetensors file: {msg}") from None


def _fits(keys, own) -> bool:
    need = {k for k in own if not k.endswith("num_batches_tracked")}
    return need <= set(keys) <= set(own)


def fit_state_dict(state: dict, own_keys) -> tuple[dict, list[str]]:
    """``state`` with checkpoint prefixes stripped where the network's keys then fit.

    Returns the (possibly renamed) state and notes saying what was done. A prefix shared by all
    keys is stripped (``_orig_mod.`` of torch.compile, ``module.`` of DataParallel, ``model.``
    of Lightning ...); where only some keys carry it (a Lightning module that also saved its
    loss), those keys are used when they fit the network exactly, and the others are named.
    """
    own = list(own_keys)
    notes: list[str] = []
    for _ in range(4):
        if _fits(state, own):
            break
        for prefix in PREFIXES:
            keys = [k for k in state if k.startswith(prefix)]
            if not keys:
                continue
            stripped = {k[len(prefix):]: state[k] for k in keys}
            if len(keys) == len(state):
                state = stripped
                notes.append(f"stripped the key prefix {prefix!r} of every weight")
                break
            if _fits(stripped, own):
                other = sorted(set(state) - set(keys))
                notes.append(f"used the weights under {prefix!r}; ignored {len(other)} other "
                             f"entr{'y' if len(other) == 1 else 'ies'} ({other[0]!r} ...)")
                state = stripped
                break
        else:
            break
    return state, notes


def _head_hint(missing: str, state) -> str:
    module = missing.rsplit(".", 1)[0]
    if any(k.startswith(module + ".") and k[len(module) + 1:].split(".")[0].isdigit()
           for k in state):
        return (f"; the file's {module!r} is a sequence of layers: describe it in the spec's "
                "head (e.g. head: {replace: " + module + ", layers: [{dropout: 0.5}, linear]})")
    return ""


def load_weights_strict(module: nn.Module, state: dict[str, torch.Tensor], *,
                        architecture: str = "") -> None:
    """Copy ``state`` into ``module``; the first layer that does not fit raises ModelError."""
    own = module.state_dict()
    for key, target in own.items():
        if key not in state:
            if key.endswith("num_batches_tracked"):
                continue
            raise ModelError(f"weights do not fit architecture {architecture!r}: layer {key!r} "
                             f"(shape {tuple(target.shape)}) is missing from the file"
                             f"{_head_hint(key, state)}")
        if tuple(state[key].shape) != tuple(target.shape):
            raise ModelError(f"weights do not fit architecture {architecture!r}: layer {key!r} "
                             f"has shape {tuple(state[key].shape)} in the file but "
                             f"{tuple(target.shape)} in the model (check class_names/architecture)")
        if state[key].dtype.is_floating_point != target.dtype.is_floating_point:
            raise ModelError(f"weights do not fit architecture {architecture!r}: layer {key!r} "
                             f"holds {state[key].dtype} in the file, {target.dtype} in the model")
    for key in state:
        if key not in own:
            raise ModelError(f"weights do not fit architecture {architecture!r}: the file has "
                             f"layer {key!r} that the model lacks")
    module.load_state_dict({k: v for k, v in state.items()}, strict=False)
