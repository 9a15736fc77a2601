"""``xhisto spec``: write a commented model spec (``init``) or check one against its weights."""

from __future__ import annotations

HELP = "write a commented model spec (init) or check a spec and its weights (check)"
DESCRIPTION = (
    "`xhisto spec init --arch resnet50 --classes benign,tumour --mpp 0.5 --patch 224 OUT.yaml` "
    "writes a commented YAML spec for your own classifier (torchvision names, timm:NAME or "
    "package.module:Class); `xhisto spec check SPEC` validates a spec (ours or a WSInfer "
    "config.json), builds the network and loads its weights, and prints what it found."
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="spec_command", metavar="ACTION")
    init = sub.add_parser("init", help="write a commented spec",
                          description="Write a commented model spec (YAML, or JSON for .json).")
    init.add_argument("out", help="spec to write (.yaml, .yml or .json)")
    init.add_argument("--arch", required=True,
                      help="architecture: a torchvision name, timm:NAME or package.module:Class")
    init.add_argument("--classes", required=True, help="class names in output order: a,b[,c]")
    init.add_argument("--mpp", type=float, required=True, help="µm per pixel the model expects")
    init.add_argument("--patch", type=int, required=True, help="patch side in pixels at --mpp")
    init.add_argument("--positive", default=None, help="class shown by maps (default: guessed)")
    init.add_argument("--weights", default=None,
                      help="weights file, relative to the spec (default: OUT.safetensors)")
    init.add_argument("--input-size", type=int, default=None,
                      help="resize patches to this side before the network (default: --patch)")
    init.add_argument("--mean", default=None, help="normalisation mean r,g,b (default: ImageNet)")
    init.add_argument("--std", default=None, help="normalisation std r,g,b (default: ImageNet)")
    init.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                      help="constructor option (YAML value), e.g. transform_input=true")
    init.add_argument("--head", default=None,
                      help="head layers replacing the last Linear, e.g. 'dropout:0.5,linear'")
    init.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    check = sub.add_parser("check", help="validate a spec and load its weights")
    check.add_argument("spec", help="spec (.json/.yaml), WSInfer config.json or weights file")


def run(args) -> int:
    from ..errors import XhistoError

    if args.spec_command == "init":
        return _init(args)
    if args.spec_command == "check":
        return _check(args)
    raise XhistoError("say what to do: `xhisto spec init ...` or `xhisto spec check SPEC`")


def _floats(text, name):
    from ..errors import XhistoError

    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) != 3:
        raise XhistoError(f"--{name} takes three numbers r,g,b, got {text!r}")
    return vals


