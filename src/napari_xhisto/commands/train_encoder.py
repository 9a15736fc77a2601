"""``xhisto train-encoder``: a patch encoder for neural image compression (seed 004)."""

from __future__ import annotations

HELP = "train a patch encoder (contrastive, VAE, BiGAN or supervised) for xhisto compress"
DESCRIPTION = (
    "Train a small CNN encoder mapping each patch (--patch px at --mpp µm/px) to a --code-size "
    "code on synthetic H&E fields, and write OUT.yaml + OUT.safetensors. Kinds (Tellez et al., "
    "Neural Image Compression): contrastive (same-or-neighbour patch pairs), vae, bigan; "
    "supervised wraps a patch classifier's penultimate features (--model, default the demo) "
    "and trains nothing. OUT ending in .yaml is the spec; otherwise OUT is a folder that gets "
    "<kind>.yaml."
)


def add_arguments(parser) -> None:
    parser.add_argument("out", help="encoder spec .yaml to write, or a folder")
    parser.add_argument("--kind", required=True,
                        choices=["contrastive", "vae", "bigan", "supervised"])
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps (default 300)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--patch", type=int, default=128,
                        help="patch side in px the encoder sees (power of two, default 128)")
    parser.add_argument("--mpp", type=float, default=1.0,
                        help="µm/px of the patches (default 1.0, as the demo classifier)")
    parser.add_argument("--code-size", type=int, default=128, help="C, code length (default 128)")
    parser.add_argument("--width", type=int, default=16, help="channels of the first conv layer")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--fields", type=int, default=6, help="synthetic fields rendered")
    parser.add_argument("--model", default="demo",
                        help="supervised only: the patch classifier ('demo' or a spec)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT")


def out_paths(out, kind: str):
    from pathlib import Path

    out = Path(out)
    spec = out if out.suffix.lower() in (".yaml", ".yml") else out / f"{kind}.yaml"
    return spec, spec.with_suffix(".safetensors")


def run(args) -> int:
    import json
    import sys

    from .. import options
    from ..errors import XhistoError
    from ..progress import run_to_end, text_progress

    options.whole_number(args.steps, "--steps", minimum=1, maximum=10_000_000)
    options.batch_size(args.batch_size)
    options.seed(args.seed)
    options.whole_number(args.patch, "--patch", minimum=16, maximum=1024)
    options.mpp(args.mpp)
    options.whole_number(args.code_size, "--code-size", minimum=1, maximum=65536)
    options.whole_number(args.width, "--width", minimum=1, maximum=1024)
    options.positive(args.lr, "--lr", maximum=10.0)
    options.whole_number(args.fields, "--fields", minimum=1, maximum=1000)
    spec_path, weights = out_paths(args.out, args.kind)
    for p in (spec_path, weights):
        if p.exists() and not args.force:
            raise XhistoError(f"{p} already exists; choose another OUT or pass --force")
    import torch

    if args.threads:
        torch.set_num_threads(options.threads(args.threads))
    from ..nic.encoder_train import train_encoder
    from ..nic.encoders import save_encoder

    spec, net, losses = run_to_end(
        train_encoder(args.kind, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                      patch_px=args.patch, mpp=args.mpp, code_size=args.code_size,
                      width=args.width, lr=args.lr, model=args.model, n_fields=args.fields),
        on_progress=text_progress(f"train-encoder {args.kind}"))
    spec["name"] = spec_path.stem
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    save_encoder(spec_path, spec, net)
    summary = {"spec": str(spec_path), "weights": str(weights) if net is not None else None,
               "kind": args.kind, "patch_px": spec["patch_px"], "mpp": spec["mpp"],
               "code_size": spec["code_size"], "training": spec.get("training")}
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
