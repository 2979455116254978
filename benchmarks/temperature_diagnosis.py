"""Why temperature scaling leaves some Fashion-MNIST-LT models miscalibrated: three limits apart.

Trains the accuracy benchmark's models (DigitsNet width 8, 16 epochs, 100 validation images per
class; ``--methods``, default the rows whose ECE TS did not halve at ratio 100) and splits the
balanced test set, stratified by class, into halves A and B. Every ECE below is measured on B:

* ``TS (val)`` — ``T`` fitted by NLL on the 1,000 validation images (what ltlight ships);
* ``TS (A)`` — ``T`` fitted by NLL on half A (5,000 images from the test distribution): if this
  is much better than ``TS (val)``, the validation split is too small to pin ``T`` down;
* ``best T`` — the single ``T`` with the lowest ECE on B itself (an oracle): the floor of any
  temperature, whatever it is fitted on. If it stays high, one scalar cannot calibrate the model;
* ``BCTS (A)`` — ``T`` plus one bias per class (bias-corrected temperature scaling, Alexandari,
  Kundaje, Shrikumar, ICML 2020) fitted by NLL on A: a class-dependent correction (it may change
  the argmax, so it is a diagnosis here, not a post-hoc option of ltlight).

Run: ``python benchmarks/temperature_diagnosis.py [--seed 0] [--ratio 100]`` (~2 min per trained
model on 2 cores).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import importlib.util
import logging
import math
import tempfile
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: The rows of benchmarks/README.md's ratio-100 table whose ECE TS did not halve, and CE + LA.
DIAGNOSED = {
    "ldam_drw": ("ldam_drw", None),
    "ce + LA": ("ce", "logit_adjustment"),
    "ce + τ-norm": ("ce", "tau_norm"),
    "mislas_stage1": ("mislas_stage1", None),
}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stratified_halves(target, seed: int):
    """Indices of two halves of the test set with every class split evenly between them."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    first, second = [], []
    for c in target.unique().tolist():
        members = (target == c).nonzero().flatten()
        members = members[torch.randperm(members.numel(), generator=generator)]
        first.append(members[: members.numel() // 2])
        second.append(members[members.numel() // 2 :])
    return torch.cat(first), torch.cat(second)


def ece(logits, target, n_bins: int = 15) -> float:
    """Expected calibration error (%) of ``softmax(logits)``, ``n_bins`` equal-width bins."""
    from ltlight.metrics import long_tail_metrics

    probs = logits.softmax(1).float()
    return 100.0 * float(long_tail_metrics(probs, target, probs.shape[1], n_bins=n_bins)["ece"])


def fit_bias_corrected_temperature(logits, target, max_iter: int = 200):
    """``(T, b)`` minimising the NLL of ``softmax(z / T + b)`` (LBFGS, float64)."""
    import torch
    import torch.nn.functional as F

    z = logits.double()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [log_t, bias], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe"
    )

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(z / log_t.exp() + bias, target)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.exp()), bias.detach()


def adjusted_logits(trainer, module, loader):
    """The logits ``module`` predicts with before ``T`` (float64), and the targets."""
    from ltlight.callbacks.posthoc.base import collect_outputs

    raw, target, _ = collect_outputs(trainer, module, loader)
    return module.adjusted_logits(raw.to(module.device)).double().cpu(), target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ratio", type=float, default=100.0)
    parser.add_argument("--methods", nargs="+", default=list(DIAGNOSED), choices=list(DIAGNOSED))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    accuracy, recipe = _load("accuracy"), _load("mislas_ablation").COMMON
    from ltlight.callbacks import PostHocLogitAdjustment, TauNormalization
    from ltlight.callbacks.posthoc.base import validation_loader
    from ltlight.callbacks.posthoc.temperature_scaling import fit_temperature

    configs = accuracy.ROOT / "configs" / "fashion_mnist_lt"
    print(
        f"# Temperature scaling, Fashion-MNIST-LT ratio {args.ratio:g}, seed {args.seed}: "
        "ECE (%) on test half B"
    )
    print("| model | error | as trained | TS (val) | T | TS (A) | T | best T | T | BCTS (A) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    trained: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="ltlight-ts-") as root:
        for name in args.methods:
            method, posthoc = DIAGNOSED[name]
            if method not in trained:
                config = configs / f"{method}.yaml"
                trained[method] = accuracy.run_one(
                    config, args.ratio, args.seed, 16, root, args.threads, recipe
                )
            cli = trained[method]
            trainer, module = cli.trainer, cli.model
            module.set_logit_adjustment(0.0)
            if posthoc == "logit_adjustment":
                PostHocLogitAdjustment().calibrate(trainer, module)
            elif posthoc == "tau_norm":
                TauNormalization().calibrate(trainer, module)
            val_z, val_y = adjusted_logits(
                trainer, module, validation_loader(trainer, "the diagnosis")
            )
            test_z, test_y = adjusted_logits(trainer, module, cli.datamodule.test_dataloader())
            half_a, half_b = stratified_halves(test_y, args.seed)
            z_a, y_a, z_b, y_b = test_z[half_a], test_y[half_a], test_z[half_b], test_y[half_b]
            t_val = fit_temperature(val_z, val_y)
            t_a = fit_temperature(z_a, y_a)
            grid = [math.exp(x / 200) for x in range(-400, 601)]  # T from 0.14 to 20
            best_ece, t_best = min((ece(z_b / t, y_b), t) for t in grid)
            t_bcts, bias = fit_bias_corrected_temperature(z_a, y_a)
            error = 100.0 * float((z_b.argmax(1) != y_b).double().mean())
            print(
                f"| {name} | {error:.1f} | {ece(z_b, y_b):.1f} | {ece(z_b / t_val, y_b):.1f} | "
                f"{t_val:.2f} | {ece(z_b / t_a, y_b):.1f} | {t_a:.2f} | {best_ece:.1f} | "
                f"{t_best:.2f} | {ece(z_b / t_bcts + bias, y_b):.1f} |",
                flush=True,
            )
            if posthoc == "tau_norm":  # τ-norm rewrote the classifier: train CE again if needed
                trained.pop(method)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