def _yaml_value(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def spec_text(d: dict, *, yaml_out: bool) -> str:
    """The spec mapping ``d`` as commented YAML (JSON when ``yaml_out`` is false)."""
    import json

    if not yaml_out:
        return json.dumps({"xhisto_model_spec": 1, **d}, indent=2) + "\n"

    def v(x):
        return json.dumps(x, ensure_ascii=False)

    lines = [
        "# napari-xhisto model spec, written by `xhisto spec init`. Check it (and its weights)",
        "# with `xhisto spec check THIS_FILE`. Every key is validated: a typo is an error.",
        "xhisto_model_spec: 1",
        "# the network: a torchvision classification model, timm:NAME, or package.module:Class",
        f"architecture: {v(d['architecture'])}",
        "# constructor options that change the network (GoogLeNet/Inception v3 must state",
        "# transform_input: true when fine-tuned from torchvision's ImageNet weights)",
        f"arch_options: {v(d.get('arch_options') or {})}",
        "# the classifier's outputs in order; maps show the positive class",
        f"class_names: {v(d['class_names'])}",
        f"positive_class: {v(d['positive_class'])}",
        "# the patch the network sees: side in pixels at mpp µm per pixel",
        f"patch_size: {d['patch_size']}",
        f"mpp: {d['mpp']}",
        "# side the patch is resized to before the network (null: patch_size)",
        f"input_size: {v(d.get('input_size'))}",
        "# normalisation of RGB values scaled to [0, 1] (ImageNet statistics unless you said",
        "# otherwise: use the ones the model was trained with)",
        f"mean: {v(list(d['mean']))}",
        f"std: {v(list(d['std']))}",
        "# weights: safetensors, or a weights-only torch state dict; relative to this file",
        f"weights: {v(d['weights'])}",
        "# layer CAM methods read (null: the last convolutional block)",
        "target_layer: null",
    ]
    if d.get("head"):
        lines += ["# the head that replaces the network's last Linear layer",
                  f"head: {v(d['head'])}"]
    else:
        lines += ["# a fine-tuned head, e.g. fc = Sequential(Dropout(0.5), Linear(2048, 2)):",
                  "# head: {replace: fc, layers: [{dropout: 0.5}, linear]}"]
    lines += ['description: ""', ""]
    return "\n".join(lines)


def _init(args) -> int:
    from pathlib import Path

    from ..errors import XhistoError
    from ..models.architectures import required_options, resolve_name
    from ..models.spec import ModelSpec

    out = Path(args.out)
    if out.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise XhistoError(f"{out.name}: a spec is written as .yaml, .yml or .json")
    if out.exists() and not args.force:
        raise XhistoError(f"{out} exists; choose another name or pass --force to replace it")
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    options = {}
    for item in args.option:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise XhistoError(f"--option takes NAME=VALUE, got {item!r}")
        options[name.strip()] = _yaml_value(value.strip())
    resolve_name(args.arch)
    for key, why in required_options(args.arch).items():
        if key not in options:
            raise XhistoError(f"--arch {args.arch} needs --option {key}=true|false: {why}")
    head = None
    if args.head:
        head = {"layers": [_head_item(t) for t in args.head.split(",") if t.strip()]}
    d = {"architecture": args.arch, "arch_options": options, "class_names": classes,
         "positive_class": args.positive, "patch_size": args.patch, "mpp": args.mpp,
         "input_size": args.input_size,
         "mean": _floats(args.mean, "mean") if args.mean else list(IMAGENET_MEAN),
         "std": _floats(args.std, "std") if args.std else list(IMAGENET_STD),
         "weights": args.weights or out.with_suffix(".safetensors").name, "head": head}
    spec = ModelSpec.from_dict({k: v for k, v in d.items() if v is not None},
                               source=out.resolve())  # the same checks as reading it back
    d["positive_class"] = spec.positive_class
    if head:
        from ..models.heads import build_head

        build_head(head["layers"], 8, spec.num_classes)  # layer names and sizes checked
    text = spec_text({k: v for k, v in d.items()}, yaml_out=out.suffix.lower() != ".json")
    tmp = out.with_name(out.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    ModelSpec.from_file(out)  # what was written reads back
    print(f"wrote {out}: {spec.architecture}, classes {', '.join(spec.class_names)} "
          f"(positive: {spec.positive_class}), {spec.patch_size} px at {spec.mpp:g} µm/px; "
          f"weights expected at {spec.weights_path()}")
    return 0


def _head_item(token: str):
    name, _, arg = token.strip().partition(":")
    return {name.strip(): _yaml_value(arg.strip())} if arg.strip() else name.strip()


def _check(args) -> int:
    import json
    import sys

    from ..models import load_model
    from ..models.architectures import resolve_name

    model = load_model(args.spec, device="cpu")
    spec = model.spec
    n_params = sum(p.numel() for p in model.module.parameters())
    summary = {"spec": spec.source, "weights": str(spec.weights_path()),
               "architecture": spec.architecture,
               "built_by": "torchscript" if model.is_torchscript else
               resolve_name(spec.architecture)[0],
               "class_names": spec.class_names, "positive_class": spec.positive_class,
               "patch_size": spec.patch_size, "mpp": spec.mpp,
               "input_size": spec.network_input_size, "parameters": n_params,
               "notes": model.notes}
    json.dump(summary, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0
