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
METRICS = ["error", "balanced_error", "many_shot_error", "medium_shot_error", "few_shot_error"]
COLUMNS = [*METRICS, "ece"]
HEADERS = ["error", "balanced", "many", "medium", "few", "ECE"]
DEFAULT_RATIOS = {"fashion_mnist_lt": [100.0, 10.0], "digits_lt": [10.0]}
DEFAULT_SEEDS = {"fashion_mnist_lt": [0, 1, 2], "digits_lt": [0]}
#: Fashion-MNIST-LT's head class has 6,000 images: at ratio 100 the tail has 60, so CIFAR's
#: many > 100 / few < 20 would leave no few-shot class. These give 4 / 3 / 3 classes at ratio 100.
DEFAULT_SHOT_THRESHOLDS = {"fashion_mnist_lt": (1000, 200)}


def run_one(
    config: Path,
    ratio: float,
    seed: int,
    epochs: int | None,
    root_dir: str,
    threads: int | None = None,
    overrides: list[str] | None = None,
) -> dict[str, float]:
    """One ``ltlight fit`` run of ``config``; returns the validation metrics and the wall time."""
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
    start = time.perf_counter()
    cli = LongTailCLI(args=args, run=False)
    trainer, module = cli.trainer, cli.model
    trainer.fit(module, datamodule=cli.datamodule)
    trainer.limit_val_batches = 1.0  # validation was off during fit: validate once, now
    (results,) = trainer.validate(module, datamodule=cli.datamodule, verbose=False)
    wall = time.perf_counter() - start
    row = {name: 100.0 * float(results[f"val/{name}"]) for name in COLUMNS}
    row["wall_s"] = wall
    return row


def mean_std(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def table(runs: list[dict], ratios: list[float], methods: list[str]) -> str:
    lines = [
        "| ratio | method | runs | " + " | ".join(HEADERS) + " | wall s/run |",
        "|---" * (len(HEADERS) + 4) + "|",
    ]
    for ratio in ratios:
        for method in methods:
            rows = [r for r in runs if r["ratio"] == ratio and r["method"] == method]
            if not rows:
                continue
            cells = [mean_std([r[c] for r in rows]) for c in COLUMNS]
            wall = statistics.mean(r["wall_s"] for r in rows)
            lines.append(
                f"| {ratio:g} | {method} | {len(rows)} | " + " | ".join(cells) + f" | {wall:.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion_mnist_lt", choices=list(DEFAULT_RATIOS))
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
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
    overrides = list(args.set)
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
    # Seed-major order: a benchmark stopped early still has every method at every ratio.
    with tempfile.TemporaryDirectory(prefix="ltlight-accuracy-") as root_dir:
        for seed in args.seeds:
            for ratio in ratios:
                for method in args.methods:
                    if (method, ratio, seed) in done:
                        continue
                    config = args.configs / args.dataset / f"{method}.yaml"
                    row = run_one(
                        config, ratio, seed, args.epochs, root_dir, args.threads, overrides
                    )
                    row.update(method=method, ratio=ratio, seed=seed)
                    runs.append(row)
                    print(
                        f"ratio {ratio:g} seed {seed} {method:16s} "
                        + " ".join(
                            f"{h} {row[c]:.1f}" for h, c in zip(HEADERS, COLUMNS, strict=True)
                        )
                        + f"  {row['wall_s']:.0f}s",
                        flush=True,
                    )
                    for path in json_out:
                        path.write_text(json.dumps({"header": header, "runs": runs}, indent=1))
    result = table(runs, ratios, args.methods)
    print()
    print("Error and ECE in % (mean ± std over seeds), balanced test split.")
    print(result)
    for path in md_out:
        path.write_text(f"{header}\n\n{result}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
