"""Bring your own classifier: any torchvision/timm model, constructor options, heads, custom
classes, checkpoint prefixes, the named weights file, and schema-checked specs."""

from __future__ import annotations

import json
import pickle
import sys

import pytest
import torch
import torchvision

from napari_xhisto.errors import ModelError
from napari_xhisto.models import ModelSpec, load_model

torch.set_num_threads(2)


def randomise(model, seed=1):
    """Random weights (the constructors' own random init, seeded) and random BatchNorm
    statistics, so a wrong load cannot pass by accident."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(c, generator=g) * 0.2)
            elif isinstance(m, torch.nn.Linear | torch.nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g)
                               * (2 / m.weight[0].numel()) ** 0.5)
    return model.eval()


def save(state: dict, path):
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(path))
    return path


def write_spec(folder, name="m.json", **fields):
    base = {"class_names": ["benign", "tumour"], "patch_size": 64, "mpp": 1.0,
            "weights": "w.safetensors"}
    base.update(fields)
    path = folder / name
    path.write_text(json.dumps(base))
    return path


def logits(module, size=64, seed=0):
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = module(x)
    return out[0] if isinstance(out, tuple) else out


# ---------------------------------------------------------------------------------------------
# issue 20.3: constructor options that change the function

@pytest.mark.parametrize("arch,size", [("googlenet", 64), ("inception_v3", 80)])
def test_fine_tuned_torchvision_googlenet_and_inception_load_with_transform_input(
        tmp_path, arch, size):
    ref = getattr(torchvision.models, arch)(weights=None, num_classes=2, transform_input=True,
                                            aux_logits=True, init_weights=False)
    ref = randomise(ref)
    save(ref.state_dict(), tmp_path / "w.safetensors")  # aux heads included, as fine-tuned
    want = logits(ref, size)

    spec = write_spec(tmp_path, architecture=arch, arch_options={"transform_input": True})
    model = load_model(spec, device="cpu")
    assert torch.equal(logits(model.module, size), want)
    assert any("aux_logits=True" in n for n in model.notes)
    assert model.provenance()["arch_options"] == {"transform_input": True}

    # the option changes the function: built without it, the first layers see other values
    spec = write_spec(tmp_path, "off.json", architecture=arch,
                      arch_options={"transform_input": False})
    off = logits(load_model(spec, device="cpu").module, size)
    assert (off - want).abs().max() > 1e-3 * want.abs().max()

    spec = write_spec(tmp_path, "unsaid.json", architecture=arch)
    with pytest.raises(ModelError, match=r"unsaid.json: .*arch_options.transform_input"):
        load_model(spec, device="cpu")


# ---------------------------------------------------------------------------------------------
# issue 20.4: any torchvision / timm model, heads, classes, prefixes

def test_any_torchvision_classifier_by_name_with_options(tmp_path):
    from napari_xhisto.models import default_target_layer

    ref = randomise(torchvision.models.shufflenet_v2_x0_5(num_classes=2))
    save(ref.state_dict(), tmp_path / "w.safetensors")
    model = load_model(write_spec(tmp_path, architecture="shufflenet_v2_x0_5"), device="cpu")
    assert torch.equal(logits(model.module), logits(ref))
    layer = default_target_layer(model.module)
    assert layer is model.module.conv5  # found by probing: the last feature map before pooling

    # an option that changes the function but not the weights' shapes
    ref = randomise(torchvision.models.mobilenet_v3_small(num_classes=2, dilated=True))
    save(ref.state_dict(), tmp_path / "w.safetensors")
    spec = write_spec(tmp_path, architecture="torchvision:mobilenet_v3_small",
                      arch_options={"dilated": True})
    assert torch.equal(logits(load_model(spec, device="cpu").module), logits(ref))
    for options, match in [({"widht": 3}, "'widht'"),
                           ({"replace_stride_with_dilation": [0, 1, 1]}, "cannot be built")]:
        spec = write_spec(tmp_path, architecture="resnet18", arch_options=options)
        with pytest.raises(ModelError, match=match):
            load_model(spec, device="cpu")


@pytest.mark.parametrize("name", ["timm:test_efficientnet", "test_resnet"])
def test_timm_models_by_name(tmp_path, name):
    import timm

    from napari_xhisto.models import target_layer_name

    ref = randomise(timm.create_model(name.removeprefix("timm:"), pretrained=False,
                                      num_classes=2))
    save(ref.state_dict(), tmp_path / "w.safetensors")
    model = load_model(write_spec(tmp_path, architecture=name), device="cpu")
    assert torch.equal(logits(model.module), logits(ref))
    layer = target_layer_name(model.module)
    assert layer in ("bn2", "layer4"), layer  # the last 4-D map before global pooling


def test_timm_refuses_downloads_and_unknown_names(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"x")
    spec = write_spec(tmp_path, architecture="timm:test_resnet", arch_options={"pretrained": True})
    with pytest.raises(ModelError, match="nothing is downloaded"):
        load_model(spec, device="cpu")
    spec = write_spec(tmp_path, architecture="timm:test_resnett")
    with pytest.raises(ModelError, match="did you mean 'timm:test_resnet'"):
        load_model(spec, device="cpu")
    spec = write_spec(tmp_path, architecture="resnet5O")
    with pytest.raises(ModelError, match="did you mean 'resnet50'"):
        load_model(spec, device="cpu")


def test_fine_tuned_heads_described_in_the_spec(tmp_path):
    ref = torchvision.models.resnet18(num_classes=1000)
    ref.fc = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(512, 2))
    ref = randomise(ref)
    save(ref.state_dict(), tmp_path / "w.safetensors")
    spec = write_spec(tmp_path, architecture="resnet18")
    with pytest.raises(ModelError, match=r"'fc.weight'.*head"):
        load_model(spec, device="cpu")
    spec = write_spec(tmp_path, architecture="resnet18",
                      head={"layers": [{"dropout": 0.5}, "linear"]})
    model = load_model(spec, device="cpu")
    assert torch.equal(logits(model.module), logits(ref))

    # an MLP head in a named place (MobileNetV3's classifier.3)
    ref = torchvision.models.mobilenet_v3_small(num_classes=2)
    ref.classifier[3] = torch.nn.Sequential(torch.nn.Linear(1024, 32), torch.nn.ReLU(),
                                            torch.nn.Dropout(0.1), torch.nn.Linear(32, 2))
    ref = randomise(ref)
    save(ref.state_dict(), tmp_path / "w.safetensors")
    spec = write_spec(tmp_path, architecture="mobilenet_v3_small",
                      head={"replace": "classifier.3",
                            "layers": [{"linear": 32}, "relu", {"dropout": 0.1}, "linear"]})
    assert torch.equal(logits(load_model(spec, device="cpu").module), logits(ref))
    for head, match in [({"layers": ["dropout", {"linear": 3}]}, "3 outputs"),
                        ({"layers": ["dropuot", "linear"]}, "did you mean 'dropout'"),
                        ({"layers": ["linear"], "replace": "fc9"}, "no layer 'fc9'"),
                        ({"layer": ["linear"]}, "did you mean 'layers'")]:
        spec = write_spec(tmp_path, architecture="mobilenet_v3_small", head=head)
        with pytest.raises(ModelError, match=match):
            load_model(spec, device="cpu")


@pytest.fixture
def tiny_package(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "xhisto_test_nets"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "import torch\n"
        "class TinyNet(torch.nn.Module):\n"
        "    def __init__(self, num_classes=2, width=4):\n"
        "        super().__init__()\n"
        "        self.conv = torch.nn.Conv2d(3, width, 3, padding=1)\n"
        "        self.fc = torch.nn.Linear(width, num_classes)\n"
        "    def forward(self, x):\n"
        "        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))\n"
        "def not_a_class():\n"
        "    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield "xhisto_test_nets"
    sys.modules.pop("xhisto_test_nets", None)


def test_a_class_of_an_installed_package_by_name(tmp_path, tiny_package):
    mod = __import__(tiny_package)
    ref = randomise(mod.TinyNet(num_classes=2, width=6))
    save(ref.state_dict(), tmp_path / "w.safetensors")
    spec = write_spec(tmp_path, architecture=f"{tiny_package}:TinyNet",
                      arch_options={"width": 6})
    model = load_model(spec, device="cpu")
    assert torch.equal(logits(model.module), logits(ref))
    for arch, match in [(f"{tiny_package}:not_a_class", "no nn.Module class"),
                        ("xhisto_absent_pkg.nets:Net", "is its package installed"),
                        (f"{tiny_package}:TinyNet()", "package.module:Class")]:
        with pytest.raises(ModelError, match=match):
            load_model(write_spec(tmp_path, architecture=arch), device="cpu")


@pytest.mark.parametrize("prefix", ["_orig_mod.", "model.", "module.", "module._orig_mod."])
def test_checkpoint_prefixes_are_stripped_with_a_note(tmp_path, prefix):
    ref = randomise(torchvision.models.resnet18(num_classes=2))
    save({prefix + k: v for k, v in ref.state_dict().items()}, tmp_path / "w.safetensors")
    model = load_model(write_spec(tmp_path, architecture="resnet18"), device="cpu")
    assert torch.equal(logits(model.module), logits(ref))
    assert model.notes and all("prefix" in n for n in model.notes)
    assert model.provenance()["notes"] == model.notes


def test_lightning_checkpoint_with_other_entries(tmp_path):
    ref = randomise(torchvision.models.resnet18(num_classes=2))
    state = {"model." + k: v for k, v in ref.state_dict().items()}
    state["criterion.weight"] = torch.ones(2)
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "w.pt")
    model = load_model(write_spec(tmp_path, architecture="resnet18", weights="w.pt"),
                       device="cpu")
    assert torch.equal(logits(model.module), logits(ref))
    assert "ignored 1 other entry ('criterion.weight'" in model.notes[0]


# ---------------------------------------------------------------------------------------------
# issue 14.4: the weights file the user names is the file loaded

def test_the_named_weights_file_is_the_one_loaded(tmp_path):
    cfg = {"spec_version": "1.0", "architecture": "resnet18", "num_classes": 2,
           "class_names": ["notumor", "tumor"], "patch_size_pixels": 64, "spacing_um_px": 1.0,
           "transform": [{"name": "ToTensor"}]}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    base = randomise(torchvision.models.resnet18(num_classes=2), seed=1)
    tuned = randomise(torchvision.models.resnet18(num_classes=2), seed=2)
    save(base.state_dict(), tmp_path / "model.safetensors")
    save(tuned.state_dict(), tmp_path / "finetuned.safetensors")

    model = load_model(tmp_path / "finetuned.safetensors", device="cpu")
    assert torch.equal(logits(model.module), logits(tuned))
    assert model.provenance()["weights"] == str((tmp_path / "finetuned.safetensors").resolve())
    assert "loading finetuned.safetensors, the file you gave" in model.notes[0]
    assert torch.equal(logits(load_model(tmp_path / "config.json", device="cpu").module),
                       logits(base))

    # our own spec beside it (same stem) naming another file: the named file wins too
    write_spec(tmp_path, "other.json", architecture="resnet18", weights="model.safetensors")
    save(tuned.state_dict(), tmp_path / "other.safetensors")
    model = load_model(tmp_path / "other.safetensors", device="cpu")
    assert model.spec.weights_path() == (tmp_path / "other.safetensors").resolve()


# ---------------------------------------------------------------------------------------------
# issue 14.5: every spec validated against a schema

def spec_error(tmp_path, text, name="m.yaml"):
    path = tmp_path / name
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    with pytest.raises(ModelError) as info:
        ModelSpec.from_file(path)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


GOOD = "architecture: resnet18\nclass_names: [benign, tumour]\nweights: w.safetensors\n"


def test_unknown_keys_are_errors_with_a_suggestion(tmp_path):
    msg = spec_error(tmp_path, GOOD + "pach_size: 224\n")
    assert msg.startswith("m.yaml: unknown key 'pach_size' (did you mean 'patch_size'?)")
    msg = spec_error(tmp_path, GOOD + "std_dev: [1, 1, 1]\n")
    assert "unknown key 'std_dev'" in msg


@pytest.mark.parametrize("line,key,expected,found", [
    ("patch_size: 224px", "patch_size", "a whole number of pixels > 0", "a string '224px'"),
    ("patch_size: 0", "patch_size", "a whole number", "a number 0"),
    ("patch_size: true", "patch_size", "a whole number", "a true/false value (true)"),
    ("mpp: -0.5", "mpp", "a number of µm per pixel > 0", "a number -0.5"),
    ("mean: [0.5, 0.5]", "mean", "a list of three numbers", "a list of 2 items"),
    ("std: [0.2, 0, 0.2]", "std", "a list of three numbers > 0", "a list of 3 items"),
    ("target_layer: [a, b]", "target_layer", "a dotted layer name", "a list of 2 items"),
    ("arch_options: fast", "arch_options", "a mapping", "a string 'fast'"),
])
def test_wrong_types_name_the_key_the_type_and_the_file(tmp_path, line, key, expected, found):
    msg = spec_error(tmp_path, GOOD + line + "\n")
    assert msg.startswith(f"m.yaml: key {key!r} must be {expected}")
    assert msg.endswith(f"found {found}")


def test_class_names_as_a_string_is_an_error(tmp_path):
    text = "architecture: resnet18\nclass_names: benign,tumour\nweights: w.safetensors\n"
    msg = spec_error(tmp_path, text)
    assert "key 'class_names' must be a list" in msg and "[benign, tumour]" in msg
    text = "architecture: resnet18\nclass_names: [tumour, tumour]\n"
    assert "different names" in spec_error(tmp_path, text)
    assert "missing key 'architecture'" in spec_error(tmp_path, "class_names: [a, b]\n")


WSI = {"spec_version": "1.0", "architecture": "resnet34", "num_classes": 2,
       "class_names": ["notumor", "tumor"], "patch_size_pixels": 350, "spacing_um_px": 0.25,
       "transform": [{"name": "Resize", "arguments": {"size": 224}}, {"name": "ToTensor"},
                     {"name": "Normalize", "arguments": {"mean": [0.7, 0.5, 0.6],
                                                         "std": [0.1, 0.1, 0.1]}}]}


def test_wsinfer_configs_are_validated(tmp_path):
    def bad(**change):
        d = json.loads(json.dumps(WSI))
        for k, v in change.items():
            if v is None:
                d.pop(k)
            else:
                d[k] = v
        return spec_error(tmp_path, json.dumps(d), "config.json")

    norm = {"name": "Normalize", "arguments": {"mean": [0.7, 0.5, 0.6]}}
    assert "transform[0] (Normalize) lacks 'std'" in bad(transform=[norm])
    assert "missing key 'patch_size_pixels'" in bad(patch_size_pixels=None)
    assert "unknown key 'spacing_um'" in bad(spacing_um_px=None, spacing_um=0.5)
    assert "num_classes is 3 but class_names lists 2" in bad(num_classes=3)
    assert "'CenterCrop' is not supported" in bad(transform=[{"name": "CenterCrop"}])
    assert "mixes WSInfer keys" in bad(mpp=0.5)
    # no Normalize step: the input is not normalised (not a silent 0.5/0.5)
    d = dict(WSI, transform=[{"name": "ToTensor"}])
    (tmp_path / "config.json").write_text(json.dumps(d))
    spec = ModelSpec.from_file(tmp_path / "config.json")
    assert spec.mean == (0.0, 0.0, 0.0) and spec.std == (1.0, 1.0, 1.0)


def test_pickle_checkpoints_and_binary_files_get_clear_messages(tmp_path):
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": {"lr": 0.1}}, ckpt)
    with pytest.raises(ModelError, match="last.ckpt is a pickle checkpoint with no spec .*"
                                         "convert it to safetensors with: python -c"):
        load_model(ckpt, device="cpu")
    (tmp_path / "model.json").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    assert "is a pickle checkpoint, not a model spec: convert it" in spec_error(
        tmp_path, pickle.dumps({"a": 1}, protocol=4), "model.json")
    assert "is not a text file" in spec_error(tmp_path, b"\xff\xfe\x00garbage", "m.json")


def test_yaml_and_json_syntax_errors_are_one_line_with_the_place(tmp_path):
    msg = spec_error(tmp_path, "architecture: resnet18\nclass_names: [a, b\n")
    assert msg.startswith("m.yaml is not valid YAML:") and "line" in msg
    msg = spec_error(tmp_path, '{"architecture": "resnet18",}', "m.json")
    assert msg.startswith("m.json is not valid JSON:") and "line 1" in msg
    msg = spec_error(tmp_path, GOOD + "architecture: resnet50\n")
    assert "'architecture' appears twice" in msg


# ---------------------------------------------------------------------------------------------
# xhisto spec init / check

def run_cli(*argv, capsys):
    from napari_xhisto.cli import main

    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_spec_init_writes_a_commented_spec_that_loads(tmp_path, capsys):
    out = tmp_path / "tumour.yaml"
    rc, text, err = run_cli("spec", "init", "--arch", "resnet18", "--classes", "benign, tumour",
                            "--mpp", "0.5", "--patch", "224", "--head", "dropout:0.5,linear",
                            str(out), capsys=capsys)
    assert rc == 0, err
    body = out.read_text()
    assert body.count("\n#") >= 8 and "head:" in body
    spec = ModelSpec.from_file(out)
    assert (spec.architecture, spec.class_names, spec.mpp, spec.patch_size) == \
        ("resnet18", ["benign", "tumour"], 0.5, 224)
    assert spec.positive_class == "tumour" and spec.weights == "tumour.safetensors"

    ref = torchvision.models.resnet18(num_classes=2)
    ref.fc = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(512, 2))
    save(randomise(ref).state_dict(), tmp_path / "tumour.safetensors")
    rc, text, err = run_cli("spec", "check", str(out), capsys=capsys)
    assert rc == 0, err
    summary = json.loads(text)
    assert summary["parameters"] == sum(p.numel() for p in ref.parameters())
    assert summary["built_by"] == "torchvision"

    rc, _, err = run_cli("spec", "init", "--arch", "resnet18", "--classes", "a,b", "--mpp", "1",
                         "--patch", "64", str(out), capsys=capsys)
    assert rc == 1 and "exists" in err and ModelSpec.from_file(out).mpp == 0.5  # kept
    rc, _, err = run_cli("spec", "init", "--arch", "googlenet", "--classes", "a,b", "--mpp", "1",
                         "--patch", "64", str(tmp_path / "g.yaml"), capsys=capsys)
    assert rc == 1 and "--option transform_input=true|false" in err
    rc, _, err = run_cli("spec", "init", "--arch", "googlenet", "--classes", "a,b", "--mpp", "1",
                         "--patch", "64", "--option", "transform_input=true",
                         str(tmp_path / "g.yaml"), capsys=capsys)
    assert rc == 0, err
    assert ModelSpec.from_file(tmp_path / "g.yaml").arch_options == {"transform_input": True}
