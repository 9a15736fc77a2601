"""``xhisto train-slide --codes DIR --labels labels.csv OUT``: the slide-level CNN of NIC."""

from __future__ import annotations

HELP = "train a slide-level CNN on compressed slides (*.nic.zarr) with slide labels only"
DESCRIPTION = (
    "Train the slide-level CNN of Neural Image Compression (seed 004): depthwise-separable "
    "convolutions on the code grids of DIR/*.nic.zarr (from xhisto compress or xhisto batch "
    "--task compress), random crops and the 8 flips/rotations, with the slide labels of "
    "labels.csv (columns slide,label; label 0 or 1). A stratified share is held out for "
    "validation; the weights with the best validation loss are kept. Writes OUT/model.safetensors "
    "and OUT/slide_model.yaml. Deterministic by --seed."
)


def add_arguments(parser) -> None:
    parser.add_argument("out", help="output folder for the model")
    parser.add_argument("--codes", required=True, help="folder of compressed slides (*.nic.zarr)")
    parser.add_argument("--labels", required=True, help="labels.csv (columns slide,label)")
    parser.add_argument("--label-column", default="label", help="label column (default label)")
    parser.add_argument("--label-names", default="absent,present",
                        help="names of labels 0 and 1 (default absent,present)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs (default 30)")
    parser.add_argument("--batch-size", type=int, default=16, help="slides per batch (default 16)")
    parser.add_argument("--crop", type=int, default=16, help="crop side R in code cells (default 16)")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default 1e-2)")
    parser.add_argument("--width", type=int, default=64, help="filters per layer (default 64)")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="share held out for validation (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace a model in OUT")


def run(args) -> int:
    import json
    import sys
    import time
    from pathlib import Path

    from .. import options
    from ..errors import XhistoError
    from ..nic.slide_model import SPEC_NAME, save_slide_model
    from ..nic.slide_train import SlideTrainConfig, iter_train_slide_model, load_code_set
    from ..progress import run_to_end, text_progress

    names = [n.strip() for n in str(args.label_names).split(",")]
    if len(names) != 2 or not all(names):
        raise XhistoError(f"--label-names takes two names 'negative,positive', got {args.label_names!r}")
    out = Path(args.out)
    if (out / SPEC_NAME).exists() and not args.overwrite:
        raise XhistoError(f"{out} already holds a slide model; choose another folder or pass --overwrite")
    cfg = SlideTrainConfig(
        epochs=options.whole_number(args.epochs, "--epochs", minimum=1, maximum=100000),
        batch_size=options.whole_number(args.batch_size, "--batch-size", minimum=2, maximum=4096),
        crop=options.whole_number(args.crop, "--crop", minimum=4, maximum=4096),
        lr=options.real_number(args.lr, "--lr", minimum=1e-7, maximum=1.0),
        width=options.whole_number(args.width, "--width", minimum=4, maximum=1024),
        val_fraction=options.real_number(args.val_fraction, "--val-fraction", minimum=0.0,
                                         maximum=0.5),
        seed=options.seed(args.seed))
    data = load_code_set(args.codes, args.labels, column=args.label_column)
    start = time.perf_counter()
    model, history = run_to_end(
        iter_train_slide_model(data.grids, data.labels, cfg, label_names=names,
                               extra={"codes": str(args.codes), "labels": str(args.labels),
                                      "slides": len(data.keys)}),
        on_progress=text_progress("train-slide"))
    spec_path = save_slide_model(out, model, overwrite=args.overwrite)
    summary = {"model": str(spec_path), "slides": len(data.keys),
               "positives": int(data.labels.sum()), "code_size": model.spec.code_size,
               "encoder": model.spec.encoder.get("kind"), "chosen_epoch": history["chosen_epoch"],
               "validation": history.get("validation"),
               "seconds": round(time.perf_counter() - start, 1)}
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
