"""Does heavy fine-tuning hurt the tail? Fine-tuning methods × losses on real Fashion-MNIST.

A small timm ViT (4-pixel patches on 28×28 grey images) is pretrained on a balanced half of
Fashion-MNIST's training set and saved as ``.safetensors``; the other half gives a long-tailed
draw (ratio 100, exponential profile, at most ``--head`` images per class) on which each method
fine-tunes from that file through ``ltlight.models.timm_backbone(checkpoint_path=...)``: from
scratch (random init, everything trains), full fine-tuning, linear probe, BitFit, LoRA and
AdaptFormer, each with cross-entropy, the logit-adjusted loss and TaiLr. Printed per run: test
error (balanced, many / medium / few-shot on the 10,000 balanced test images), ECE, trainable
parameters, checkpoint size, training images/s, and peak GPU memory (CPU: "—").

    python benchmarks/finetune.py                  # the table in benchmarks/README.md (3 seeds)
    python benchmarks/finetune.py --smoke          # a few steps, for the test suite
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import lightning as L
import timm
import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader, TensorDataset

from ltlight import LongTailModule
from ltlight.data import FashionMNISTLTDataModule
from ltlight.finetune import (
    AdaptFormer,
    BitFit,
    FullFineTuning,
    LinearProbe,
    LoRA,
    parameter_counts,
)
from ltlight.losses import CrossEntropyLoss, LogitAdjustedLoss, TaiLrLoss
from ltlight.models import timm_backbone

MODEL = "vit_tiny_patch16_224"
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST's training-set pixel mean and std
METHODS = {
    "scratch": None,
    "full": FullFineTuning,
    "linear probe": LinearProbe,
    "BitFit": BitFit,
    "LoRA": lambda: LoRA(rank=8, alpha=16.0, target_modules=["qkv", "fc1", "fc2"]),
    "AdaptFormer": AdaptFormer,
}
LOSSES = {
    "CE": CrossEntropyLoss,
    "LA": LogitAdjustedLoss,
    # configs/methods/tailr.yaml's recipe: γ = 0.5, the weight floored at 0.1 (γ = 0 is CE)
    "TaiLr": lambda: TaiLrLoss(gamma=0.5, threshold=0.1),
}


def vit_kwargs(args: argparse.Namespace) -> dict:
    return {
        "img_size": 28,
        "patch_size": 4,
        "in_chans": 1,
        "embed_dim": args.dim,
        "depth": args.depth,
        "num_heads": max(1, args.dim // 32),
    }


def splits(args: argparse.Namespace) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Balanced pretraining half, long-tailed draw from the other half, the test split."""
    source = FashionMNISTLTDataModule(data_dir=args.data_dir, download=False)
    images, labels = source.load_split(train=True)
    test_images, test_labels = source.load_split(train=False)
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(labels), generator=generator)
    first, second = order[: len(order) // 2], order[len(order) // 2 :]
    pretrain = torch.cat([first[labels[first] == c][: args.pretrain_per_class] for c in range(10)])
    counts = [max(1, round(args.head * args.ratio ** (-c / 9))) for c in range(10)]
    tail = torch.cat([second[labels[second] == c][:n] for c, n in enumerate(counts)])
    test = slice(0, args.test_images)
    return {
        "pretrain": (images[pretrain], labels[pretrain]),
        "long_tailed": (images[tail], labels[tail]),
        "test": (test_images[test], test_labels[test]),
    }


class Tensors(L.LightningDataModule):
    """uint8 images normalised on the fly; ``class_counts`` of the training part."""

    def __init__(self, train, test, batch_size: int) -> None:
        super().__init__()
        self.train_set = TensorDataset(normalise(train[0]), train[1])
        self.test_set = TensorDataset(normalise(test[0]), test[1])
        self.class_counts = torch.bincount(train[1], minlength=10).tolist()
        self.num_classes = 10
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def test_dataloader(self):
        return DataLoader(self.test_set, batch_size=1000)


def normalise(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255 - MEAN) / STD


def trainer(args: argparse.Namespace, epochs: int, folder: str) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        max_steps=args.max_steps,
        accelerator=args.device,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=folder,
    )


def pretrain(args, data, folder: str) -> str:
    L.seed_everything(args.seed)
    backbone = timm.create_model(MODEL, num_classes=10, **vit_kwargs(args))
    module = LongTailModule(backbone, optimizer=adamw(args.pretrain_lr))
    train = Tensors(data["pretrain"], data["test"], args.batch_size)
    trainer(args, args.pretrain_epochs, folder).fit(module, datamodule=train)
    path = os.path.join(folder, "pretrained.safetensors")
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, path)
    return path


