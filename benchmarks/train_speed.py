"""Training images/s of ``ltlight fit`` against the official LDAM-DRW pipeline, side by side.

Both train the same network — ResNet-32 with the cosine (``NormedLinear``) head, LDAM loss
(``max_m`` 0.5, ``s`` 30), SGD (lr 0.1, momentum 0.9, weight decay 2e-4), batch 128 — on
CIFAR-10-LT's 12,406 training images (ratio 100; the real CIFAR-10 if ``--data-dir`` holds
``cifar-10-batches-py``, else synthetic uint8 images of the same size and class counts, and the
table says which):

* **ltlight**: :class:`~ltlight.LongTailModule` fed by the datamodule's device-resident loader
  (``CIFAR10LTDataModule``: the split as one uint8 tensor, each batch cropped, flipped and
  normalised at once) under Lightning's ``Trainer`` — what ``ltlight fit`` runs (logger, progress
  bar and checkpoints off);
* **official**: the LDAM-DRW code's pipeline re-created: PIL images through torchvision's
  ``RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize`` per sample in a
  ``DataLoader(batch_size=128, shuffle=True, num_workers=2, pin_memory=True)``, a plain loop with
  its per-batch bookkeeping (``loss.item()``, top-1/top-5 accuracy by ``topk``, ``AverageMeter``
  updates, the progress line every 10 batches) and its LDAM loss (one-hot margin, ``s·x``).

Each measurement runs in its own subprocess (clean peak RSS, no shared caches); the pipelines
alternate (ltlight, official, ltlight, official, …) so machine load affects them alike. A
measurement trains ``--warmup`` steps untimed, then times ``--steps`` steps, data loading
included. The table gives median images/s, the ratio, and peak memory: host RSS of the main
process and of the largest loader worker (``getrusage``), and on a GPU
``torch.cuda.max_memory_allocated``. CPU goal: ltlight ≥ 1.2× the official loop.

OpenMP: on a machine whose cores other processes use, torch's OpenMP threads busy-wait (spin)
between parallel regions and fight each other and the loader workers; ``OMP_WAIT_POLICY=PASSIVE``
makes them sleep instead. ``--omp-wait-policy both`` measures both pipelines under both policies.

ltlight runs with ``channels_last=True`` (a YAML setting of the module; ``--no-channels-last``
turns it off): oneDNN's convolutions are faster in that layout on CPUs as well as on GPUs. On a
GPU (``--device cuda``) it also uses bf16 autocast (``precision "bf16-mixed"``, ``--bf16``), and
optionally ``--compile`` (``torch.compile`` of the backbone). The official loop stays as published
(float32, contiguous). ``--paper-schedule`` times the whole LDAM-DRW
schedule with ltlight — 200 epochs (warm-up 5, lr ×0.01 at 160 and 180, DRW from 160),
validation on the 10,000 test images every epoch — and reports its wall time and final error;
the official pipeline's time for the same schedule is its measured epoch time (training and
validation) × the number of epochs. Every GPU path also runs on the CPU (the smoke test uses
``--device cpu --paper-schedule --epochs 1 --images 256``; ``--bf16`` runs on the CPU too, but
bf16 convolutions there are very slow without native bf16 instructions).

``--compile-table``: what ``LongTailModule(compile=True)`` buys — for the CIFAR ResNet-32 recipe and
a small ViT (``benchmarks/steps.py``), training steps at batch 128 of the eager model and of the
same model through :class:`~ltlight.compiled.CompiledCall` (``torch.compile``, static shapes), in
turns (eager, compiled, eager, …) after ``--warmup`` steps each; median images/s of each, their
ratio, and apart the first compiled step (the compiling, with Inductor's caches off, as on a
machine's first run) and how many steps repay it. Each model in its own process.

Run: ``python benchmarks/train_speed.py`` (CPU, a few minutes), ``--device cuda --paper-schedule``,
``--compile-table`` (CPU: ~5 minutes, most of it compiling).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

CIFAR10_LT_IMAGES = 12406
BATCH_SIZE = 128
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)  # the official code's values


# -- the data both pipelines train on ---------------------------------------------------------
def make_datamodule(data_dir: str | None, images: int | None, batch_size: int, eval_batch: int):
    """CIFAR-10-LT (ratio 100): the real one from ``data_dir`` if there, else synthetic.

    ``images`` (for smoke tests) keeps only the first ``images`` training and test images.
    """
    import torch

    from ltlight.data import CIFAR10LTDataModule

    real = data_dir is not None and os.path.isdir(os.path.join(data_dir, "cifar-10-batches-py"))

    class BenchmarkCIFAR10LT(CIFAR10LTDataModule):
        def prepare_data(self) -> None:
            pass

        def load_split(self, train: bool):
            if real:
                data, labels = super().load_split(train)
            else:  # the real size and class counts, random pixels
                per_class = 5000 if train else 1000
                generator = torch.Generator().manual_seed(int(train))
                data = torch.randint(
                    0, 256, (10 * per_class, 3, 32, 32), dtype=torch.uint8, generator=generator
                )
                labels = torch.arange(10).repeat_interleave(per_class)
            return data, labels

        def setup(self, stage=None) -> None:
            super().setup(stage)
            if images is not None:  # smoke tests: a random few images of every class
                for name in ("train_data", "test_data"):
                    data = getattr(self, name)
                    if data is not None and len(data[0]) > images:
                        keep = torch.randperm(len(data[0]), generator=torch.Generator())[:images]
                        setattr(self, name, tuple(t[keep] for t in data))

    datamodule = BenchmarkCIFAR10LT(
        data_dir=data_dir or "data",
        imbalance_ratio=100,
        batch_size=batch_size,
        eval_batch_size=eval_batch,
        download=False,
    )
    source = "real CIFAR-10-LT" if real else "synthetic CIFAR-10-LT-sized data"
    return datamodule, source


def peak_rss_mib() -> dict[str, float]:
    """Peak resident memory of this process and of its largest finished child, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"rss_main_mib": own, "rss_worker_mib": children}


