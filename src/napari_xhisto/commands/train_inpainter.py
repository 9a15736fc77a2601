"""``xhisto train-inpainter``: train the partial-convolution inpainter on healthy tissue."""

from __future__ import annotations

HELP = "train the partial-convolution inpainter (seed 001) on healthy synthetic tissue"
DESCRIPTION = (
    "Train a partial-convolution inpainting U-Net (Liu et al. 2018) on patches of synthetic H&E "
    "tissue without tumour, with irregular random holes and the loss L_valid + 6 L_hole + "
    "0.05 L_perc + 120 L_style + 0.1 L_tv (perceptual/style features: the --feature-model "
    "classifier's, frozen), in two phases (phase 2 freezes the encoder's BatchNorm, lower lr). "
    "Writes OUT.yaml + OUT.safetensors; use them with --inpainter OUT.yaml."
)


def add_arguments(parser) -> None:
    parser.add_argument("out", help="spec YAML to write (weights go beside it, .safetensors)")
    parser.add_argument("--fields", type=int, default=4,
                        help="synthetic tissue fields the healthy patches are cut from")
    parser.add_argument("--field-px", type=int, default=512, help="side of each field in px")
    parser.add_argument("--patch-size", type=int, default=64,
                        help="patch side in px (the classifier's patch size)")
    parser.add_argument("--mpp", type=float, default=1.0, help="µm per pixel (the classifier's)")
    parser.add_argument("--steps", type=int, default=300, help="phase 1 optimiser steps")
    parser.add_argument("--steps-phase2", type=int, default=100,
                        help="phase 2 steps (encoder BatchNorm frozen, --lr-phase2)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-phase2", type=float, default=1e-4)
    parser.add_argument("--channels", default="16,32,64,64",
                        help="channels of the contraction blocks, e.g. 16,32,64,64")
    parser.add_argument("--feature-model", default="demo",
                        help="classifier whose features drive the perceptual/style losses")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT")


def config_from_args(args):
    from .. import options
    from ..counterfactual.inpaint_train import InpainterTrainConfig

    options.whole_number(args.fields, "--fields", minimum=1, maximum=10_000)
    options.whole_number(args.patch_size, "--patch-size", minimum=16, maximum=1024)
    options.whole_number(args.field_px, "--field-px", minimum=2 * args.patch_size)
    options.mpp(args.mpp)
    options.whole_number(args.steps, "--steps", minimum=1)
    options.whole_number(args.steps_phase2, "--steps-phase2", minimum=0)
    options.batch_size(args.batch_size)
    options.positive(args.lr, "--lr", maximum=1.0)
    options.positive(args.lr_phase2, "--lr-phase2", maximum=1.0)
    options.seed(args.seed)
    options.threads(args.threads)
    try:
        channels = tuple(int(c) for c in str(args.channels).split(","))
    except ValueError:
        channels = ()
    if not channels or min(channels) < 1:
        raise options.OptionError(f"--channels is a list of positive integers such as "
                                  f"16,32,64,64, got {args.channels!r}")
    if args.patch_size % (2 ** len(channels)):
        raise options.OptionError(f"--patch-size {args.patch_size} must be a multiple of "
                                  f"{2 ** len(channels)} for {len(channels)} blocks")
    kernels = tuple([7, 5, 5] + [3] * max(0, len(channels) - 3))[:len(channels)]
    return InpainterTrainConfig(
        fields=args.fields, field_px=args.field_px, patch_px=args.patch_size, mpp=args.mpp,
        steps=args.steps, steps_phase2=args.steps_phase2, batch_size=args.batch_size, lr=args.lr,
        lr_phase2=args.lr_phase2, channels=channels, kernels=kernels,
        feature_model=args.feature_model, seed=args.seed, threads=args.threads)


def run(args) -> int:
    import json
    import sys
    from pathlib import Path

    from ..counterfactual.inpaint_train import train_inpainter
    from ..counterfactual.inpainter import save_inpainter
    from ..errors import ModelError
    from ..progress import run_to_end, text_progress

    cfg = config_from_args(args)
    out = Path(args.out)
    if out.suffix not in (".yaml", ".yml"):
        out = out.with_suffix(".yaml")
    for p in (out, out.with_suffix(".safetensors")):
        if p.exists() and not args.force:
            raise ModelError(f"{p} exists; choose another OUT or pass --force to replace it")
    bar = text_progress("train-inpainter")
    last = [-1]

    def progress(done, total):  # a bar on a terminal, else a line every 10%
        bar(done, total)
        tenth = 10 * done // max(total, 1)
        if not sys.stderr.isatty() and tenth > last[0]:
            last[0] = tenth
            print(f"train-inpainter: step {done}/{total}", file=sys.stderr, flush=True)

    result = run_to_end(train_inpainter(cfg), on_progress=progress)
    result.spec["name"] = out.stem
    save_inpainter(result.module, result.spec, out, force=args.force)
    json.dump({"spec": str(out), "weights": str(out.with_suffix(".safetensors")),
               "metrics": result.spec["training"]["metrics"]}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
