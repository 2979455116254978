"""Error and calibration of every method on a real long-tailed dataset, through the user's configs.

Each run is exactly ``ltlight fit --config configs/<dataset>/<method>.yaml`` with the data's
imbalance ratio and seed set on the command line (``--data.init_args.imbalance_ratio``,
``--data.init_args.seed``, ``--seed_everything``), built by :class:`~ltlight.cli.LongTailCLI` and
then ``trainer.fit`` + ``trainer.validate`` on the balanced test split. For speed the benchmark
turns off what does not change the model: the logger, the trainer's callbacks (checkpoints, the
per-class report), the progress bar and the per-epoch validation (the model is validated once, at
the end). The method's own callbacks (DRW, DRS, the γ schedule) stay: they live in the model's
config.

``--epochs E`` trains ``E`` epochs instead of the config's ``max_epochs``
(``--trainer.max_epochs``): the configs give the learning-rate milestones and the DRW/DRS/γ
switches as fractions of the run, so a shorter run is the same recipe compressed (the warm-up
stays a number of epochs).

Prints, per ratio and method, mean ± std over the seeds of the overall, balanced, many/medium/
few-shot error and the ECE (in %), and the wall time per run; ``--out results.md`` / ``.json``
also writes the table / the raw per-run numbers (appended run by run, so a partial benchmark
keeps what it measured).

Run: ``python benchmarks/accuracy.py --dataset fashion_mnist_lt`` (the full table; see
``benchmarks/README.md``) or ``--dataset digits_lt`` (a couple of minutes on a CPU).
"""

import os

# OpenMP threads that busy-wait for work steal the CPU from each other (and from every other
# process) on a shared machine: several times slower per step on a busy 2-core box.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import logging
import math
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METHODS = [
    "ce",
    "ce_drw",
    "focal",
    "cb_focal",
    "ldam",
    "ldam_drw",
    "ldam_drs",
    "logit_adjusted",
    "balanced_softmax",
    "tailr",
    "tailr_schedule",
    "ghm",
]
#: Decoupled methods: stage-2 config and the stage-1 method whose checkpoint it starts from.
TWO_STAGE = {"crt": "ce", "lws": "ce", "mislas_stage2": "mislas_stage1"}
ALL_METHODS = [*METHODS, "mislas_stage1", *TWO_STAGE]
#: Methods that also get post-hoc logit adjustment and τ-normalisation (fitted on validation).
POSTHOC = ("ce",)
METRICS = ["error", "balanced_error", "many_shot_error", "medium_shot_error", "few_shot_error"]
COLUMNS = [*METRICS, "ece", "classwise_ece", "nll", "brier"]
HEADERS = ["error", "balanced", "many", "medium", "few", "ECE", "cECE", "NLL", "Brier"]
DEFAULT_RATIOS = {"fashion_mnist_lt": [100.0, 10.0], "digits_lt": [10.0]}
DEFAULT_SEEDS = {"fashion_mnist_lt": [0, 1, 2], "digits_lt": [0]}
#: Validation images per class carved from the training pool (T, τ are fitted there).
DEFAULT_VAL_PER_CLASS = {"fashion_mnist_lt": 100, "digits_lt": 10}
#: Fashion-MNIST-LT's head class has 6,000 images: at ratio 100 the tail has 60, so CIFAR's
#: many > 100 / few < 20 would leave no few-shot class. These give 4 / 3 / 3 classes at ratio 100.
DEFAULT_SHOT_THRESHOLDS = {"fashion_mnist_lt": (1000, 200)}
#: The prior-shift table and figure: these rows (when measured), plus CE adjusted to each prior.
PRIOR_SHIFT_METHODS = [
    "ce",
    "ce_drw",
    "ldam_drw",
    "logit_adjusted",
    "ce + LA",
    "crt",
    "lws",
    "mislas_stage2",
]


