"""Image files: ltlight's file pipeline (Pillow or DALI) against torchvision's ``ImageFolder``.

``python benchmarks/data.py --files`` runs this. On generated JPEGs of ImageNet size (500×375,
photo-like: smooth colour fields plus grain, quality 90; written once to ``--jpeg-dir``) every
pipeline produces the same kind of training batches — Kang et al.'s recipe, RandomResizedCrop 224
+ flip + ColorJitter 0.4 + normalise, batch ``--file-batch-size``:

* **torchvision**: ``ImageFolder`` + ``RandomResizedCrop(224), RandomHorizontalFlip(),
  ColorJitter(0.4, 0.4, 0.4), ToTensor(), Normalize`` per sample (PIL) in a ``DataLoader`` with
  ``--workers`` persistent worker processes;
* **ltlight, Pillow**: ``ImageFolderLTDataModule(decoder="pil")``'s training loader — ``--workers``
  processes decode (Pillow with libjpeg's reduced-size ``draft``), crop, flip and jitter to uint8;
  this process normalises the batch;
* **ltlight, DALI**: ``decoder="dali"`` — this process reads the files and draws the crop boxes,
  ``--workers`` DALI threads decode only each crop's region, this process resizes, jitters and
  normalises (skipped, with a line saying so, when DALI is not installed).

One warm-up epoch each (worker start-up, page cache), then the pipelines take turns epoch by
epoch, so load from other work affects them alike. Per pipeline: median images/s and its ratio to
torchvision; CPU time per image — the CPU seconds of this process and of the pipeline's workers
(``/proc/<pid>/stat``) during its epochs, over the images (what the pipeline costs the machine,
which load from other processes barely moves); and peak memory, the main process's and the sum of
its workers' proportional set size (PSS: pages shared between forked workers counted once),
sampled every 50 ms. torch runs with the threads a user has (``torch.get_num_threads()``).
"""

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import ImageFolder

from ltlight.data import FileDataLoader, ImageFolderLTDataModule

FILE_SPEEDUP_GOAL = 1.5
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RECIPE = "RandomResizedCrop 224 + flip + ColorJitter 0.4 + normalise"


