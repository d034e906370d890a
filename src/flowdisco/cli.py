"""The ``flowdisco`` command.

    flowdisco demo                       the main job on its embedded default (toy2d)
    flowdisco pretrain DOMAIN            pre-train a flow model, write a run directory
    flowdisco expand DOMAIN              ActFlow / Rec-F / Rec-NF expansion of a pre-trained model
    flowdisco sample MODEL               draw designs from a saved model
    flowdisco evaluate MODEL             metrics table of a saved model
    flowdisco report RUN_DIR [RUN_DIR…]  one self-contained HTML report of runs (compare methods, seeds)
    flowdisco dit train|sample|evaluate  the MP-DiT image experiment on digits
    flowdisco dit classifier             (re)train the digits evaluation classifier
    flowdisco agd collect|train|sample|evaluate   adapter guidance distillation (CFG in one NFE per step)
    flowdisco domains                    list the available domains
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import torch

from flowdisco import __version__, dist

log = logging.getLogger("flowdisco")

TABLE_KEYS = [
    "validity", "uniqueness_raw", "n_valid", "uniqueness", "coverage", "coverage_0.9", "coverage_id0.7",
    "coverage_id0.9", "coverage_kmer", "vendi", "novel_fraction",
    "n_new_unique", "novelty", "frechet_to_test", "frechet_to_reference", "generable_coverage", "mass_outside",
    "chambers_reached", "held_out_molecules", "held_out_scaffolds", "outside_restriction_fraction",
]
METRIC_HELP = {
    "validity": "share of raw samples the verifier accepts",
    "uniqueness_raw": "distinct share of all valid raw samples",
    "n_valid": "valid samples the set metrics below are computed on",
    "uniqueness": "distinct share of those valid samples",
    "coverage": "sphere-exclusion clusters among them (molecules: LeaderPicker, Tanimoto distance 0.85; "
                "sequences: a new centre below 35 % identity)",
    "coverage_0.9": "the same at the stricter distance 0.9",
    "coverage_id0.7": "the same at the stricter identity 0.7",
    "coverage_id0.9": "the same at the stricter identity 0.9",
    "coverage_kmer": "sphere-exclusion clusters on 1-/2-mer spectra (cosine distance 0.3)",
    "vendi": "Vendi diversity (effective number of distinct designs)",
    "novel_fraction": "share of valid samples not in the training set",
    "n_new_unique": "distinct valid samples in no split of the data set",
    "novelty": "1 − mean similarity to the nearest training design (higher: more novel; sequences: identity)",
    "frechet_to_test": "Fréchet distance to the test split (molecules: FCD)",
    "frechet_to_reference": "Fréchet distance to the pre-trained model's samples (molecules: FCD)",
}


def _default_threads() -> int:
    env = os.environ.get("FLOWDISCO_THREADS")
    return int(env) if env else max(1, os.cpu_count() or 1)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: all cores, or $FLOWDISCO_THREADS)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowdisco", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"flowdisco {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="the main job: pre-train on the 2-D toy, expand with ActFlow and Rec-F",
                       description="Pre-train a flow model on the toy2d domain, expand its generable set with "
                                   "ActFlow and with Rec-F under the same budget, print a before/after table and "
                                   "write plots. No arguments needed.")
    p.add_argument("--steps", type=int, default=None, help="pre-training steps (default: the domain's)")
    p.add_argument("--rounds", type=int, default=15, help="expansion rounds per method (default 15)")
    p.add_argument("--n-samples", type=int, default=1000, help="raw samples for validity (default 1000)")
    p.add_argument("--n-valid", type=int, default=500, help="valid samples for set metrics (default 500)")
    p.add_argument("--run-dir", default=None, help="run directory (default runs/demo-<time>)")
    _common(p)

    p = sub.add_parser("pretrain", help="pre-train a flow model on a domain",
                       description="Pre-train a flow model on a domain's training data with the shared "
                                   "training loop; writes config.json, metrics.jsonl, checkpoints and model/.")
    p.add_argument("domain", help="domain name (see `flowdisco domains`)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--ema", type=float, default=None, metavar="SIGMA_REL",
                   help="keep a power-function EMA with this σ_rel and save it as the model")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between resumable checkpoints")
    _data_arg(p)
    p.add_argument("--grad-shards", type=int, default=None, metavar="K",
                   help="cut each batch into K gradient pieces: the same weights on any process count dividing K")
    p.add_argument("--net", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                   help="network settings over the domain's default (e.g. dim=192 edge_dim=32)")
    p.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                   help="other training settings (e.g. schedule=cosine warmup_steps=500)")
    p.add_argument("--init", default=None, metavar="MODEL_DIR",
                   help="start from a saved model's weights (continued training, e.g. with --net endpoint_loss=ce)")
    p.add_argument("--run-dir", default=None, help="run directory (default runs/pretrain-DOMAIN-sSEED)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    _common(p)

    p = sub.add_parser("expand", help="expand a pre-trained model's generable set (ActFlow and baselines)",
                       description="Continued pre-training with verifier feedback. actflow: uncertainty-guided "
                                   "exploration + fine-tuning on valid designs; rec-f: fine-tuning on valid own "
                                   "samples; rec-nf: fine-tuning on all own samples. Same budget for all three.")
    p.add_argument("domain", help="domain name (see `flowdisco domains`)")
    p.add_argument("--method", default="actflow", help="actflow | rec-f | rec-nf (default actflow)")
    p.add_argument("--model", default=None,
                   help="pre-trained model directory (default: the domain's shipped model, else pre-train one)")
    p.add_argument("--rounds", type=int, default=None, help="rounds (default: the domain's)")
    p.add_argument("--samples-per-round", type=int, default=None)
    p.add_argument("--finetune-steps", type=int, default=None)
    p.add_argument("--eval-every", type=int, default=None, help="evaluate every k rounds (0: never)")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="any expand options, e.g. --set guidance_strength=13 "
                        "'surrogate_options={\"lengthscale\": 0.05}' (values are JSON)")
    p.add_argument("--run-dir", default=None,
                   help="run directory (default runs/expand-DOMAIN-METHOD-sSEED-TIME; needed with --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir after a crash or kill")
    _data_arg(p)
    _verifier_args(p)
    _common(p)

    p = sub.add_parser("sample", help="draw designs from a saved model",
                       description="Draw designs from a saved model; writes samples.safetensors (tensors) and "
                                   "designs.jsonl (decoded designs with their verifier verdicts).")
    p.add_argument("model", help="model directory (or a run directory holding model/)")
    p.add_argument("-n", "--n", type=int, default=1000, help="number of designs (default 1000)")
    p.add_argument("--steps", type=int, default=100, help="solver steps (default 100)")
    p.add_argument("--solver", default="euler", choices=["euler", "heun", "euler-maruyama"])
    p.add_argument("--out", default=None, help="output directory (default MODEL/../samples-sSEED)")
    p.add_argument("--domain", default=None,
                   help="domain (default: the one the model was trained on): another variant of the same data "
                        "and model family, e.g. qm9-capped for a qm9 model's samples with valence-capped "
                        "decoding, qm9-known-rings for the verifier that also asks for known ring systems")
    _verifier_args(p)
    _common(p)

    p = sub.add_parser("report", help="a self-contained HTML report of one or several runs",
                       description="Write one HTML file (inline pictures and styles, no network) about run "
                                   "directories: settings and provenance, metric curves with spreads over "
                                   "seeds, the final comparison table, discoveries, pictures.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (expand, pretrain, dit, agd)")
    p.add_argument("-o", "--out", default=None,
                   help="HTML file (default RUN_DIR/report.html for one run, ./flowdisco-report.html for several)")
    p.add_argument("--title", default=None)

    p = sub.add_parser("evaluate", help="metrics table of a saved model",
                       description="Sample a saved model and print validity, coverage, Vendi, uniqueness, "
                                   "novelty and the domain's own metrics, and why the invalid samples were rejected "
                                   "(per the domain's rejection_reason: e.g. several fragments, an atom over its "
                                   "valence, an MCF or PAINS substructure).")
    p.add_argument("model", help="model directory (or a run directory holding model/)")
    p.add_argument("--domain", default=None,
                   help="domain (default: the one the model was trained on; e.g. qm9-discrete-known-rings to "
                        "judge a qm9-discrete model by the stricter verifier)")
    p.add_argument("--n-samples", type=int, default=1000)
    p.add_argument("--n-valid", type=int, default=500)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--solver", default="euler", choices=["euler", "heun", "euler-maruyama"])
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    _verifier_args(p)
    _common(p)

    sub.add_parser("domains", help="list the available domains", description="List the available domains.")
    p = sub.add_parser("train-verifier", help="(re)train a domain's learned verifier (peptides: AMP classifier)",
                       description="Train the AMP-likeness random forest of the peptide verifier on modlamp's "
                                   "AMP vs UniProt data, with its 5-fold cross-validated ROC-AUC, and write it as "
                                   "safetensors + JSON (a computational proxy, not wet-lab activity).")
    p.add_argument("domain", choices=["peptides"])
    p.add_argument("--out", default=None, help="output directory (default: the shipped asset directory)")
    p.add_argument("--trees", type=int, default=100)
    _common(p)
    _dit_parsers(sub)
    _agd_parsers(sub)
    return parser


def _image_sampling_args(p: argparse.ArgumentParser, n_per_class: int) -> None:
    p.add_argument("model", help="model or run directory")
    p.add_argument("--n-per-class", type=int, default=n_per_class)
    p.add_argument("--cfg-scale", type=float, default=1.0, help="guidance scale ω (1: no guidance)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--solver", default="heun", choices=["euler", "heun"])
    _common(p)


def _data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, metavar="FILE",
                   help="your own training designs instead of the domain's data set (molecule and sequence "
                        "domains): CSV/TSV with a 'smiles' or 'sequence' column, FASTA, or one design per line")


def _domain_with_data(name: str, data: str | None):
    """The domain, reading (and checking) a user's data file first when one is given."""
    from flowdisco.domains import get_domain

    if data is None:
        return get_domain(name)
    dom = get_domain(name, data_file=data)
    dom.splits()  # every line checked now: a bad file stops here, before anything is written
    return dom