def run_one(
    config: Path,
    ratio: float,
    seed: int,
    epochs: int | None,
    root_dir: str,
    threads: int | None = None,
    overrides: list[str] | None = None,
):
    """One ``ltlight fit`` run of ``config``; returns the CLI (its ``trainer`` and ``model``)."""
    import torch

    from ltlight.cli import LongTailCLI

    if threads:
        torch.set_num_threads(threads)
    args = [
        "--config",
        str(config),
        f"--seed_everything={seed}",
        f"--data.init_args.seed={seed}",
        f"--data.init_args.imbalance_ratio={ratio:g}",
        "--trainer.logger=false",
        "--trainer.callbacks=[]",
        "--trainer.enable_checkpointing=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.limit_val_batches=0",
        f"--trainer.default_root_dir={root_dir}",
        *([f"--trainer.max_epochs={epochs}"] if epochs is not None else []),
        *[f"--{override}" for override in overrides or []],
    ]
    cli = LongTailCLI(args=args, run=False)
    trainer, module = cli.trainer, cli.model
    trainer.fit(module, datamodule=cli.datamodule)
    return cli


def evaluate_on_test(cli) -> dict:
    """Metrics of the module as it now predicts (with any post-hoc state) on the test split."""
    from ltlight.callbacks.posthoc.base import collect_outputs, evaluate
    from ltlight.metrics import long_tail_metrics

    trainer, module = cli.trainer, cli.model
    logits, target, _ = collect_outputs(trainer, module, cli.datamodule.test_dataloader())
    probs = module.predict_proba(logits.to(module.device)).float().cpu()
    row = {name: 100.0 * value for name, value in evaluate(module, probs, target).items()}
    row["nll"] /= 100.0  # NLL and Brier are not percentages
    row["brier"] /= 100.0
    per_class = long_tail_metrics(probs, target, probs.shape[1])["per_class_error"]
    row["per_class_error"] = per_class.tolist()
    return row


def posthoc_rows(cli, method: str, with_posthoc: bool) -> list[tuple[str, dict]]:
    """The method's test rows: as trained, + temperature scaling; CE also + post-hoc logit
    adjustment and + τ-normalisation, each alone and followed by temperature scaling. Every
    post-hoc value is fitted on the validation split."""
    from ltlight.callbacks import PostHocLogitAdjustment, TauNormalization, TemperatureScaling

    trainer, module = cli.trainer, cli.model
    rows = [(method, evaluate_on_test(cli))]

    def with_ts(name: str) -> None:
        TemperatureScaling().calibrate(trainer, module)
        rows.append((f"{name} + TS", {**evaluate_on_test(cli), "T": module.temperature}))
        module.temperature = 1.0

    with_ts(method)
    if with_posthoc:
        PostHocLogitAdjustment().calibrate(trainer, module)
        tau = module.logit_adjustment_tau
        rows.append((f"{method} + LA", {**evaluate_on_test(cli), "tau": tau}))
        with_ts(f"{method} + LA")
        module.set_logit_adjustment(0.0)
        TauNormalization().calibrate(trainer, module)
        tau = float(module.calibration.classifier_tau)
        rows.append((f"{method} + τ-norm", {**evaluate_on_test(cli), "tau": tau}))
        with_ts(f"{method} + τ-norm")
    return rows


def prior_shift_rows(cli, method: str, priors: list[tuple[str, list[float]]]) -> dict:
    """Per-class error of ``method + LA(q)``: the logits adjusted to each known test prior ``q``
    (``z − log π + log q``), for the prior-shift table."""
    module = cli.model
    out = {}
    for label, prior in priors:
        module.set_logit_adjustment(1.0, target_prior=prior)
        out[label] = evaluate_on_test(cli)["per_class_error"]
    module.set_logit_adjustment(0.0)
    return out


def mean_std(values: list[float], digits: int = 1) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def row_order(runs: list[dict]) -> list[str]:
    """Row names in the order they were first measured (a method, then its post-hoc rows)."""
    seen: dict[str, None] = {}
    for run in runs:
        seen.setdefault(run["method"], None)
    return list(seen)


def table(runs: list[dict], ratios: list[float]) -> str:
    lines = [
        "| ratio | method | runs | " + " | ".join(HEADERS) + " | wall s/run |",
        "|---" * (len(HEADERS) + 4) + "|",
    ]
    for ratio in ratios:
        for method in row_order(runs):
            rows = [r for r in runs if r["ratio"] == ratio and r["method"] == method]
            if not rows:
                continue
            cells = [
                mean_std([r[c] for r in rows], digits=3 if c in ("nll", "brier") else 1)
                for c in COLUMNS
            ]
            walls = [r["wall_s"] for r in rows if "wall_s" in r]
            wall = f"{statistics.mean(walls):.0f}" if walls else "—"
            lines.append(
                f"| {ratio:g} | {method} | {len(rows)} | " + " | ".join(cells) + f" | {wall} |"
            )
    return "\n".join(lines)


