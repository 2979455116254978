"""Speed of every ltlight loss relative to the PyTorch reference it replaces.

Forward + backward time of each loss divided by that of ``F.cross_entropy`` (softmax family) or
``F.binary_cross_entropy_with_logits`` (sigmoid family) on the same logits, at N = 1024, C = 100
and at N = 128, C = 10 (the small-batch regime where per-kernel overhead dominates, as in GPU
training), every softmax loss with the DRW class weight on. Wall time with the threads a user
has (default 2). Reference and candidate are timed alternately in one run, so machine load
affects both alike, and the ratio is the median of many paired measurements. LDAM runs on
cosine-range logits as used with a normalised head (``30·N(0, 1)`` logits would measure float32
denormals instead).
The GHM-C row "loop" is the common implementation (mmdetection's ``GHMC``: a Python loop over
the bins with an ``.item()`` per bin), to show the vectorised version's speed-up.

Run: ``python benchmarks/losses.py`` (``--repeats 600`` for tighter medians, ``--threads 1`` to
time one thread by its CPU time, which other load on the machine barely moves).

``--step-share``: the cost as training sees it. A loss's forward + backward at a training step's
logits (N = 128, C = 10), against the whole training step — forward, loss, backward, SGD — of the
CIFAR ResNet-32 recipe and of a small ViT at batch 128 (``benchmarks/steps.py``; the step's median
over ``--step-repeats`` steps with ``F.cross_entropy``): each loss's share of the step next to
cross-entropy's, and the step's length with the loss relative to the step with cross-entropy,
``(T − t_CE + t_loss) / T``. A measured check of that last figure: whole steps with the costliest
loss and with cross-entropy in turns. ``--compile`` adds each loss through ``torch.compile``
against itself eager (the per-call diagnostic, paired as above).
"""

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ltlight.losses import (
    BalancedSoftmaxLoss,
    CrossEntropyLoss,
    FocalLoss,
    GHMCLoss,
    LDAMHingeLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    SigmoidFocalLoss,
    TaiLrLoss,
    inverse_frequency,
)

SOFTMAX_GOAL = 1.5  # × cross-entropy
GHM_GOAL = 4.0  # × BCE-with-logits
GHM_SPEEDUP_GOAL = 3.0  # × faster than the loop
#: (N, C): a CIFAR-100 batch, and a small batch where per-kernel overhead dominates.
SIZES = ((1024, 100), (128, 10))


class LoopGHMC(nn.Module):
    """mmdetection's ``GHMC`` as commonly copied: one Python iteration and ``.item()`` per bin."""

    def __init__(self, bins: int = 10, momentum: float = 0.0) -> None:
        super().__init__()
        self.bins = bins
        self.momentum = momentum
        edges = torch.arange(bins + 1).float() / bins
        edges[-1] += 1e-6
        self.register_buffer("edges", edges)
        self.register_buffer("acc_sum", torch.zeros(bins))

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        edges = self.edges
        weights = torch.zeros_like(pred)
        g = torch.abs(pred.sigmoid().detach() - target)
        tot = pred.numel()
        n = 0
        for i in range(self.bins):
            inds = (g >= edges[i]) & (g < edges[i + 1])
            num_in_bin = inds.sum().item()
            if num_in_bin > 0:
                if self.momentum > 0:
                    self.acc_sum[i] = (
                        self.momentum * self.acc_sum[i] + (1 - self.momentum) * num_in_bin
                    )
                    weights[inds] = tot / self.acc_sum[i]
                else:
                    weights[inds] = tot / num_in_bin
                n += 1
        if n > 0:
            weights = weights / n
        loss = F.binary_cross_entropy_with_logits(pred, target, weights, reduction="sum")
        return loss / tot


def _timer(device: torch.device) -> Callable[[], float]:
    if device.type == "cuda":

        def now() -> float:
            torch.cuda.synchronize(device)
            return time.perf_counter()

        return now
    # One intra-op thread measured by its own CPU time: other load on the machine (CI, other
    # jobs) then barely moves the numbers, where wall-clock medians drift by tens of percent.
    return time.thread_time if torch.get_num_threads() == 1 else time.perf_counter


