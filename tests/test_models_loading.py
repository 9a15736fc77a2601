"""Model specs, architectures, safe loading, TorchScript, device and out-of-memory handling."""

import builtins
import json
import pickle

import numpy as np
import pytest
import torch

from napari_xhisto.errors import ModelError
from napari_xhisto.models import (
    ModelSpec,
    build_architecture,
    choose_device,
    default_target_layer,
    list_architectures,
    load_model,
    run_halving_on_oom,
    save_model,
    target_layer_name,
)

torch.set_num_threads(2)


def _spec(**kw):
    base = dict(architecture="xhisto_cnn_xs", class_names=["non-tumour", "tumour"],
                patch_size=32, mpp=1.0, mean=(0.6, 0.5, 0.7), std=(0.2, 0.25, 0.15))
    base.update(kw)
    return ModelSpec(**base)


def _randomised(module):
    """Random weights and BatchNorm statistics, so a wrong load cannot pass by accident."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.dtype.is_floating_point:
                t.copy_(torch.rand(t.shape, generator=g) + (0.5 if "running_var" in name else -0.5))
    return module.eval()


def test_spec_round_trip(tmp_path):
    spec = _spec(weights="w.safetensors", target_layer="features.2", training={"seed": 3})
    path = spec.save(tmp_path / "m.json")
    back = ModelSpec.from_file(path)
    for f in ("architecture", "class_names", "positive_class", "patch_size", "mpp", "mean",
              "std", "weights", "target_layer", "training"):
        assert getattr(back, f) == getattr(spec, f), f
    assert back.positive_class == "tumour" and back.positive_index == 1
    assert back.weights_path() == tmp_path / "w.safetensors"


def test_spec_reads_yaml(tmp_path):
    (tmp_path / "m.yaml").write_text("architecture: resnet18\nclass_names: [benign, tumor]\n"
                                     "patch_size: 224\nmpp: 0.5\nweights: m.safetensors\n")
    spec = ModelSpec.from_file(tmp_path / "m.yaml")
    assert (spec.architecture, spec.positive_class, spec.patch_size, spec.mpp) == \
        ("resnet18", "tumor", 224, 0.5)
    assert spec.weights_path() == tmp_path / "m.safetensors"


def test_spec_rejects_bad_fields(tmp_path):
    with pytest.raises(ModelError, match="positive_class 'x'"):
        _spec(positive_class="x")
    (tmp_path / "bad.json").write_text(json.dumps({"class_names": ["a", "b"]}))
    with pytest.raises(ModelError, match="architecture"):
        ModelSpec.from_file(tmp_path / "bad.json")


WSINFER = {
    "spec_version": "1.0", "architecture": "resnet34", "num_classes": 2,
    "class_names": ["notumor", "tumor"], "patch_size_pixels": 350, "spacing_um_px": 0.25,
    "transform": [{"name": "Resize", "arguments": {"size": 64}}, {"name": "ToTensor"},
                  {"name": "Normalize", "arguments": {"mean": [0.7238, 0.5716, 0.6779],
                                                      "std": [0.112, 0.1459, 0.1089]}}],
}


def test_wsinfer_config_loads_as_spec_and_model(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "config.json").write_text(json.dumps(WSINFER))
    ref = _randomised(build_architecture("resnet34", 2))
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()},
              str(tmp_path / "model.safetensors"))
    spec = ModelSpec.from_file(tmp_path / "config.json")
    assert spec.architecture == "resnet34" and spec.class_names == ["notumor", "tumor"]
    assert spec.positive_class == "tumor"
    assert (spec.patch_size, spec.mpp, spec.input_size) == (350, 0.25, 64)
    assert spec.mean == (0.7238, 0.5716, 0.6779) and spec.std == (0.112, 0.1459, 0.1089)
    assert spec.weights == "model.safetensors"

    model = load_model(tmp_path / "config.json", device="cpu")
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).double() / 255
    x = (x - torch.tensor(WSINFER["transform"][2]["arguments"]["mean"]).view(1, 3, 1, 1).double()) \
        / torch.tensor(WSINFER["transform"][2]["arguments"]["std"]).view(1, 3, 1, 1).double()
    with torch.no_grad():
        expected = torch.softmax(ref.double()(x), 1).numpy()
    np.testing.assert_allclose(model.predict_proba(imgs), expected, atol=2e-4)


def test_wsinfer_unknown_architecture_is_named(tmp_path):
    cfg = dict(WSINFER, architecture="inception_v99")
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "model.safetensors").write_bytes(b"")
    spec = ModelSpec.from_file(tmp_path / "config.json")
    with pytest.raises(ModelError, match="inception_v99"):
        load_model(spec, device="cpu")


ARCHITECTURES = ["googlenet", "resnet18", "resnet34", "resnet50", "vgg16", "vgg16_bn",
                 "densenet121", "mobilenet_v2", "mobilenet_v3", "mobilenet_v3_large",
                 "mobilenet_v3_small", "alexnet", "inception_v3", "xhisto_cnn_s", "xhisto_cnn_xs"]


def test_registry_lists_the_papers_architectures():
    assert set(ARCHITECTURES) <= set(list_architectures())


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_architecture_builds_runs_and_has_a_cam_layer(name):
    module = build_architecture(name, 3)
    assert not module.training
    size = 80 if name == "inception_v3" else 64
    lname = target_layer_name(module, name)
    layer = default_target_layer(module, name)
    assert layer is module.get_submodule(lname)
    assert target_layer_name(module) == lname  # found from the class/layout alone
    seen = []
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        out = module(torch.rand(2, 3, size, size))
    handle.remove()
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    assert seen and seen[0].ndim == 4 and seen[0].shape[0] == 2, lname  # a spatial feature map


def test_target_layer_override_and_unknown_name():
    module = build_architecture("resnet18", 2)
    assert default_target_layer(module, "resnet18", override="layer3") is module.layer3
    with pytest.raises(ModelError, match="no layer 'layer9'"):
        default_target_layer(module, "resnet18", override="layer9")
    with pytest.raises(ModelError, match="cannot build architecture 'resnet1000'"):
        build_architecture("resnet1000", 2)


def test_safetensors_round_trip_predicts_the_same(tmp_path):
    ref = _randomised(build_architecture("xhisto_cnn_xs", 2))
    spec_path = save_model(ref, _spec(), tmp_path / "m.json")
    assert (tmp_path / "m.safetensors").exists()
    model = load_model(spec_path, device="cpu")
    assert not model.is_torchscript and model.device.type == "cpu"
    imgs = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    with torch.no_grad():
        expected = torch.softmax(ref(model.preprocess(imgs)), 1).numpy()
    np.testing.assert_allclose(model.predict_proba(imgs), expected, rtol=1e-5, atol=1e-6)
    # the preprocessing is the spec's normalisation
    x = model.preprocess(imgs[:1])
    manual = (imgs[0, 3, 4, :] / 255.0 - np.array(spec_mean := (0.6, 0.5, 0.7))) / np.array((0.2, 0.25, 0.15))
    np.testing.assert_allclose(x[0, :, 3, 4].numpy(), manual, rtol=1e-5)
    assert spec_mean == model.spec.mean


def test_weights_only_state_dict_with_wrappers(tmp_path):
    ref = _randomised(build_architecture("xhisto_cnn_xs", 2))
    state = {"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}, "epoch": 3}
    torch.save(state, tmp_path / "m.pt")
    spec = _spec(weights="m.pt")
    spec.save(tmp_path / "m.json")
    model = load_model(tmp_path / "m.json", device="cpu")
    for k, v in ref.state_dict().items():
        assert torch.equal(model.module.state_dict()[k], v), k


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):  # unpickling this would create a file
        return (builtins.open, (self.path, "w"))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path, how):
    marker = tmp_path / "pwned.txt"
    payload = {"conv.weight": torch.zeros(1), "x": _Evil(str(marker))}
    if how == "torch.save":
        torch.save(payload, tmp_path / "evil.pt")
    else:
        with open(tmp_path / "evil.pt", "wb") as f:
            pickle.dump(payload, f)
    assert not marker.exists()
    _spec(weights="evil.pt").save(tmp_path / "evil.json")
    with pytest.raises(ModelError, match="evil.pt"):
        load_model(tmp_path / "evil.json", device="cpu")
    assert not marker.exists()


def test_mismatched_weights_name_the_first_layer(tmp_path):
    from safetensors.torch import save_file

    state = build_architecture("xhisto_cnn_xs", 2).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    _spec(weights="w.safetensors", class_names=["a", "b", "tumour"]).save(tmp_path / "three.json")
    with pytest.raises(ModelError, match=r"'classifier.weight' has shape \(2, 32\) in the file "
                                         r"but \(3, 32\) in the model"):
        load_model(tmp_path / "three.json", device="cpu")

    missing = {k: v.contiguous() for k, v in state.items() if k != "features.1.running_var"}
    save_file(missing, str(tmp_path / "w.safetensors"))
    _spec(weights="w.safetensors").save(tmp_path / "m.json")
    with pytest.raises(ModelError, match="'features.1.running_var'.*missing"):
        load_model(tmp_path / "m.json", device="cpu")

    extra = {**{k: v.contiguous() for k, v in state.items()}, "head.bias": torch.zeros(2)}
    save_file(extra, str(tmp_path / "w.safetensors"))
    with pytest.raises(ModelError, match="'head.bias' that the model lacks"):
        load_model(tmp_path / "m.json", device="cpu")


def test_torchscript_loads_for_inference_but_not_for_hooks(tmp_path):
    ref = _randomised(build_architecture("xhisto_cnn_xs", 2))
    torch.jit.script(ref).save(str(tmp_path / "scripted.pt"))
    _spec(weights="scripted.pt", architecture="torchscript").save(tmp_path / "ts.json")
    model = load_model(tmp_path / "ts.json", device="cpu")
    assert model.is_torchscript
    imgs = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    with torch.no_grad():
        expected = torch.softmax(ref(model.preprocess(imgs)), 1).numpy()
    np.testing.assert_allclose(model.predict_proba(imgs), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ModelError, match="TorchScript"):
        default_target_layer(model.module, "xhisto_cnn_xs")
    # detected from the file even when the spec names a buildable architecture
    _spec(weights="scripted.pt").save(tmp_path / "ts2.json")
    assert load_model(tmp_path / "ts2.json", device="cpu").is_torchscript


def test_device_choice():
    if not torch.cuda.is_available():
        assert choose_device().type == "cpu"
        with pytest.raises(ModelError, match="CUDA is not available"):
            choose_device("cuda")
    assert choose_device("cpu").type == "cpu"


def test_oom_halves_the_batch_and_goes_on():
    calls, halvings = [], []

    def fn(batch):
        calls.append(len(batch))
        if len(batch) > 5:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return batch * 10

    items = np.arange(23)
    out, bs = run_halving_on_oom(fn, items, 64, on_halve=halvings.append)
    np.testing.assert_array_equal(out, items * 10)
    assert bs == 4 and halvings == [32, 16, 8, 4]
    assert calls[:4] == [23, 23, 16, 8] and set(calls[4:]) <= {4, 3}

    def always(batch):
        raise RuntimeError("CUDA error: out of memory")

    with pytest.raises(ModelError, match="batch of one"):
        run_halving_on_oom(always, items, 8)
    with pytest.raises(ValueError, match="other"):
        run_halving_on_oom(lambda b: (_ for _ in ()).throw(ValueError("other")), items, 8)


def test_predict_proba_survives_injected_oom(tmp_path):
    ref = _randomised(build_architecture("xhisto_cnn_xs", 2))
    model = load_model(save_model(ref, _spec(), tmp_path / "m.json"), device="cpu")
    imgs = np.random.default_rng(3).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    expected = model.predict_proba(imgs, batch_size=64)
    real_forward = model.module.forward

    def forward(x):
        if x.shape[0] > 6:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real_forward(x)

    model.module.forward = forward
    got = model.predict_proba(imgs, batch_size=64)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert model.batch_size == 4


def test_torchscript_model_says_it_has_no_hooks(tmp_path):
    ref = build_architecture("xhisto_cnn_xs", 2).eval()
    torch.jit.trace(ref, torch.rand(1, 3, 32, 32)).save(str(tmp_path / "traced.pt"))
    _spec(weights="traced.pt").save(tmp_path / "t.json")
    model = load_model(tmp_path / "t.json", device="cpu")
    with pytest.raises(ModelError, match="LRP needs module hooks.*TorchScript"):
        model.require_module("LRP")
    plain = load_model(save_model(ref, _spec(), tmp_path / "p.json"), device="cpu")
    assert plain.require_module("LRP") is plain.module