def _verifier_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verify-workers", type=int, default=None, metavar="N",
                   help="verify in N worker processes, one design per task (default: in this process)")
    p.add_argument("--verify-timeout", type=float, default=None, metavar="SECONDS",
                   help="time limit per design; a design past it (or crashing its worker) counts invalid")


def _configure_verifier(dom, args: argparse.Namespace):
    if args.verify_workers is not None:
        if args.verify_workers < 0:
            raise ValueError(f"--verify-workers must be ≥ 0, got {args.verify_workers}")
        dom.verify_workers = args.verify_workers
    if args.verify_timeout is not None:
        if not args.verify_timeout > 0:
            raise ValueError(f"--verify-timeout must be > 0 seconds, got {args.verify_timeout}")
        dom.verify_timeout = args.verify_timeout
    return dom


def _dit_parsers(sub: argparse._SubParsersAction) -> None:
    from flowdisco.images.dit import CONFIGS
    from flowdisco.nn.dit import SIZES

    dit = sub.add_parser("dit", help="the MP-DiT image experiment on digits (train, sample, evaluate)",
                         description="Magnitude-preserving DiT with rotation modulation vs the standard DiT, "
                                     "trained by flow matching on scikit-learn's 8×8 digits.")
    dsub = dit.add_subparsers(dest="dit_command", metavar="DIT_COMMAND")
    p = dsub.add_parser("train", help="train a class-conditional DiT on digits",
                        description="Flow-matching training of a DiT on digits through the shared training loop, "
                                    "with power-function EMA and label dropout; logs the per-block activation "
                                    "RMS and weight norms; writes a sample grid.")
    p.add_argument("--config", default="mp-adaln", choices=sorted(CONFIGS), help="network configuration")
    p.add_argument("--size", default="tiny", choices=sorted(SIZES))
    p.add_argument("--patch", type=int, default=2)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=None, help="default: 1e-2 (MP) / 1e-3 (baseline)")
    p.add_argument("--ema", type=float, default=0.05, metavar="SIGMA_REL")
    p.add_argument("--ema-snapshot-every", type=int, default=0, metavar="STEPS",
                   help="store EMA snapshots (σ_rel 0.05 and 0.10) every STEPS for `dit posthoc` (0: off)")
    p.add_argument("--run-dir", default=None, help="default runs/dit-CONFIG-sSEED")
    p.add_argument("--resume", action="store_true")
    _common(p)
    p = dsub.add_parser("sample", help="class-conditional samples as an image grid",
                        description="Draw class-conditional samples (with classifier-free guidance) as a PNG grid "
                                    "(one row per class) and a safetensors file of the images.")
    _image_sampling_args(p, n_per_class=10)
    p.add_argument("--out", default=None, help="PNG path (default MODEL/../samples-cfgW.png)")
    p = dsub.add_parser("evaluate", help="classifier-FD, KID, class accuracy, held-out loss",
                        description="Metrics from the in-project digits classifier (proxies, not FID) and the "
                                    "held-out flow-matching loss at fixed t.")
    _image_sampling_args(p, n_per_class=100)
    p.add_argument("--json", default=None)
    p = dsub.add_parser("posthoc", help="post-hoc EMA: rebuild the EMA for another σ_rel from snapshots",
                        description="EDM2's post-hoc EMA reconstruction: the least-squares combination of the "
                                    "EMA snapshots stored by `dit train --ema-snapshot-every` whose averaging "
                                    "profile best matches the power-function EMA with the requested σ_rel.")
    p.add_argument("run", help="run directory of `dit train` with EMA snapshots")
    p.add_argument("--sigma-rel", type=float, required=True)
    p.add_argument("--step", type=int, default=None, help="end step of the target EMA (default: last snapshot)")
    p.add_argument("--out", default=None, help="model directory (default RUN/model-posthoc-SIGMA)")
    _common(p)

    p = dsub.add_parser("classifier", help="(re)train the digits evaluation classifier",
                        description="Train the small CNN whose features define classifier-FD and KID; records its "
                                    "held-out accuracy next to the weights.")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--out", default=None, help="output directory (default: the shipped asset directory)")
    _common(p)