def _mean_per_class(errors: list[list[float]]) -> list[float]:
    return [statistics.mean(v) for v in zip(*errors, strict=True)]


def prior_shift(runs: list[dict], ratio: float) -> tuple[list[str], dict[str, list[float]]]:
    """Per method: the error (fraction) under each shifted test prior, from the mean per-class
    error over seeds; ``ce + LA(q)`` uses the logits adjusted to each known prior."""
    from ltlight.metrics.prior_shift import error_under_prior

    at_ratio = [r for r in runs if r["ratio"] == ratio]
    priors = next((r["priors"] for r in at_ratio if "priors" in r), None)
    if priors is None:
        return [], {}
    labels = [label for label, _ in priors]
    curves: dict[str, list[float]] = {}
    for method in PRIOR_SHIFT_METHODS:
        rows = [r for r in at_ratio if r["method"] == method]
        if rows:
            mean = _mean_per_class([r["per_class_error"] for r in rows])
            curves[method] = [error_under_prior(mean, q) for _, q in priors]
    adjusted = [r["prior_shift"] for r in at_ratio if "prior_shift" in r]
    if adjusted:
        curve = []
        for label, q in priors:
            mean = _mean_per_class([a[label] for a in adjusted])
            curve.append(error_under_prior(mean, q))
        curves["ce + LA(q), q known"] = curve
    return labels, curves


