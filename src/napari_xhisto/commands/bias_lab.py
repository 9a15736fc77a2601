"""``xhisto bias-lab``: seed 000's three bias experiments end to end on synthetic tissue."""

from __future__ import annotations

HELP = "train a clean and three biased models on synthetic tissue and show LRP diagnostics catch them"
DESCRIPTION = (
    "Train small CNNs on synthetic H&E patches: a clean tumour classifier, models with a "
    "class-correlated single-colour square on tumour patches (top-left corner and moved/recoloured "
    "variants), a model labelled by the centre cell only without translations, and one that never "
    "saw necrosis. Explain held-out patches and tissue fields with LRP (epsilon-plus) and check "
    "that the class-mean hotspot scan, the centre-bias profile with cell-level AUC, and necrosis "
    "region relevance flag each biased model and not the clean one. Writes figures (PNG), "
    "summary.json and summary.md into OUT. Full run: about 3-4 CPU minutes; --quick: about 2.5."
)


def add_arguments(parser) -> None:
    parser.add_argument("out", help="output folder (created)")
    parser.add_argument("--quick", action="store_true",
                        help="small version (fewer patches, epochs and variants)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data and training")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest on busy shared cores)")


def run(args) -> int:
    from pathlib import Path

    from ..biaslab import BiasLabConfig, run_bias_lab
    from ..errors import XhistoError
    from ..progress import run_to_end, text_progress

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise XhistoError(f"{out} exists and is not a folder: give a new or existing folder")
    from .. import options

    options.threads(args.threads)
    options.seed(args.seed)
    cfg = BiasLabConfig.preset(quick=args.quick, seed=args.seed)
    cfg.threads = args.threads
    result = run_to_end(run_bias_lab(out, config=cfg), on_progress=text_progress("bias-lab"))
    s = result.summary
    print(f"bias lab ({'quick' if args.quick else 'full'}, seed {args.seed}) written to {out}/")
    for name, v in s["class_correlated_square"].items():
        b, c = v["biased"], v["clean"]
        eb = "n/a" if b["enrichment"] is None else f"{b['enrichment']:.0f}x"
        ec = "n/a" if c["enrichment"] is None else f"{c['enrichment']:.1f}x"
        print(f"  {name}: {eb} relevance in the square (clean model {ec}); hotspot found "
              f"there: {b['flagged']}")
    st = s["centre_bias"]["steepness"]
    oc = s["cell_level"]["offcentre_auc"]
    print(f"  centre-label: centre enrichment {st['biased_centre_enrichment']:.2f}x vs clean "
          f"{st['clean_centre_enrichment']:.2f}x; off-centre cell AUC {oc['centre-label']:.3f} "
          f"vs clean {oc['clean']:.3f}")
    n = s["necrosis"]
    if "mean_clean" in n:
        print(f"  no-necrosis: mean tumour relevance on necrosis {n['mean_no_necrosis']:+.4f} vs "
              f"clean {n['mean_clean']:+.4f}")
    print("  checks: " + ", ".join(f"{k}={'pass' if v else 'FAIL'}" for k, v in s["checks"].items()))
    print(f"  files: {', '.join(s['files'])}")
    return 0 if s["all_pass"] else 1
