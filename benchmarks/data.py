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

Image files (``--files``): ltlight's file pipeline, with Pillow or DALI decoding, against
torchvision's ``ImageFolder`` — see ``benchmarks/file_pipelines.py``. Run: ``python
benchmarks/data.py --files`` (``--images 2000 --workers 2 --epochs 3``).
"""

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from ltlight.data import (
    CIFAR10LTDataModule,
    DeviceDataLoader,
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
        "--decode-on-device",
        action="store_true",
        help="--files: decode on --device (nvJPEG batch decoding; DALI's mixed decoder)",
    )
    args = parser.parse_args()
    if args.files:
        import file_pipelines

        file_pipelines.run(args)
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
