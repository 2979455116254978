"""Images/s of the device-resident data pipeline against torchvision's per-sample pipeline.

Both produce the same CIFAR training batches — random crop with 4-pixel zero padding, horizontal
flip, normalisation, batch 128, a new shuffled order per epoch — from CIFAR-10-LT's 12,406 images
(the real ones if ``--data-dir`` holds CIFAR-10, synthetic uint8 images of the same size if not):

* torchvision: ``RandomCrop(32, 4) + RandomHorizontalFlip + ToTensor + Normalize`` applied per
  sample to PIL images in a ``DataLoader`` with 2 workers (persistent, so worker start-up is not
  counted; pinned memory and a non-blocking copy to the device on a GPU);
* ltlight: :class:`~ltlight.data.DeviceDataLoader`, the whole split as one uint8 tensor on the
  device, each batch cropped, flipped and normalised there at once.

One warm-up epoch each, then the pipelines alternate epoch by epoch, so machine load affects
them alike; the table gives median images/s and the ratio (goal: ≥ 5× on the CPU). On the CPU the
device pipeline is timed twice: with torch's default intra-op threads, and with one thread, as
each DataLoader worker runs. On a machine whose cores other processes also use, the default
threads can be several times slower than one: every op's OpenMP fork-join waits for a thread the
OS has parked (``torch.set_num_threads(1)`` or ``OMP_WAIT_POLICY=PASSIVE`` avoids it).

On a GPU it also reports what the pipeline costs next to a ResNet-32 training step (batch 128,
SGD): the time of an epoch of training steps fed by the pipeline against the same number of steps
on one fixed batch (goal: < 5 %). On the CPU that part is skipped: a CPU ResNet-32 step takes
about a second, so the comparison says nothing about keeping a GPU fed.

Run: ``python benchmarks/data.py`` (``--epochs 7`` for tighter medians, ``--device cuda``).

Image files (``--files``): ltlight's file pipeline against torchvision's ``ImageFolder`` with the
standard transforms, on generated JPEGs of ImageNet size (500×375, photo-like: smooth colour
fields plus grain, quality 90; written once to ``--jpeg-dir``), both producing the same training
batches of Kang et al.'s recipe — RandomResizedCrop 224 + flip + ColorJitter 0.4 + normalise:

* torchvision: ``ImageFolder`` + ``RandomResizedCrop(224), RandomHorizontalFlip(),
  ColorJitter(0.4, 0.4, 0.4), ToTensor(), Normalize`` per sample (PIL) in a ``DataLoader``;
* ltlight: ``ImageFolderLTDataModule(...).train_dataloader()`` — workers decode (Pillow with
  libjpeg's reduced-size ``draft``), crop, flip and (on the CPU) jitter to uint8; the float
  conversion and normalisation run on the batch in the main process (jitter too on a GPU).

Same batch size, same number of persistent workers, one warm-up epoch each, then the two
alternate epoch by epoch; median images/s, their ratio (goal ≥ 1.5× on the CPU), and the peak
memory of each: the main process's and the sum of its workers' proportional set size (PSS:
pages shared between forked workers counted once), sampled every 50 ms during its epochs.
Run: ``python benchmarks/data.py --files`` (``--images 2000 --workers 2 --epochs 3``).
"""

import argparse
import os
import statistics
import threading
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from torchvision.datasets import ImageFolder

from ltlight.data import (
    CIFAR10LTDataModule,
    DeviceDataLoader,
    FileDataLoader,
    ImageFolderLTDataModule,
    long_tail_counts,
)

SPEEDUP_GOAL = 5.0
FILE_SPEEDUP_GOAL = 1.5
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
STEP_SHARE_GOAL = 0.05
MEAN, STD = CIFAR10LTDataModule.mean, CIFAR10LTDataModule.std


