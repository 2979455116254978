"""Long-tailed multi-label classification on real Fashion-MNIST mosaics: BCE, sigmoid focal,
ASL, Distribution-Balanced (with and without DRW) and GHM-C side by side.

The data: every image is a 2×2 mosaic (56×56) of four Fashion-MNIST images; its labels are the
classes present (1 to 4 of the 10). Training mosaics draw each tile's class from a long-tailed
distribution, ``p_j ∝ ρ^{−j/9}`` (class 0 the most frequent, ``ρ`` = ``--imbalance``), so the
training positives per class fall from thousands to a handful; validation and test mosaics draw
tiles uniformly (every class has positives to measure). Tiles come from disjoint images: training
mosaics from the first 50,000 Fashion-MNIST training images, validation from the last 10,000,
test from the 10,000 test images. Head / medium / tail: training positives > 100, 20–100, < 20.

Every method trains the same small CNN (three conv-BN-ReLU-pool blocks, global average pooling,
a linear head) with Adam for ``--epochs`` epochs through :class:`~ltlight.LongTailModule` and
Lightning's Trainer; :class:`~ltlight.callbacks.ThresholdTuning` then fits one threshold per
label on the validation mosaics (maximum F1). The table gives the test mAP, head / medium / tail
mAP, macro F1 at 0.5 and at the tuned thresholds, and the ECE of the label-wise probabilities
(mean ± std over ``--seeds``). DB+DRW: the DB loss re-weighted per class from 60 % of training
(DRW's effective-number weights, β = 0.9999).

Run: ``python benchmarks/multilabel.py`` (the table in benchmarks/README.md; the real files:
``apt-get install dataset-fashion-mnist``, or ``--data-dir`` with the four gzipped IDX files).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see benchmarks/README.md

import argparse
import gzip
import statistics
import sys
import time
from collections.abc import Callable

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from ltlight import LongTailModule
from ltlight.callbacks import DeferredReweighting, ThresholdTuning
from ltlight.losses import (
    AsymmetricLoss,
    BinaryCrossEntropyLoss,
    DistributionBalancedLoss,
    GHMCLoss,
    SigmoidFocalLoss,
)
from ltlight.metrics import multilabel_metrics

CLASS_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
METHODS: dict[str, Callable[[], tuple[nn.Module, list[L.Callback]]]] = {
    "BCE": lambda: (BinaryCrossEntropyLoss(), []),
    "focal": lambda: (SigmoidFocalLoss(), []),
    "ASL": lambda: (AsymmetricLoss(), []),
    "DB": lambda: (DistributionBalancedLoss(), []),
    "DB+DRW": lambda: (DistributionBalancedLoss(), [DeferredReweighting(start_epoch=0.6)]),
    "GHM-C": lambda: (GHMCLoss(), []),
}
COLUMNS = ["mAP", "head mAP", "medium mAP", "tail mAP", "F1 @0.5", "F1 tuned", "ECE"]


def read_idx(path: str) -> np.ndarray:
    """A (gzipped) IDX file as a uint8 array: images ``(N, 28, 28)`` or labels ``(N,)``."""
    with gzip.open(path, "rb") as file:
        data = file.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def tile_probabilities(imbalance: float, num_classes: int = 10) -> np.ndarray:
    """``p_j ∝ ρ^{−j/(C−1)}``: class 0 the most frequent, class C−1 ``ρ`` times rarer."""
    weights = imbalance ** (-np.arange(num_classes) / (num_classes - 1))
    return weights / weights.sum()


def mosaics(
    images: np.ndarray, labels: np.ndarray, count: int, probs: np.ndarray, seed: int
) -> tuple[Tensor, Tensor]:
    """``count`` 2×2 mosaics ``(count, 1, 56, 56)`` uint8 and their multi-hot targets."""
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(labels == c) for c in range(len(probs))]
    classes = rng.choice(len(probs), size=(count, 4), p=probs)
    first = min(count, len(probs))
    classes[:first, 0] = np.arange(first)  # every class has a positive, even in a small run
    picks = np.stack([rng.choice(by_class[c]) for c in classes.flatten()]).reshape(count, 2, 2)
    tiles = images[picks]  # (count, 2, 2, 28, 28)
    grid = tiles.transpose(0, 1, 3, 2, 4).reshape(count, 1, 56, 56)
    target = np.zeros((count, len(probs)), dtype=np.float32)
    np.put_along_axis(target, classes, 1.0, axis=1)
    return torch.from_numpy(np.ascontiguousarray(grid)), torch.from_numpy(target)


class MosaicDataModule(L.LightningDataModule):
    """Train / validation / test mosaics as in-memory tensors (the multi-label contract:
    ``multi_label``, ``class_counts`` = training positives, ``num_train_samples``)."""

    multi_label = True
    class_names = CLASS_NAMES

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        folder = args.data_dir
        train_images = read_idx(os.path.join(folder, "train-images-idx3-ubyte.gz"))
        train_labels = read_idx(os.path.join(folder, "train-labels-idx1-ubyte.gz"))
        test_images = read_idx(os.path.join(folder, "t10k-images-idx3-ubyte.gz"))
        test_labels = read_idx(os.path.join(folder, "t10k-labels-idx1-ubyte.gz"))
        held_out = len(train_images) * 5 // 6  # 50,000 of 60,000 for the training mosaics
        uniform = np.full(10, 0.1)
        long_tail = tile_probabilities(args.imbalance)
        self.train = mosaics(
            train_images[:held_out], train_labels[:held_out], args.train, long_tail, 0
        )
        self.val = mosaics(train_images[held_out:], train_labels[held_out:], args.val, uniform, 1)
        self.test = mosaics(test_images, test_labels, args.test, uniform, 2)
        self.class_counts = [int(n) for n in self.train[1].sum(0)]
        self.num_train_samples = args.train
        self.batch_size = args.batch_size

    @staticmethod
    def _dataset(split: tuple[Tensor, Tensor]) -> TensorDataset:
        images, target = split
        return TensorDataset((images.float() / 255 - 0.286) / 0.353, target)  # Fashion-MNIST stats

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset(self.train), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset(self.val), batch_size=256)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset(self.test), batch_size=256)


def small_cnn(num_classes: int = 10) -> nn.Sequential:
    def block(inputs: int, outputs: int) -> list[nn.Module]:
        return [
            nn.Conv2d(inputs, outputs, 3, padding=1, bias=False),
            nn.BatchNorm2d(outputs),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]

    return nn.Sequential(
        *block(1, 8), *block(8, 16), *block(16, 32),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes),
    )  # fmt: skip


def run_one(method: str, data: MosaicDataModule, args: argparse.Namespace, seed: int) -> dict:
    """Train one method, tune thresholds on validation, evaluate on test."""
    L.seed_everything(seed, verbose=False)
    loss, callbacks = METHODS[method]()
    module = LongTailModule(
        small_cnn(),
        loss=loss,
        optimizer=lambda params: torch.optim.Adam(params, lr=args.lr),
        callbacks=callbacks,
    )
    trainer = L.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=args.epochs,
        callbacks=[ThresholdTuning()],
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    seconds = time.perf_counter() - start
    module.eval()
    images, target = MosaicDataModule._dataset(data.test).tensors
    with torch.no_grad():
        probs = torch.cat([module.predict_proba(module(x)) for x in images.split(512)])
    results = {}
    for name, thresholds in (("0.5", None), ("tuned", module.label_decision.thresholds)):
        results[name] = multilabel_metrics(probs, target, data.class_counts, thresholds)
    tuned, half = results["tuned"], results["0.5"]
    values = [tuned["map"], tuned["head_map"], tuned["medium_map"], tuned["tail_map"]]
    values += [half["macro_f1"], tuned["macro_f1"], tuned["ece"]]
    row = dict(zip(COLUMNS, (100 * float(v) for v in values), strict=True))
    return {"method": method, "seed": seed, "seconds": seconds, **row}


def table(runs: list[dict], methods: list[str]) -> str:
    lines = [
        "| method | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for method in methods:
        mine = [run for run in runs if run["method"] == method]
        cells = []
        for column in COLUMNS:
            values = [run[column] for run in mine]
            spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.1f}{spread}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=SYSTEM_DIR, help="the four gzipped IDX files")
    parser.add_argument("--train", type=int, default=3000, help="training mosaics")
    parser.add_argument("--val", type=int, default=1000, help="validation mosaics (uniform)")
    parser.add_argument("--test", type=int, default=2000, help="test mosaics (uniform)")
    parser.add_argument("--imbalance", type=float, default=1000.0, help="ρ of the tile classes")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.data_dir):
        print(f"no Fashion-MNIST files in {args.data_dir}: `apt-get install dataset-fashion-mnist`")
        return 1
    torch.set_num_threads(args.threads)
    data = MosaicDataModule(args)
    counts = ", ".join(
        f"{name} {n}" for name, n in zip(CLASS_NAMES, data.class_counts, strict=True)
    )
    print(f"training positives per class ({args.train} mosaics, ρ = {args.imbalance:g}): {counts}")
    runs = []
    for seed in args.seeds:
        for method in args.methods:
            runs.append(run_one(method, data, args, seed))
            run = runs[-1]
            print(
                f"{method} seed {seed}: mAP {run['mAP']:.1f} ({run['seconds']:.0f} s)", flush=True
            )
    print()
    print(table(runs, args.methods))
    return 0


if __name__ == "__main__":
    sys.exit(main())