def paired_times(
    reference: Callable[[Tensor], Tensor],
    candidate: Callable[[Tensor], Tensor],
    logits: Tensor,
    repeats: int,
    warmup: int = 20,
) -> tuple[float, float, float]:
    """Median forward+backward seconds of reference and candidate, and the median ratio."""
    now = _timer(logits.device)

    def run(fn: Callable[[Tensor], Tensor]) -> float:
        x = logits.detach().requires_grad_(True)
        start = now()
        (grad,) = torch.autograd.grad(fn(x), x)
        end = now()
        del grad
        return end - start

    for _ in range(warmup):
        run(reference)
        run(candidate)
    ref_times, cand_times, ratios = [], [], []
    for i in range(repeats):
        # alternate which goes first, so neither always sees a warm cache
        if i % 2:
            t_cand, t_ref = run(candidate), run(reference)
        else:
            t_ref, t_cand = run(reference), run(candidate)
        ref_times.append(t_ref)
        cand_times.append(t_cand)
        ratios.append(t_cand / t_ref)
    return statistics.median(ref_times), statistics.median(cand_times), statistics.median(ratios)


def floor_rows(target: Tensor, weight: Tensor) -> list[tuple[str, Callable, Tensor | None]]:
    """Plain-torch references: the least a loss of each form can cost over ``F.cross_entropy``.

    ``nn.CrossEntropyLoss`` is torch's own Module around the same kernel (the cost of a Module
    call); ``F.cross_entropy(30·z)`` adds one elementwise op and its backward (LDAM's scale); the
    plain focal loss is the usual few-line implementation (``p_t = exp(−CE)``, weighted mean),
    the fewest autograd ops a focal loss with a class weight needs in eager PyTorch.
    """
    module = nn.CrossEntropyLoss(weight=weight)

    def scaled(x: Tensor) -> Tensor:
        return F.cross_entropy(30.0 * x, target, weight=weight)

    def plain_focal(x: Tensor) -> Tensor:
        nll = F.cross_entropy(x, target, reduction="none")
        per_sample = (1 - torch.exp(-nll)) ** 2 * nll
        w = weight[target]
        return (per_sample * w).sum() / w.sum()

    return [
        ("torch nn.CrossEntropyLoss + DRW", lambda x: module(x, target), None),
        ("F.cross_entropy(30·z) + DRW", scaled, None),
        ("plain-torch focal γ=2 + DRW", plain_focal, None),
    ]