class PerSampleCIFAR(Dataset):
    """The common CIFAR training set: PIL image → torchvision transforms, one sample at a time."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images_hwc, labels
        self.transform = transforms.Compose(
            [
                transforms.RandomCrop(32, padding=4),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(MEAN, STD),
            ]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def cifar10_lt(data_dir: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """CIFAR-10-LT (ρ = 100) from ``data_dir``, or synthetic images of the same size."""
    try:
        datamodule = CIFAR10LTDataModule(data_dir=data_dir, download=False)
        datamodule.setup("fit")
        images, labels = datamodule.train_data
        return images, labels, f"CIFAR-10-LT from {data_dir}"
    except FileNotFoundError:
        counts = long_tail_counts(5000, 10, 100)
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (sum(counts), 3, 32, 32), generator=generator)
        labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
        return images.to(torch.uint8), labels, "synthetic uint8 images (CIFAR-10 not found)"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_epoch(batches, device: torch.device) -> tuple[float, int]:
    """Seconds to draw one epoch of batches onto ``device``, and the number of images."""
    synchronize(device)
    start, images = time.perf_counter(), 0
    for x, y in batches:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        images += len(y)
    synchronize(device)
    return time.perf_counter() - start, images


def resnet32_step_share(loader: DeviceDataLoader, device: torch.device, epochs: int) -> None:
    """Training-step time with the pipeline feeding it, against steps on one fixed batch."""
    from ltlight.models import resnet32

    model = resnet32(num_classes=10).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y).backward()
        optimizer.step()

    fixed_x, fixed_y = next(iter(loader))
    num_batches = len(loader)
    with_pipeline, fixed_batch = [], []
    for epoch in range(epochs + 1):  # the first round warms up cuDNN and the allocator
        loader.sampler.set_epoch(epoch)
        synchronize(device)
        start = time.perf_counter()
        for x, y in loader:
            step(x, y)
        synchronize(device)
        piped = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(num_batches):
            step(fixed_x, fixed_y)
        synchronize(device)
        fixed = time.perf_counter() - start
        if epoch:
            with_pipeline.append(piped / num_batches)
            fixed_batch.append(fixed / num_batches)
    piped, fixed = statistics.median(with_pipeline), statistics.median(fixed_batch)
    share = (piped - fixed) / fixed
    print(f"\nResNet-32 training step, batch {loader.batch_size}, on {device}:")
    print(f"| step on a fixed batch           | {fixed * 1e3:8.2f} ms |")
    print(f"| step fed by the device pipeline | {piped * 1e3:8.2f} ms |")
    verdict = "meets" if share < STEP_SHARE_GOAL else "misses"
    print(f"pipeline cost: {share:+.1%} of a step ({verdict} the < {STEP_SHARE_GOAL:.0%} goal)")


# -- image files -------------------------------------------------------------------------------
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


def loader_worker_pids(loader: DataLoader) -> list[int]:
    # A persistent DataLoader's worker processes (private attribute: a benchmark-only look).
    iterator = getattr(loader, "_iterator", None)
    return [w.pid for w in getattr(iterator, "_workers", [])]


class PeakMemory:
    """Samples the main process's and the given workers' PSS every 50 ms; keeps the peaks."""

    def __init__(self, worker_pids) -> None:
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


def cpu_time_per_image(baseline: ImageFolder, ours: FileDataLoader, rounds: int) -> None:
    """CPU seconds per training image of each pipeline, in this process with one thread.

    ``time.process_time`` counts only this process's CPU, so other work on the machine barely
    moves it (unlike images/s): the per-sample work of a worker, plus for ltlight the batch's
    float conversion and normalisation. Rounds of 64 images alternate between the two.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    dataset, batch = ours.dataset, 64
    spent: dict[str, list[float]] = {"torchvision": [], "ltlight": []}
    for r in range(rounds + 1):
        indices = range(r * batch, (r + 1) * batch)
        start = time.process_time()
        for i in indices:
            baseline[i % len(baseline)]
        spent["torchvision"].append(time.process_time() - start)
        start = time.process_time()
        crops = torch.stack([dataset[(i % len(dataset), i)][0] for i in indices])
        ours.normalize(crops)
        spent["ltlight"].append(time.process_time() - start)
    torch.set_num_threads(threads)
    per_image = {k: statistics.median(v[1:]) / batch * 1e3 for k, v in spent.items()}
    print("\n| CPU time per training image (one process, 1 thread) | ms | ratio |")
    print("|---|---:|---:|")
    for name, ms in per_image.items():
        print(f"| {name} | {ms:.2f} | {per_image['torchvision'] / ms:.2f}× |")