def _agd_parsers(sub: argparse._SubParsersAction) -> None:
    agd = sub.add_parser("agd", help="adapter guidance distillation: CFG in one network evaluation per step",
                         description="Distil classifier-free guidance into small adapters on a frozen "
                                     "class-conditional model (default: the shipped digits MP-DiT).")
    asub = agd.add_subparsers(dest="agd_command", metavar="AGD_COMMAND")

    def model_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", default=None, help="base model or run directory (default: the shipped digits model)")

    p = asub.add_parser("collect", help="record the CFG teacher's sampling trajectories",
                        description="Run the CFG sampler with ω ~ U[ω_min, ω_max] per trajectory and store every "
                                    "state with its guided velocity (safetensors + JSON).")
    model_arg(p)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--per-class", type=int, default=100, help="trajectories per class (default 100)")
    p.add_argument("--omega-range", type=float, nargs=2, default=[1.0, 5.0], metavar=("MIN", "MAX"))
    p.add_argument("--steps", type=int, default=50, help="sampler steps (default 50)")
    p.add_argument("--solver", default="euler", choices=["euler", "heun"])
    _common(p)
    p = asub.add_parser("train", help="train guidance adapters (or a full fine-tune) on the frozen model",
                        description="AGD: adapters on CFG trajectories (--trajectories). Baselines: the same "
                                    "adapters on forward-noised training images with the CFG target computed "
                                    "online (--standard), and --full-finetune (all weights + an ω embedding).")
    model_arg(p)
    p.add_argument("--out", required=True, help="adapter directory to write")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--trajectories", help="directory written by `agd collect`")
    src.add_argument("--standard", action="store_true", help="standard forward-noised training images instead")
    p.add_argument("--adapter", default="offset", choices=["offset", "cross-attention"])
    p.add_argument("--paths", nargs="+", default=["blocks.*.attn"], help="wrapped submodules (dotted, wildcards)")
    p.add_argument("--full-finetune", action="store_true", help="train all weights (+ ω embedding on 'cond')")
    p.add_argument("--omega-range", type=float, nargs=2, default=[1.0, 5.0], metavar=("MIN", "MAX"),
                   help="ω range of --standard training (trajectories carry their own)")
    p.add_argument("--train-steps", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=None, help="default: 1e-2 offset, 3e-3 cross-attention, 1e-3 full")
    p.add_argument("--resume", action="store_true", help="continue a killed training in OUT/state")
    _common(p)
    for name, helptext in (("sample", "a sample grid at guidance ω with one NFE per step"),
                           ("evaluate", "CFG vs the students: classifier-FD, accuracy, distance to CFG, NFEs, time")):
        p = asub.add_parser(name, help=helptext, description=helptext + ".")
        model_arg(p)
        p.add_argument("--adapters", nargs="+" if name == "evaluate" else None, required=True,
                       help="adapter director" + ("ies" if name == "evaluate" else "y"))
        p.add_argument("--omega", type=float, nargs="+" if name == "evaluate" else None,
                       default=[1.5, 2.0, 3.0, 4.0, 6.0] if name == "evaluate" else 3.0)
        p.add_argument("--n-per-class", type=int, default=100 if name == "evaluate" else 10)
        p.add_argument("--steps", type=int, default=50)
        p.add_argument("--solver", default="euler", choices=["euler", "heun"])
        p.add_argument("--out" if name == "sample" else "--json", default=None)
        _common(p)