class Case:
    """Logits and targets of one size (N, C), and every softmax loss with the DRW weight."""

    def __init__(self, device: torch.device, n: int, c: int) -> None:
        gen = torch.Generator().manual_seed(0)
        self.device = device
        counts = [max(1, round(500 * 0.01 ** (j / (c - 1)))) for j in range(c)]  # ratio 100
        self.target = torch.randint(0, c, (n,), generator=gen).to(device)
        self.gaussian = torch.randn(n, c, generator=gen).to(device)
        cosine = F.normalize(torch.randn(n, c, generator=gen), dim=1).mul(3).clamp(-1, 1)
        self.cosine = cosine.to(device)
        self.onehot = F.one_hot(self.target, c).float()
        self.drw_weight = inverse_frequency(counts)
        self.softmax_rows = softmax_rows(counts, self.drw_weight, self.gaussian, self.cosine)

    def ce(self, x: Tensor) -> Tensor:
        return F.cross_entropy(x, self.target)

    def bce(self, x: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(x, self.onehot)

    def loss_fn(self, loss: nn.Module, target: Tensor | None = None) -> Callable[[Tensor], Tensor]:
        loss = loss.to(self.device)
        target = self.target if target is None else target
        return lambda x: loss(x, target)


def softmax_rows(counts, drw_weight, gaussian, cosine) -> list[tuple[str, nn.Module, Tensor]]:
    """``(name, loss, logits)`` of every softmax loss (and plain CE) on the logits it sees."""
    return [
        ("CrossEntropyLoss", CrossEntropyLoss(), gaussian),
        ("CrossEntropyLoss", CrossEntropyLoss(weight=drw_weight), gaussian),
        ("LDAMLoss (cosine logits)", LDAMLoss(counts, weight=drw_weight), cosine),
        ("LDAMHingeLoss", LDAMHingeLoss(counts, weight=drw_weight), gaussian),
        ("FocalLoss γ=2", FocalLoss(weight=drw_weight), gaussian),
        ("FocalLoss γ=2, alpha", FocalLoss(alpha=drw_weight.tolist(), weight=drw_weight), gaussian),
        ("TaiLrLoss γ=0.5", TaiLrLoss(0.5, weight=drw_weight), gaussian),
        ("TaiLrLoss γ=0.5, threshold", TaiLrLoss(0.5, 0.1, weight=drw_weight), gaussian),
        ("LogitAdjustedLoss", LogitAdjustedLoss(counts, weight=drw_weight), gaussian),
        ("BalancedSoftmaxLoss", BalancedSoftmaxLoss(counts, weight=drw_weight), gaussian),
    ]


def benchmark(device: torch.device, repeats: int, n: int = 1024, c: int = 100) -> None:
    case = Case(device, n, c)
    ce, bce, loss_fn, target, onehot = case.ce, case.bce, case.loss_fn, case.target, case.onehot
    gaussian, drw_weight = case.gaussian, case.drw_weight
    print(f"\n{device.type.upper()}  (N={n}, C={c}, {repeats} paired repeats", end="")
    if device.type == "cpu":
        clock = "thread CPU time" if torch.get_num_threads() == 1 else "wall clock"
        print(f", {torch.get_num_threads()} thread(s), {clock})")
    else:
        print(f", {torch.cuda.get_device_name(device)})")
    header = f"{'loss':<34}{'ref µs':>9}{'loss µs':>10}{'ratio':>8}  {'goal':<10}{'':>6}"
    print(header)
    print("-" * len(header))

    def row(
        name: str, ref_s: float, cand_s: float, ratio: float, goal: str, ok: bool | None
    ) -> None:
        verdict = "" if ok is None else "ok" if ok else "MISS"
        print(
            f"{name:<34}{ref_s * 1e6:>9.0f}{cand_s * 1e6:>10.0f}{ratio:>7.2f}×  {goal:<10}"
            f"{verdict:>6}"
        )

    print("softmax family, reference F.cross_entropy; + DRW: with the DRW class weight")
    for name, loss, logits in case.softmax_rows:
        name += "" if loss.weight is None else " + DRW"
        ref_s, cand_s, ratio = paired_times(ce, loss_fn(loss), logits, repeats)
        row(name, ref_s, cand_s, ratio, f"≤ {SOFTMAX_GOAL}×", ratio <= SOFTMAX_GOAL)

    print("floors in plain torch (no ltlight): what a Module call and extra ops cost here")
    for name, fn, logits in floor_rows(target, drw_weight.to(device)):
        ref_s, cand_s, ratio = paired_times(
            ce, fn, logits if logits is not None else gaussian, repeats
        )
        row(name, ref_s, cand_s, ratio, "-", None)

    print("sigmoid family, reference F.binary_cross_entropy_with_logits")
    ref_s, cand_s, ratio = paired_times(bce, loss_fn(SigmoidFocalLoss(), onehot), gaussian, repeats)
    row("SigmoidFocalLoss", ref_s, cand_s, ratio, "-", None)
    for momentum in (0.0, 0.75):
        ours = loss_fn(GHMCLoss(momentum=momentum), onehot)
        loop = loss_fn(LoopGHMC(momentum=momentum), onehot)
        ref_s, cand_s, ratio = paired_times(bce, ours, gaussian, repeats)
        row(f"GHMCLoss m={momentum}", ref_s, cand_s, ratio, f"≤ {GHM_GOAL}×", ratio <= GHM_GOAL)
        loop_ref_s, loop_s, loop_ratio = paired_times(bce, loop, gaussian, max(repeats // 3, 10))
        row(f"  mmdetection loop m={momentum}", loop_ref_s, loop_s, loop_ratio, "-", None)
        _, _, slowdown = paired_times(ours, loop, gaussian, max(repeats // 3, 10))
        ok = slowdown >= GHM_SPEEDUP_GOAL
        print(
            f"  → vectorised is {slowdown:.1f}× faster than the loop (goal ≥ {GHM_SPEEDUP_GOAL}×)"
            f"{'' if ok else '   MISS'}"
        )


# -- the loss as training sees it -------------------------------------------------------------
def step_seconds(model: str, device: torch.device, steps: int, loss=None) -> list[float]:
    """Seconds of ``steps`` training steps of ``model`` (``benchmarks/steps.py``) with ``loss``
    (default ``F.cross_entropy``), after two untimed ones."""
    from steps import TrainingStep, batch, make_model, time_steps

    images, labels = batch(model, device)
    step = TrainingStep(make_model(model).to(device), loss or F.cross_entropy, images, labels)
    time_steps(step.step, device, 2)
    return time_steps(step.step, device, steps)


def step_share(device: torch.device, repeats: int, steps: int, compile_losses: bool) -> None:
    """Each loss's share of a ResNet-32 and a small-ViT training step, next to cross-entropy's."""
    from steps import MODELS, TrainingStep, batch, make_model, time_steps

    case = Case(device, 128, 10)
    step = {model: statistics.median(step_seconds(model, device, steps)) for model in MODELS}
    print(
        f"\nTraining steps at batch 128 with F.cross_entropy, median of {steps}: "
        + ", ".join(f"{model} {seconds * 1e3:,.0f} ms" for model, seconds in step.items())
    )
    print(
        "| loss + DRW weight (N=128, C=10) | fwd+bwd µs | × F.cross_entropy | "
        + " | ".join(f"share of a {m} step | {m} step / CE step" for m in MODELS)
        + (" | compiled µs | compiled / eager |" if compile_losses else " |")
    )
    print("|---|---:|---:|" + "---:|---:|" * len(MODELS) + ("---:|---:|" if compile_losses else ""))
    rows = [("F.cross_entropy", case.ce, case.gaussian, None)] + [
        (name + ("" if loss.weight is None else " + DRW"), case.loss_fn(loss), logits, loss)
        for name, loss, logits in case.softmax_rows
    ]
    ce_s = paired_times(case.ce, case.ce, case.gaussian, repeats)[0]
    for name, fn, logits, loss in rows:
        _, loss_s, ratio = paired_times(case.ce, fn, logits, repeats)
        cells = [f"{loss_s * 1e6:,.0f}", f"{ratio:.2f}×"]
        for model in MODELS:
            cells += [
                f"{loss_s / step[model]:.3%}",
                f"{(step[model] - ce_s + loss_s) / step[model]:.4f}×",
            ]
        if compile_losses:
            torch.compiler.reset()  # the losses share LongTailLoss.forward: one cache each
            compiled = torch.compile(loss if loss is not None else F.cross_entropy, dynamic=False)
            target = case.target
            _, compiled_s, compiled_ratio = paired_times(
                fn, lambda x, c=compiled, t=target: c(x, t), logits, repeats
            )
            cells += [f"{compiled_s * 1e6:,.0f}", f"{compiled_ratio:.2f}×"]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    # measured, not derived: whole steps with the costliest loss against with cross-entropy
    focal = FocalLoss(alpha=case.drw_weight.tolist(), weight=case.drw_weight).to(device)
    for model in MODELS:
        images, labels = batch(model, device)
        with_ce = TrainingStep(make_model(model).to(device), F.cross_entropy, images, labels)
        with_focal = TrainingStep(make_model(model).to(device), focal, images, labels)
        for warm in (with_ce, with_focal):
            time_steps(warm.step, device, 2)
        pairs = []
        for i in range(steps):  # in turns, each first in every other pair
            first, second = (with_focal, with_ce) if i % 2 else (with_ce, with_focal)
            a, b = time_steps(first.step, device)[0], time_steps(second.step, device)[0]
            pairs.append(b / a if i % 2 == 0 else a / b)
        print(
            f"measured, {model}: a step with FocalLoss γ=2, alpha + DRW / with F.cross_entropy = "
            f"{statistics.median(pairs):.3f}× (median of {steps} pairs; "
            f"range {min(pairs):.3f}–{max(pairs):.3f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="CPU intra-op threads, timed by wall clock (default 2; 1: by thread CPU time)",
    )
    parser.add_argument(
        "--step-share", action="store_true", help="each loss's share of a whole training step"
    )
    parser.add_argument("--step-repeats", type=int, default=8, help="training steps timed")
    parser.add_argument(
        "--compile", action="store_true", help="--step-share: compiled losses against eager"
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: every one here)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    if args.device is not None:
        devices = [torch.device(args.device)]
    for device in devices:
        if args.step_share:
            step_share(device, args.repeats, args.step_repeats, args.compile)
            continue
        for n, c in SIZES:
            benchmark(device, args.repeats, n, c)


if __name__ == "__main__":
    main()