def adamw(lr: float):
    return lambda params: torch.optim.AdamW(params, lr=lr, weight_decay=0.05)


def finetune(args, data, base: str, method: str, loss: str, folder: str) -> dict:
    L.seed_everything(args.seed)
    scratch = METHODS[method] is None
    backbone = timm_backbone(
        MODEL, 10, checkpoint_path=None if scratch else base, **vit_kwargs(args)
    )
    module = LongTailModule(
        backbone,
        loss=LOSSES[loss](),
        optimizer=adamw(args.scratch_lr if scratch else args.lr),
        finetune=None if scratch else METHODS[method](),
    )
    datamodule = Tensors(data["long_tailed"], data["test"], args.batch_size)
    fit = trainer(args, args.epochs, folder)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fit.fit(module, datamodule=datamodule)
    seconds = time.perf_counter() - start
    images = min(fit.global_step * args.batch_size, fit.current_epoch * len(datamodule.train_set))
    peak = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if args.device == "cuda" else "—"
    results = fit.test(module, datamodule=datamodule, verbose=False)[0]
    path = os.path.join(folder, f"{method}-{loss}.ckpt")
    fit.save_checkpoint(path)
    return {
        "method": method,
        "loss": loss,
        **{k: 100 * results[f"test/{k}"] for k in ERRORS},
        "ece": 100 * results["test/ece"],
        "trainable": parameter_counts(module)[0],
        "checkpoint": os.path.getsize(path) / 2**20,
        "images/s": images / seconds,
        "peak": peak,
    }


ERRORS = ("balanced_error", "many_shot_error", "medium_shot_error", "few_shot_error")


def print_table(rows: list[dict], counts: list[int], seeds: list[int]) -> None:
    """One line per (method, loss): errors and ECE as mean ± std over the seeds."""
    print(f"\nlong-tailed draw: {sum(counts)} images, class counts {counts}")
    print(f"errors and ECE in %, mean ± std over seeds {', '.join(map(str, seeds))}")
    print(
        "\n| method | loss | balanced | many | medium | few | ECE | trainable params "
        "| checkpoint | images/s | peak memory |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for key in dict.fromkeys((r["method"], r["loss"]) for r in rows):
        mine = [r for r in rows if (r["method"], r["loss"]) == key]
        cells = [mean_std([r[column] for r in mine]) for column in (*ERRORS, "ece")]
        r = mine[0]
        images_per_second = statistics.mean(r["images/s"] for r in mine)
        print(
            f"| {key[0]} | {key[1]} | {' | '.join(cells)} | {r['trainable']:,} | "
            f"{r['checkpoint']:.2f} MiB | {images_per_second:.0f} | {r['peak']} |"
        )


def mean_std(values: list[float]) -> str:
    spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.1f}{spread}"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--pretrain-per-class", type=int, default=1000)
    parser.add_argument("--pretrain-epochs", type=int, default=5)
    parser.add_argument("--pretrain-lr", type=float, default=2e-3)
    parser.add_argument("--head", type=int, default=500, help="images of the largest class")
    parser.add_argument("--ratio", type=float, default=100.0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--scratch-lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--test-images", type=int, default=10_000)
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=list(LOSSES))
    parser.add_argument("--smoke", action="store_true", help="a few steps of two methods")
    args = parser.parse_args(argv)
    if args.smoke:
        args.dim, args.depth, args.pretrain_per_class, args.head = 24, 1, 20, 40
        args.pretrain_epochs, args.epochs, args.max_steps, args.test_images = 1, 1, 2, 200
        args.methods, args.losses, args.seeds = ["scratch", "AdaptFormer"], ["LA"], [0]
    return args


def main(argv: list[str]) -> None:
    args = parse(argv)
    rows, counts = [], None
    for seed in args.seeds:  # each seed: its own halves, draw, pretraining and fine-tuning
        args.seed = seed
        data = splits(args)
        counts = counts or torch.bincount(data["long_tailed"][1], minlength=10).tolist()
        with tempfile.TemporaryDirectory() as folder:
            base = pretrain(args, data, folder)
            print(f"seed {seed}: pretrained on {len(data['pretrain'][1])} balanced images")
            for method in args.methods:
                for loss in args.losses:
                    rows.append(finetune(args, data, base, method, loss, folder))
                    print(
                        f"seed {seed}: {method} {loss}: balanced error "
                        f"{rows[-1]['balanced_error']:.1f} %",
                        flush=True,
                    )
    print_table(rows, counts, args.seeds)


if __name__ == "__main__":
    main(sys.argv[1:])