# -- (a) ltlight -----------------------------------------------------------------------------
def measure_ltlight(args: argparse.Namespace) -> dict:
    import lightning as L
    import torch

    from ltlight import LongTailModule
    from ltlight.losses import LDAMLoss
    from ltlight.models import resnet32

    torch.manual_seed(0)
    datamodule, source = make_datamodule(args.data_dir, args.images, BATCH_SIZE, args.eval_batch)
    cuda = args.device == "cuda"
    bf16 = args.bf16 if args.bf16 is not None else cuda
    module = LongTailModule(
        resnet32(10, normed=True),
        loss=LDAMLoss(max_m=0.5, s=30.0),
        channels_last=args.channels_last,
        compile=args.compile,
    )
    stamps: list[float] = []

    class Clock(L.Callback):
        """Time from the end of the last warm-up step to the end of the last timed step."""

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if batch_idx in (args.warmup - 1, args.warmup + args.steps - 1):
                if cuda:
                    torch.cuda.synchronize()
                stamps.append(time.perf_counter())

    trainer = L.Trainer(
        accelerator="gpu" if cuda else "cpu",
        devices=1,
        precision="bf16-mixed" if bf16 else "32-true",
        max_epochs=1,
        limit_train_batches=args.warmup + args.steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Clock()],
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(module, datamodule=datamodule)
    if len(stamps) != 2:
        raise RuntimeError(
            f"an epoch has too few batches for --warmup {args.warmup} + --steps {args.steps}"
        )
    result = {
        "images_per_s": args.steps * BATCH_SIZE / (stamps[1] - stamps[0]),
        "source": source,
        **peak_rss_mib(),
    }
    if cuda:
        result["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


# -- (b) the official LDAM-DRW pipeline ------------------------------------------------------
class AverageMeter:
    """The official code's running average."""

    def __init__(self, name: str, fmt: str = ":f") -> None:
        self.name, self.fmt = name, fmt
        self.val = self.avg = self.sum = self.count = 0

    def update(self, val: float, n: int = 1) -> None:
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


def official_accuracy(output, target, topk=(1,)):
    """The official code's ``accuracy``: top-k precision in %."""
    import torch

    with torch.no_grad():
        maxk = max(topk)
        batch_size = target.size(0)
        _, pred = output.topk(maxk, 1, True, True)
        pred = pred.t()
        correct = pred.eq(target.view(1, -1).expand_as(pred))
        res = []
        for k in topk:
            correct_k = correct[:k].reshape(-1).float().sum(0, keepdim=True)
            res.append(correct_k.mul_(100.0 / batch_size))
        return res


def official_ldam_loss(class_counts, max_m: float = 0.5, s: float = 30.0, device="cpu"):
    """The official ``LDAMLoss`` module, as published (one-hot margin subtracted, then ``s·x``)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    class LDAMLoss(nn.Module):
        def __init__(self, cls_num_list, max_m=0.5, weight=None, s=30):
            super().__init__()
            m_list = 1.0 / np.sqrt(np.sqrt(cls_num_list))
            m_list = m_list * (max_m / np.max(m_list))
            self.m_list = torch.tensor(m_list, dtype=torch.float32, device=device)
            self.s = s
            self.weight = weight

        def forward(self, x, target):
            index = torch.zeros_like(x, dtype=torch.uint8)
            index.scatter_(1, target.data.view(-1, 1), 1)
            index_float = index.float()
            batch_m = torch.matmul(self.m_list[None, :], index_float.transpose(0, 1))
            batch_m = batch_m.view((-1, 1))
            x_m = x - batch_m
            output = torch.where(index.bool(), x_m, x)
            return F.cross_entropy(self.s * output, target, weight=self.weight)

    return LDAMLoss(class_counts, max_m=max_m, s=s)


class PILDataset:
    """The official ``IMBALANCECIFAR10.__getitem__``: uint8 HWC array → PIL image → transform."""

    def __init__(self, images, labels, transform) -> None:
        self.data, self.targets, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        from PIL import Image

        img = Image.fromarray(self.data[index])
        return self.transform(img), self.targets[index]


def official_loaders(args: argparse.Namespace):
    import torch
    from torchvision import transforms

    datamodule, source = make_datamodule(args.data_dir, args.images, BATCH_SIZE, args.eval_batch)
    datamodule.setup("fit")
    to_hwc = lambda t: t.permute(0, 2, 3, 1).contiguous().numpy()  # noqa: E731
    train_images, train_labels = datamodule.train_data
    test_images, test_labels = datamodule.test_data
    transform_train = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    transform_val = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    pin = args.device == "cuda"
    train = torch.utils.data.DataLoader(
        PILDataset(to_hwc(train_images), train_labels.tolist(), transform_train),
        batch_size=BATCH_SIZE,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=pin,
    )
    val = torch.utils.data.DataLoader(
        PILDataset(to_hwc(test_images), test_labels.tolist(), transform_val),
        batch_size=100,  # the official validation batch
        shuffle=False,
        num_workers=args.workers,
        pin_memory=pin,
    )
    return train, val, datamodule.class_counts, source


def official_train_steps(model, criterion, optimizer, loader, device, max_steps, on_step=None):
    """The official ``train()`` loop body, for at most ``max_steps`` batches."""

    batch_time, data_time = AverageMeter("Time", ":6.3f"), AverageMeter("Data", ":6.3f")
    losses, top1, top5 = AverageMeter("Loss", ":.4e"), AverageMeter("Acc@1"), AverageMeter("Acc@5")
    model.train()
    end = time.time()
    lines = []
    for i, (input, target) in enumerate(loader):
        if i == max_steps:
            break
        data_time.update(time.time() - end)
        input = input.to(device, non_blocking=True)
        target = target.to(device, non_blocking=True)
        output = model(input)
        loss = criterion(output, target)
        acc1, acc5 = official_accuracy(output, target, topk=(1, 5))
        losses.update(loss.item(), input.size(0))
        top1.update(acc1[0], input.size(0))
        top5.update(acc5[0], input.size(0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        batch_time.update(time.time() - end)
        end = time.time()
        if i % 10 == 0:  # the official print_freq; kept as a string, not printed
            lines.append(
                f"[{i}/{len(loader)}]\tTime {batch_time.val:.3f} ({batch_time.avg:.3f})\t"
                f"Data {data_time.val:.3f} ({data_time.avg:.3f})\t"
                f"Loss {losses.val:.4f} ({losses.avg:.4f})\t"
                f"Prec@1 {top1.val:.3f} ({top1.avg:.3f})\tPrec@5 {top5.val:.3f} ({top5.avg:.3f})"
            )
        if on_step is not None:
            on_step(i)
    return i


def official_validate(model, loader, device) -> float:
    """The official ``validate()``: per-batch predictions gathered on the host; top-1 error."""
    import numpy as np
    import torch

    model.eval()
    all_preds, all_targets = [], []
    with torch.no_grad():
        for input, target in loader:
            input = input.to(device, non_blocking=True)
            target = target.to(device, non_blocking=True)
            output = model(input)
            _, pred = torch.max(output, 1)
            all_preds.extend(pred.cpu().numpy())
            all_targets.extend(target.cpu().numpy())
    return 100.0 * float(np.mean(np.array(all_preds) != np.array(all_targets)))


def official_model(class_counts, device):
    import torch

    from ltlight.models import resnet32

    model = resnet32(10, normed=True).to(device)  # the same architecture as the official resnet32
    criterion = official_ldam_loss(class_counts, device=device)
    optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=2e-4)
    return model, criterion, optimizer


def measure_official(args: argparse.Namespace) -> dict:
    import torch

    torch.manual_seed(0)
    device = torch.device(args.device)
    train, _, class_counts, source = official_loaders(args)
    model, criterion, optimizer = official_model(class_counts, device)
    stamps: list[float] = []

    def clock(i: int) -> None:
        if i in (args.warmup - 1, args.warmup + args.steps - 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    official_train_steps(
        model, criterion, optimizer, train, device, args.warmup + args.steps, on_step=clock
    )
    if len(stamps) != 2:
        raise RuntimeError(
            f"an epoch has too few batches for --warmup {args.warmup} + --steps {args.steps}"
        )
    result = {
        "images_per_s": args.steps * BATCH_SIZE / (stamps[1] - stamps[0]),
        "source": source,
        **peak_rss_mib(),  # workers have exited: the loop broke out and the iterator is gone
    }
    if device.type == "cuda":
        result["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


# -- the paper schedule ----------------------------------------------------------------------
def paper_schedule_ltlight(args: argparse.Namespace) -> dict:
    """The whole LDAM-DRW recipe with ltlight, validation every epoch; wall time and error."""
    import lightning as L
    import torch

    from ltlight import LongTailModule
    from ltlight.callbacks import DeferredReweighting
    from ltlight.losses import LDAMLoss
    from ltlight.models import resnet32
    from ltlight.optim import WarmupMultiStepLR

    torch.manual_seed(0)
    cuda = args.device == "cuda"
    bf16 = args.bf16 if args.bf16 is not None else cuda
    factor = args.epochs / 200
    datamodule, source = make_datamodule(args.data_dir, args.images, BATCH_SIZE, args.eval_batch)
    module = LongTailModule(  # the paper's schedule as fractions of the run: 160, 180 of 200
        resnet32(10, normed=True),
        loss=LDAMLoss(max_m=0.5, s=30.0),
        lr_scheduler=lambda optimizer: WarmupMultiStepLR(
            optimizer, warmup_epochs=max(1, round(5 * factor)), milestones=[0.8, 0.9]
        ),
        channels_last=args.channels_last,
        compile=args.compile,
        callbacks=[DeferredReweighting(start_epoch=0.8)],
    )
    trainer = L.Trainer(
        accelerator="gpu" if cuda else "cpu",
        devices=1,
        precision="bf16-mixed" if bf16 else "32-true",
        max_epochs=args.epochs,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    metrics = trainer.callback_metrics
    return {
        "wall_s": wall,
        # training images over the whole wall time (validation every epoch included)
        "images_per_s": args.epochs * len(datamodule.train_data[1]) / wall,
        "epochs": args.epochs,
        "error": 100.0 * float(metrics["val/error"]),
        "balanced_error": 100.0 * float(metrics["val/balanced_error"]),
        "source": source,
        **peak_rss_mib(),
        **({"gpu_peak_mib": torch.cuda.max_memory_allocated() / 2**20} if cuda else {}),
    }


def paper_schedule_official(args: argparse.Namespace) -> dict:
    """The official pipeline's time for one epoch (train + validate); × epochs for the schedule."""
    import torch

    torch.manual_seed(0)
    device = torch.device(args.device)
    train, val, class_counts, source = official_loaders(args)
    model, criterion, optimizer = official_model(class_counts, device)
    epoch_times = []
    for _ in range(args.official_epochs):
        start = time.perf_counter()
        official_train_steps(model, criterion, optimizer, train, device, len(train))
        error = official_validate(model, val, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_times.append(time.perf_counter() - start)
    # the first epoch pays cuDNN autotuning and worker start-up like every later epoch
    epoch = statistics.median(epoch_times)
    return {
        "epoch_s": epoch,
        "wall_s": epoch * args.epochs,
        "epochs_measured": args.official_epochs,
        "error": error,
        "source": source,
        **peak_rss_mib(),
    }


# -- compiled against eager ----------------------------------------------------------------------
def compile_comparison(args: argparse.Namespace) -> dict:
    """Eager and compiled training steps of ``--compile-model``, in turns; seconds of each."""
    import copy

    import torch
    from steps import TrainingStep, batch, make_model, recipe_loss, time_steps

    from ltlight.compiled import CompiledCall

    device = torch.device(args.device)
    bf16 = args.bf16 if args.bf16 is not None else device.type == "cuda"
    eager_model = make_model(args.compile_model).to(device)
    compiled_model = copy.deepcopy(eager_model)
    images, labels = batch(args.compile_model, device)
    loss = recipe_loss(args.compile_model).to(device)
    eager = TrainingStep(eager_model, loss, images, labels, bf16=bf16)
    call = CompiledCall(compiled_model)
    compiled = TrainingStep(compiled_model, loss, images, labels, forward=call, bf16=bf16)
    time_steps(eager.step, device, args.warmup)
    first = time_steps(compiled.step, device)[0]
    if call.failed:
        raise RuntimeError(f"{args.compile_model} did not compile: {call.failed}")
    time_steps(compiled.step, device, max(0, args.warmup - 1))
    eager_s, compiled_s = [], []
    for _ in range(args.steps):
        eager_s += time_steps(eager.step, device)
        compiled_s += time_steps(compiled.step, device)
    return {"first_compiled_s": first, "eager_s": eager_s, "compiled_s": compiled_s}


def compile_table(args: argparse.Namespace, argv: list[str], policy: str) -> int:
    from steps import BATCH_SIZE as STEP_BATCH

    print(
        "| model (batch 128) | eager images/s | compiled images/s | compiled / eager | "
        "first compiled step s | steps to repay it |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for model in args.compile_models:
        # Inductor's caches off: the first step compiles as in a run's first time on a machine
        cold = {} if args.warm_cache else {"TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"}
        found = run_worker("compile", args, [*argv, "--compile-model", model], policy, **cold)
        eager = statistics.median(found["eager_s"])
        compiled = statistics.median(found["compiled_s"])
        extra = found["first_compiled_s"] - compiled
        repay = f"{extra / (eager - compiled):,.0f}" if compiled < eager else "never"
        print(
            f"| {model} | {STEP_BATCH / eager:.1f} | {STEP_BATCH / compiled:.1f} | "
            f"{eager / compiled:.2f}× | {found['first_compiled_s']:.1f} | {repay} |",
            flush=True,
        )
    print(
        f"{args.steps} steps each in turns after {args.warmup}; "
        f"finished at load {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    return 0


# -- the driver ------------------------------------------------------------------------------
WORKERS = {
    "ltlight": measure_ltlight,
    "official": measure_official,
    "paper-ltlight": paper_schedule_ltlight,
    "paper-official": paper_schedule_official,
    "compile": compile_comparison,
}


def run_worker(
    kind: str, args: argparse.Namespace, argv: list[str], policy: str, **extra_env: str
) -> dict:
    """One measurement in a fresh interpreter (its own peak RSS, its own OpenMP settings)."""
    env = dict(os.environ, **extra_env)
    if policy == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    else:
        env.pop("OMP_WAIT_POLICY", None)
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", kind]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} measurement failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> str:
    import torch

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = f"torch {torch.__version__}, nproc {os.cpu_count()}, load {load}"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name()}"
    return text


def fmt(value: float | None, spec: str = ".0f") -> str:
    return "—" if value is None else format(value, spec)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--data-dir", default=None, help="a folder holding cifar-10-batches-py")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    parser.add_argument("--repeats", type=int, default=2, help="measurements of each pipeline")
    parser.add_argument("--workers", type=int, default=2, help="the official loader's workers")
    parser.add_argument(
        "--omp-wait-policy",
        default="passive",
        choices=["passive", "default", "both"],
        help="OMP_WAIT_POLICY of the measured processes: PASSIVE, unset, or each in turn",
    )
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ltlight's channels_last setting (default on: ~1.3x faster ResNet-32 steps on "
        "this CPU too)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    parser.add_argument(
        "--compile-table", action="store_true", help="compiled against eager training steps"
    )
    parser.add_argument(
        "--compile-models", nargs="+", default=["resnet32", "vit"], choices=["resnet32", "vit"],
        help="the models of --compile-table",
    )  # fmt: skip
    parser.add_argument("--compile-model", choices=["resnet32", "vit"], help=argparse.SUPPRESS)
    parser.add_argument("--paper-schedule", action="store_true")
    parser.add_argument("--epochs", type=int, default=200, help="epochs of --paper-schedule")
    parser.add_argument(
        "--skip-official", action="store_true", help="--paper-schedule: ltlight's run only"
    )
    parser.add_argument(
        "--warm-cache",
        action="store_true",
        help="--compile-table: keep Inductor's caches (default: off, a machine's first compile)",
    )
    parser.add_argument(
        "--official-epochs", type=int, default=2, help="official epochs timed for the schedule"
    )
    parser.add_argument("--eval-batch", type=int, default=1000, help="ltlight's eval batch")
    parser.add_argument("--images", type=int, default=None, help="keep only this many (tests)")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = make_parser().parse_args(argv)
    if args.worker:
        import warnings

        warnings.filterwarnings("ignore")
        import logging

        logging.getLogger("lightning").setLevel(logging.ERROR)
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        print(json.dumps(WORKERS[args.worker](args)))
        return 0

    policies = ["passive", "default"] if args.omp_wait_policy == "both" else [args.omp_wait_policy]
    print(f"# train_speed: {machine()}; device {args.device}", flush=True)
    if args.paper_schedule:
        return paper_schedule_table(args, argv, policies[0])
    if args.compile_table:
        return compile_table(args, argv, policies[0])
    return pipelines_table(args, argv, policies)


def pipelines_table(args: argparse.Namespace, argv: list[str], policies: list[str]) -> int:
    """ltlight against the official pipeline, ``--repeats`` alternating runs per policy."""
    results: dict[tuple[str, str], list[dict]] = {}
    for repeat in range(args.repeats):
        for policy in policies:
            for kind in ("ltlight", "official"):
                result = run_worker(kind, args, argv, policy)
                results.setdefault((policy, kind), []).append(result)
                print(
                    f"  run {repeat + 1} OMP_WAIT_POLICY={policy:8s} {kind:9s} "
                    f"{result['images_per_s']:8.1f} images/s",
                    flush=True,
                )
    source = next(iter(results.values()))[0]["source"]
    print(
        f"\nResNet-32 (cosine head) + LDAM, batch {BATCH_SIZE}, {source}; ltlight "
        f"channels_last={args.channels_last}, bf16={bool(args.bf16)}; {args.steps} timed "
        f"steps after {args.warmup}, median of {args.repeats} alternating runs; "
        f"finished at load {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        "| OMP_WAIT_POLICY | pipeline | images/s (median) | runs | ratio | peak RSS main MiB "
        "| peak RSS worker MiB | GPU peak MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for policy in policies:
        official = statistics.median(r["images_per_s"] for r in results[(policy, "official")])
        for kind in ("ltlight", "official"):
            rows = results[(policy, kind)]
            speed = statistics.median(r["images_per_s"] for r in rows)
            runs = ", ".join(f"{r['images_per_s']:.0f}" for r in rows)
            worker = max(r["rss_worker_mib"] for r in rows) if kind == "official" else None
            gpu = max(r["gpu_peak_mib"] for r in rows) if "gpu_peak_mib" in rows[0] else None
            print(
                f"| {policy} | {kind} | {speed:.1f} | {runs} | {speed / official:.2f}× | "
                f"{max(r['rss_main_mib'] for r in rows):.0f} | {fmt(worker)} | {fmt(gpu)} |"
            )
    return 0


def paper_schedule_table(args: argparse.Namespace, argv: list[str], policy: str) -> int:
    ours = run_worker("paper-ltlight", args, argv, policy)
    print(
        f"\nLDAM-DRW paper schedule, {args.epochs} epochs with validation every epoch, "
        f"{ours['source']}; images/s: training images over the wall time"
    )
    print("| pipeline | wall s | images/s | error % | peak RSS main MiB | GPU peak MiB | note |")
    print("|---|---|---|---|---|---|---|")
    name = "ltlight, compile=True" if args.compile else "ltlight"
    print(
        f"| {name} | {ours['wall_s']:.1f} | {ours['images_per_s']:,.0f} | {ours['error']:.2f} | "
        f"{ours['rss_main_mib']:.0f} | {fmt(ours.get('gpu_peak_mib'))} | measured |",
        flush=True,
    )
    if args.skip_official:
        return 0
    official = run_worker("paper-official", args, argv, policy)
    print(
        f"| official | {official['wall_s']:.1f} | — | — | {official['rss_main_mib']:.0f} | — | "
        f"{official['epoch_s']:.2f} s/epoch (median of {official['epochs_measured']}) "
        f"× {args.epochs} |"
    )
    print(f"ratio: {official['wall_s'] / ours['wall_s']:.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