def _setup(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    threads = getattr(args, "threads", None) or _default_threads()
    torch.set_num_threads(threads)
    if dist.launched_distributed():  # torchrun: one process per GPU (cuda → cuda:LOCAL_RANK), gloo on CPU
        if getattr(args, "device", "cpu") == "cuda":
            dist.check_gpu_count(torch.cuda.device_count())
            # ranks beyond the GPU count share GPUs (possible with FLOWDISCO_DIST_BACKEND=gloo only)
            args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % max(torch.cuda.device_count(), 1)}"
        dist.init(getattr(args, "device", "cpu"))
        if not dist.is_main():
            logging.getLogger("flowdisco").setLevel(logging.WARNING)


def _domain_for(model, name: str | None):
    from flowdisco.domains import get_domain

    name = name or model.domain_name
    if not name:
        raise ValueError("the model does not record its domain; pass --domain")
    dom = get_domain(name)
    dom.check_design_shape(model.shape)
    return dom


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: pre-train on the toy, expand with ActFlow and with Rec-F, compare."""
    from flowdisco.domains import get_domain
    from flowdisco.evaluate import format_table
    from flowdisco.expand import expand
    from flowdisco.pretrain import pretrain

    run_dir = Path(args.run_dir or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    dom = get_domain("toy2d")
    t0 = time.perf_counter()
    print(f"flowdisco demo → {run_dir}\n1/3 pre-training a flow model on toy2d: {len(dom.training_data())} points "
          "in one chamber of a ring-shaped valid set Ω*", flush=True)
    model = pretrain(dom, steps=args.steps, seed=args.seed, run_dir=run_dir / "pretrained", device=args.device,
                     progress=not args.quiet, checkpoint_every=500)
    rows, runs = {}, {}
    for i, method in enumerate(("rec-f", "actflow"), start=2):
        print(f"{i}/3 expanding with {method}: {args.rounds} rounds × 64 samples, verifier feedback", flush=True)
        runs[method] = expand(model, dom, method=method, rounds=args.rounds, seed=args.seed,
                              eval_every=max(1, args.rounds // 3), eval_samples=args.n_samples,
                              eval_valid=args.n_valid, run_dir=run_dir / method, progress=not args.quiet)
        rows.setdefault("pre-trained", runs[method].evaluations()[0]["eval"])
        rows[method] = runs[method].evaluations()[-1]["eval"]
    plot = run_dir / "generable_sets.png"
    _demo_plot(plot, dom, run_dir, args.rounds)
    print()
    print(format_table(rows, [k for k in TABLE_KEYS if k in rows["actflow"]]))
    gain = rows["actflow"]["generable_coverage"] / max(rows["pre-trained"]["generable_coverage"], 1e-9)
    print(f"\nActFlow made {gain:.1f}× more of Ω* generable than the pre-trained model "
          f"({rows['actflow']['chambers_reached']:.0f} of 3 chambers reached); Rec-F: "
          f"{rows['rec-f']['generable_coverage'] / max(rows['pre-trained']['generable_coverage'], 1e-9):.1f}×.")
    print(f"wall-clock {time.perf_counter() - t0:.1f} s · run directory {run_dir} · plot {plot}")
    from flowdisco.report import write_report

    report = write_report([run_dir / m for m in runs], run_dir / "report.html", title="flowdisco demo: toy2d")
    print(f"report: {report}")
    return 0


def _demo_plot(path: Path, dom, run_dir: Path, rounds: int) -> None:
    from flowdisco.domains.toy2d import GRID
    from flowdisco.io import load_tensors
    from flowdisco.plotting import plot_toy_frame, save_figure, subplots

    fig, axes = subplots(1, 3, figsize=(10.5, 3.8), dpi=110)
    panels = [("pre-trained", run_dir / "actflow" / "frames" / "round-00000"),
              (f"Rec-F, round {rounds}", run_dir / "rec-f" / "frames" / f"round-{rounds:05d}"),
              (f"ActFlow, round {rounds}", run_dir / "actflow" / "frames" / f"round-{rounds:05d}")]
    for ax, (title, stem) in zip(axes, panels, strict=True):
        density = load_tensors(stem.with_suffix(".safetensors"))["density"].reshape(GRID, GRID)
        plot_toy_frame(None, dom, density=density, title=title, ax=ax)
    fig.suptitle("generable set {p ≥ 0.01} (orange) over the valid set Ω* (grey)", fontsize=10)
    save_figure(fig, path)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from flowdisco.evaluate import format_table
    from flowdisco.pretrain import pretrain

    tag = f"-{Path(args.data).stem}" if args.data else ""
    run_dir = args.run_dir or f"runs/pretrain-{args.domain}{tag}-s{args.seed}"
    overrides = {k: v for k, v in {"batch_size": args.batch_size, "lr": args.lr, "ema_sigma_rel": args.ema,
                                   "checkpoint_every": args.checkpoint_every,
                                   "grad_shards": args.grad_shards}.items() if v is not None}
    t0 = time.perf_counter()
    overrides = {**parse_settings(args.set), **overrides}
    dom = _domain_with_data(args.domain, args.data)
    model = pretrain(dom, steps=args.steps, seed=args.seed, run_dir=run_dir, resume=args.resume,
                     network_kwargs=parse_settings(args.net) or None, init=args.init, device=args.device,
                     progress=not args.quiet, **overrides)
    if not dist.is_main():
        return 0
    n_params = sum(p.numel() for p in model.net.parameters())
    print(format_table({"pretrain": {"parameters": float(n_params), "seconds": time.perf_counter() - t0}}))
    print(f"model saved to {Path(run_dir) / 'model'}")
    return 0


def parse_settings(pairs: list[str]) -> dict:
    """KEY=VALUE pairs; values are read as JSON (numbers, booleans, null, objects), else as strings."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out


