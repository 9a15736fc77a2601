"""``xhisto train-attribution-net``: the single-pass counterfactual attribution network (seed 001)."""

from __future__ import annotations

HELP = "train the single-pass counterfactual attribution network for a classifier"
DESCRIPTION = (
    "Train the attribution network of seed 001 for a classifier: a U-Net whose encoder is the "
    "frozen classifier, trained so that inpainting its mask (attribution > 0.55) with healthy "
    "tissue drops p(class) below theta with a small compact mask. Needs a trained inpainter "
    "(`xhisto train-inpainter`, or 'demo'). Writes OUT.yaml (spec: both networks with sha256) "
    "and OUT.safetensors (decoder weights). Seeded; minutes of CPU at the demo size."
)


def add_arguments(parser) -> None:
    parser.add_argument("out", help="spec to write (OUT.yaml; weights beside it, .safetensors)")
    parser.add_argument("--model", default="demo", help="classifier: 'demo' or a spec/weights path")
    parser.add_argument("--inpainter", default="demo", help="inpainter: 'demo' or a spec path")
    parser.add_argument("--target", default=None, help="class to explain (default: positive)")
    parser.add_argument("--n-patches", type=int, default=512, help="synthetic training patches")
    parser.add_argument("--steps", type=int, default=250, help="optimiser steps (all phases)")
    parser.add_argument("--warm-steps", type=int, default=100,
                        help="first steps marginalise by pasting healthy tissue (0: none)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-3, help="peak of the cyclic learning rate")
    parser.add_argument("--theta", type=float, default=0.5, help="p(class) to fall below")
    parser.add_argument("--delta", type=float, default=0.5, help="largest mask area fraction")
    parser.add_argument("--width", type=int, default=8, help="decoder channels (lean decoder)")
    parser.add_argument("--kernel", type=int, default=1,
                        help="decoder upsampling convolution kernel (odd; the seed: 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--force", action="store_true", help="replace existing OUT files")


def check_options(args) -> None:
    from .. import options
    from ..errors import ModelError

    options.whole_number(args.n_patches, "--n-patches", minimum=args.batch_size)
    options.whole_number(args.steps, "--steps", minimum=1, maximum=1_000_000)
    options.whole_number(args.warm_steps, "--warm-steps", minimum=0, maximum=args.steps)
    options.batch_size(args.batch_size)
    options.positive(args.lr, "--lr", maximum=10.0)
    options.real_number(args.theta, "--theta", minimum=0.0, maximum=1.0, low_open=True,
                        high_open=True)
    options.real_number(args.delta, "--delta", minimum=0.0, maximum=1.0, low_open=True)
    options.whole_number(args.width, "--width", minimum=1, maximum=512)
    options.whole_number(args.kernel, "--kernel", minimum=1, maximum=7)
    if args.kernel % 2 == 0:
        raise ModelError(f"--kernel takes an odd size (1, 3, 5, 7), got {args.kernel}")
    options.seed(args.seed)
    options.threads(args.threads)


def run(args) -> int:
    import json
    import sys
    from pathlib import Path

    import torch

    from ..cohort.fingerprint import file_sha256
    from ..counterfactual.attribution_train import (
        TrainConfig,
        save_attribution_net,
        train_attribution_net,
    )
    from ..counterfactual.inpainter import load_inpainter
    from ..errors import ModelError
    from ..explain.tiling import resolve_target
    from ..models import load_model
    from ..progress import run_to_end, text_progress

    check_options(args)
    out = Path(args.out)
    stem = out.with_suffix("") if out.suffix in (".yaml", ".yml", ".safetensors") else out
    for p in (stem.with_suffix(".yaml"), stem.with_suffix(".safetensors")):
        if p.exists() and not args.force:
            raise ModelError(f"{p} exists; choose another OUT or pass --force to replace it")
    torch.set_num_threads(int(args.threads))
    model = load_model(args.model, device="cpu")
    inp = load_inpainter(args.inpainter, device="cpu")
    spec = model.spec
    if int(inp.patch_px) != int(spec.network_input_size) or abs(float(inp.mpp) - spec.mpp) > 1e-6:
        raise ModelError(f"the inpainter was trained on {inp.patch_px} px patches at {inp.mpp} "
                         f"µm/px, the classifier takes {spec.network_input_size} px at {spec.mpp} "
                         "µm/px; train an inpainter at the classifier's scale")
    target = resolve_target(model, args.target)
    config = TrainConfig(n_patches=args.n_patches, steps=args.steps, batch_size=args.batch_size,
                         lr_max=args.lr, seed=args.seed, warm_steps=args.warm_steps,
                         width=args.width, kernel=args.kernel,
                         objective={"theta": args.theta, "delta": args.delta})
    bar = text_progress("train-attribution-net")
    last = [-1]

    def progress(done, total):
        bar(done, total)
        tenth = 10 * done // max(total, 1)
        if not sys.stderr.isatty() and tenth > last[0]:
            last[0] = tenth
            print(f"train-attribution-net: step {done}/{total}", file=sys.stderr, flush=True)

    net, history = run_to_end(train_attribution_net(model, inp.module, config, target=target),
                              on_progress=progress)
    inp_info = {"name": str(args.inpainter), **_inpainter_files(inp, file_sha256)}
    spec_path = save_attribution_net(net, stem, model=model, inpainter_info=inp_info,
                                     config=config, history=history, target=target,
                                     overwrite=args.force)
    json.dump({"spec": str(spec_path), "weights": str(spec_path.with_suffix(".safetensors")),
               "history": history[-3:]}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _inpainter_files(inp, sha) -> dict:
    """Path and sha256 of the inpainter's files, from its provenance where it names them."""
    from pathlib import Path

    prov = dict(inp.provenance()) if hasattr(inp, "provenance") else {}
    out = {"provenance": prov}
    for key in ("spec", "path", "weights"):
        value = prov.get(key)
        if isinstance(value, str) and Path(value).is_file():
            out.setdefault("path", value)
            out[f"{key}_sha256"] = prov.get(f"{key}_sha256") or sha(value)
    return out
