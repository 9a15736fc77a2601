"""Fuzz corpus of damaged specs and weights, generated here: each case ends in one clear line
from ``load_model`` and from ``xhisto predict/explain --model`` (exit 1, no traceback, no
output file), never a Python exception type or a half-written result."""

from __future__ import annotations

import json
import os
import pickle
import re

import pytest
import torch

from napari_xhisto.errors import ModelError
from napari_xhisto.models import build_architecture, load_model

torch.set_num_threads(2)

SPEC = {"architecture": "xhisto_cnn_xs", "class_names": ["benign", "tumour"], "patch_size": 32,
        "mpp": 1.0, "weights": "w.safetensors"}
WSI = {"spec_version": "1.0", "architecture": "resnet18", "num_classes": 2,
       "class_names": ["a", "b"], "patch_size_pixels": 32, "spacing_um_px": 1.0,
       "transform": [{"name": "ToTensor"},
                     {"name": "Normalize", "arguments": {"mean": [0.5, 0.5, 0.5],
                                                         "std": [0.2, 0.2, 0.2]}}]}


class Evil:
    """Unpickling this would create a file: the loader must refuse it before it runs."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _state():
    torch.manual_seed(0)
    return {k: v.contiguous() for k, v in build_architecture("xhisto_cnn_xs", 2).state_dict().items()}


def _save(state, path):
    from safetensors.torch import save_file

    save_file(state, str(path))
    return path


def _spec(folder, name, **change):
    d = dict(SPEC, **{k: v for k, v in change.items() if v is not None})
    for k, v in change.items():
        if v is None:
            d.pop(k, None)
    (folder / name).write_text(json.dumps(d))
    return folder / name


def build_corpus(folder):
    """``{case: path given as --model}``: every way a model file can be wrong."""
    state = _state()
    good = _save(state, folder / "w.safetensors")
    raw = good.read_bytes()
    cases = {}

    def text(name, content):
        (folder / name).write_text(content)
        cases[name] = folder / name

    # specs
    text("bad_yaml.yaml", "architecture: [xhisto_cnn_xs\nclass_names: [a, b]\n")
    text("bad_json.json", '{"architecture": "xhisto_cnn_xs", }')
    text("list.yaml", "- architecture\n- class_names\n")
    text("scalar.json", "42")
    text("empty.yaml", "")
    text("nested.json", "[" * 50000 + "]" * 50000)
    text("dup_keys.yaml", "architecture: a\narchitecture: b\nclass_names: [a, b]\n")
    (folder / "random_bytes.json").write_bytes(os.urandom(4096))
    cases["random_bytes.json"] = folder / "random_bytes.json"
    cases["typo_key.json"] = _spec(folder, "typo_key.json", pach_size=64)
    cases["wrong_type.json"] = _spec(folder, "wrong_type.json", patch_size="64px")
    cases["negative_mpp.json"] = _spec(folder, "negative_mpp.json", mpp=-1)
    cases["classes_string.json"] = _spec(folder, "classes_string.json", class_names="a,b")
    cases["one_class.json"] = _spec(folder, "one_class.json", class_names=["a"])
    cases["no_arch.json"] = _spec(folder, "no_arch.json", architecture=None)
    cases["unknown_arch.json"] = _spec(folder, "unknown_arch.json", architecture="resnet1000")
    cases["googlenet_unsaid.json"] = _spec(folder, "googlenet_unsaid.json",
                                           architecture="googlenet")
    cases["bad_option.json"] = _spec(folder, "bad_option.json", arch_options={"depth": 3})
    cases["bad_head.json"] = _spec(folder, "bad_head.json", head={"layers": ["linaer"]})
    cases["missing_weights.json"] = _spec(folder, "missing_weights.json", weights="nope.pt")
    cases["no_weights.json"] = _spec(folder, "no_weights.json", weights=None)
    cases["bad_positive.json"] = _spec(folder, "bad_positive.json", positive_class="cancer")
    (folder / "wsi").mkdir()
    for key, change in [("no_std", {"transform": [{"name": "Normalize",
                                                   "arguments": {"mean": [0, 0, 0]}}]}),
                        ("no_patch", {"patch_size_pixels": None}),
                        ("mixed", {"mpp": 1.0})]:
        d = {k: v for k, v in dict(WSI, **change).items() if v is not None}
        sub = folder / "wsi" / key
        sub.mkdir()
        (sub / "config.json").write_text(json.dumps(d))
        cases[f"wsinfer_{key}"] = sub / "config.json"
    cases["folder"] = folder / "wsi"
    cases["absent.json"] = folder / "absent.json"

    # weights (each beside its own spec of the same stem)
    def weights(name, data: bytes | None = None, state=None, spec_change=None):
        path = folder / name
        if state is not None:
            _save(state, path)
        else:
            path.write_bytes(data)
        _spec(folder, path.stem + ".json", weights=name, **(spec_change or {}))
        cases[name] = path

    weights("truncated.safetensors", raw[: len(raw) // 2])
    header_cut = bytearray(raw)
    header_cut[10:40] = b"\x00" * 30
    weights("bad_header.safetensors", bytes(header_cut))
    weights("zero.safetensors", b"")
    weights("junk.pt", os.urandom(2048))
    weights("wrong_shape.safetensors", state=state, spec_change={"class_names": ["a", "b", "c"]})
    weights("missing_layer.safetensors", state={k: v for i, (k, v) in enumerate(state.items())
                                                if i != 0})
    weights("extra_layer.safetensors", state={**state, "extra.weight": torch.ones(2)})
    weights("int_tensors.safetensors", state={k: v.to(torch.int32) if v.is_floating_point()
                                              else v for k, v in state.items()})
    marker = folder / "PWNED"
    evil = folder / "evil.pt"
    torch.save({"w": Evil(marker)}, evil)
    weights("evil.pt", evil.read_bytes())
    (folder / "evil.pkl").write_bytes(pickle.dumps(Evil(marker), protocol=2))
    weights("evil.pkl", (folder / "evil.pkl").read_bytes())
    module_file = folder / "whole_module.pt"
    torch.save(build_architecture("xhisto_cnn_xs", 2), module_file)
    weights("whole_module.pt", module_file.read_bytes())
    ckpt = folder / "lightning.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"x": Evil(marker)}}, ckpt)
    cases["lightning.ckpt"] = ckpt  # no spec beside it
    pt = folder / "truncated_zip.pt"
    torch.save(state, pt)
    weights("truncated_zip.pt", pt.read_bytes()[:3000])
    return cases, marker


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    from conftest_slides import standard_svs

    return standard_svs(tmp_path_factory.mktemp("slide") / "s.svs")


EXCEPTION_NAME = re.compile(r"^[A-Z]\w*(Error|Exception|Warning):")


def test_every_case_is_one_clear_line_from_load_model(corpus):
    cases, marker = corpus
    assert len(cases) >= 35
    for name, path in cases.items():
        with pytest.raises(ModelError) as info:
            load_model(path, device="cpu")
        msg = str(info.value)
        assert "\n" not in msg and 20 < len(msg) < 900, (name, msg)
        assert not EXCEPTION_NAME.match(msg), (name, msg)
    assert not marker.exists()  # no pickle ran


@pytest.mark.parametrize("command", ["predict", "explain"])
def test_every_case_is_one_clear_line_from_the_cli(corpus, slide, tmp_path, capsys, command):
    from napari_xhisto.cli import main

    cases, marker = corpus
    for name, path in cases.items():
        out = tmp_path / f"{name}.ome.tif"
        argv = [command, str(slide), "--model", str(path), "--out", str(out),
                "--region", "0,0,256,256", "--device", "cpu"]
        rc = main(argv)
        stdout, stderr = capsys.readouterr()
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        assert rc == 1, (name, stdout, stderr)
        assert len(lines) == 1 and lines[0].startswith(f"xhisto {command}: error: "), \
            (name, stderr)
        assert "Traceback" not in stderr
        assert not EXCEPTION_NAME.match(lines[0].split("error: ", 1)[1]), (name, stderr)
        assert not out.exists() and not list(tmp_path.glob(f"{name}*")), name
    assert not marker.exists()


def test_typical_messages_say_what_to_do(corpus):
    cases, _ = corpus

    def msg(name):
        with pytest.raises(ModelError) as info:
            load_model(cases[name], device="cpu")
        return str(info.value)

    assert "truncated" in msg("truncated.safetensors") and "copy it again" in msg(
        "truncated.safetensors")
    assert "did you mean 'patch_size'" in msg("typo_key.json")
    assert "pickle checkpoint" in msg("lightning.ckpt") and "safetensors" in msg("lightning.ckpt")
    assert "refused to load evil.pt" in msg("evil.pt") and "nothing was run" in msg("evil.pt")
    assert "'std'" in msg("wsinfer_no_std") and "'patch_size_pixels'" in msg("wsinfer_no_patch")
    assert "layer 'classifier.weight' has shape (2, 32)" in msg("wrong_shape.safetensors")
    assert "is a folder" in msg("folder")
    assert msg("bad_option.json").startswith("bad_option.json: ")
    assert msg("bad_head.json").startswith("bad_head.json: head.layers[0]")
    assert "refused to load evil.pkl" in msg("evil.pkl")