def _pretrained_for(dom, args: argparse.Namespace, run_dir: Path):
    """The model to expand: --model, else the domain's shipped checkpoint, else pre-train one."""
    from flowdisco.flow.model import FlowModel
    from flowdisco.pretrain import pretrain

    if args.model:
        return FlowModel.load(args.model, map_location=args.device)
    own_data = getattr(dom, "data_file", None)
    shipped = None if own_data else dom.pretrained_model_path()  # shipped models learnt the built-in data
    if shipped is not None:
        return FlowModel.load(shipped, map_location=args.device)
    tag = f"-{Path(own_data).stem}" if own_data else ""
    target = run_dir.parent / f"pretrain-{dom.name}{tag}-s{args.seed}"  # `flowdisco pretrain`'s default
    if (target / "model" / "flowdisco_model.json").is_file():
        print(f"using the pre-trained model in {target}", flush=True)
        return FlowModel.load(target, map_location=args.device)
    print(f"no pre-trained {dom.name} model given: pre-training one → {target}", flush=True)
    return pretrain(dom, seed=args.seed, run_dir=target, resume=(target / "config.json").is_file(),
                    device=args.device, progress=not args.quiet)


def _expand_settings(args: argparse.Namespace) -> dict:
    """``--set`` options merged with the options that have their own flag (a flag left at its default
    gives way to ``--set``; the same setting from both is refused rather than silently picked)."""
    settings = parse_settings(args.set)
    for option in ("method", "seed", "run_dir", "resume", "progress"):
        if option in settings:
            raise ValueError(f"--set {option}=…: use the command's own option for {option!r}")
    for key in ("rounds", "samples_per_round", "finetune_steps", "eval_every"):
        flag = getattr(args, key)
        if flag is None:
            continue
        if key in settings:
            raise ValueError(f"{key} is given twice, by --{key.replace('_', '-')} {flag} and --set {key}="
                             f"{settings[key]}; give it once")
        settings[key] = flag
    return settings