def write_jpegs(folder: str, count: int, classes: int = 10) -> str:
    """``count`` photo-like 500×375 JPEGs in ``folder/<class>/`` (kept if already there)."""
    marker = os.path.join(folder, f".complete-{count}")
    if os.path.exists(marker):
        return folder
    rng = np.random.default_rng(0)
    for i in range(count):
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        field = Image.fromarray(coarse).resize((500, 375), Image.Resampling.BICUBIC)
        pixels = np.asarray(field, dtype=np.int16) + rng.normal(0, 12, (375, 500, 3))
        path = os.path.join(folder, f"class_{i % classes}", f"{i:06d}.jpg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
    open(marker, "w").close()
    return folder


# -- what a pipeline costs: memory and CPU of its processes -------------------------------------
def pss_mib(pid: int) -> float:
    """Proportional set size of a process, MiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (its threads included; 0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loader_worker_pids(loader: DataLoader) -> list[int]:
    # A persistent DataLoader's worker processes (private attribute: a benchmark-only look).
    iterator = getattr(loader, "_iterator", None)
    return [w.pid for w in getattr(iterator, "_workers", [])]


class PeakMemory:
    """Samples the main process's and the given workers' PSS every 50 ms; keeps the peaks."""

    def __init__(self, worker_pids: Callable[[], list[int]]) -> None:
        self.worker_pids = worker_pids
        self.main = self.workers = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.main = max(self.main, pss_mib(os.getpid()))
            self.workers = max(self.workers, sum(pss_mib(p) for p in self.worker_pids()))

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# -- the pipelines -------------------------------------------------------------------------------
def torchvision_loader(root: str, args: argparse.Namespace) -> DataLoader:
    transform = transforms.Compose(
        [
            transforms.RandomResizedCrop(224),
            transforms.RandomHorizontalFlip(),
            transforms.ColorJitter(0.4, 0.4, 0.4),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    return DataLoader(
        ImageFolder(root, transform=transform),
        batch_size=args.file_batch_size,
        shuffle=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        pin_memory=args.device == "cuda",
    )


def ltlight_loader(root: str, args: argparse.Namespace, decoder: str) -> FileDataLoader:
    """What ``ImageFolderLTDataModule(...).train_dataloader()`` builds, on ``--device``."""
    datamodule = ImageFolderLTDataModule(
        train=root, batch_size=args.file_batch_size, num_workers=args.workers, decoder=decoder
    )
    train = datamodule.splits["train"]
    return FileDataLoader(
        datamodule.make_dataset(train, train=True, size=224, resize=256, skip_bad_images=False),
        args.file_batch_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        shuffle=True,
        color_jitter=0.4,
        num_workers=args.workers,
        device=args.device,
        decode_on_device=args.decode_on_device,
        decoder=decoder,
    )


def make_pipelines(root: str, args: argparse.Namespace) -> dict[str, tuple]:
    """``name → (loader, label, worker pids)``; DALI's only where it is installed."""
    baseline = torchvision_loader(root, args)
    pillow = ltlight_loader(root, args, "pil")
    pipelines = {
        "torchvision": (
            baseline,
            f"torchvision ImageFolder + transforms, DataLoader({args.workers} workers)",
            lambda: loader_worker_pids(baseline),
        ),
        "pil": (
            pillow,
            f"ltlight ImageFolderLTDataModule, decoder=pil ({args.workers} workers)",
            lambda: loader_worker_pids(pillow.loader),
        ),
    }
    try:
        dali = ltlight_loader(root, args, "dali")
    except ImportError as error:
        print(f"ltlight with decoder=dali: not measured ({error})")
    else:
        mode = "mixed" if args.decode_on_device and args.device == "cuda" else "cpu"
        label = f"ltlight ImageFolderLTDataModule, decoder=dali ({args.workers} threads, {mode})"
        pipelines["dali"] = (dali, label, lambda: [])
    return pipelines


# -- measuring -----------------------------------------------------------------------------------
def time_epoch(batches, device: torch.device) -> tuple[float, int]:
    """Seconds to draw one epoch of batches onto ``device``, and the number of images."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, images = time.perf_counter(), 0
    for x, y in batches:
        x = x.to(device, non_blocking=True)
        images += len(y.to(device, non_blocking=True))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, images


def measure(pipelines: dict[str, tuple], args: argparse.Namespace) -> dict[str, dict]:
    """Epochs of the pipelines in turn: images/s, CPU ms per image, peak PSS of each."""
    device = torch.device(args.device)
    found = {
        name: {"rates": [], "cpu_ms": [], "main": 0.0, "workers": 0.0, "gpu": None}
        for name in pipelines
    }
    for epoch in range(args.epochs + 1):  # epoch 0 starts the workers and warms the page cache
        for name, (loader, _, pids) in pipelines.items():
            if hasattr(loader, "sampler") and hasattr(loader.sampler, "set_epoch"):
                loader.sampler.set_epoch(epoch)
            processes = [os.getpid(), *pids()]
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            cpu_before = sum(cpu_seconds(pid) for pid in processes)
            with PeakMemory(pids) as memory:
                seconds, count = time_epoch(loader, device)
            cpu = sum(cpu_seconds(pid) for pid in [os.getpid(), *pids()]) - cpu_before
            record = found[name]
            record["main"] = max(record["main"], memory.main)
            record["workers"] = max(record["workers"], memory.workers)
            if device.type == "cuda":
                gpu = torch.cuda.max_memory_allocated(device) / 2**20
                record["gpu"] = max(record["gpu"] or 0.0, gpu)
            if epoch:
                record["rates"].append(count / seconds)
                record["cpu_ms"].append(cpu / count * 1e3)
    return found


def print_table(pipelines: dict[str, tuple], found: dict[str, dict]) -> None:
    rate = {name: statistics.median(r["rates"]) for name, r in found.items()}
    cpu = {name: statistics.median(r["cpu_ms"]) for name, r in found.items()}
    print(
        f"\n| pipeline ({RECIPE}) | images/s | ratio | CPU ms/image | CPU ratio | "
        "peak PSS main MiB | peak PSS workers MiB | GPU peak MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, (_, label, _) in pipelines.items():
        record = found[name]
        print(
            f"| {label} | {rate[name]:,.0f} | {rate[name] / rate['torchvision']:.2f}× | "
            f"{cpu[name]:.2f} | {cpu['torchvision'] / cpu[name]:.2f}× | "
            f"{record['main']:,.0f} | {record['workers']:,.0f} | "
            f"{'—' if record['gpu'] is None else format(record['gpu'], ',.0f')} |"
        )
    for name in pipelines:
        if name == "torchvision":
            continue
        ratio = rate[name] / rate["torchvision"]
        verdict = "meets" if ratio >= FILE_SPEEDUP_GOAL else "misses"
        paired = [
            a / b for a, b in zip(found[name]["rates"], found["torchvision"]["rates"], strict=True)
        ]
        print(
            f"decoder={name}: {ratio:.2f}× ({verdict} the ≥ {FILE_SPEEDUP_GOAL}× goal); "
            "per-epoch ratios " + ", ".join(f"{r:.2f}" for r in paired)
        )


def run(args: argparse.Namespace) -> None:
    root = write_jpegs(args.jpeg_dir, args.images)
    sizes = [
        os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs if f[0] != "."
    ]
    pipelines = make_pipelines(root, args)
    print(
        f"{len(sizes)} JPEGs of 500×375 (mean {statistics.mean(sizes) / 1024:.0f} KiB) in "
        f"{root}; batch {args.file_batch_size}, {args.workers} workers (threads for DALI) each; "
        f"device {args.device}; torch {torch.get_num_threads()} threads; "
        f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    found = measure(pipelines, args)
    print_table(pipelines, found)
    print(f"finished at load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