def prior_shift_table(labels: list[str], curves: dict[str, list[float]], ratio: float) -> str:
    lines = [
        f"| ratio {ratio:g}: method | " + " | ".join(labels) + " |",
        "|---" * (len(labels) + 1) + "|",
    ]
    for method, values in curves.items():
        lines.append(f"| {method} | " + " | ".join(f"{100 * v:.1f}" for v in values) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion_mnist_lt", choices=list(DEFAULT_RATIOS))
    parser.add_argument("--methods", nargs="+", default=ALL_METHODS, choices=ALL_METHODS)
    parser.add_argument("--ratios", nargs="+", type=float, default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="train this many epochs, scaling the recipe's epoch numbers (default: the config's)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for every run, as on the ltlight command line without the "
        "leading dashes, e.g. model.init_args.backbone.init_args.hidden=8",
    )
    parser.add_argument(
        "--shot-thresholds",
        nargs=2,
        type=int,
        metavar=("MANY", "FEW"),
        default=None,
        help="many-shot: more training images than MANY; few-shot: fewer than FEW "
        "(default: fashion_mnist_lt 1000 200, i.e. CIFAR's 100 / 20 scaled to the dataset; "
        "digits_lt: the config's)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument(
        "--val-per-class",
        type=int,
        default=None,
        help="validation images per class, carved from the training pool; temperature, τ and "
        "τ-norm are fitted there (default: fashion_mnist_lt 100, digits_lt 10)",
    )
    parser.add_argument(
        "--figure",
        type=Path,
        default=None,
        help="write the prior-shift figure (error vs test prior, a line per method) of the "
        "first ratio to this PNG",
    )
    parser.add_argument(
        "--out",
        type=Path,
        action="append",
        default=[],
        help="results.md (the table) and/or results.json (every run); may be repeated",
    )
    parser.add_argument("--configs", type=Path, default=ROOT / "configs")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs already in the --out .json file and do only the missing ones",
    )
    args = parser.parse_args(argv)
    ratios = args.ratios or DEFAULT_RATIOS[args.dataset]
    args.seeds = args.seeds or DEFAULT_SEEDS[args.dataset]
    thresholds = args.shot_thresholds or DEFAULT_SHOT_THRESHOLDS.get(args.dataset)
    val_per_class = args.val_per_class or DEFAULT_VAL_PER_CLASS[args.dataset]
    overrides = [f"data.init_args.val_per_class={val_per_class}", *args.set]
    if thresholds:
        overrides += [
            f"model.init_args.many_shot_threshold={thresholds[0]}",
            f"model.init_args.few_shot_threshold={thresholds[1]}",
        ]

    # Lightning's per-run banners and its "few batches" / "no logger" warnings drown the table.
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    import torch

    header = (
        f"# accuracy: {args.dataset}, ratios {ratios}, seeds {args.seeds}, "
        f"epochs {args.epochs or 'config'}, overrides {overrides}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, nproc {os.cpu_count()}, "
        f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}"
    )
    print(header, flush=True)
    json_out = [p for p in args.out if p.suffix == ".json"]
    md_out = [p for p in args.out if p.suffix != ".json"]
    runs: list[dict] = []
    if args.resume and json_out and json_out[0].exists():
        runs = json.loads(json_out[0].read_text())["runs"]
    done = {(r["method"], r["ratio"], r["seed"]) for r in runs}

    def record(row: dict) -> None:
        runs.append(row)
        shown = " ".join(
            f"{h} {row[c]:.3f}" if c in ("nll", "brier") else f"{h} {row[c]:.1f}"
            for h, c in zip(HEADERS, COLUMNS, strict=True)
        )
        wall = f"  {row['wall_s']:.0f}s" if "wall_s" in row else ""
        print(f"ratio {row['ratio']:g} seed {row['seed']} {row['method']:26s} {shown}{wall}")
        sys.stdout.flush()
        for path in json_out:
            path.write_text(json.dumps({"header": header, "runs": runs}, indent=1))

    # Ratio-major: the first ratio's table (the goals) is complete first.
    with tempfile.TemporaryDirectory(prefix="ltlight-accuracy-") as root_dir:
        for ratio in ratios:
            for seed in args.seeds:
                stage1: dict[str, str] = {}
                wanted = [m for m in args.methods if m not in TWO_STAGE]
                wanted += [TWO_STAGE[m] for m in args.methods if m in TWO_STAGE]
                wanted += [m for m in args.methods if m in TWO_STAGE]
                for method in dict.fromkeys(wanted):
                    is_stage1 = method in TWO_STAGE.values()
                    needed = method in args.methods and (method, ratio, seed) not in done
                    if not needed and not (
                        is_stage1
                        and any(
                            TWO_STAGE[m] == method and (m, ratio, seed) not in done
                            for m in args.methods
                            if m in TWO_STAGE
                        )
                    ):
                        continue
                    start = time.perf_counter()
                    config = args.configs / args.dataset / f"{method}.yaml"
                    extra = list(overrides)
                    epochs = args.epochs
                    if method in TWO_STAGE:
                        extra.append(f"model.init_args.init_weights={stage1[TWO_STAGE[method]]}")
                        epochs = None  # stage 2 keeps its own short schedule
                    cli = run_one(config, ratio, seed, epochs, root_dir, args.threads, extra)
                    if is_stage1:
                        stage1[method] = f"{root_dir}/{method}_{ratio:g}_{seed}.ckpt"
                        cli.trainer.save_checkpoint(stage1[method])
                    if not needed:
                        continue
                    wall = time.perf_counter() - start
                    extra_fields: dict = {}
                    if method == "ce":  # before posthoc_rows, whose τ-norm rewrites the classifier
                        from ltlight.metrics.prior_shift import shifted_priors

                        priors = shifted_priors(cli.model.class_counts)
                        extra_fields = {
                            "priors": priors,
                            "prior_shift": prior_shift_rows(cli, method, priors),
                        }
                    rows = posthoc_rows(cli, method, method in POSTHOC)
                    for index, (name, metrics) in enumerate(rows):
                        row = {**metrics, "method": name, "ratio": ratio, "seed": seed}
                        if index == 0:
                            row.update(wall_s=wall, **extra_fields)
                        record(row)
    result = table(runs, ratios)
    print()
    print(
        "Error, ECE and classwise ECE in %, NLL and Brier score (mean ± std over seeds), "
        "balanced test split; + TS / + LA / + τ-norm fitted on the validation split."
    )
    print(result)
    shift_tables = []
    for ratio in ratios:
        labels, curves = prior_shift(runs, ratio)
        if curves:
            shift_tables.append(prior_shift_table(labels, curves, ratio))
            if args.figure is not None and ratio == ratios[0]:
                from ltlight.figures import prior_shift_figure

                title = f"{args.dataset}, trained at ratio {ratio:g}: error under test priors"
                prior_shift_figure(curves, labels, title=title).savefig(args.figure, dpi=100)
    if shift_tables:
        print()
        print("Error (%) under shifted test priors, from the mean per-class test error:")
        print("\n\n".join(shift_tables))
    for path in md_out:
        path.write_text(f"{header}\n\n{result}\n\n" + "\n\n".join(shift_tables) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