def cmd_expand(args: argparse.Namespace) -> int:
    from flowdisco.evaluate import UNEXPLAINED_REJECTION, format_rejections, format_table
    from flowdisco.expand import expand

    dom = _configure_verifier(_domain_with_data(args.domain, args.data), args)
    if args.resume and not args.run_dir:
        raise ValueError("--resume needs the --run-dir of the run to continue")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(args.run_dir or f"runs/expand-{dom.name}-{args.method}-s{args.seed}-{stamp}")
    settings = _expand_settings(args)
    t0 = time.perf_counter()
    model = _pretrained_for(dom, args, run_dir)
    run = expand(model, dom, method=args.method, seed=args.seed, run_dir=run_dir, resume=args.resume,
                 progress=not args.quiet, **settings)
    if not dist.is_main():  # torchrun: rank 0 reports
        return 0
    evals = run.evaluations()
    if evals:
        first, last = evals[0], evals[-1]
        rows = {"pre-trained": first["eval"], f"{args.method} r{last['round']}": last["eval"]}
        keys = [k for k in TABLE_KEYS if k in last["eval"]]
        print()
        print(format_table(rows, keys))
        print("\n" + "\n".join(f"  {k}: {METRIC_HELP[k]}" for k in keys if k in METRIC_HELP))
        if any(set(h.get("rejections", {})) - {UNEXPLAINED_REJECTION} for h in (first, last)):
            n = run.config.eval_samples
            print(f"\nwhy invalid, pre-trained: {format_rejections(first['rejections'], n)}\n"
                  f"why invalid, round {last['round']}: {format_rejections(last['rejections'], n)}")
    found = run.discovered(dom)
    print(f"\n{len(run.history) - 1} rounds, buffer {len(run.buffer)} designs ({run.buffer.n_valid} valid) · "
          f"wall-clock {time.perf_counter() - t0:.1f} s")
    on = ("all of them" if found["coverage_designs"] == found["valid_unique"]
          else f"{found['coverage_designs']:.0f} of them drawn at random")
    print(f"found in the rounds: {found['valid_unique']:.0f} distinct valid designs of {found['generated']:.0f} "
          f"generated, {found['new_valid_unique']:.0f} not in the data set; they cover {found['coverage']:.0f} "
          f"(coverage as in the table, on {on})")
    print(f"run directory {run_dir} · plots {run_dir / 'plots'} · frames {run_dir / 'frames'}")
    grid = run_dir / "plots" / "new_designs.png"
    if grid.is_file():
        print(f"newly discovered designs (not in the data set): {grid}")
    from flowdisco.report import write_report

    try:
        print(f"report: {write_report([run_dir])}")
    except Exception as e:  # the run is done and saved; a report that fails must not hide that
        print(f"the report could not be written ({type(e).__name__}: {e}); the run itself is complete",
              file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from flowdisco.report import write_report

    t0 = time.perf_counter()
    path = write_report(args.runs, args.out, title=args.title)
    print(f"report of {len(args.runs)} run(s) → {path} ({path.stat().st_size / 1e6:.2f} MB, "
          f"{time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from flowdisco.flow.model import FlowModel, resolve_model_dir
    from flowdisco.generate import generate
    from flowdisco.io import atomic_write_text, save_tensors
    from flowdisco.seeding import make_generator

    model = FlowModel.load(args.model, map_location=args.device)
    dom = _configure_verifier(_domain_for(model, args.domain), args)
    out = Path(args.out or resolve_model_dir(args.model).parent / f"samples-s{args.seed}")
    if (out / "designs.jsonl").exists():
        raise ValueError(f"{out} already holds samples; choose another --out")
    g = generate(model, dom, args.n, generator=make_generator(args.seed), steps=args.steps, solver=args.solver)
    if not dist.is_main():  # torchrun: every rank drew its share, rank 0 writes them all
        return 0
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(out / "samples.safetensors", {"x": g.x, **({"mask": g.mask} if g.mask is not None else {})})
    atomic_write_text(out / "designs.jsonl", "".join(
        json.dumps({"design": d, "valid": bool(v)}) + "\n" for d, v in zip(g.designs, g.valid, strict=True)))
    print(f"{args.n} designs, validity {g.valid.mean():.4f} → {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from flowdisco.evaluate import evaluate, format_rejections, format_table, rejection_counts
    from flowdisco.flow.model import FlowModel
    from flowdisco.io import atomic_write_json
    from flowdisco.runs import provenance

    started = provenance(args.device)  # the command, machine and start time, for --json
    model = FlowModel.load(args.model, map_location=args.device)
    dom = _configure_verifier(_domain_for(model, args.domain), args)
    stats, raw, _ = evaluate(model, dom, n_samples=args.n_samples, n_valid=args.n_valid, seed=args.seed,
                             steps=args.steps, solver=args.solver, progress=not args.quiet, return_samples=True)
    rejections = rejection_counts(dom, raw, args.n_samples)
    if "n_valid_short" in stats:
        print(f"warning: only {args.n_valid - int(stats['n_valid_short'])} of --n-valid {args.n_valid} valid "
              "designs within the sampling budget; the set metrics use those", file=sys.stderr)
    if not dist.is_main():
        return 0
    print(format_table({str(args.model): stats}, [k for k in [*TABLE_KEYS, "seconds"] if k in stats]))
    print(format_rejections(rejections, min(args.n_samples, len(raw.designs))))
    if args.json:
        atomic_write_json(args.json, {"model": str(args.model), "model_sha256": model.loaded_sha256,
                                      "domain": dom.name, "seed": args.seed, "n_samples": args.n_samples,
                                      "n_valid_requested": args.n_valid, "steps": args.steps,
                                      "solver": args.solver, **stats, "rejections": rejections,
                                      "provenance": started})
    return 0


def cmd_domains(args: argparse.Namespace) -> int:
    from flowdisco.domains import list_domains

    print("\n".join(list_domains()))
    return 0


def cmd_train_verifier(args: argparse.Namespace) -> int:
    from flowdisco.domains.amp import shipped_classifier_dir, train_amp_classifier

    out = args.out or shipped_classifier_dir()
    info = train_amp_classifier(out, n_trees=args.trees, seed=args.seed)
    print(f"AMP-likeness classifier ({info['n_sequences']} peptides, {info['n_trees']} trees): "
          f"5-fold ROC-AUC {info['cv_roc_auc_mean']:.3f} ± {info['cv_roc_auc_std']:.3f}, "
          f"accuracy {info['cv_accuracy_mean']:.3f} at threshold {info['threshold']} → {out}")
    return 0


def cmd_dit(args: argparse.Namespace) -> int:
    from flowdisco.evaluate import format_table
    from flowdisco.flow.model import FlowModel, resolve_model_dir
    from flowdisco.images import dit as dit_exp
    from flowdisco.plotting import image_grid

    if args.dit_command == "train":
        from flowdisco.domains import get_domain
        from flowdisco.pretrain import pretrain

        dom = get_domain("digits")
        kwargs = dit_exp.network_kwargs(args.config, size=args.size, patch=args.patch)
        lr = args.lr if args.lr is not None else (1e-3 if kwargs["kind"] == "baseline" else 1e-2)
        run_dir = Path(args.run_dir or f"runs/dit-{args.config}-s{args.seed}")
        probe_y = torch.arange(10).repeat(4)
        probe_x = dom.training_data()[:40]
        probe_t = torch.linspace(0.05, 0.95, 40)

        def mechanism(rec: dict, trained) -> None:  # per-block activation RMS and weight norms
            rec.update(dit_exp.block_mechanism(trained.net, probe_x, probe_t, probe_y))

        t0 = time.perf_counter()
        model = pretrain(dom, steps=args.steps, seed=args.seed, run_dir=run_dir, resume=args.resume,
                         network="dit", network_kwargs=kwargs, device=args.device, progress=not args.quiet,
                         on_log=mechanism, batch_size=args.batch_size, lr=lr, ema_sigma_rel=args.ema,
                         checkpoint_every=500, log_every=100, ema_snapshot_every=args.ema_snapshot_every,
                         ema_snapshot_sigma_rels=(0.05, 0.10) if args.ema_snapshot_every else ())
        grid = run_dir / "samples.png"
        image_grid(grid, dit_exp.sample_images(model, dit_exp.class_labels(10), seed=args.seed), nrow=10,
                   title=f"{args.config}, {args.steps} steps (EMA)")
        n_params = sum(p.numel() for p in model.net.parameters())
        print(format_table({args.config: {"parameters": float(n_params), "lr": lr,
                                          "seconds": time.perf_counter() - t0}}))
        print(f"model → {run_dir / 'model'} · samples → {grid}")
        return 0
    if args.dit_command == "posthoc":
        from flowdisco.io import load_tensors
        from flowdisco.nn.ema import posthoc_coefficients, posthoc_reconstruct

        files = sorted((Path(args.run) / "checkpoints" / "ema_snapshots").glob("*.safetensors"))
        if not files:
            raise ValueError(f"no EMA snapshots in {args.run}; train with --ema-snapshot-every")
        steps = [int(f.stem.split("-")[0]) for f in files]
        sigmas = [float(f.stem.split("-", 1)[1]) for f in files]
        target = args.step or max(steps)
        x = posthoc_coefficients(steps, sigmas, target, args.sigma_rel)
        model = FlowModel.load(args.run)
        model.net.load_state_dict(posthoc_reconstruct([load_tensors(f) for f in files], x))
        out = Path(args.out or Path(args.run) / f"model-posthoc-{args.sigma_rel:g}")
        model.save(out)
        print(f"post-hoc EMA σ_rel {args.sigma_rel:g} at step {target} from {len(files)} snapshots → {out}")
        return 0
    if args.dit_command == "classifier":
        from flowdisco.images.classifier import save_classifier, shipped_classifier_dir, train_classifier

        out = Path(args.out) if args.out else shipped_classifier_dir()
        net, info = train_classifier(seed=args.seed, epochs=args.epochs, progress=not args.quiet)
        save_classifier(net, info, out)
        print(format_table({"digits classifier": info}))
        print(f"saved to {out}")
        return 0
    if args.dit_command in ("sample", "evaluate"):
        model = FlowModel.load(args.model, map_location=args.device)
        if model.num_classes == 0:
            raise ValueError(f"{args.model} is not a class-conditional image model")
        cfg = None if args.cfg_scale == 1.0 else args.cfg_scale
        if args.dit_command == "sample":
            labels = dit_exp.class_labels(args.n_per_class)
            x = dit_exp.sample_images(model, labels, cfg_scale=cfg, steps=args.steps, solver=args.solver,
                                      seed=args.seed)
            out = Path(args.out or resolve_model_dir(args.model).parent / f"samples-cfg{args.cfg_scale:g}.png")
            image_grid(out, x.reshape(10, args.n_per_class, 1, 8, 8).reshape(-1, 1, 8, 8), nrow=args.n_per_class,
                       title=f"ω = {args.cfg_scale:g}")
            from flowdisco.io import save_tensors

            save_tensors(out.with_suffix(".safetensors"), {"images": x, "labels": labels})
            print(f"{len(labels)} samples → {out}")
            return 0
        stats = dit_exp.evaluate_images(model, cfg_scale=cfg, n_per_class=args.n_per_class, steps=args.steps,
                                        solver=args.solver, seed=args.seed)
        print(format_table({f"ω = {args.cfg_scale:g}": stats}))
        if args.json:
            from flowdisco.io import atomic_write_json

            atomic_write_json(args.json, {"model": str(args.model), "cfg_scale": args.cfg_scale, **stats})
        return 0
    raise ValueError("choose a dit command: train, sample, evaluate or classifier (see flowdisco dit --help)")


def cmd_agd(args: argparse.Namespace) -> int:
    from flowdisco.evaluate import format_table
    from flowdisco.flow.model import FlowModel
    from flowdisco.guidance import GuidanceStudent

    if args.agd_command is None:
        raise ValueError("choose an agd command: collect, train, sample or evaluate (see flowdisco agd --help)")
    if args.model is None:
        from flowdisco.domains import get_domain

        path = get_domain("digits").pretrained_model_path()
        if path is None:
            raise FileNotFoundError("the shipped digits model is missing; pass --model")
        args.model = path
    base = FlowModel.load(args.model, map_location=args.device)
    if args.agd_command == "collect":
        from flowdisco.guidance import collect_trajectories

        store = collect_trajectories(base, per_class=args.per_class, omega_range=tuple(args.omega_range),
                                     steps=args.steps, solver=args.solver, seed=args.seed, progress=not args.quiet)
        store.save(args.out)
        print(f"{store.info['trajectories']} trajectories, {len(store)} states → {args.out}")
        return 0
    if args.agd_command == "train":
        from flowdisco.guidance import DistillConfig, TrajectoryStore, distill, full_finetune_student

        store = TrajectoryStore.load(args.trajectories) if args.trajectories else None
        if args.full_finetune:
            student = full_finetune_student(base)
        else:
            student = GuidanceStudent(base, adapter=args.adapter, paths=args.paths)
        lr = args.lr or (1e-3 if args.full_finetune else 1e-2 if args.adapter == "offset" else 3e-3)
        cfg = DistillConfig(steps=args.train_steps, batch_size=args.batch_size, lr=lr,
                            omega_range=tuple(args.omega_range), seed=args.seed, progress=not args.quiet)
        images = None
        if store is None:
            from flowdisco.domains import get_domain

            dom = get_domain(base.domain_name or "digits")
            images = {"x": dom.training_data(), "cond": dom.training_conditions()}
        t0 = time.perf_counter()
        res = distill(student, cfg, trajectories=store, images=images, state_dir=Path(args.out) / "state",
                      resume=args.resume)
        info = {"source": "trajectories" if store is not None else "standard", "lr": lr,
                "train_seconds": time.perf_counter() - t0, "losses": res.losses, "base_model": str(args.model)}
        student.save(args.out, info=info)
        report = student.parameter_report()
        print(format_table({"student": {**report, "final_loss": res.losses[-1] if res.losses else float("nan")}}))
        print(f"adapters → {args.out}")
        return 0
    if args.agd_command == "sample":
        from flowdisco.images.dit import class_labels
        from flowdisco.plotting import image_grid
        from flowdisco.seeding import make_generator

        student = GuidanceStudent.load(args.adapters, base)
        labels = class_labels(args.n_per_class, base.num_classes)
        x = student.sample(labels.shape[0], omega=args.omega, cond=labels, steps=args.steps, solver=args.solver,
                           generator=make_generator(args.seed)).clamp(-1, 1)
        out = Path(args.out or Path(args.adapters) / f"samples-w{args.omega:g}.png")
        image_grid(out, x, nrow=args.n_per_class, title=f"AGD, ω = {args.omega:g} (one NFE per step)")
        print(f"{len(labels)} samples → {out}")
        return 0
    if args.agd_command == "evaluate":
        from flowdisco.images.agd import compare_guidance

        students = {str(d): GuidanceStudent.load(d, base) for d in args.adapters}
        metrics, _ = compare_guidance(base, students, args.omega, n_per_class=args.n_per_class, steps=args.steps,
                                      solver=args.solver, seed=args.seed)
        print(format_table({f"{m} · ω {w}": row for m, per in metrics.items() for w, row in per.items()}))
        if args.json:
            from flowdisco.io import atomic_write_json

            atomic_write_json(args.json, {"model": str(args.model), "metrics": metrics})
        return 0
    raise ValueError(f"unknown agd command {args.agd_command!r}")


COMMANDS = {"agd": cmd_agd, "demo": cmd_demo, "dit": cmd_dit, "pretrain": cmd_pretrain, "expand": cmd_expand,
            "sample": cmd_sample, "evaluate": cmd_evaluate, "domains": cmd_domains, "report": cmd_report,
            "train-verifier": cmd_train_verifier}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from flowdisco.domains import UnknownNameError
    from flowdisco.io import CheckpointError
    from flowdisco.runs import RunDirError, set_command

    # main(argv) called from Python: record that command, not the host program's sys.argv
    set_command(["flowdisco", *argv] if argv is not None else None)

    try:
        _setup(args)
        return COMMANDS[args.command](args)
    except (CheckpointError, UnknownNameError, RunDirError, ValueError, FileNotFoundError) as e:
        print(f"flowdisco {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"flowdisco {args.command}: interrupted (a run directory can be continued with --resume)",
              file=sys.stderr)
        return 130
    finally:
        set_command(None)


if __name__ == "__main__":
    sys.exit(main())