def file_pipelines(args: argparse.Namespace) -> None:
    root = write_jpegs(args.jpeg_dir, args.images)
    size_kib = (
        statistics.mean(
            os.path.getsize(os.path.join(d, f))
            for d, _, fs in os.walk(root)
            for f in fs
            if f[0] != "."
        )
        / 1024
    )
    device = torch.device(args.device)
    torchvision_loader = DataLoader(
        ImageFolder(
            root,
            transform=transforms.Compose(
                [
                    transforms.RandomResizedCrop(224),
                    transforms.RandomHorizontalFlip(),
                    transforms.ColorJitter(0.4, 0.4, 0.4),
                    transforms.ToTensor(),
                    transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
                ]
            ),
        ),
        batch_size=args.file_batch_size,
        shuffle=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        pin_memory=device.type == "cuda",
    )
    datamodule = ImageFolderLTDataModule(
        train=root,
        batch_size=args.file_batch_size,
        num_workers=args.workers,
        decode_on_device=args.decode_on_device,
    )
    train = datamodule.splits["train"]
    ours = FileDataLoader(  # what datamodule.train_dataloader() builds, on --device
        datamodule.make_dataset(train, train=True, size=224, resize=256, skip_bad_images=False),
        args.file_batch_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        shuffle=True,
        color_jitter=0.4,
        num_workers=args.workers,
        device=device,
        decode_on_device=args.decode_on_device,
    )
    print(
        f"{len(datamodule.splits['train'])} JPEGs of 500×375 (mean {size_kib:.0f} KiB) in {root}; "
        f"batch {args.file_batch_size}, {args.workers} workers each; device {device}"
    )
    pipelines = {
        "torchvision": (torchvision_loader, lambda: loader_worker_pids(torchvision_loader)),
        "ltlight": (ours, lambda: loader_worker_pids(ours.loader)),
    }
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    peaks = {name: [0.0, 0.0] for name in pipelines}
    for epoch in range(args.epochs + 1):  # epoch 0 starts the workers and warms the page cache
        ours.sampler.set_epoch(epoch)
        for name, (loader, pids) in pipelines.items():
            with PeakMemory(pids) as memory:
                seconds, count = time_epoch(loader, device)
            peaks[name] = [max(peaks[name][0], memory.main), max(peaks[name][1], memory.workers)]
            if epoch:
                rates[name].append(count / seconds)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    print(
        "\n| pipeline (RandomResizedCrop 224 + flip + ColorJitter 0.4 + normalise) | images/s | "
        "ratio | peak PSS main MiB | peak PSS workers MiB |"
    )
    print("|---|---:|---:|---:|---:|")
    labels = {
        "torchvision": f"torchvision ImageFolder + transforms, DataLoader({args.workers} workers)",
        "ltlight": f"ltlight ImageFolderLTDataModule ({args.workers} workers)",
    }
    for name, rate in medians.items():
        main_mib, workers_mib = peaks[name]
        print(
            f"| {labels[name]} | {rate:,.0f} | {rate / medians['torchvision']:.2f}× | "
            f"{main_mib:,.0f} | {workers_mib:,.0f} |"
        )
    ratio = medians["ltlight"] / medians["torchvision"]
    cpu_time_per_image(torchvision_loader.dataset, ours, args.epochs)
    verdict = "meets" if ratio >= FILE_SPEEDUP_GOAL else "misses"
    paired = [a / b for a, b in zip(rates["ltlight"], rates["torchvision"], strict=True)]
    print(
        f"ltlight: {ratio:.2f}× ({verdict} the ≥ {FILE_SPEEDUP_GOAL}× goal); per-epoch ratios "
        + ", ".join(f"{r:.2f}" for r in paired)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default="data", help="CIFAR-10 root (synthetic if absent)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs of each pipeline")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="torchvision DataLoader workers")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--files", action="store_true", help="the image-file pipelines instead")
    parser.add_argument("--images", type=int, default=2000, help="JPEGs for --files")
    parser.add_argument("--file-batch-size", type=int, default=64)
    parser.add_argument("--jpeg-dir", default="/tmp/ltlight-benchmark-jpegs")
    parser.add_argument(
        "--decode-on-device", action="store_true", help="--files: nvJPEG batch decoding"
    )
    args = parser.parse_args()
    if args.files:
        file_pipelines(args)
        return
    device = torch.device(args.device)

    images, labels, source = cifar10_lt(args.data_dir)
    print(
        f"{len(labels)} images {tuple(images.shape[1:])}: {source}; device {device}; "
        f"{torch.get_num_threads()} torch threads"
    )

    device_loader = DeviceDataLoader(
        images.to(device), labels.to(device), args.batch_size, mean=MEAN, std=STD,
        shuffle=True, crop_padding=4, flip=True, seed=0, device=device,
    )  # fmt: skip
    per_sample = DataLoader(
        PerSampleCIFAR(images.permute(0, 2, 3, 1).numpy(), labels.numpy()),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        pin_memory=device.type == "cuda",
    )

    # DataLoader workers run torch single-threaded; on the CPU the device pipeline is also timed
    # with one intra-op thread (one core against the workers' two), which is what it gets on a
    # busy machine: OpenMP's fork-join for every op stalls when another process holds a core.
    variants = [("torchvision", per_sample, None), ("device", device_loader, None)]
    if device.type == "cpu" and torch.get_num_threads() > 1:
        variants.append(("device, 1 thread", device_loader, 1))
    rates: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    for epoch in range(args.epochs + 1):  # epoch 0 warms up (worker start-up, allocator)
        device_loader.sampler.set_epoch(epoch)
        for name, batches, threads in variants:
            default_threads = torch.get_num_threads()
            torch.set_num_threads(threads or default_threads)
            seconds, count = time_epoch(batches, device)
            torch.set_num_threads(default_threads)
            if epoch:
                rates[name].append(count / seconds)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    baseline = medians["torchvision"]

    print(f"\n| pipeline (batch {args.batch_size}, crop 4 + flip + normalise) | images/s | ratio |")
    print("|---|---:|---:|")
    labels_of = {
        "torchvision": f"torchvision per-sample, DataLoader({args.workers} workers)",
        "device": f"ltlight DeviceDataLoader on {device.type} ({torch.get_num_threads()} threads)",
        "device, 1 thread": "ltlight DeviceDataLoader on cpu (1 thread)",
    }
    for name, rate in medians.items():
        print(f"| {labels_of[name]} | {rate:,.0f} | {rate / baseline:.1f}× |")
    for name, rate in medians.items():
        if name != "torchvision":
            verdict = "meets" if rate / baseline >= SPEEDUP_GOAL else "misses"
            print(f"{name}: {rate / baseline:.1f}× ({verdict} the ≥ {SPEEDUP_GOAL:.0f}× goal)")

    if device.type == "cuda":
        resnet32_step_share(device_loader, device, args.epochs)
    else:
        print("\nResNet-32 step comparison: skipped on the CPU (it measures keeping a GPU fed).")


if __name__ == "__main__":
    main()
