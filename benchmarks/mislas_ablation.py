"""Why MiSLAS's stage 2 is under-confident on Fashion-MNIST-LT: label-aware smoothing ablated.

Trains (or takes, ``--stage1``) the accuracy benchmark's MiSLAS stage 1 — CE with mixup, DigitsNet
width 8, 16 epochs, ratio 100, 100 validation images per class — then runs
``configs/fashion_mnist_lt/mislas_stage2.yaml`` four ways: as configured (smoothing 0.4 → 0.1,
CIFAR-100's official values, shifted BN), with the official CIFAR-10 values (0.3 → 0.0, no BN
shift), without smoothing, and as configured with the classifier's learning rate at 0.2× the
scale's (the official CIFAR-100 ``lr_factor``). Prints balanced error, ECE, mean confidence
against accuracy on the test split, and the ECE after temperature scaling (``T`` on validation).

Run: ``python benchmarks/mislas_ablation.py [--seed 0] [--stage1 path.ckpt]`` (~3 min on 2 cores).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import importlib.util
import logging
import tempfile
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMMON = [
    "data.init_args.val_per_class=100",
    "model.init_args.backbone.init_args.hidden=8",
    "model.init_args.many_shot_threshold=1000",
    "model.init_args.few_shot_threshold=200",
]
SMOOTHING = "model.init_args.loss.init_args."
VARIANTS = {
    "as configured (0.4 → 0.1, shifted BN)": [],
    "official CIFAR-10 (0.3 → 0.0, no BN shift)": [
        SMOOTHING + "head=0.3",
        SMOOTHING + "tail=0.0",
        "model.init_args.callbacks.init_args.shifted_bn=false",
    ],
    "no smoothing (0 → 0, shifted BN)": [SMOOTHING + "head=0.0", SMOOTHING + "tail=0.0"],
    "as configured, classifier lr × 0.2 (CIFAR-100's lr_factor)": [
        "model.init_args.callbacks.init_args.classifier_lr_factor=0.2"
    ],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ratio", type=float, default=100.0)
    parser.add_argument("--stage1", default=None, help="a MiSLAS stage-1 checkpoint to start from")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    spec = importlib.util.spec_from_file_location("accuracy", HERE / "accuracy.py")
    accuracy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(accuracy)
    from ltlight.callbacks import TemperatureScaling
    from ltlight.callbacks.posthoc.base import collect_outputs

    configs = accuracy.ROOT / "configs" / "fashion_mnist_lt"
    print(
        f"# MiSLAS stage 2 on Fashion-MNIST-LT, ratio {args.ratio:g}, seed {args.seed}; test split"
    )
    print("| stage 2 | balanced error | ECE | mean confidence | accuracy | T | ECE + TS |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="ltlight-mislas-") as root:
        stage1 = args.stage1
        if stage1 is None:
            cli = accuracy.run_one(
                configs / "mislas_stage1.yaml",
                args.ratio,
                args.seed,
                16,
                root,
                args.threads,
                COMMON,
            )
            stage1 = f"{root}/stage1.ckpt"
            cli.trainer.save_checkpoint(stage1)
        for name, extra in VARIANTS.items():
            overrides = [*COMMON, f"model.init_args.init_weights={stage1}", *extra]
            cli = accuracy.run_one(
                configs / "mislas_stage2.yaml", args.ratio, args.seed, None, root, args.threads,
                overrides,
            )  # fmt: skip
            row = accuracy.evaluate_on_test(cli)
            test = cli.datamodule.test_dataloader()
            logits, target, _ = collect_outputs(cli.trainer, cli.model, test)
            probs = cli.model.predict_proba(logits.float())
            confidence = 100 * float(probs.max(1).values.mean())
            correct = 100 * float((probs.argmax(1) == target).float().mean())
            TemperatureScaling().calibrate(cli.trainer, cli.model)
            scaled = accuracy.evaluate_on_test(cli)
            print(
                f"| {name} | {row['balanced_error']:.1f} | {row['ece']:.1f} | {confidence:.1f} | "
                f"{correct:.1f} | {cli.model.temperature:.2f} | {scaled['ece']:.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
